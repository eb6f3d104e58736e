package decode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	"github.com/hamba/avro/v2"
)

// connectSchema is a Kafka Connect schema as JsonConverter writes it
// ({"type":…, "name":…, "parameters":…, "fields":[…]}) or as it is
// recovered from a Debezium Avro schema. Both paths decode values through
// it, so the JSON and the Avro path agree value by value.
type connectSchema struct {
	Type     string // int8 … int64, float, double, boolean, string, bytes, array, map, struct
	Name     string // semantic type: io.debezium.time.MicroTimestamp, org.apache.kafka.connect.data.Decimal, …
	Optional bool
	Params   map[string]string
	Fields   []connectField // struct
	Items    *connectSchema // array
	Values   *connectSchema // map
}

type connectField struct {
	Name   string
	Schema *connectSchema
}

// field returns the schema of the named struct field, or nil.
func (s *connectSchema) field(name string) *connectSchema {
	if s == nil {
		return nil
	}
	for i := range s.Fields {
		if s.Fields[i].Name == name {
			return s.Fields[i].Schema
		}
	}
	return nil
}

// maxSchemaDepth bounds the nesting of schemas and values. Debezium's
// deepest is an envelope holding a row holding an array of structs; the
// bound only stops hostile input from exhausting the stack.
const maxSchemaDepth = 64

// Connect's schema type names as JsonConverter spells them.
var connectTypes = map[string]bool{
	"int8": true, "int16": true, "int32": true, "int64": true, "float": true, "double": true,
	"boolean": true, "string": true, "bytes": true, "array": true, "map": true, "struct": true,
}

// parseConnectSchema reads a JsonConverter schema, already decoded with
// UseNumber. path names it in errors ("value.schema").
func parseConnectSchema(path string, v any, depth int) (*connectSchema, error) {
	if depth > maxSchemaDepth {
		return nil, fieldErr(path, "", "schema nests deeper than %d levels", maxSchemaDepth)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fieldErr(path, show(v), "want a schema object")
	}
	s := &connectSchema{}
	typ, ok := m["type"].(string)
	if !ok || !connectTypes[typ] {
		return nil, fieldErr(path+".type", show(m["type"]), "want one of Connect's schema types")
	}
	s.Type = typ
	if name, ok := m["name"].(string); ok {
		s.Name = name
	}
	if opt, ok := m["optional"].(bool); ok {
		s.Optional = opt
	}
	if p, ok := m["parameters"].(map[string]any); ok && len(p) > 0 {
		s.Params = make(map[string]string, len(p))
		for k, v := range p {
			// Connect's parameters are strings; accept numbers too.
			switch x := v.(type) {
			case string:
				s.Params[k] = x
			case json.Number:
				s.Params[k] = x.String()
			}
		}
	}
	switch typ {
	case "struct":
		fields, ok := m["fields"].([]any)
		if !ok {
			return nil, fieldErr(path+".fields", show(m["fields"]), "want an array of fields")
		}
		s.Fields = make([]connectField, 0, len(fields))
		for i, f := range fields {
			fp := path + ".fields[" + strconv.Itoa(i) + "]"
			fm, ok := f.(map[string]any)
			if !ok {
				return nil, fieldErr(fp, show(f), "want a field object")
			}
			name, ok := fm["field"].(string)
			if !ok {
				return nil, fieldErr(fp+".field", show(fm["field"]), "want the field's name")
			}
			fs, err := parseConnectSchema(fp, fm, depth+1)
			if err != nil {
				return nil, err
			}
			s.Fields = append(s.Fields, connectField{Name: name, Schema: fs})
		}
	case "array":
		items, err := parseConnectSchema(path+".items", m["items"], depth+1)
		if err != nil {
			return nil, err
		}
		s.Items = items
	case "map":
		values, err := parseConnectSchema(path+".values", m["values"], depth+1)
		if err != nil {
			return nil, err
		}
		s.Values = values
	}
	return s, nil
}

// show renders a raw value for an error message, shortened.
func show(v any) string {
	var s string
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		s = strconv.Quote(x)
	case []byte:
		s = fmt.Sprintf("%d bytes %x", len(x), x)
	case json.Number:
		s = x.String()
	default:
		b, err := json.Marshal(x)
		if err != nil {
			s = fmt.Sprintf("%v", x)
		} else {
			s = string(b)
		}
	}
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// schemaCache keeps parsed schemas: JsonConverter repeats a topic's schema
// in every record, and Avro records name theirs by id. It holds at most
// maxCachedSchemas of each kind and starts over when full, which only
// schema churn far beyond schema evolution reaches.
type schemaCache struct {
	mu       sync.RWMutex
	json     map[string]*connectSchema // by the schema's JSON text
	jsonLens map[int]bool              // the lengths of those texts
	avro     map[avro.Schema]*connectSchema
}

const maxCachedSchemas = 256

// jsonSchema parses (or recalls) a record's JsonConverter schema, which
// must be a struct: raw is its text, v the text decoded.
func (d *Debezium) jsonSchema(path string, raw []byte, v any) (*connectSchema, error) {
	d.cache.mu.RLock()
	s, ok := d.cache.json[string(raw)]
	d.cache.mu.RUnlock()
	if ok {
		return s, nil
	}
	s, err := parseConnectSchema(path, v, 0)
	if err != nil {
		return nil, err
	}
	if s.Type != "struct" {
		return nil, fieldErr(path+".type", strconv.Quote(s.Type), "want struct")
	}
	d.cache.mu.Lock()
	if d.cache.json == nil || len(d.cache.json) >= maxCachedSchemas {
		d.cache.json, d.cache.jsonLens = map[string]*connectSchema{}, map[int]bool{}
	}
	d.cache.json[string(raw)] = s
	d.cache.jsonLens[len(raw)] = true
	d.cache.mu.Unlock()
	return s, nil
}

// avroSchema converts (or recalls) the Connect schema of an Avro schema.
func (d *Debezium) avroSchema(path string, sch avro.Schema) (*connectSchema, error) {
	d.cache.mu.RLock()
	s, ok := d.cache.avro[sch]
	d.cache.mu.RUnlock()
	if ok {
		return s, nil
	}
	s, err := connectFromAvro(path, sch, 0)
	if err != nil {
		return nil, err
	}
	if _, ok := sch.(*avro.RecordSchema); !ok {
		return s, nil // only records are cached: a map key must be comparable
	}
	d.cache.mu.Lock()
	if d.cache.avro == nil || len(d.cache.avro) >= maxCachedSchemas {
		d.cache.avro = map[avro.Schema]*connectSchema{}
	}
	d.cache.avro[sch] = s
	d.cache.mu.Unlock()
	return s, nil
}

const (
	wrapperHead = `{"schema":`
	payloadKey  = `,"payload":`
)

// knownWrapper recognizes JsonConverter's compact {"schema":S,"payload":P}
// when S is a schema seen before, and returns it and P without scanning S
// again: S is most of the record (13 KB against 1 KB of payload for a
// table of 24 columns). It tries each length of the schemas it knows.
func (d *Debezium) knownWrapper(data []byte) (*connectSchema, []byte, bool) {
	if !bytes.HasPrefix(data, []byte(wrapperHead)) || data[len(data)-1] != '}' {
		return nil, nil, false
	}
	d.cache.mu.RLock()
	defer d.cache.mu.RUnlock()
	for n := range d.cache.jsonLens {
		end := len(wrapperHead) + n
		if end+len(payloadKey) >= len(data) || string(data[end:end+len(payloadKey)]) != payloadKey {
			continue
		}
		if s, ok := d.cache.json[string(data[len(wrapperHead):end])]; ok {
			return s, data[end+len(payloadKey) : len(data)-1], true
		}
	}
	return nil, nil, false
}
