package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"reflect"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/encoding"
	"github.com/parquet-go/parquet-go/format"

	"github.com/tilefeed/tilefeed/transform"
)

// parquetSpine is a spine in Parquet: flat columns of any primitive type.
// Keys and the timestamp are read as Go values; the other columns are
// copied to a Parquet training set as they are (type, NULLs and all).
type parquetSpine struct {
	path   string
	fields []parquet.Field
	conv   []func(parquet.Value) (any, error)
}

func openParquetSpine(path string) (*parquetSpine, error) {
	f, pf, err := openParquet(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := &parquetSpine{path: path, fields: pf.Schema().Fields()}
	for _, fld := range s.fields {
		if !fld.Leaf() || fld.Repeated() {
			return nil, fmt.Errorf("spine column %s is a %s: a spine's columns are flat values", fld.Name(), fld.Type())
		}
		conv, err := parquetConverter(fld.Name(), fld.Type())
		if err != nil {
			return nil, err
		}
		s.conv = append(s.conv, conv)
	}
	return s, nil
}

func openParquet(path string) (*os.File, *parquet.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s is not a Parquet file: %w", path, err)
	}
	return f, pf, nil
}

func (s *parquetSpine) Columns() []string {
	names := make([]string, len(s.fields))
	for i, f := range s.fields {
		names[i] = f.Name()
	}
	return names
}

func (s *parquetSpine) Open() (spineReader, error) {
	f, pf, err := openParquet(s.path)
	if err != nil {
		return nil, err
	}
	if len(pf.Schema().Fields()) != len(s.fields) {
		f.Close()
		return nil, errors.New("the spine's columns changed during the export")
	}
	return &parquetReader{s: s, f: f, r: parquet.NewReader(pf), buf: make([]parquet.Row, 256), vals: make([]any, len(s.fields))}, nil
}

type parquetReader struct {
	s    *parquetSpine
	f    *os.File
	r    *parquet.Reader
	buf  []parquet.Row
	n, i int // rows in buf, the next one
	eof  bool
	row  int // rows returned
	vals []any
	raw  parquet.Row
}

func (r *parquetReader) Next() ([]any, error) {
	for r.i >= r.n {
		if r.eof {
			return nil, io.EOF
		}
		n, err := r.r.ReadRows(r.buf)
		if errors.Is(err, io.EOF) {
			r.eof = true
		} else if err != nil {
			return nil, fmt.Errorf("spine: %w", err)
		}
		r.n, r.i = n, 0
	}
	r.raw = r.buf[r.i]
	r.i++
	r.row++
	clear(r.vals)
	for _, v := range r.raw {
		c := v.Column()
		if c < 0 || c >= len(r.vals) || v.IsNull() {
			continue
		}
		x, err := r.s.conv[c](v)
		if err != nil {
			return nil, fmt.Errorf("spine %s, column %s: %w", r.Where(), r.s.fields[c].Name(), err)
		}
		r.vals[c] = x
	}
	return r.vals, nil
}

func (r *parquetReader) Where() string { return fmt.Sprintf("row %d", r.row) }

func (r *parquetReader) Close() error {
	r.r.Close()
	return r.f.Close()
}

// rawRow is the row Next returned, as Parquet values (valid until the
// next call).
func (r *parquetReader) rawRow() parquet.Row { return r.raw }

func logicalValue(t parquet.Type) format.LogicalTypeValue {
	if lt := t.LogicalType(); lt != nil {
		return lt.Value
	}
	return nil
}

// parquetConverter returns how a column's values become Go values: int64,
// float64, bool, string, []byte, time.Time (TIMESTAMP, DATE; a timestamp
// not adjusted to UTC is read as UTC) or *apd.Decimal.
func parquetConverter(name string, t parquet.Type) (func(parquet.Value) (any, error), error) {
	switch lt := logicalValue(t).(type) {
	case *format.StringType, *format.EnumType, *format.JsonType:
		return func(v parquet.Value) (any, error) { return string(v.ByteArray()), nil }, nil
	case *format.UUIDType:
		return func(v parquet.Value) (any, error) {
			b := v.ByteArray()
			if len(b) != 16 {
				return nil, fmt.Errorf("a UUID of %d bytes", len(b))
			}
			return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
		}, nil
	case *format.DateType:
		return func(v parquet.Value) (any, error) { return time.Unix(int64(v.Int32())*86400, 0).UTC(), nil }, nil
	case *format.TimestampType:
		unit := lt.Unit.Value.Duration()
		return func(v parquet.Value) (any, error) {
			switch unit {
			case time.Millisecond:
				return time.UnixMilli(v.Int64()).UTC(), nil
			case time.Microsecond:
				return time.UnixMicro(v.Int64()).UTC(), nil
			}
			return time.Unix(0, v.Int64()).UTC(), nil
		}, nil
	case *format.DecimalType:
		return decimalConverter(t.Kind(), int(lt.Scale)), nil
	case nil:
		if ct := t.ConvertedType(); ct != nil {
			switch *ct {
			case deprecated.UTF8, deprecated.Enum, deprecated.Json:
				return func(v parquet.Value) (any, error) { return string(v.ByteArray()), nil }, nil
			case deprecated.Date:
				return func(v parquet.Value) (any, error) { return time.Unix(int64(v.Int32())*86400, 0).UTC(), nil }, nil
			case deprecated.TimestampMillis:
				return func(v parquet.Value) (any, error) { return time.UnixMilli(v.Int64()).UTC(), nil }, nil
			case deprecated.TimestampMicros:
				return func(v parquet.Value) (any, error) { return time.UnixMicro(v.Int64()).UTC(), nil }, nil
			case deprecated.Decimal:
				return nil, fmt.Errorf("spine column %s is a DECIMAL without its scale in the logical type: write it with a current Parquet writer", name)
			}
		}
	}
	switch t.Kind() {
	case parquet.Boolean:
		return func(v parquet.Value) (any, error) { return v.Boolean(), nil }, nil
	case parquet.Int32, parquet.Int64:
		return func(v parquet.Value) (any, error) { return v.Int64(), nil }, nil
	case parquet.Float:
		return func(v parquet.Value) (any, error) { return float64(v.Float()), nil }, nil
	case parquet.Double:
		return func(v parquet.Value) (any, error) { return v.Double(), nil }, nil
	case parquet.ByteArray, parquet.FixedLenByteArray:
		// Without a logical type: text, as most writers mean it.
		return func(v parquet.Value) (any, error) { return string(v.ByteArray()), nil }, nil
	}
	return nil, fmt.Errorf("spine column %s is %s, which an export cannot read (INT96 timestamps: write TIMESTAMP instead)", name, t)
}

func decimalConverter(kind parquet.Kind, scale int) func(parquet.Value) (any, error) {
	return func(v parquet.Value) (any, error) {
		var u big.Int
		switch kind {
		case parquet.Int32, parquet.Int64:
			u.SetInt64(v.Int64())
		default:
			b := v.ByteArray()
			u.SetBytes(b)
			if len(b) > 0 && b[0]&0x80 != 0 { // negative, two's complement
				u.Sub(&u, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
			}
		}
		var c apd.BigInt
		c.SetMathBigInt(&u)
		return apd.NewWithBigInt(&c, int32(-scale)), nil
	}
}

// Parquet feature columns are typed by what their values were
// (valueTypes): one kind of value keeps its type; decimals are
// DECIMAL(38, the largest scale seen); ints with floats are DOUBLE; with
// decimals, DECIMAL; NaN or ±Infinity decimals, ±infinity times, mixed
// kinds, durations and arrays are text (the read API's JSON value, JSON
// arrays as JSON). A column with no value at all is INT64 for count and
// distinct, DOUBLE for days_since_last, text otherwise.
type pqKind int

const (
	pqText pqKind = iota
	pqJSON
	pqInt
	pqDouble
	pqDecimal
	pqBool
	pqBytes
	pqTime
	pqSpine // a Parquet spine's own column, copied
)

// decimalPrecision is the precision of every decimal feature column:
// the most a 16-byte DECIMAL holds, so a column's type does not change
// from one export to the next with its values.
const decimalPrecision = 38

type pqColumn struct {
	name   string
	kind   pqKind
	scale  int
	nanos  bool
	node   parquet.Node
	reason string // why a column is text, when it is
}

func featureColumn(name string, fn string, vt *valueTypes) pqColumn {
	c := pqColumn{name: name}
	k := vt.kinds
	switch {
	case k == 0:
		switch fn {
		case "count", "distinct":
			c.kind = pqInt
		case "days_since_last":
			c.kind = pqDouble
		default:
			c.reason = "it has no value"
		}
	case k == kindInt:
		c.kind = pqInt
	case k == kindFloat, k == kindInt|kindFloat:
		c.kind = pqDouble
	case k == kindDecimal, k == kindInt|kindDecimal:
		switch {
		case vt.nonFinite:
			c.reason = "it holds NaN or ±Infinity"
		case vt.maxScale > decimalPrecision || vt.maxIntDigits+vt.maxScale > decimalPrecision:
			c.reason = fmt.Sprintf("its values need more than %d digits", decimalPrecision)
		default:
			c.kind, c.scale = pqDecimal, vt.maxScale
		}
	case k == kindString:
	case k == kindJSON, k == kindArray, k == kindJSON|kindArray:
		c.kind = pqJSON
	case k == kindBool:
		c.kind = pqBool
	case k == kindBytes:
		c.kind = pqBytes
	case k == kindTime:
		c.kind, c.nanos = pqTime, vt.nanos
	case k == kindDuration:
		c.reason = "" // durations are text, as the read API writes them
	case k&kindInfinity != 0:
		c.reason = "it holds ±infinity"
	default:
		c.reason = "its values are of several types"
	}
	switch c.kind {
	case pqText:
		c.node = parquet.String()
	case pqJSON:
		c.node = parquet.JSON()
	case pqInt:
		c.node = parquet.Int(64)
	case pqDouble:
		c.node = parquet.Leaf(parquet.DoubleType)
	case pqDecimal:
		c.node = parquet.Decimal(c.scale, decimalPrecision, parquet.FixedLenByteArrayType(16))
	case pqBool:
		c.node = parquet.Leaf(parquet.BooleanType)
	case pqBytes:
		c.node = parquet.Leaf(parquet.ByteArrayType)
	case pqTime:
		unit := parquet.Microsecond
		if c.nanos {
			unit = parquet.Nanosecond
		}
		c.node = parquet.Timestamp(unit)
	}
	c.node = parquet.Optional(c.node)
	return c
}

// parquetTable writes a training set in Parquet, a row group every
// pqRowGroup rows.
type parquetTable struct {
	w    *parquet.Writer
	cols []pqColumn
	row  parquet.Row
	buf  []byte
}

const pqRowGroup = 64 << 10

func newParquetTable(w io.Writer, cols []column, sp spineFile, progress io.Writer) (*parquetTable, error) {
	t := &parquetTable{}
	var spineFields []parquet.Field
	if ps, ok := sp.(*parquetSpine); ok {
		spineFields = ps.fields
	}
	group := make(orderedGroup, len(cols))
	for i, c := range cols {
		var pc pqColumn
		switch {
		case c.types == nil && spineFields != nil:
			pc = pqColumn{name: c.Name, kind: pqSpine, node: spineFields[i]}
		case c.types == nil:
			pc = pqColumn{name: c.Name, node: parquet.Optional(parquet.String())} // a CSV spine's text
		default:
			pc = featureColumn(c.Name, c.function, c.types)
			if pc.reason != "" && progress != nil {
				fmt.Fprintf(progress, "export: column %s is written as text: %s\n", c.Name, pc.reason)
			}
		}
		t.cols = append(t.cols, pc)
		group[i] = orderedField{name: c.Name, Node: pc.node}
	}
	t.w = parquet.NewWriter(w, parquet.NewSchema("training_set", group),
		parquet.MaxRowsPerRowGroup(pqRowGroup), parquet.Compression(&parquet.Snappy))
	return t, nil
}

func (t *parquetTable) Write(sp spineRow, feats [][]any) error {
	t.row = t.row[:0]
	i := 0
	if sp.raw != nil {
		for _, v := range sp.raw {
			t.row = append(t.row, v.Clone().Level(v.RepetitionLevel(), v.DefinitionLevel(), v.Column()))
		}
		i = len(sp.vals)
	} else {
		for _, v := range sp.vals {
			if err := t.put(i, v); err != nil {
				return err
			}
			i++
		}
	}
	for _, vals := range feats {
		for _, v := range vals {
			if err := t.put(i, v); err != nil {
				return err
			}
			i++
		}
	}
	_, err := t.w.WriteRows([]parquet.Row{t.row})
	return err
}

// put appends column i's value.
func (t *parquetTable) put(i int, v any) error {
	if v == nil {
		t.row = append(t.row, parquet.NullValue().Level(0, 0, i))
		return nil
	}
	c := &t.cols[i]
	var pv parquet.Value
	switch c.kind {
	case pqInt:
		pv = parquet.Int64Value(v.(int64))
	case pqDouble:
		switch x := v.(type) {
		case int64:
			pv = parquet.DoubleValue(float64(x))
		default:
			pv = parquet.DoubleValue(x.(float64))
		}
	case pqDecimal:
		b, err := decimalBytes(v, c.scale)
		if err != nil {
			return fmt.Errorf("column %s: %w", c.name, err)
		}
		pv = parquet.FixedLenByteArrayValue(b)
	case pqBool:
		pv = parquet.BooleanValue(v.(bool))
	case pqBytes:
		pv = parquet.ByteArrayValue(v.([]byte))
	case pqTime:
		tm := v.(time.Time)
		if c.nanos {
			pv = parquet.Int64Value(tm.UnixNano())
		} else {
			pv = parquet.Int64Value(tm.UnixMicro())
		}
	case pqJSON:
		var b []byte
		if raw, ok := v.(json.RawMessage); ok {
			b = raw
		} else {
			var err error
			if b, err = json.Marshal(transform.JSONValue(v)); err != nil {
				return fmt.Errorf("column %s: %w", c.name, err)
			}
		}
		pv = parquet.ByteArrayValue(b)
	default:
		s, err := text(v)
		if err != nil {
			return fmt.Errorf("column %s: %w", c.name, err)
		}
		pv = parquet.ByteArrayValue([]byte(s))
	}
	t.row = append(t.row, pv.Level(0, 1, i))
	return nil
}

func (t *parquetTable) Close() error { return t.w.Close() }

// decimalBytes is v (an int64 or a finite *apd.Decimal) at scale, as a
// 16-byte big-endian two's complement integer.
func decimalBytes(v any, scale int) ([]byte, error) {
	var d apd.Decimal
	switch x := v.(type) {
	case int64:
		d.SetInt64(x)
	case *apd.Decimal:
		d.Set(x)
	default:
		return nil, fmt.Errorf("%T is not a decimal", v)
	}
	if _, err := apd.BaseContext.WithPrecision(decimalPrecision+2).Quantize(&d, &d, int32(-scale)); err != nil {
		return nil, err
	}
	u := d.Coeff.MathBigInt()
	if d.Negative {
		u.Neg(u)
	}
	if u.BitLen() > 127 {
		return nil, fmt.Errorf("%s does not fit DECIMAL(%d,%d)", v, decimalPrecision, scale)
	}
	b := make([]byte, 16)
	if u.Sign() >= 0 {
		u.FillBytes(b)
		return b, nil
	}
	m := new(big.Int).Lsh(big.NewInt(1), 128)
	m.Add(m, u)
	m.FillBytes(b)
	return b, nil
}

// orderedGroup is a Parquet group whose fields keep their order
// (parquet.Group is a map: its fields come back sorted by name).
type orderedGroup []orderedField

type orderedField struct {
	parquet.Node
	name string
}

func (f orderedField) Name() string { return f.name }

func (f orderedField) Value(base reflect.Value) reflect.Value {
	panic("export: orderedGroup fields are written as rows, not Go values")
}

func (g orderedGroup) ID() int                     { return 0 }
func (g orderedGroup) String() string              { return parquet.NewSchema("", g).String() }
func (g orderedGroup) Type() parquet.Type          { return parquet.Group{}.Type() }
func (g orderedGroup) Optional() bool              { return false }
func (g orderedGroup) Repeated() bool              { return false }
func (g orderedGroup) Required() bool              { return true }
func (g orderedGroup) Leaf() bool                  { return false }
func (g orderedGroup) Encoding() encoding.Encoding { return nil }
func (g orderedGroup) Compression() compress.Codec { return nil }
func (g orderedGroup) GoType() reflect.Type {
	m := parquet.Group{}
	for _, f := range g {
		m[f.name] = f.Node
	}
	return m.GoType()
}

func (g orderedGroup) Fields() []parquet.Field {
	fs := make([]parquet.Field, len(g))
	for i, f := range g {
		fs[i] = f
	}
	return fs
}
