package debeziumtest

import (
	"math"
	"strconv"
	"strings"
)

// schema is a Kafka Connect schema: what JsonConverter writes as the
// record's "schema" and AvroData turns into an Avro schema.
type schema struct {
	typ      string // int8 … int64, float, double, boolean, string, bytes, array, struct
	optional bool
	name     string // semantic type
	version  int    // 0: none
	doc      string
	params   []param // in Debezium's order
	def      any     // default value; nil: none
	fields   []field // struct
	items    *schema // array
}

type param struct{ key, value string }

type field struct {
	name string
	s    *schema
}

// Connect and Debezium semantic type names.
const (
	nameDecimal          = "org.apache.kafka.connect.data.Decimal"
	nameConnectDate      = "org.apache.kafka.connect.data.Date"
	nameConnectTime      = "org.apache.kafka.connect.data.Time"
	nameConnectTimestamp = "org.apache.kafka.connect.data.Timestamp"
	nameVariableScale    = "io.debezium.data.VariableScaleDecimal"
	nameJSON             = "io.debezium.data.Json"
	nameUUID             = "io.debezium.data.Uuid"
	nameXML              = "io.debezium.data.Xml"
	nameEnum             = "io.debezium.data.Enum"
	nameBits             = "io.debezium.data.Bits"
	nameDate             = "io.debezium.time.Date"
	nameTime             = "io.debezium.time.Time"
	nameMicroTime        = "io.debezium.time.MicroTime"
	nameTimestamp        = "io.debezium.time.Timestamp"
	nameMicroTimestamp   = "io.debezium.time.MicroTimestamp"
	nameZonedTimestamp   = "io.debezium.time.ZonedTimestamp"
	nameZonedTime        = "io.debezium.time.ZonedTime"
	nameMicroDuration    = "io.debezium.time.MicroDuration"
	nameSource           = "io.debezium.connector.postgresql.Source"
	nameBlock            = "event.block"
)

func named(typ, name string) *schema { return &schema{typ: typ, name: name, version: 1} }

// columnSchema is the field schema of a column, as
// PostgresValueConverter.schemaBuilder makes it.
func (e *Encoder) columnSchema(ti typeInfo) *schema {
	if ti.array {
		elem := ti
		elem.array = false
		items := e.scalarSchema(elem)
		items.optional = true
		return &schema{typ: "array", items: items}
	}
	return e.scalarSchema(ti)
}

func (e *Encoder) scalarSchema(ti typeInfo) *schema {
	switch ti.kind {
	case kBool:
		return &schema{typ: "boolean"}
	case kInt16:
		return &schema{typ: "int16"}
	case kInt32:
		return &schema{typ: "int32"}
	case kInt64:
		return &schema{typ: "int64"}
	case kFloat32:
		return &schema{typ: "float"}
	case kFloat64:
		return &schema{typ: "double"}
	case kNumeric, kMoney:
		switch e.opts.DecimalHandlingMode {
		case "double":
			return &schema{typ: "double"}
		case "string":
			return &schema{typ: "string"}
		}
		if ti.kind == kMoney {
			return decimalSchema(2, -1)
		}
		p, s, ok := numericMod(ti.mod)
		if !ok {
			return &schema{typ: "struct", name: nameVariableScale, version: 1, doc: "Variable scaled decimal",
				fields: []field{{"scale", &schema{typ: "int32"}}, {"value", &schema{typ: "bytes"}}}}
		}
		return decimalSchema(s, p)
	case kText:
		return &schema{typ: "string"}
	case kXML:
		return named("string", nameXML)
	case kJSON:
		return named("string", nameJSON)
	case kUUID:
		return named("string", nameUUID)
	case kEnum:
		s := named("string", nameEnum)
		s.params = []param{{"allowed", strings.Join(ti.enum, ",")}}
		return s
	case kBytea:
		return &schema{typ: "bytes"}
	case kBits:
		if bitIsBool(ti) {
			return &schema{typ: "boolean"}
		}
		length := int(ti.mod)
		if length < 0 {
			length = math.MaxInt32 // varbit without a length
		}
		s := named("bytes", nameBits)
		s.params = []param{{"length", strconv.Itoa(length)}}
		return s
	case kDate:
		if e.opts.TimePrecisionMode == "connect" {
			return named("int32", nameConnectDate)
		}
		return named("int32", nameDate)
	case kTime:
		switch {
		case e.opts.TimePrecisionMode == "connect":
			return named("int32", nameConnectTime)
		case e.opts.TimePrecisionMode == "adaptive" && timePrecision(ti.mod) <= 3:
			return named("int32", nameTime)
		}
		return named("int64", nameMicroTime)
	case kTimeTZ:
		return named("string", nameZonedTime)
	case kTimestamp:
		switch {
		case e.opts.TimePrecisionMode == "connect":
			return named("int64", nameConnectTimestamp)
		case timePrecision(ti.mod) <= 3:
			return named("int64", nameTimestamp)
		}
		return named("int64", nameMicroTimestamp)
	case kTimestampTZ:
		return named("string", nameZonedTimestamp)
	case kInterval:
		return named("int64", nameMicroDuration)
	}
	panic("debeziumtest: no schema for kind " + strconv.Itoa(int(ti.kind)))
}

// decimalSchema is Connect's Decimal; precision < 0 leaves it out (money).
func decimalSchema(scale, precision int) *schema {
	s := named("bytes", nameDecimal)
	s.params = []param{{"scale", strconv.Itoa(scale)}}
	if precision >= 0 {
		s.params = append(s.params, param{"connect.decimal.precision", strconv.Itoa(precision)})
	}
	return s
}

// rowSchema is the <prefix>.<schema>.<table>.Value (or .Key) struct.
func (e *Encoder) rowSchema(t Table, key bool) (*schema, error) {
	suffix := ".Value"
	if key {
		suffix = ".Key"
	}
	s := &schema{typ: "struct", name: e.opts.TopicPrefix + "." + t.qualified() + suffix, optional: !key}
	for _, c := range t.Columns {
		if key && !c.Key {
			continue
		}
		ti, err := c.typeInfo()
		if err != nil {
			return nil, err
		}
		fs := e.columnSchema(ti)
		fs.optional = !c.Key && !c.NotNull
		s.fields = append(s.fields, field{c.Name, fs})
	}
	return s, nil
}

// sourceSchema is io.debezium.connector.postgresql.Source as 3.x writes it.
func sourceSchema() *schema {
	str := func() *schema { return &schema{typ: "string"} }
	optLong := func() *schema { return &schema{typ: "int64", optional: true} }
	snapshot := named("string", "io.debezium.data.Enum")
	snapshot.optional, snapshot.def = true, "false"
	snapshot.params = []param{{"allowed", "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"}}
	return &schema{typ: "struct", name: nameSource, fields: []field{
		{"version", str()}, {"connector", str()}, {"name", str()}, {"ts_ms", &schema{typ: "int64"}},
		{"snapshot", snapshot}, {"db", str()}, {"sequence", &schema{typ: "string", optional: true}},
		{"ts_us", optLong()}, {"ts_ns", optLong()}, {"schema", str()}, {"table", str()},
		{"txId", optLong()}, {"lsn", optLong()}, {"xmin", optLong()},
	}}
}

// envelopeSchema is <prefix>.<schema>.<table>.Envelope, field order as
// Debezium 3.x writes it (transaction before op).
func envelopeSchema(prefix string, t Table, value *schema) *schema {
	block := &schema{typ: "struct", optional: true, name: nameBlock, version: 1, fields: []field{
		{"id", &schema{typ: "string"}}, {"total_order", &schema{typ: "int64"}},
		{"data_collection_order", &schema{typ: "int64"}},
	}}
	optLong := func() *schema { return &schema{typ: "int64", optional: true} }
	return &schema{typ: "struct", name: prefix + "." + t.qualified() + ".Envelope", version: 2, fields: []field{
		{"before", value}, {"after", value}, {"source", sourceSchema()}, {"transaction", block},
		{"op", &schema{typ: "string"}}, {"ts_ms", optLong()}, {"ts_us", optLong()}, {"ts_ns", optLong()},
	}}
}

// bitIsBool reports whether a bit type is BIT(1) or BIT VARYING(1), which
// Debezium makes a boolean.
func bitIsBool(ti typeInfo) bool { return ti.mod == 1 || (ti.mod < 0 && ti.name == "bit") }
