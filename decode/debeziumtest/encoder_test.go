package debeziumtest_test

import (
	"bytes"
	"encoding/json"

	"math"
	"reflect"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/decode"
	"github.com/tilefeed/tilefeed/decode/debeziumtest"
)

var formats = []struct {
	name string
	f    debeziumtest.Format
}{{"json", debeziumtest.JSON}, {"payload", debeziumtest.JSONPayload}, {"avro", debeziumtest.Avro}}

// typeCase is one column: its type, the text PostgreSQL sends, and what
// the Debezium path decodes, when that differs from what pgoutput decodes
// (the differences docs/debezium-decoding.md lists).
type typeCase struct {
	name string
	oid  uint32
	mod  int32
	text string // "" with unchanged: the unchanged-TOAST marker
	enum []string
	want any // nil: the pgoutput value
	// payload, when set, is what the schemaless path decodes: a declared
	// numeric reads as a decimal whatever the mode.
	payload any
	unch    bool
}

func dec(s string) *apd.Decimal {
	d, _, err := apd.NewFromString(s)
	if err != nil {
		panic(err)
	}
	return d
}

func numMod(p, s int) int32 { return int32(p<<16|s) + 4 }

var defaultCases = []typeCase{
	{name: "bool", oid: pgtype.BoolOID, text: "t"},
	{name: "int2", oid: pgtype.Int2OID, text: "-7"},
	{name: "int4", oid: pgtype.Int4OID, text: "2147483647"},
	{name: "int8", oid: pgtype.Int8OID, text: "-9007199254740993"},
	{name: "oid", oid: pgtype.OIDOID, text: "4294967295"},
	{name: "float4", oid: pgtype.Float4OID, text: "0.1"},
	{name: "float4_big", oid: pgtype.Float4OID, text: "3.4028235e+38"},
	{name: "float8", oid: pgtype.Float8OID, text: "5.17"},
	{name: "float8_tiny", oid: pgtype.Float8OID, text: "1e-300"},
	{name: "float8_inf", oid: pgtype.Float8OID, text: "-Infinity"},
	{name: "float8_nan", oid: pgtype.Float8OID, text: "NaN"},
	{name: "numeric_10_2", oid: pgtype.NumericOID, mod: numMod(10, 2), text: "123.45"},
	{name: "numeric_neg", oid: pgtype.NumericOID, mod: numMod(10, 2), text: "-0.01"},
	{name: "numeric_neg128", oid: pgtype.NumericOID, mod: numMod(10, 0), text: "-128"},
	{name: "numeric_39_2", oid: pgtype.NumericOID, mod: numMod(39, 2), text: "5856910285984515462279169185843825868.22"},
	{name: "numeric_5_6", oid: pgtype.NumericOID, mod: numMod(5, 6), text: "0.023456"},
	{name: "numeric_var", oid: pgtype.NumericOID, mod: -1, text: "-123.4500", want: dec("-123.45")},
	{name: "numeric_var_int", oid: pgtype.NumericOID, mod: -1, text: "1200", want: dec("1200")},
	{name: "money", oid: 790, text: "-$1,234.11", want: dec("-1234.11")},
	{name: "text", oid: pgtype.TextOID, text: "h\u00e9llo \"q\"\n\t\\ </> \u2028"},
	{name: "varchar", oid: pgtype.VarcharOID, text: "a "},
	{name: "bpchar", oid: pgtype.BPCharOID, text: "a    "},
	{name: "json", oid: pgtype.JSONOID, text: `{"a": [1, 2.50]}`},
	{name: "jsonb", oid: pgtype.JSONBOID, text: `{"k1": "v1", "k2": 11}`},
	{name: "uuid", oid: pgtype.UUIDOID, text: "86f701e6-f8f8-4dc4-8cbd-ed84280b5b84"},
	{name: "xml", oid: pgtype.XMLOID, text: "<a>b</a>"},
	{name: "inet", oid: pgtype.InetOID, text: "10.1.2.3/8"},
	{name: "bytea", oid: pgtype.ByteaOID, text: `\x0123456789abcdef`},
	{name: "bytea_empty", oid: pgtype.ByteaOID, text: `\x`},
	{name: "date", oid: pgtype.DateOID, text: "2024-06-26"},
	{name: "date_old", oid: pgtype.DateOID, text: "1930-03-01"},
	{name: "time", oid: pgtype.TimeOID, mod: -1, text: "11:12:51.219026"},
	{name: "time_24", oid: pgtype.TimeOID, mod: -1, text: "24:00:00"},
	{name: "time_3", oid: pgtype.TimeOID, mod: 3, text: "13:51:30.123"},
	{name: "timetz", oid: pgtype.TimetzOID, mod: -1, text: "13:51:30.123789+02", want: "11:51:30.123789Z"},
	{name: "timetz_wrap", oid: pgtype.TimetzOID, mod: -1, text: "01:00:00-03:30", want: "04:30:00Z"},
	{name: "timestamp", oid: pgtype.TimestampOID, mod: -1, text: "2024-06-26 11:12:51.219026"},
	{name: "timestamp_neg", oid: pgtype.TimestampOID, mod: -1, text: "1936-10-25 22:10:12.608"},
	{name: "timestamp_3", oid: pgtype.TimestampOID, mod: 3, text: "2016-11-04 13:51:30.123"},
	{name: "timestamp_inf", oid: pgtype.TimestampOID, mod: -1, text: "infinity"},
	{name: "timestamp_3_ninf", oid: pgtype.TimestampOID, mod: 3, text: "-infinity"},
	{name: "timestamptz", oid: pgtype.TimestamptzOID, mod: -1, text: "2016-11-04 13:51:30.123456+02"},
	{name: "timestamptz_0", oid: pgtype.TimestamptzOID, mod: 0, text: "2016-11-04 13:51:30+00"},
	{name: "timestamptz_big", oid: pgtype.TimestamptzOID, mod: -1, text: "21016-11-04 06:51:30+00"},
	{name: "timestamptz_inf", oid: pgtype.TimestamptzOID, mod: -1, text: "infinity"},
	{name: "interval", oid: pgtype.IntervalOID, mod: -1, text: "1 day 02:03:04.5"},
	{name: "interval_neg", oid: pgtype.IntervalOID, mod: -1, text: "-00:00:01.25"},
	{name: "interval_months", oid: pgtype.IntervalOID, mod: -1, text: "1 year 2 mons 3 days 04:05:06.78",
		want: 37091106780000 * time.Microsecond},
	{name: "bit1", oid: pgtype.BitOID, mod: 1, text: "1", want: true},
	{name: "bit3", oid: pgtype.BitOID, mod: 3, text: "101", want: []byte{5}},
	{name: "varbit24", oid: pgtype.VarbitOID, mod: 24, text: "000000110000001000000001", want: []byte{1, 2, 3}},
	{name: "bit7", oid: pgtype.BitOID, mod: 7, text: "1000000", want: []byte{64}},
	{name: "enum", oid: 99999, text: "happy", enum: []string{"sad", "ok", "happy"}},
	{name: "int4_array", oid: pgtype.Int4ArrayOID, mod: -1, text: "{1,NULL,3}"},
	{name: "int2_array", oid: pgtype.Int2ArrayOID, mod: -1, text: "{1,2}"},
	{name: "int8_array", oid: pgtype.Int8ArrayOID, mod: -1, text: "{}"},
	{name: "text_array", oid: pgtype.TextArrayOID, mod: -1, text: `{a,"b c",NULL}`},
	{name: "float4_array", oid: pgtype.Float4ArrayOID, mod: -1, text: "{0.1,7}"},
	{name: "bool_array", oid: pgtype.BoolArrayOID, mod: -1, text: "{t,f}"},
	{name: "numeric_array", oid: pgtype.NumericArrayOID, mod: numMod(10, 2), text: "{1.10,-2.20}"},
	{name: "date_array", oid: pgtype.DateArrayOID, mod: -1, text: "{2024-06-26,1969-12-31}"},
	{name: "uuid_array", oid: pgtype.UUIDArrayOID, mod: -1, text: "{86f701e6-f8f8-4dc4-8cbd-ed84280b5b84}"},
	{name: "jsonb_array", oid: pgtype.JSONBArrayOID, mod: -1, text: `{"{\"a\": 1}"}`},
	{name: "timestamp_array", oid: pgtype.TimestampArrayOID, mod: -1, text: `{"2024-06-26 11:12:51.219026"}`},
	{name: "timestamptz_array", oid: pgtype.TimestamptzArrayOID, mod: -1, text: `{"2024-06-26 11:12:51.219026+00"}`},
	{name: "bytea_array", oid: pgtype.ByteaArrayOID, mod: -1, text: `{"\\x0102"}`},
	{name: "null", oid: pgtype.TextOID, text: "NULL"},
	{name: "unchanged_text", oid: pgtype.TextOID, unch: true},
	{name: "unchanged_jsonb", oid: pgtype.JSONBOID, unch: true},
	{name: "unchanged_bytea", oid: pgtype.ByteaOID, unch: true},
	{name: "unchanged_text_array", oid: pgtype.TextArrayOID, mod: -1, unch: true},
	{name: "unchanged_varchar_array", oid: pgtype.VarcharArrayOID, mod: -1, unch: true},
	{name: "unchanged_int4_array", oid: pgtype.Int4ArrayOID, mod: -1, unch: true},
	{name: "unchanged_int8_array", oid: pgtype.Int8ArrayOID, mod: -1, unch: true},
	{name: "unchanged_date_array", oid: pgtype.DateArrayOID, mod: -1, unch: true},
	{name: "unchanged_uuid_array", oid: pgtype.UUIDArrayOID, mod: -1, unch: true},
	{name: "unchanged_bytea_array", oid: pgtype.ByteaArrayOID, mod: -1, unch: true},
	{name: "unchanged_jsonb_array", oid: pgtype.JSONBArrayOID, mod: -1, unch: true},
}

// table builds a one-column table (plus the key id) and the pgoutput value.
func caseTable(t *testing.T, c typeCase) (debeziumtest.Table, any) {
	t.Helper()
	tbl := debeziumtest.Table{Schema: "public", Name: "t", Columns: []debeziumtest.Column{
		{Name: "id", OID: pgtype.Int4OID, TypeMod: -1, Key: true, NotNull: true},
		{Name: "v", OID: c.oid, TypeMod: c.mod, Enum: c.enum},
	}}
	if c.unch {
		return tbl, change.Unchanged
	}
	if c.text == "NULL" {
		return tbl, nil
	}
	v, err := decode.DecodeText(pgtype.NewMap(), c.oid, []byte(c.text))
	if err != nil {
		t.Fatalf("pgoutput decode %q: %v", c.text, err)
	}
	return tbl, v
}

// decodeRecord feeds a record to the Debezium decoder for format f.
func decodeRecord(t *testing.T, enc *debeziumtest.Encoder, f debeziumtest.Format, tbl debeziumtest.Table, opts debeziumtest.Options, r debeziumtest.Record) decode.Envelope {
	t.Helper()
	d := &decode.Debezium{Schemas: enc.Registry(), UnavailablePlaceholder: opts.UnavailablePlaceholder}
	if opts.DecimalHandlingMode == "string" {
		d.DecimalHandlingMode = "string"
	}
	var env decode.Envelope
	var err error
	switch f {
	case debeziumtest.Avro:
		env, err = d.DecodeAvro(r.Key, r.Value)
	case debeziumtest.JSONPayload:
		d.ColumnTypes = map[string]map[string]string{"public.t": enc.ColumnTypes(tbl)}
		fallthrough
	default:
		env, err = d.DecodeJSON(r.Key, r.Value)
	}
	if err != nil {
		t.Fatalf("decode %s: %v\nkey %s\nvalue %s", r.Topic, err, r.Key, r.Value)
	}
	return env
}

func TestRoundTripTypes(t *testing.T) {
	t.Parallel()
	runCases(t, debeziumtest.Options{}, defaultCases)
}

func TestRoundTripPlaceholder(t *testing.T) {
	t.Parallel()
	var cases []typeCase
	for _, c := range defaultCases {
		if c.unch {
			cases = append(cases, c)
		}
	}
	runCases(t, debeziumtest.Options{UnavailablePlaceholder: "__gone"}, cases)
}

func TestRoundTripModes(t *testing.T) {
	t.Parallel()
	ts := time.Date(2016, 11, 4, 13, 51, 30, 123000000, time.UTC)
	for _, m := range []struct {
		opts  debeziumtest.Options
		cases []typeCase
	}{
		{debeziumtest.Options{DecimalHandlingMode: "string"}, []typeCase{
			{name: "numeric_10_2", oid: pgtype.NumericOID, mod: numMod(10, 2), text: "123.40", want: "123.40", payload: dec("123.40")},
			{name: "numeric_var", oid: pgtype.NumericOID, mod: -1, text: "-1.500", want: "-1.500", payload: dec("-1.500")},
			{name: "numeric_nan", oid: pgtype.NumericOID, mod: -1, text: "NaN", want: "NAN"},
			{name: "money", oid: 790, text: "$1.50", want: "1.50", payload: dec("1.50")},
		}},
		{debeziumtest.Options{DecimalHandlingMode: "double"}, []typeCase{
			{name: "numeric_10_2", oid: pgtype.NumericOID, mod: numMod(10, 2), text: "123.45", want: 123.45, payload: dec("123.45")},
			{name: "numeric_nan", oid: pgtype.NumericOID, mod: -1, text: "NaN", want: math.NaN()},
			{name: "money", oid: 790, text: "$1.50", want: 1.5, payload: dec("1.5")},
		}},
		{debeziumtest.Options{TimePrecisionMode: "connect"}, []typeCase{
			{name: "time", oid: pgtype.TimeOID, mod: -1, text: "11:12:51.219026", want: "11:12:51.219"},
			{name: "timestamp", oid: pgtype.TimestampOID, mod: -1, text: "2016-11-04 13:51:30.123456", want: ts},
			{name: "date", oid: pgtype.DateOID, text: "2024-06-26"},
		}},
		{debeziumtest.Options{TimePrecisionMode: "adaptive_time_microseconds"}, []typeCase{
			{name: "time_3", oid: pgtype.TimeOID, mod: 3, text: "13:51:30.123"},
			{name: "timestamp_3", oid: pgtype.TimestampOID, mod: 3, text: "2016-11-04 13:51:30.123"},
		}},
	} {
		t.Run(m.opts.DecimalHandlingMode+m.opts.TimePrecisionMode, func(t *testing.T) {
			t.Parallel()
			runCases(t, m.opts, m.cases)
		})
	}
}

func runCases(t *testing.T, opts debeziumtest.Options, cases []typeCase) {
	t.Helper()
	enc, err := debeziumtest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	commit := time.Date(2024, 6, 29, 16, 56, 2, 823282000, time.UTC)
	for _, c := range cases {
		for _, f := range formats {
			t.Run(c.name+"/"+f.name, func(t *testing.T) {
				tbl, v := caseTable(t, c)
				op := change.Insert
				if c.unch {
					op = change.Update
				}
				ev := change.Event{Op: op, Table: "public.t", After: change.Row{"id": int64(7), "v": v}, CommitTime: commit}
				recs, err := enc.Encode(f.f, tbl, ev, debeziumtest.Source{LSN: 26752656, TxID: 752})
				if err != nil {
					t.Fatal(err)
				}
				if len(recs) != 1 {
					t.Fatalf("%d records, want 1", len(recs))
				}
				env := decodeRecord(t, enc, f.f, tbl, opts, recs[0])
				want := c.want
				if want == nil {
					want = v
				}
				if c.payload != nil && f.f == debeziumtest.JSONPayload {
					want = c.payload
				}
				if got := env.Event.After["v"]; !same(got, want) {
					t.Errorf("after.v = %#v (%T), want %#v (%T)\nvalue %s", got, got, want, want, recs[0].Value)
				}
				if !env.Event.CommitTime.Equal(commit) || env.Event.Op != op || env.Event.Table != "public.t" {
					t.Errorf("event %+v", env.Event)
				}
				if !same(env.Key["id"], int64(7)) || len(env.Key) != 1 {
					t.Errorf("key %v", env.Key)
				}
			})
		}
	}
}

// same compares decoded values: decimals by value and exponent, floats
// with NaN equal to NaN.
func same(a, b any) bool {
	switch x := a.(type) {
	case *apd.Decimal:
		y, ok := b.(*apd.Decimal)
		return ok && x.Cmp(y) == 0 && x.Exponent == y.Exponent
	case float64:
		y, ok := b.(float64)
		return ok && (x == y || math.IsNaN(x) && math.IsNaN(y))
	case json.RawMessage:
		y, ok := b.(json.RawMessage)
		return ok && bytes.Equal(x, y)
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !same(x[i], y[i]) {
				return false
			}
		}
		return true
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y) && y.Location() == time.UTC && x.Location() == time.UTC
	}
	return reflect.DeepEqual(a, b)
}
