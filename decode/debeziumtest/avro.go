package debeziumtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
)

// kv and obj build JSON objects whose keys keep their order.
type kv struct {
	k string
	v any
}

type obj []kv

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(e.k)
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// avroSchemaText is the Avro schema Confluent's AvroData makes of s.
func avroSchemaText(s *schema) string {
	b, err := json.Marshal(avroType(s, map[string]bool{}))
	if err != nil {
		panic("debeziumtest: Avro schema: " + err.Error()) // only strings, numbers and objects
	}
	return string(b)
}

// avroField is the type of a field or an array's items: optional types
// are unions with null, null last when there is a default.
func avroField(s *schema, defined map[string]bool) (typ, def any, hasDefault bool) {
	t := avroType(s, defined)
	switch {
	case s.optional && s.def != nil:
		return []any{t, "null"}, s.def, true
	case s.optional:
		return []any{"null", t}, nil, true
	case s.def != nil:
		return t, s.def, true
	}
	return t, nil, false
}

var avroPrimitive = map[string]string{
	"boolean": "boolean", "int8": "int", "int16": "int", "int32": "int", "int64": "long",
	"float": "float", "double": "double", "string": "string", "bytes": "bytes",
}

func avroType(s *schema, defined map[string]bool) any {
	connect := func(o obj) obj {
		if s.doc != "" {
			o = append(o, kv{"connect.doc", s.doc})
		}
		if s.version != 0 {
			o = append(o, kv{"connect.version", s.version})
		}
		if len(s.params) > 0 {
			p := make(obj, len(s.params))
			for i, x := range s.params {
				p[i] = kv{x.key, x.value}
			}
			o = append(o, kv{"connect.parameters", p})
		}
		if s.def != nil {
			o = append(o, kv{"connect.default", s.def})
		}
		if s.name != "" {
			o = append(o, kv{"connect.name", s.name})
		}
		return o
	}
	switch s.typ {
	case "struct":
		full := s.name
		if full == "" {
			full = "io.confluent.connect.avro.ConnectDefault"
		}
		if defined[full] {
			return full
		}
		defined[full] = true
		o := obj{{"type", "record"}}
		if i := strings.LastIndexByte(full, '.'); i >= 0 {
			o = append(o, kv{"name", full[i+1:]}, kv{"namespace", full[:i]})
		} else {
			o = append(o, kv{"name", full})
		}
		fields := make([]any, len(s.fields))
		for i, f := range s.fields {
			t, def, has := avroField(f.s, defined)
			fo := obj{{"name", f.name}, {"type", t}}
			if has {
				fo = append(fo, kv{"default", def})
			}
			fields[i] = fo
		}
		o = append(o, kv{"fields", fields})
		return connect(o)
	case "array":
		items, _, _ := avroField(s.items, defined)
		return connect(obj{{"type", "array"}, {"items", items}})
	}
	o := obj{{"type", avroPrimitive[s.typ]}}
	if s.typ == "int8" || s.typ == "int16" {
		o = append(o, kv{"connect.type", s.typ})
	}
	if s.name == nameDecimal {
		precision := 64 // AvroData's default when Connect gives none
		for _, p := range s.params {
			if p.key == "connect.decimal.precision" {
				precision, _ = strconv.Atoi(p.value)
			}
		}
		scale, _ := strconv.Atoi(s.params[0].value)
		o = append(o, kv{"scale", scale}, kv{"precision", precision})
	}
	o = connect(o)
	switch s.name {
	case nameDecimal:
		o = append(o, kv{"logicalType", "decimal"})
	case nameConnectDate:
		o = append(o, kv{"logicalType", "date"})
	case nameConnectTime:
		o = append(o, kv{"logicalType", "time-millis"})
	case nameConnectTimestamp:
		o = append(o, kv{"logicalType", "timestamp-millis"})
	}
	if len(o) == 1 {
		return o[0].v
	}
	return o
}

// appendAvro writes v in Avro binary by the Avro schema avroType makes of s.
func appendAvro(b []byte, s *schema, v map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	buf.Write(b)
	w := avro.NewWriter(&buf, 512)
	if err := writeAvro(w, s, v); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeAvroField(w *avro.Writer, s *schema, v any) error {
	switch {
	case s.optional && s.def != nil: // [T, null]
		if v == nil {
			w.WriteLong(1)
			return nil
		}
		w.WriteLong(0)
	case s.optional: // [null, T]
		if v == nil {
			w.WriteLong(0)
			return nil
		}
		w.WriteLong(1)
	case v == nil:
		return fmt.Errorf("debeziumtest: null for a non-optional %s", s.typ)
	}
	return writeAvro(w, s, v)
}

func writeAvro(w *avro.Writer, s *schema, v any) error {
	bad := fmt.Errorf("debeziumtest: %T for a %s schema %s", v, s.typ, s.name)
	switch s.typ {
	case "boolean":
		x, ok := v.(bool)
		if !ok {
			return bad
		}
		w.WriteBool(x)
	case "int8", "int16", "int32":
		x, ok := v.(int64)
		if !ok || int64(int32(x)) != x {
			return bad
		}
		w.WriteInt(int32(x))
	case "int64":
		x, ok := v.(int64)
		if !ok {
			return bad
		}
		w.WriteLong(x)
	case "float":
		x, ok := v.(float32)
		if !ok {
			return bad
		}
		w.WriteFloat(x)
	case "double":
		x, ok := v.(float64)
		if !ok {
			return bad
		}
		w.WriteDouble(x)
	case "string":
		x, ok := v.(string)
		if !ok {
			return bad
		}
		w.WriteString(x)
	case "bytes":
		x, ok := v.([]byte)
		if !ok {
			return bad
		}
		w.WriteBytes(x)
	case "array":
		a, ok := v.([]any)
		if !ok {
			return bad
		}
		if len(a) > 0 {
			w.WriteLong(int64(len(a)))
			for _, e := range a {
				if err := writeAvroField(w, s.items, e); err != nil {
					return err
				}
			}
		}
		w.WriteLong(0)
	case "struct":
		m, ok := v.(map[string]any)
		if !ok {
			return bad
		}
		for _, f := range s.fields {
			if err := writeAvroField(w, f.s, m[f.name]); err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
		}
	default:
		return bad
	}
	return w.Error
}

// Registry stands in for a Confluent Schema Registry: it hands out an id
// per distinct schema, serves GET /schemas/ids/{id} as the registry does,
// and is a decode.SchemaSource itself. It is safe for concurrent use.
type Registry struct {
	mu     sync.Mutex
	ids    map[string]int
	texts  []string
	parsed map[int]avro.Schema
}

// NewRegistry returns an empty registry; ids start at 1.
func NewRegistry() *Registry {
	return &Registry{ids: map[string]int{}, parsed: map[int]avro.Schema{}}
}

func (r *Registry) register(text string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id, ok := r.ids[text]; ok {
		return id, nil
	}
	s, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
	if err != nil {
		return 0, fmt.Errorf("debeziumtest: generated Avro schema does not parse: %w", err)
	}
	r.texts = append(r.texts, text)
	id := len(r.texts)
	r.ids[text] = id
	r.parsed[id] = s
	return id, nil
}

// Text returns the schema registered under id, as the registry serves it.
func (r *Registry) Text(id int) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id < 1 || id > len(r.texts) {
		return "", false
	}
	return r.texts[id-1], true
}

// Schema returns the parsed schema registered under id.
func (r *Registry) Schema(id int) (avro.Schema, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.parsed[id]
	if !ok {
		return nil, fmt.Errorf("debeziumtest: no schema with id %d", id)
	}
	return s, nil
}

// ServeHTTP answers GET /schemas/ids/{id} with {"schema": "<text>"}, and
// 404 with the registry's error body for unknown ids.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	rest, ok := strings.CutPrefix(req.URL.Path, "/schemas/ids/")
	id, err := strconv.Atoi(rest)
	if req.Method != http.MethodGet || !ok || err != nil {
		http.NotFound(w, req)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	text, found := r.Text(id)
	if !found {
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(map[string]any{"error_code": 40403, "message": "Schema " + rest + " not found"})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"schema": text})
}
