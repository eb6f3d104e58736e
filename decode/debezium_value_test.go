package decode_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/decode"
)

// dbzEnvelope builds a JsonConverter record of table public.t whose
// after row has one column, "v", with the given field schema (a JSON
// object without "field") and JSON value. An empty schema gives a
// schemaless record.
func dbzEnvelope(fieldSchema, value string) []byte {
	payload := `{"op":"c","source":{"schema":"public","table":"t","lsn":1},"after":{"v":` + value + `}}`
	if fieldSchema == "" {
		return []byte(payload)
	}
	field := strings.TrimSuffix(strings.TrimSpace(fieldSchema), "}") + `,"field":"v"}`
	return []byte(`{"schema":{"type":"struct","name":"s.public.t.Envelope","fields":[` +
		`{"type":"struct","optional":true,"name":"s.public.t.Value","field":"after","fields":[` + field + `]},` +
		`{"type":"string","field":"op"}]},"payload":` + payload + `}`)
}

// dbzDecodeV decodes such a record and returns the column.
func dbzDecodeV(t *testing.T, d *decode.Debezium, fieldSchema, value string) (any, error) {
	t.Helper()
	env, err := d.DecodeJSON(nil, dbzEnvelope(fieldSchema, value))
	if err != nil {
		return nil, err
	}
	v, ok := env.Event.After["v"]
	if !ok {
		t.Fatalf("after = %v has no column v", env.Event.After)
	}
	return v, nil
}

func dbzLogical(typ, name string) string {
	return `{"type":"` + typ + `","optional":true,"name":"` + name + `"}`
}

func dbzDecimalSchema(scale string) string {
	return `{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"` + scale + `"}}`
}

func TestDebeziumValues(t *testing.T) {
	t.Parallel()
	const vsd = `{"type":"struct","optional":true,"name":"io.debezium.data.VariableScaleDecimal","fields":[{"type":"int32","field":"scale"},{"type":"bytes","field":"value"}]}`
	const point = `{"type":"struct","optional":true,"name":"io.debezium.data.geometry.Point","fields":[{"type":"double","field":"x"},{"type":"double","field":"y"},{"type":"bytes","optional":true,"field":"wkb"},{"type":"int32","optional":true,"field":"srid"}]}`
	cases := []struct {
		name, schema, value string
		want                any
	}{
		{"decimal -1", dbzDecimalSchema("0"), `"/w=="`, dbzDec("-1")},
		{"decimal -0.01", dbzDecimalSchema("2"), `"/w=="`, dbzDec("-0.01")},
		{"decimal 1.10 (the brief's bg==)", dbzDecimalSchema("2"), `"bg=="`, dbzDec("1.10")},
		{"money ($1234.11)", dbzDecimalSchema("2"), `"` + dbzUnscaled("-123411") + `"`, dbzDec("-1234.11")},
		{"decimal zero keeps scale", dbzDecimalSchema("3"), `"AA=="`, dbzDec("0.000")},
		{"decimal as a JSON number (decimal.format=NUMERIC)", dbzDecimalSchema("2"), `39`, dbzDec("39.00")},
		{"decimal number with more digits", dbzDecimalSchema("2"), `1.125`, dbzDec("1.125")},
		{"variable scale negative", vsd, `{"scale":1,"value":"` + dbzUnscaled("-15") + `"}`, dbzDec("-1.5")},
		{"date", dbzLogical("int32", "io.debezium.time.Date"), `17109`, dbzWall("2016-11-04T00:00:00")},
		{"date before 1970", dbzLogical("int32", "io.debezium.time.Date"), `-1`, dbzWall("1969-12-31T00:00:00")},
		{"connect date", dbzLogical("int32", "org.apache.kafka.connect.data.Date"), `19000`, dbzWall("2022-01-08T00:00:00")},
		{"time(3) ms", dbzLogical("int32", "io.debezium.time.Time"), `49890123`, "13:51:30.123"},
		{"time µs", dbzLogical("int64", "io.debezium.time.MicroTime"), `49890000000`, "13:51:30"},
		{"time 24:00", dbzLogical("int64", "io.debezium.time.MicroTime"), `86400000000`, "24:00:00"},
		{"time ns", dbzLogical("int64", "io.debezium.time.NanoTime"), `1`, "00:00:00.000000001"},
		{"timestamp(3) ms", dbzLogical("int64", "io.debezium.time.Timestamp"), `1478267490123`, dbzWall("2016-11-04T13:51:30.123")},
		{"timestamp µs", dbzLogical("int64", "io.debezium.time.MicroTimestamp"), `1529507596945104`, dbzWall("2018-06-20T15:13:16.945104")},
		{"timestamp µs negative", dbzLogical("int64", "io.debezium.time.MicroTimestamp"), `-1047174587392000`, dbzWall("1936-10-25T22:10:12.608")},
		{"brief's 1700000000123456", dbzLogical("int64", "io.debezium.time.MicroTimestamp"), `1700000000123456`, dbzWall("2023-11-14T22:13:20.123456")},
		{"timestamp infinity", dbzLogical("int64", "io.debezium.time.MicroTimestamp"), `9223372036825200000`, change.PosInfinity},
		{"timestamp -infinity", dbzLogical("int64", "io.debezium.time.MicroTimestamp"), `-9223372036832400000`, change.NegInfinity},
		{"timestamp ns", dbzLogical("int64", "io.debezium.time.NanoTimestamp"), `1`, dbzWall("1970-01-01T00:00:00.000000001")},
		{"connect timestamp", dbzLogical("int64", "org.apache.kafka.connect.data.Timestamp"), `1`, dbzWall("1970-01-01T00:00:00.001")},
		{"zoned", dbzLogical("string", "io.debezium.time.ZonedTimestamp"), `"2016-11-04T11:51:30.123456Z"`, dbzInstant("2016-11-04T11:51:30.123456Z")},
		{"zoned no fraction", dbzLogical("string", "io.debezium.time.ZonedTimestamp"), `"2016-11-04T11:51:30Z"`, dbzInstant("2016-11-04T11:51:30Z")},
		{"zoned one digit", dbzLogical("string", "io.debezium.time.ZonedTimestamp"), `"2016-11-04T11:51:30.1Z"`, dbzInstant("2016-11-04T11:51:30.1Z")},
		{"zoned offset", dbzLogical("string", "io.debezium.time.ZonedTimestamp"), `"2011-01-11T11:40:30.123456789-05:00"`, dbzInstant("2011-01-11T16:40:30.123456789Z")},
		{"zoned +00:00", dbzLogical("string", "io.debezium.time.ZonedTimestamp"), `"2011-01-11T16:40:30.123456789+00:00"`, dbzInstant("2011-01-11T16:40:30.123456789Z")},
		{"zoned signed year", dbzLogical("string", "io.debezium.time.ZonedTimestamp"), `"+21016-11-04T06:51:30.123456Z"`, time.Date(21016, 11, 4, 6, 51, 30, 123456000, time.UTC)},
		{"zoned padded", dbzLogical("string", "io.debezium.time.ZonedTimestamp"), `"+21016-11-04T06:51:30.000000Z"`, time.Date(21016, 11, 4, 6, 51, 30, 0, time.UTC)},
		{"zoned BC", dbzLogical("string", "io.debezium.time.ZonedTimestamp"), `"-0044-03-15T12:00:00Z"`, time.Date(-44, 3, 15, 12, 0, 0, 0, time.UTC)},
		{"zoned infinity", dbzLogical("string", "io.debezium.time.ZonedTimestamp"), `"infinity"`, change.PosInfinity},
		{"zoned time", dbzLogical("string", "io.debezium.time.ZonedTime"), `"11:51:30.123789Z"`, "11:51:30.123789Z"},
		{"iso date", dbzLogical("string", "io.debezium.time.IsoDate"), `"2016-11-04Z"`, dbzWall("2016-11-04T00:00:00")},
		{"interval", dbzLogical("int64", "io.debezium.time.MicroDuration"), `37091106780000`, 37091106780000 * time.Microsecond},
		{"interval string mode", dbzLogical("string", "io.debezium.time.Interval"), `"P1Y2M3DT4H5M6.78S"`, "P1Y2M3DT4H5M6.78S"},
		{"json", dbzLogical("string", "io.debezium.data.Json"), `"{\"a\": \"1\"}"`, json.RawMessage(`{"a": "1"}`)},
		{"bits little-endian", `{"type":"bytes","optional":true,"name":"io.debezium.data.Bits","parameters":{"length":"2"}}`, `"Aw=="`, []byte{3}},
		{"bytea", `{"type":"bytes","optional":true}`, `"AQID"`, []byte{1, 2, 3}},
		{"uuid", dbzLogical("string", "io.debezium.data.Uuid"), `"b1164c91-b574-495c-9f17-c4899d88404c"`, "b1164c91-b574-495c-9f17-c4899d88404c"},
		{"enum", `{"type":"string","optional":true,"name":"io.debezium.data.Enum","parameters":{"allowed":"a,b"}}`, `"b"`, "b"},
		{"decimal string mode", `{"type":"string","optional":true}`, `"3234567.890"`, "3234567.890"},
		{"decimal double mode", `{"type":"double","optional":true}`, `2234567.89`, 2234567.89},
		{"int16", `{"type":"int16","optional":true}`, `-7`, int64(-7)},
		{"real stays 0.1", `{"type":"float","optional":true}`, `0.1`, 0.1},
		{"float infinity", `{"type":"double","optional":true}`, `"Infinity"`, math.Inf(1)},
		{"bool", `{"type":"boolean","optional":true}`, `true`, true},
		{"null", `{"type":"string","optional":true}`, `null`, nil},
		{"array with null", `{"type":"array","optional":true,"items":{"type":"string","optional":true}}`, `["foo",null]`, []any{"foo", nil}},
		{"array of dates", `{"type":"array","optional":true,"items":{"type":"int32","optional":true,"name":"io.debezium.time.Date"}}`, `[0]`, []any{dbzWall("1970-01-01T00:00:00")}},
		{"hstore map", `{"type":"map","optional":true,"keys":{"type":"string"},"values":{"type":"string","optional":true}}`, `{"b":"2","a":"1"}`, json.RawMessage(`{"a":"1","b":"2"}`)},
		{"point", point, `{"x":1.0,"y":2.0,"wkb":"AQID","srid":null}`, json.RawMessage(`{"srid":null,"wkb":"AQID","x":1,"y":2}`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := dbzDecodeV(t, &decode.Debezium{}, tc.schema, tc.value)
			if err != nil {
				t.Fatal(err)
			}
			if !dbzSameValue(got, tc.want) {
				t.Errorf("%s → %s, want %s", tc.value, dbzDescribe(got), dbzDescribe(tc.want))
			}
		})
	}

	got, err := dbzDecodeV(t, &decode.Debezium{}, `{"type":"double","optional":true}`, `"NaN"`)
	if f, ok := got.(float64); err != nil || !ok || !math.IsNaN(f) {
		t.Errorf(`"NaN" → %v, %v`, got, err)
	}
}

// TestDebeziumPlaceholders checks every form Debezium gives the
// unavailable-value placeholder: each is change.Unchanged, and the same
// value where that form does not apply stays a value.
func TestDebeziumPlaceholders(t *testing.T) {
	t.Parallel()
	const p = decode.DefaultUnavailablePlaceholder
	p64 := base64.StdEncoding.EncodeToString([]byte(p))
	var nums []string
	for _, b := range []byte(p) {
		nums = append(nums, itoa(int(b)))
	}
	numbers := "[" + strings.Join(nums, ",") + "]"
	array := func(items string) string { return `{"type":"array","optional":true,"items":` + items + `}` }
	str := `{"type":"string","optional":true}`
	cases := []struct {
		name, schema, value string
		unchanged           bool
	}{
		{"text", str, `"` + p + `"`, true},
		{"json", dbzLogical("string", "io.debezium.data.Json"), `"` + p + `"`, true},
		{"xml", dbzLogical("string", "io.debezium.data.Xml"), `"` + p + `"`, true},
		{"bytea", `{"type":"bytes","optional":true}`, `"` + p64 + `"`, true},
		{"bytea hex mode (a string field)", str, `"` + p + `"`, true},
		{"decimal bytes", dbzDecimalSchema("2"), `"` + p64 + `"`, true},
		{"variable scale decimal", `{"type":"struct","optional":true,"name":"io.debezium.data.VariableScaleDecimal","fields":[{"type":"int32","field":"scale"},{"type":"bytes","field":"value"}]}`, `{"scale":0,"value":"` + p64 + `"}`, true},
		{"text[]", array(str), `["` + p + `"]`, true},
		{"bytea[]", array(`{"type":"bytes","optional":true}`), `["` + p64 + `"]`, true},
		{"int[]", array(`{"type":"int32","optional":true}`), numbers, true},
		{"bigint[]", array(`{"type":"int64","optional":true}`), numbers, true},
		{"date[]", array(`{"type":"int32","optional":true,"name":"io.debezium.time.Date"}`), numbers, true},
		{"uuid[]", array(dbzLogical("string", "io.debezium.data.Uuid")), `["b68a35a7-17ad-35b3-af2a-ae46edb4545a"]`, true},
		{"hstore json", dbzLogical("string", "io.debezium.data.Json"), `"{\"` + p + `\":\"` + p + `\"}"`, true},
		{"hstore map", `{"type":"map","optional":true,"keys":{"type":"string"},"values":{"type":"string","optional":true}}`, `{"` + p + `":"` + p + `"}`, true},
		// Forms outside their types are values.
		{"base64 form in a text field", str, `"` + p64 + `"`, false},
		{"hstore form in a text field", str, `"{\"` + p + `\":\"` + p + `\"}"`, false},
		{"numbers in a text[]", array(str), `["95"]`, false},
		{"two texts", array(str), `["` + p + `","x"]`, false},
		{"int[] one number off", array(`{"type":"int32","optional":true}`), strings.Replace(numbers, "95", "96", 1), false},
		{"float[] numbers", array(`{"type":"double","optional":true}`), numbers, false},
		{"similar text", str, `"` + p + ` "`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := dbzDecodeV(t, &decode.Debezium{}, tc.schema, tc.value)
			if err != nil {
				t.Fatal(err)
			}
			if (got == change.Unchanged) != tc.unchanged {
				t.Errorf("%s → %s, want unchanged %v", tc.value, dbzDescribe(got), tc.unchanged)
			}
			// Without a schema every form is recognized by its shape.
			if tc.unchanged {
				got, err := dbzDecodeV(t, &decode.Debezium{}, "", tc.value)
				if err != nil || got != change.Unchanged {
					t.Errorf("schemaless %s → %s, %v; want unchanged", tc.value, dbzDescribe(got), err)
				}
			}
		})
	}

	// A configured placeholder, in its base64 and uuid[] forms.
	d := &decode.Debezium{UnavailablePlaceholder: "ü-toast"}
	for _, v := range []string{`"ü-toast"`, `"` + base64.StdEncoding.EncodeToString([]byte("ü-toast")) + `"`, `[-61,-68,45,116,111,97,115,116]`} {
		if got, err := dbzDecodeV(t, d, "", v); err != nil || got != change.Unchanged {
			t.Errorf("custom placeholder %s → %s, %v", v, dbzDescribe(got), err)
		}
	}
	if got, _ := dbzDecodeV(t, d, "", `"`+p+`"`); got != p {
		t.Errorf("the default placeholder with another configured → %s, want the text", dbzDescribe(got))
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestDebeziumColumnTypes checks schemaless values read by their declared
// PostgreSQL types.
func TestDebeziumColumnTypes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		decl, value string
		want        any
	}{
		{"timestamp", `1529507596945104`, dbzWall("2018-06-20T15:13:16.945104")},
		{"timestamp(6) without time zone", `1529507596945104`, dbzWall("2018-06-20T15:13:16.945104")},
		{"timestamp(3)", `1478267490123`, dbzWall("2016-11-04T13:51:30.123")},
		{"timestamp", `"2018-06-20T15:13:16.945104"`, dbzWall("2018-06-20T15:13:16.945104")},
		{"timestamptz", `"+21016-11-04T06:51:30.123456Z"`, time.Date(21016, 11, 4, 6, 51, 30, 123456000, time.UTC)},
		{"timestamptz", `"-infinity"`, change.NegInfinity},
		{"time", `49890000000`, "13:51:30"},
		{"time(3)", `49890123`, "13:51:30.123"},
		{"timetz", `"11:51:30.123789Z"`, "11:51:30.123789Z"},
		{"date", `17109`, dbzWall("2016-11-04T00:00:00")},
		{"interval", `37091106780000`, 37091106780000 * time.Microsecond},
		{"int4[]", `[1,null,3]`, []any{int64(1), nil, int64(3)}},
		{"_int8", `[5]`, []any{int64(5)}},
		{"text[]", `["a"]`, []any{"a"}},
		{"numeric(5,2)", `"AN3h"`, dbzDec("568.01")},
		{"numeric", `{"scale":3,"value":"B1vNFQ=="}`, dbzDec("123456.789")},
		{"numeric", `1234567.890`, dbzDec("1234567.890")},
		{"decimal(10,3)", `2234567.89`, dbzDec("2234567.89")},
		{"numeric", `"-Infinity"`, math.Inf(-1)}, // decimal.handling.mode=double
		{"money", `"ALxhTg=="`, dbzDec("123456.78")},
		{"numeric(3,1)[]", `["AQ=="]`, []any{dbzDec("0.1")}},
		{"bit(3)", `"Aw=="`, []byte{3}},
		{"bit varying(1)", `true`, true},
		{"bytea", `"AQID"`, []byte{1, 2, 3}},
		{"hstore", `"{\"a\":\"1\"}"`, json.RawMessage(`{"a":"1"}`)},
		{"hstore", `{"a":"1"}`, json.RawMessage(`{"a":"1"}`)},
		{"real", `4`, 4.0},
		{"smallint", `4`, int64(4)},
		{"uuid", `"86f701e6-f8f8-4dc4-8cbd-ed84280b5b84"`, "86f701e6-f8f8-4dc4-8cbd-ed84280b5b84"},
		{"mood", `"happy"`, "happy"},
		{"text", `"` + decode.DefaultUnavailablePlaceholder + `"`, change.Unchanged},
		{"jsonb", `"` + decode.DefaultUnavailablePlaceholder + `"`, change.Unchanged},
	}
	for _, tc := range cases {
		t.Run(tc.decl+" "+tc.value, func(t *testing.T) {
			t.Parallel()
			d := &decode.Debezium{ColumnTypes: map[string]map[string]string{"public.t": {"v": tc.decl}}}
			got, err := dbzDecodeV(t, d, "", tc.value)
			if err != nil {
				t.Fatal(err)
			}
			if !dbzSameValue(got, tc.want) {
				t.Errorf("%s %s → %s, want %s", tc.decl, tc.value, dbzDescribe(got), dbzDescribe(tc.want))
			}
		})
	}

	// decimal.handling.mode=string: decimal text, scale kept.
	d := &decode.Debezium{DecimalHandlingMode: "string", ColumnTypes: map[string]map[string]string{"public.t": {"v": "numeric(10,3)"}}}
	if got, err := dbzDecodeV(t, d, "", `"3234567.890"`); err != nil || !dbzSameValue(got, dbzDec("3234567.890")) {
		t.Errorf("string mode → %s, %v", dbzDescribe(got), err)
	}
	// Schemaless without declared types: numbers exact, objects raw.
	for value, want := range map[string]any{
		`12`: int64(12), `1.50`: dbzDec("1.50"), `99999999999999999999`: dbzDec("99999999999999999999"),
		`{"b":1,"a":[1.0]}`: json.RawMessage(`{"a":[1.0],"b":1}`), `[1,"x",{"k":null}]`: []any{int64(1), "x", json.RawMessage(`{"k":null}`)},
	} {
		if got, err := dbzDecodeV(t, &decode.Debezium{}, "", value); err != nil || !dbzSameValue(got, want) {
			t.Errorf("schemaless %s → %s, %v; want %s", value, dbzDescribe(got), err, dbzDescribe(want))
		}
	}
}

// TestDebeziumErrors checks that bad input fails with an error naming the
// field and the value.
func TestDebeziumErrors(t *testing.T) {
	t.Parallel()
	src := `"source":{"schema":"public","table":"t"}`
	cases := []struct {
		name, key, value string
		path, shows      string
	}{
		{"not JSON", "", `{"op":`, "value", `"{\"op\":"`},
		{"data after the value", "", `{} {}`, "value", `{} {}`},
		{"not an object", "", `[1]`, "value", `[1]`},
		{"neither op nor status", "", `{"a":1}`, "value", ""},
		{"unknown op", "", `{"op":"x",` + src + `}`, "value.op", `"x"`},
		{"op not a string", "", `{"op":1,` + src + `}`, "value.op", `1`},
		{"create without after", "", `{"op":"c","after":null,` + src + `}`, "value.after", "null"},
		{"no source", "", `{"op":"c","after":{}}`, "value.source", "null"},
		{"no table", "", `{"op":"c","after":{},"source":{"schema":"public"}}`, "value.source", ""},
		{"bad lsn", "", `{"op":"c","after":{},"source":{"schema":"s","table":"t","lsn":-1}}`, "value.source.lsn", "-1"},
		{"fractional txId", "", `{"op":"c","after":{},"source":{"schema":"s","table":"t","txId":1.5}}`, "value.source.txId", "1.5"},
		{"bad sequence", "", `{"op":"c","after":{},"source":{"schema":"s","table":"t","sequence":"[\"1\"]"}}`, "value.source.sequence", `[\"1\"]`},
		{"sequence not LSNs", "", `{"op":"c","after":{},"source":{"schema":"s","table":"t","sequence":"[\"x\",null]"}}`, "value.source.sequence", `x`},
		{"bad snapshot", "", `{"op":"c","after":{},"source":{"schema":"s","table":"t","snapshot":3}}`, "value.source.snapshot", "3"},
		{"row not an object", "", `{"op":"c","after":[1],` + src + `}`, "value.after", "[1]"},
		{"bad message content", "", `{"op":"m","message":{"prefix":"p","content":"!!"},` + src + `}`, "value.message.content", `"!!"`},
		{"bad transaction id", "", `{"status":"END","id":"abc:1"}`, "value.id", `"abc:1"`},
		{"bad status", "", `{"status":"MAYBE","id":"1:1"}`, "value.status", `"MAYBE"`},
		{"bad data_collections", "", `{"status":"END","id":"1:1","data_collections":{}}`, "value.data_collections", `{}`},
		{"bad schema type", "", `{"schema":{"type":"record"},"payload":{}}`, "value.schema.type", `"record"`},
		{"schema field without name", "", `{"schema":{"type":"struct","fields":[{"type":"string"}]},"payload":{}}`, "value.schema.fields[0].field", "null"},
		{"key not an object", `"k"`, `null`, "key", `"k"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := (&decode.Debezium{}).DecodeJSON([]byte(tc.key), []byte(tc.value))
			dbzFieldError(t, err, tc.path, tc.shows)
		})
	}

	values := []struct {
		name, schema, value string
		shows               string
	}{
		{"bad base64", dbzDecimalSchema("2"), `"AN3h!"`, `"AN3h!"`},
		{"decimal without scale", `{"type":"bytes","name":"org.apache.kafka.connect.data.Decimal"}`, `"AA=="`, "no scale"},
		{"decimal bad scale", dbzDecimalSchema("x"), `"AA=="`, `"x"`},
		{"empty decimal", dbzDecimalSchema("0"), `""`, "0 bytes"},
		{"decimal not a number", dbzDecimalSchema("0"), `true`, "true"},
		{"bad zoned timestamp", dbzLogical("string", "io.debezium.time.ZonedTimestamp"), `"2016-13-04T11:51:30Z"`, `"2016-13-04T11:51:30Z"`},
		{"zoned timestamp junk", dbzLogical("string", "io.debezium.time.ZonedTimestamp"), `"2016-11-04T11:51:30Zx"`, `Zx`},
		{"zoned 10 digits", dbzLogical("string", "io.debezium.time.ZonedTimestamp"), `"2016-11-04T11:51:30.1234567890Z"`, `1234567890`},
		{"time out of range", dbzLogical("int64", "io.debezium.time.MicroTime"), `86400000001`, "86400000001"},
		{"date out of range", dbzLogical("int32", "io.debezium.time.Date"), `99999999999`, "99999999999"},
		{"interval overflow", dbzLogical("int64", "io.debezium.time.MicroDuration"), `9223372036854775807`, "9223372036854775807"},
		{"json not JSON", dbzLogical("string", "io.debezium.data.Json"), `"{x"`, `"{x"`},
		{"int not integral", `{"type":"int32"}`, `1.5`, "1.5"},
		{"int as string", `{"type":"int64"}`, `"1"`, `"1"`},
		{"bool as number", `{"type":"boolean"}`, `1`, "1"},
		{"float as bool", `{"type":"double"}`, `true`, "true"},
		{"array element", `{"type":"array","items":{"type":"int32"}}`, `[1,"x"]`, `"x"`},
	}
	for _, tc := range values {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := dbzDecodeV(t, &decode.Debezium{}, tc.schema, tc.value)
			path := "value.after.v"
			if tc.name == "array element" {
				path += "[1]"
			}
			dbzFieldError(t, err, path, tc.shows)
		})
	}

	if _, err := (&decode.Debezium{DecimalHandlingMode: "exact"}).DecodeJSON(nil, []byte(`null`)); err == nil ||
		!strings.Contains(err.Error(), `"exact"`) {
		t.Errorf("bad DecimalHandlingMode: %v", err)
	}
}

func TestDebeziumKeys(t *testing.T) {
	t.Parallel()
	value := dbzEnvelope("", `1`)
	cases := []struct {
		key  string
		want change.Row
	}{
		{`{"id":1004}`, change.Row{"id": int64(1004)}},
		{`{"schema":{"type":"struct","fields":[{"type":"int32","field":"id"}]},"payload":{"id":1004}}`, change.Row{"id": int64(1004)}},
		{`{"schema":null,"payload":{"id":1004}}`, change.Row{"id": int64(1004)}},
		{`{"payload":"x"}`, change.Row{"payload": "x"}}, // a column named payload, not a wrapper
		{`null`, nil},
		{``, nil},
	}
	for _, tc := range cases {
		env, err := (&decode.Debezium{}).DecodeJSON([]byte(tc.key), value)
		if err != nil {
			t.Errorf("key %s: %v", tc.key, err)
			continue
		}
		dbzAssertRow(t, "key "+tc.key, env.Key, tc.want)
	}
}

// TestDebeziumKnownSchema checks that a compact record whose schema the
// decoder has seen before (JsonConverter's usual output, decoded without
// parsing the schema again) decodes exactly as the first one did, and
// that bad payloads fail the same way.
func TestDebeziumKnownSchema(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"03-c-all-types-arrays-schema.json", "08-u-replica-full-decimals-schema.json", "26-txn-end-nullschema-wrapper.json"} {
		_, pretty := dbzReadCorpus(t, name)
		var buf bytes.Buffer
		if err := json.Compact(&buf, pretty); err != nil {
			t.Fatal(err)
		}
		compact := buf.Bytes()
		fresh, err := (&decode.Debezium{}).DecodeJSON(nil, pretty)
		if err != nil {
			t.Fatal(err)
		}
		d := &decode.Debezium{}
		for i := range 3 {
			env, err := d.DecodeJSON(nil, compact)
			if err != nil {
				t.Fatalf("%s, time %d: %v", name, i+1, err)
			}
			if env.Kind != fresh.Kind || env.Event.Op != fresh.Event.Op || env.Event.Table != fresh.Event.Table {
				t.Errorf("%s, time %d: %+v, want %+v", name, i+1, env, fresh)
			}
			dbzAssertRow(t, name+" before", env.Event.Before, fresh.Event.Before)
			dbzAssertRow(t, name+" after", env.Event.After, fresh.Event.After)
		}
		// The same schema with a bad or null payload.
		i := bytes.Index(compact, []byte(`,"payload":`))
		head := compact[:i+len(`,"payload":`)]
		for payload, want := range map[string]string{`{"op":"x","source":{"schema":"s","table":"t"}}`: "value.op", `[1]`: "value", `{"op":`: "value"} {
			_, err := d.DecodeJSON(nil, append(append(append([]byte{}, head...), payload...), '}'))
			var fe *decode.FieldError
			if !errors.As(err, &fe) || fe.Path != want {
				t.Errorf("%s with payload %s: %v, want an error at %s", name, payload, err, want)
			}
		}
		env, err := d.DecodeJSON(nil, append(append([]byte{}, head...), "null}"...))
		if err != nil || env.Kind != decode.KindTombstone {
			t.Errorf("%s with a null payload: %+v, %v", name, env, err)
		}
	}
}
