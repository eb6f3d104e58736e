package debeziumtest

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tilefeed/tilefeed/decode"
)

// Table describes a captured table as Debezium's schema would: its name
// and its columns in table order.
type Table struct {
	Schema, Name string
	Columns      []Column
}

// Column is one column of a Table.
type Column struct {
	Name    string
	OID     uint32 // the type's OID (pgtype.Int4OID, …)
	TypeMod int32  // atttypmod: -1 when the type has none
	// Key marks the columns of the record key (the primary key). They are
	// never null.
	Key bool
	// NotNull marks a NOT NULL column: its field is not optional.
	NotNull bool
	// Enum lists the labels of an enum type, in order; a column with Enum
	// is an enum whatever its OID.
	Enum []string
}

// TableOf describes table ("schema.table") from the columns the pgoutput
// decoder reports (decode.PgOutput.Columns). key names the primary key;
// without it the replica-identity columns are the key, which is right for
// REPLICA IDENTITY DEFAULT but not FULL, where every column is flagged.
func TableOf(table string, cols []decode.Column, key ...string) Table {
	schema, name, _ := strings.Cut(table, ".")
	t := Table{Schema: schema, Name: name, Columns: make([]Column, len(cols))}
	for i, c := range cols {
		k := c.Key
		if len(key) > 0 {
			k = false
			for _, n := range key {
				k = k || n == c.Name
			}
		}
		t.Columns[i] = Column{Name: c.Name, OID: c.OID, TypeMod: c.TypeMod, Key: k, NotNull: k}
	}
	return t
}

func (t Table) qualified() string { return t.Schema + "." + t.Name }

// kind is what the encoder needs to know of a type.
type kind int

const (
	kBool kind = iota + 1
	kInt16
	kInt32
	kInt64
	kFloat32
	kFloat64
	kNumeric
	kMoney
	kText // text, varchar, bpchar, name, "char", inet, cidr, macaddr, ranges
	kXML
	kJSON
	kUUID
	kBytea
	kDate
	kTime
	kTimeTZ
	kTimestamp
	kTimestampTZ
	kInterval
	kBits
	kEnum
)

// typeInfo is a column type reduced to what encoding needs.
type typeInfo struct {
	kind  kind
	array bool
	name  string // PostgreSQL's short name, for declared types and errors
	mod   int32
	enum  []string
}

// Type OIDs pgtype has no constant for.
const (
	moneyOID      = 790
	moneyArrayOID = 791
)

var scalarTypes = map[uint32]struct {
	k    kind
	name string
}{
	pgtype.BoolOID: {kBool, "bool"}, pgtype.Int2OID: {kInt16, "int2"}, pgtype.Int4OID: {kInt32, "int4"},
	pgtype.Int8OID: {kInt64, "int8"}, pgtype.OIDOID: {kInt64, "oid"}, pgtype.Float4OID: {kFloat32, "float4"},
	pgtype.Float8OID: {kFloat64, "float8"}, pgtype.NumericOID: {kNumeric, "numeric"}, moneyOID: {kMoney, "money"},
	pgtype.TextOID: {kText, "text"}, pgtype.VarcharOID: {kText, "varchar"}, pgtype.BPCharOID: {kText, "bpchar"},
	pgtype.NameOID: {kText, "name"}, pgtype.QCharOID: {kText, "char"}, pgtype.InetOID: {kText, "inet"},
	pgtype.CIDROID: {kText, "cidr"}, pgtype.MacaddrOID: {kText, "macaddr"}, pgtype.Macaddr8OID: {kText, "macaddr8"},
	pgtype.Int4rangeOID: {kText, "int4range"}, pgtype.Int8rangeOID: {kText, "int8range"},
	pgtype.NumrangeOID: {kText, "numrange"}, pgtype.TsrangeOID: {kText, "tsrange"},
	pgtype.TstzrangeOID: {kText, "tstzrange"}, pgtype.DaterangeOID: {kText, "daterange"},
	pgtype.XMLOID: {kXML, "xml"}, pgtype.JSONOID: {kJSON, "json"}, pgtype.JSONBOID: {kJSON, "jsonb"},
	pgtype.UUIDOID: {kUUID, "uuid"}, pgtype.ByteaOID: {kBytea, "bytea"}, pgtype.DateOID: {kDate, "date"},
	pgtype.TimeOID: {kTime, "time"}, pgtype.TimetzOID: {kTimeTZ, "timetz"},
	pgtype.TimestampOID: {kTimestamp, "timestamp"}, pgtype.TimestamptzOID: {kTimestampTZ, "timestamptz"},
	pgtype.IntervalOID: {kInterval, "interval"}, pgtype.BitOID: {kBits, "bit"}, pgtype.VarbitOID: {kBits, "varbit"},
}

// arrayTypes are the array types Debezium encodes, by element OID.
var arrayTypes = map[uint32]uint32{
	pgtype.BoolArrayOID: pgtype.BoolOID, pgtype.Int2ArrayOID: pgtype.Int2OID, pgtype.Int4ArrayOID: pgtype.Int4OID,
	pgtype.Int8ArrayOID: pgtype.Int8OID, pgtype.OIDArrayOID: pgtype.OIDOID, pgtype.Float4ArrayOID: pgtype.Float4OID, pgtype.Float8ArrayOID: pgtype.Float8OID,
	pgtype.NumericArrayOID: pgtype.NumericOID, pgtype.TextArrayOID: pgtype.TextOID, pgtype.VarcharArrayOID: pgtype.VarcharOID,
	pgtype.BPCharArrayOID: pgtype.BPCharOID, pgtype.InetArrayOID: pgtype.InetOID, pgtype.CIDRArrayOID: pgtype.CIDROID,
	pgtype.MacaddrArrayOID: pgtype.MacaddrOID, pgtype.UUIDArrayOID: pgtype.UUIDOID, pgtype.JSONArrayOID: pgtype.JSONOID,
	pgtype.JSONBArrayOID: pgtype.JSONBOID, pgtype.DateArrayOID: pgtype.DateOID, pgtype.TimeArrayOID: pgtype.TimeOID,
	pgtype.TimestampArrayOID: pgtype.TimestampOID, pgtype.TimestamptzArrayOID: pgtype.TimestamptzOID,
	pgtype.ByteaArrayOID: pgtype.ByteaOID,
}

func (c Column) typeInfo() (typeInfo, error) {
	if len(c.Enum) > 0 {
		return typeInfo{kind: kEnum, name: "enum", mod: -1, enum: c.Enum}, nil
	}
	oid, array := c.OID, false
	if elem, ok := arrayTypes[oid]; ok {
		oid, array = elem, true
	}
	st, ok := scalarTypes[oid]
	if !ok {
		return typeInfo{}, fmt.Errorf("column %s: type OID %d is not one Debezium encodes by default", c.Name, c.OID)
	}
	return typeInfo{kind: st.k, array: array, name: st.name, mod: c.TypeMod}, nil
}

// numericMod splits a numeric typmod into precision and scale; ok is false
// for an unconstrained numeric.
func numericMod(mod int32) (precision, scale int, ok bool) {
	if mod < 4 {
		return 0, 0, false
	}
	m := mod - 4
	// PostgreSQL 15 stores the scale as an 11-bit two's complement.
	return int(m>>16) & 0xffff, int((m&0x7ff)^1024) - 1024, true
}

// timePrecision is the fractional-second precision of a time or timestamp
// type: its typmod, 6 when none is declared.
func timePrecision(mod int32) int {
	if mod < 0 {
		return 6
	}
	return int(mod)
}

// ColumnTypes returns the declared type of every column of t as
// PostgreSQL prints it ("numeric(10,2)", "timestamp(3)", "int4[]"), for
// decode.Debezium.ColumnTypes to read schemaless values. The decoder reads
// declared types as the adaptive time mode writes them, so under the other
// modes the precision is adjusted to say ms or µs.
func (e *Encoder) ColumnTypes(t Table) map[string]string {
	out := make(map[string]string, len(t.Columns))
	for _, c := range t.Columns {
		out[c.Name] = c.declared(e.opts.TimePrecisionMode)
	}
	return out
}

func (c Column) declared(mode string) string {
	ti, err := c.typeInfo()
	if err != nil {
		return ""
	}
	s := ti.name
	switch ti.kind {
	case kNumeric:
		if p, sc, ok := numericMod(ti.mod); ok {
			s += "(" + strconv.Itoa(p) + "," + strconv.Itoa(sc) + ")"
		}
	case kTime, kTimestamp:
		switch {
		case mode == "connect":
			ti.mod = 3 // ms
		case mode == "adaptive_time_microseconds" && ti.kind == kTime && timePrecision(ti.mod) <= 3:
			ti.mod = 6 // µs
		}
		s += "(" + strconv.Itoa(timePrecision(ti.mod)) + ")"
	case kTimeTZ, kTimestampTZ, kBits:
		if ti.mod >= 0 {
			s += "(" + strconv.Itoa(int(ti.mod)) + ")"
		}
	case kEnum:
		s = "text"
	}
	if ti.array {
		s += "[]"
	}
	return s
}
