package decode

import (
	"encoding/binary"
	"errors"
	"io"
	"strconv"

	"github.com/hamba/avro/v2"
)

// SchemaSource resolves the schema ids of the Confluent wire format.
// SchemaFiles and SchemaRegistry implement it.
type SchemaSource interface {
	Schema(id int) (avro.Schema, error)
}

// DecodeAvro decodes a record that Confluent's AvroConverter wrote: the
// magic byte 0, a 4-byte big-endian schema id and the Avro binary datum.
// Debezium's Avro schemas carry the Connect schema in their properties
// (connect.name, connect.parameters, connect.type), so the values decode
// exactly as DecodeJSON decodes them; see Debezium. An empty value is a
// tombstone; key may be nil.
func (d *Debezium) DecodeAvro(key, value []byte) (Envelope, error) {
	c, err := d.conv()
	if err != nil {
		return Envelope{}, err
	}
	env := Envelope{Kind: KindTombstone}
	if len(value) > 0 {
		schema, payload, err := d.readAvro("value", value)
		if err != nil {
			return Envelope{}, err
		}
		if env, err = c.payload("value", schema, payload); err != nil {
			return Envelope{}, err
		}
	}
	if len(key) > 0 {
		schema, payload, err := d.readAvro("key", key)
		if err != nil {
			return Envelope{}, err
		}
		if env.Key, err = c.row("key", schema, payload, env.Event.Table); err != nil {
			return Envelope{}, err
		}
	}
	return env, nil
}

// readAvro unframes and reads one record into generic values, with the
// Connect schema its Avro schema describes.
func (d *Debezium) readAvro(path string, data []byte) (*connectSchema, map[string]any, error) {
	if len(data) < 5 {
		return nil, nil, fieldErr(path, strconv.Itoa(len(data))+" bytes", "shorter than the 5-byte Confluent header")
	}
	if data[0] != 0 {
		return nil, nil, fieldErr(path, "magic byte "+strconv.Itoa(int(data[0])), "not the Confluent wire format (magic byte 0)")
	}
	id := binary.BigEndian.Uint32(data[1:5])
	if id > 1<<31-1 {
		return nil, nil, fieldErr(path, "schema id "+strconv.FormatUint(uint64(id), 10), "schema ids are positive int32")
	}
	if d.Schemas == nil {
		return nil, nil, fieldErr(path, "", "Debezium.Schemas is nil: Avro records need a SchemaSource")
	}
	sch, err := d.Schemas.Schema(int(id))
	if err != nil {
		return nil, nil, &FieldError{Path: path, Value: "schema id " + strconv.Itoa(int(id)), Reason: "resolve schema", Err: err}
	}
	cs, err := d.avroSchema(path, sch)
	if err != nil {
		return nil, nil, err
	}
	if cs.Type != "struct" {
		return nil, nil, fieldErr(path, "", "schema %d is a %s, want a record", id, cs.Type)
	}
	w := avroWalker{max: int64(len(data))}
	w.r = avro.NewReader(nil, 0).Reset(data[5:])
	v, err := w.read(path, sch, 0)
	if err != nil {
		return nil, nil, err
	}
	if w.r.Peek(); w.r.Error == nil {
		return nil, nil, fieldErr(path, "", "bytes left after the Avro record")
	}
	m, _ := v.(map[string]any)
	return cs, m, nil
}

// avroWalker reads Avro binary by its schema into the generic values the
// JSON path has: nil, bool, int64, float32, float64, string, []byte,
// []any and map[string]any. Union values are the branch's value: the
// Connect schema knows what the branch means. It reads with hamba's
// Reader but not its generic Unmarshal, which reports a truncated record
// as success and allocates whatever lengths the input claims.
type avroWalker struct {
	r   *avro.Reader
	max int64 // no length or count may exceed the record's size
}

func (w *avroWalker) fail(path string) error {
	err := w.r.Error
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fieldErr(path, "", "the Avro record ends early")
	}
	return wrapErr(path, "", err)
}

func (w *avroWalker) read(path string, s avro.Schema, depth int) (any, error) {
	if depth > maxSchemaDepth {
		return nil, fieldErr(path, "", "nests deeper than %d levels", maxSchemaDepth)
	}
	var v any
	switch s.Type() {
	case avro.Null:
		return nil, nil
	case avro.Boolean:
		v = w.r.ReadBool()
	case avro.Int:
		v = int64(w.r.ReadInt())
	case avro.Long:
		v = w.r.ReadLong()
	case avro.Float:
		v = w.r.ReadFloat()
	case avro.Double:
		v = w.r.ReadDouble()
	case avro.String:
		b, err := w.bytes(path)
		if err != nil {
			return nil, err
		}
		v = string(b)
	case avro.Bytes:
		b, err := w.bytes(path)
		if err != nil {
			return nil, err
		}
		v = b
	case avro.Fixed:
		size := s.(*avro.FixedSchema).Size()
		if int64(size) > w.max {
			return nil, fieldErr(path, "", "fixed of %d bytes is longer than the record", size)
		}
		b := make([]byte, size)
		w.r.Read(b)
		v = b
	case avro.Enum:
		symbols := s.(*avro.EnumSchema).Symbols()
		i := w.r.ReadInt()
		if w.r.Error == nil && (i < 0 || int(i) >= len(symbols)) {
			return nil, fieldErr(path, strconv.Itoa(int(i)), "enum index out of range")
		}
		if w.r.Error == nil {
			v = symbols[i]
		}
	case avro.Union:
		types := s.(*avro.UnionSchema).Types()
		i := w.r.ReadLong()
		if w.r.Error != nil {
			return nil, w.fail(path)
		}
		if i < 0 || i >= int64(len(types)) {
			return nil, fieldErr(path, strconv.FormatInt(i, 10), "union branch out of range")
		}
		return w.read(path, types[i], depth+1)
	case avro.Record:
		fields := s.(*avro.RecordSchema).Fields()
		m := make(map[string]any, len(fields))
		for _, f := range fields {
			e, err := w.read(path+"."+f.Name(), f.Type(), depth+1)
			if err != nil {
				return nil, err
			}
			m[f.Name()] = e
		}
		return m, nil
	case avro.Ref:
		return w.read(path, s.(*avro.RefSchema).Schema(), depth+1)
	case avro.Array:
		items := s.(*avro.ArraySchema).Items()
		var a []any
		err := w.blocks(path, func(i int64) error {
			e, err := w.read(path+"["+strconv.FormatInt(i, 10)+"]", items, depth+1)
			a = append(a, e)
			return err
		})
		if err != nil {
			return nil, err
		}
		if a == nil {
			a = []any{}
		}
		return a, nil
	case avro.Map:
		values := s.(*avro.MapSchema).Values()
		m := map[string]any{}
		err := w.blocks(path, func(int64) error {
			k, err := w.bytes(path)
			if err != nil {
				return err
			}
			e, err := w.read(path+"."+string(k), values, depth+1)
			m[string(k)] = e
			return err
		})
		if err != nil {
			return nil, err
		}
		return m, nil
	default:
		return nil, fieldErr(path, "", "unsupported Avro type %s", s.Type())
	}
	if w.r.Error != nil {
		return nil, w.fail(path)
	}
	return v, nil
}

// bytes reads a length-prefixed byte string, refusing lengths the record
// cannot hold before allocating them.
func (w *avroWalker) bytes(path string) ([]byte, error) {
	n := w.r.ReadLong()
	if w.r.Error != nil {
		return nil, w.fail(path)
	}
	if n < 0 || n > w.max {
		return nil, fieldErr(path, "length "+strconv.FormatInt(n, 10), "longer than the record")
	}
	b := make([]byte, n)
	w.r.Read(b)
	if w.r.Error != nil {
		return nil, w.fail(path)
	}
	return b, nil
}

// blocks reads the blocks of an array or map, calling item for each.
func (w *avroWalker) blocks(path string, item func(i int64) error) error {
	var total int64
	for {
		n := w.r.ReadLong()
		if w.r.Error != nil {
			return w.fail(path)
		}
		if n == 0 {
			return nil
		}
		if n < 0 { // a negative count is followed by the block's size in bytes
			n = -n
			w.r.ReadLong()
			if w.r.Error != nil {
				return w.fail(path)
			}
		}
		if n < 0 || n > w.max-total {
			return fieldErr(path, "count "+strconv.FormatInt(n, 10), "more items than the record can hold")
		}
		for i := range n {
			if err := item(total + i); err != nil {
				return err
			}
		}
		total += n
	}
}

// connectFromAvro recovers the Connect schema from a Debezium Avro schema
// written by Confluent's AvroData: a record's connect.name (or its full
// name), a primitive's connect.name, connect.parameters and connect.type,
// and optional fields as unions with null. Avro logical types with no
// connect.name map to their Connect equivalents.
func connectFromAvro(path string, s avro.Schema, depth int) (*connectSchema, error) {
	if depth > maxSchemaDepth {
		return nil, fieldErr(path, "", "schema nests deeper than %d levels", maxSchemaDepth)
	}
	cs := &connectSchema{}
	if ps, ok := s.(avro.PropertySchema); ok {
		if name, ok := ps.Prop("connect.name").(string); ok {
			cs.Name = name
		}
		if params, ok := ps.Prop("connect.parameters").(map[string]any); ok {
			cs.Params = make(map[string]string, len(params))
			for k, v := range params {
				if str, ok := v.(string); ok {
					cs.Params[k] = str
				}
			}
		}
	}
	switch s.Type() {
	case avro.Ref:
		return connectFromAvro(path, s.(*avro.RefSchema).Schema(), depth+1)
	case avro.Union:
		var branch avro.Schema
		types := s.(*avro.UnionSchema).Types()
		for _, t := range types {
			if t.Type() == avro.Null {
				continue
			}
			if branch != nil {
				return nil, fieldErr(path, "", "a union of several non-null types is not a Connect schema")
			}
			branch = t
		}
		if branch == nil {
			return &connectSchema{Type: "string", Optional: true}, nil
		}
		inner, err := connectFromAvro(path, branch, depth+1)
		if err != nil {
			return nil, err
		}
		inner.Optional = len(types) > 1
		return inner, nil
	case avro.Record:
		rs := s.(*avro.RecordSchema)
		cs.Type = "struct"
		if cs.Name == "" {
			cs.Name = rs.FullName()
		}
		for _, f := range rs.Fields() {
			fs, err := connectFromAvro(path+"."+f.Name(), f.Type(), depth+1)
			if err != nil {
				return nil, err
			}
			cs.Fields = append(cs.Fields, connectField{Name: f.Name(), Schema: fs})
		}
	case avro.Array:
		items, err := connectFromAvro(path+"[]", s.(*avro.ArraySchema).Items(), depth+1)
		if err != nil {
			return nil, err
		}
		cs.Type, cs.Items = "array", items
	case avro.Map:
		values, err := connectFromAvro(path+"{}", s.(*avro.MapSchema).Values(), depth+1)
		if err != nil {
			return nil, err
		}
		cs.Type, cs.Values = "map", values
	case avro.Null:
		cs.Type, cs.Optional = "string", true
	case avro.Boolean:
		cs.Type = "boolean"
	case avro.Int:
		cs.Type = "int32"
		if t, ok := s.(avro.PropertySchema).Prop("connect.type").(string); ok && (t == "int8" || t == "int16") {
			cs.Type = t
		}
	case avro.Long:
		cs.Type = "int64"
	case avro.Float:
		cs.Type = "float"
	case avro.Double:
		cs.Type = "double"
	case avro.String, avro.Enum:
		cs.Type = "string"
	case avro.Bytes, avro.Fixed:
		cs.Type = "bytes"
	default:
		return nil, fieldErr(path, "", "unsupported Avro type %s", s.Type())
	}
	logicalToConnect(cs, s)
	return cs, nil
}

// logicalToConnect names a field by its Avro logical type when Connect did
// not name it, and fills a Decimal's scale from the Avro schema when
// connect.parameters lacks it.
func logicalToConnect(cs *connectSchema, s avro.Schema) {
	var logical avro.LogicalSchema
	if ls, ok := s.(avro.LogicalTypeSchema); ok {
		logical = ls.Logical()
	}
	if cs.Name == nameDecimal || (cs.Name == "" && logical != nil && logical.Type() == avro.Decimal) {
		cs.Name = nameDecimal
		if _, ok := cs.Params["scale"]; !ok {
			scale := ""
			if dec, ok := logical.(*avro.DecimalLogicalSchema); ok {
				scale = strconv.Itoa(dec.Scale())
			} else if ps, ok := s.(avro.PropertySchema); ok {
				switch x := ps.Prop("scale").(type) {
				case float64:
					scale = strconv.Itoa(int(x))
				case int:
					scale = strconv.Itoa(x)
				}
			}
			if scale != "" {
				if cs.Params == nil {
					cs.Params = map[string]string{}
				}
				cs.Params["scale"] = scale
			}
		}
		return
	}
	if cs.Name != "" || logical == nil {
		return
	}
	switch logical.Type() {
	case avro.Date:
		cs.Name = nameConnectDate
	case avro.TimeMillis:
		cs.Name = nameConnectTime
	case avro.TimeMicros:
		cs.Name = nameMicroTime
	case avro.TimestampMillis, avro.LocalTimestampMillis:
		cs.Name = nameConnectTimestamp
	case avro.TimestampMicros, avro.LocalTimestampMicros:
		cs.Name = nameMicroTimestamp
	case avro.UUID:
		cs.Name = nameUUID
	}
}
