package decode

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
)

// SchemaRegistry is a SchemaSource that asks a Confluent-compatible schema
// registry (GET {url}/schemas/ids/{id}) and keeps what it got: a schema id
// never changes meaning.
type SchemaRegistry struct {
	url    string
	client *http.Client

	mu    sync.Mutex
	cache map[int]avro.Schema
}

// NewSchemaRegistry returns a client of the registry at baseURL. client
// may be nil: then requests time out after 10 seconds. A caller's client
// should set Timeout, which bounds every lookup.
func NewSchemaRegistry(baseURL string, client *http.Client) *SchemaRegistry {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &SchemaRegistry{url: strings.TrimRight(baseURL, "/"), client: client, cache: map[int]avro.Schema{}}
}

// maxSchemaResponse bounds a registry response.
const maxSchemaResponse = 8 << 20

// Schema returns the schema with the given id.
func (r *SchemaRegistry) Schema(id int) (avro.Schema, error) {
	r.mu.Lock()
	s, ok := r.cache[id]
	r.mu.Unlock()
	if ok {
		return s, nil
	}
	url := r.url + "/schemas/ids/" + strconv.Itoa(id)
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("schema registry: %w", err)
	}
	req.Header.Set("Accept", "application/vnd.schemaregistry.v1+json, application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("schema registry: get schema %d: %w", id, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSchemaResponse))
	if err != nil {
		return nil, fmt.Errorf("schema registry: read schema %d: %w", id, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("schema registry: GET %s: %s: %s", url, resp.Status, shortBytes(body))
	}
	var out struct {
		Schema     string            `json:"schema"`
		SchemaType string            `json:"schemaType"`
		References []json.RawMessage `json:"references"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("schema registry: schema %d: %w", id, err)
	}
	if out.SchemaType != "" && out.SchemaType != "AVRO" {
		return nil, fmt.Errorf("schema registry: schema %d is %s, not Avro", id, out.SchemaType)
	}
	if len(out.References) > 0 {
		return nil, fmt.Errorf("schema registry: schema %d has references, which are not supported", id)
	}
	if s, err = avro.ParseWithCache(out.Schema, "", &avro.SchemaCache{}); err != nil {
		return nil, fmt.Errorf("schema registry: parse schema %d: %w", id, err)
	}
	r.mu.Lock()
	r.cache[id] = s
	r.mu.Unlock()
	return s, nil
}
