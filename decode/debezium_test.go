package decode_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/decode"
)

// The corpus in testdata/debezium is a copy of shared/debezium-corpus:
// real Debezium PostgreSQL envelopes, with the decoded values its
// README.md and types-expectations.md give for them. Each case below
// asserts those values for one file, named after it.

const dbzCorpusDir = "testdata/debezium"

// dbzCorpusCases dbzMaps each corpus file to its assertions. Key files
// (*-key.json) are decoded together with their value file.
var dbzCorpusCases = map[string]func(t *testing.T){
	"01-c-outbox-schema.json":                               test01OutboxSchema,
	"02-c-customers-schemaless.json":                        test02CustomersSchemaless,
	"03-c-all-types-arrays-schema.json":                     test03AllTypesArraysSchema,
	"04-r-snapshot-first-schema.json":                       test04SnapshotFirstSchema,
	"05-r-snapshot-last-in-data-collection-schema.json":     test05SnapshotLastInDataCollectionSchema,
	"06-r-snapshot-true-schemaless.json":                    test06SnapshotTrueSchemaless,
	"07-r-snapshot-last-other-types-schemaless.json":        test07SnapshotLastOtherTypesSchemaless,
	"08-u-replica-full-decimals-schema.json":                test08ReplicaFullDecimalsSchema,
	"09-u-before-null-numeric-schema.json":                  test09BeforeNullNumericSchema,
	"10-u-replica-full-numeric-bool-schema.json":            test10ReplicaFullNumericBoolSchema,
	"11-u-replica-full-money-schema.json":                   test11ReplicaFullMoneySchema,
	"12-u-toast-placeholder-before-null-schemaless.json":    test12ToastPlaceholderBeforeNullSchemaless,
	"13-u-replica-full-schemaless.json":                     test13ReplicaFullSchemaless,
	"14-u-gson-reserialized-decimals-zoned-schemaless.json": test14GsonReserializedDecimalsZonedSchemaless,
	"15-d-customers-schema.json":                            test15CustomersSchema,
	"16-d-products-full-before-schema.json":                 test16ProductsFullBeforeSchema,
	"17-d-products-full-before-schemaless.json":             test17ProductsFullBeforeSchemaless,
	"18-tombstone-doc.json":                                 test18TombstoneDoc,
	"19-t-truncate-doc.json":                                test19TruncateDoc,
	"20-m-message-transactional-doc.json":                   test20MessageTransactionalDoc,
	"21-m-message-nontransactional-doc.json":                test21MessageNontransactionalDoc,
	"22-m-message-captured-doc.json":                        test22MessageCapturedDoc,
	"23-txn-begin-doc.json":                                 test23TxnBeginDoc,
	"24-txn-end-doc.json":                                   test24TxnEndDoc,
	"25-txn-begin-nullschema-wrapper.json":                  test25TxnBeginNullschemaWrapper,
	"26-txn-end-nullschema-wrapper.json":                    test26TxnEndNullschemaWrapper,
	"27-c-create-schema-doc.json":                           test27CreateSchemaDoc,
	"28-u-update-doc.json":                                  test28UpdateDoc,
	"29-d-delete-doc.json":                                  test29DeleteDoc,
	"30-c-zoned-timestamp-nanos-doc.json":                   test30ZonedTimestampNanosDoc,
	"31-c-zoned-timestamp-offset-converted-doc.json":        test31ZonedTimestampOffsetConvertedDoc,
}

func TestDebeziumCorpus(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(dbzCorpusDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		if strings.HasSuffix(name, "-key.json") {
			if _, err := os.Stat(strings.TrimSuffix(f, "-key.json") + ".json"); err != nil {
				t.Errorf("%s has no value file", name)
			}
			continue
		}
		seen[name] = true
		if dbzCorpusCases[name] == nil {
			t.Errorf("corpus file %s has no test case", name)
		}
	}
	for name, check := range dbzCorpusCases {
		if !seen[name] {
			t.Errorf("test case %s has no corpus file", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			check(t)
		})
	}
}

// ---- helpers

// dbzReadCorpus returns a corpus file and its key file (nil when none).
func dbzReadCorpus(t testing.TB, name string) (key, value []byte) {
	t.Helper()
	value, err := os.ReadFile(filepath.Join(dbzCorpusDir, name))
	if err != nil {
		t.Fatal(err)
	}
	key, err = os.ReadFile(filepath.Join(dbzCorpusDir, strings.TrimSuffix(name, ".json")+"-key.json"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return key, value
}

// dbzDecodeCorpus decodes a corpus file with its key.
func dbzDecodeCorpus(t *testing.T, d *decode.Debezium, name string) decode.Envelope {
	t.Helper()
	key, value := dbzReadCorpus(t, name)
	env, err := d.DecodeJSON(key, value)
	if err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	return env
}

// dbzDec is an expected decimal; it is compared by its text, so its scale is
// asserted too (39.00 is not 39).
func dbzDec(s string) *apd.Decimal {
	d, _, err := apd.NewFromString(s)
	if err != nil {
		panic(err)
	}
	return d
}

// dbzWall is an expected wall-clock value (a zone-less timestamp): that wall
// clock in UTC.
func dbzWall(s string) time.Time {
	t, err := time.Parse("2006-01-02T15:04:05.999999999", s)
	if err != nil {
		panic(err)
	}
	return t
}

// dbzInstant is an expected UTC instant.
func dbzInstant(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func dbzLsn(n uint64) *uint64 { return &n }

// dbzSameValue compares a decoded value with an expected one: decimals by
// their text (scale included), times by dbzInstant and zone (UTC), raw JSON
// by bytes, and everything else by type and value.
func dbzSameValue(got, want any) bool {
	switch w := want.(type) {
	case float64:
		g, ok := got.(float64)
		return ok && (g == w || (g != g && w != w)) // NaN is NaN
	case *apd.Decimal:
		g, ok := got.(*apd.Decimal)
		return ok && g.String() == w.String()
	case time.Time:
		g, ok := got.(time.Time)
		return ok && g.Equal(w) && g.Location() == time.UTC
	case json.RawMessage:
		g, ok := got.(json.RawMessage)
		return ok && bytes.Equal(g, w)
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !dbzSameValue(g[i], w[i]) {
				return false
			}
		}
		return true
	}
	return reflect.TypeOf(got) == reflect.TypeOf(want) && reflect.DeepEqual(got, want)
}

func dbzDescribe(v any) string {
	switch x := v.(type) {
	case *apd.Decimal:
		return "decimal " + x.String()
	case time.Time:
		return "time " + x.Format(time.RFC3339Nano) + " (" + x.Location().String() + ")"
	case json.RawMessage:
		return "json " + string(x)
	}
	return fmt.Sprintf("%T %#v", v, v)
}

// dbzAssertRow checks a row column by column: the same columns, each with
// the expected value.
func dbzAssertRow(t *testing.T, label string, got, want change.Row) {
	t.Helper()
	if (got == nil) != (want == nil) {
		t.Errorf("%s = %v, want %v", label, got, want)
		return
	}
	for col, w := range want {
		g, ok := got[col]
		if !ok {
			t.Errorf("%s.%s is missing, want %s", label, col, dbzDescribe(w))
			continue
		}
		if !dbzSameValue(g, w) {
			t.Errorf("%s.%s = %s, want %s", label, col, dbzDescribe(g), dbzDescribe(w))
		}
	}
	for col, g := range got {
		if _, ok := want[col]; !ok {
			t.Errorf("%s.%s = %s is not expected", label, col, dbzDescribe(g))
		}
	}
}

func dbzAssertChange(t *testing.T, env decode.Envelope, op change.Op, table string) {
	t.Helper()
	if env.Kind != decode.KindChange {
		t.Fatalf("kind = %v, want change", env.Kind)
	}
	if env.Event.Op != op || env.Event.Table != table {
		t.Errorf("event = %v %s, want %v %s", env.Event.Op, env.Event.Table, op, table)
	}
	if !env.Event.Pos.IsZero() || env.Event.Resume != 0 {
		t.Errorf("Pos = %v, Resume = %d: the decoder must leave positions to the caller", env.Event.Pos, env.Event.Resume)
	}
}

func dbzAssertSequence(t *testing.T, got [2]*uint64, want [2]*uint64) {
	t.Helper()
	for i := range want {
		switch {
		case (got[i] == nil) != (want[i] == nil):
			t.Errorf("sequence[%d] = %v, want %v", i, got[i], want[i])
		case got[i] != nil && *got[i] != *want[i]:
			t.Errorf("sequence[%d] = %d, want %d", i, *got[i], *want[i])
		}
	}
}

func dbzAssertLSN(t *testing.T, src decode.SourceInfo, n uint64, text string) {
	t.Helper()
	if src.LSN != n || change.FormatLSN(src.LSN) != text {
		t.Errorf("lsn = %d (%s), want %d (%s)", src.LSN, change.FormatLSN(src.LSN), n, text)
	}
}

func dbzAssertCommitTime(t *testing.T, env decode.Envelope, want time.Time) {
	t.Helper()
	if !env.Event.CommitTime.Equal(want) || env.Event.CommitTime.Location() != time.UTC {
		t.Errorf("commit time = %v, want %v", env.Event.CommitTime, want)
	}
}

// dbzFieldError asserts err is a *decode.FieldError at path whose message
// shows value.
func dbzFieldError(t *testing.T, err error, path, value string) {
	t.Helper()
	var fe *decode.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error = %v, want a *decode.FieldError at %s", err, path)
	}
	if fe.Path != path || !strings.Contains(err.Error(), value) {
		t.Errorf("error = %q (path %q), want path %q naming %s", err, fe.Path, path, value)
	}
}

// ---- one case per corpus file

func test01OutboxSchema(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "01-c-outbox-schema.json")
	dbzAssertChange(t, env, change.Insert, "public.outbox")
	dbzAssertRow(t, "before", env.Event.Before, nil)
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"id":             "032c278f-3334-47c0-9e1a-6838bdeb51e4",
		"aggregate_type": "Order",
		"aggregate_id":   "032c278f-3334-47c0-9e1a-6838bdeb51e4",
		"type":           "CREATED",
		// A TEXT column holding JSON text stays text.
		"payload": `{"orderId":"032c278f-3334-47c0-9e1a-6838bdeb51e4","customerId":"1","item":"foo","quantity":2,"totalPrice":1000,"status":"CREATED","orderDate":"2024-06-29T16:56:12.430407"}`,
		"status":  "PENDING",
		// MicroTimestamp is dbzWall clock: 1719680162823282 µs, unshifted.
		"created_at": dbzWall("2024-06-29T16:56:02.823282"),
	})
	dbzAssertRow(t, "key", env.Key, change.Row{"id": "032c278f-3334-47c0-9e1a-6838bdeb51e4"})
	src := env.Source
	if src.Snapshot != "false" || src.IsSnapshot() || src.TxID != 752 || src.TsMs != 1719690972831 ||
		src.TsUs != 1719690972831867 || src.TsNs != 1719690972831867000 || src.Version != "2.6.2.Final" ||
		src.Connector != "postgresql" || src.Name != "orders" || src.DB != "order_db" {
		t.Errorf("source = %+v", src)
	}
	dbzAssertSequence(t, src.Sequence, [2]*uint64{nil, dbzLsn(26752656)})
	dbzAssertLSN(t, src, 26752656, "0/1983690")
	// source.ts_ms 1719690972831 = 2024-06-29T19:56:12.831Z; ts_ns adds the µs.
	dbzAssertCommitTime(t, env, dbzInstant("2024-06-29T19:56:12.831867Z"))
	if env.TxOrder != nil {
		t.Errorf("transaction = %+v, want nil (null in the payload)", env.TxOrder)
	}

	// The schema default of created_at, 1719677803987000, decodes through
	// the same field schema to 2024-06-29T16:16:43.987.
	_, value := dbzReadCorpus(t, "01-c-outbox-schema.json")
	value = bytes.Replace(value, []byte(`"created_at": 1719680162823282`), []byte(`"created_at": 1719677803987000`), 1)
	env, err := (&decode.Debezium{}).DecodeJSON(nil, value)
	if err != nil {
		t.Fatal(err)
	}
	if got := env.Event.After["created_at"]; !dbzSameValue(got, dbzWall("2024-06-29T16:16:43.987")) {
		t.Errorf("created_at default = %s, want 2024-06-29T16:16:43.987", dbzDescribe(got))
	}
}

func test02CustomersSchemaless(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "02-c-customers-schemaless.json")
	dbzAssertChange(t, env, change.Insert, "inventory.customers")
	dbzAssertRow(t, "before", env.Event.Before, nil)
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"id": int64(1005), "first_name": "Bob", "last_name": "Marley", "email": "bob@marley.com",
	})
	dbzAssertSequence(t, env.Source.Sequence, [2]*uint64{dbzLsn(34442256), dbzLsn(34466480)})
	dbzAssertLSN(t, env.Source, 34466480, "0/20DEAB0")
	dbzAssertCommitTime(t, env, dbzInstant("2024-12-11T08:38:31.010Z"))
	if env.Source.TxID != 767 || env.Source.TsUs != 0 {
		t.Errorf("source = %+v", env.Source)
	}
}

func test03AllTypesArraysSchema(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "03-c-all-types-arrays-schema.json")
	dbzAssertChange(t, env, change.Insert, "public.all_types")
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"id":          int64(1),
		"int2_column": int64(1), "int4_column": int64(2), "int8_column": int64(3),
		// JSON integers in float fields are accepted.
		"float4_column": 4.0, "float8_column": 5.0,
		"text_column": "test", "varchar_column": "test", "bpchar_column": "test",
		"bool_column": true,
		// AWWgvAA= = 01 65 A0 BC 00 = 6000000000, scale 9.
		"numeric_column": dbzDec("6.000000000"),
		// Wall clock 11:12:51; the timestamptz below is the same moment
		// in UTC (the writer's zone was UTC+9).
		"timestamp_column":    dbzWall("2024-06-26T11:12:51.219026"),
		"timestamptz_column":  dbzInstant("2024-06-26T02:12:51.219026Z"),
		"time_column":         "11:12:51.219026",
		"timetz_column":       "02:12:51.219026Z",
		"date_column":         dbzWall("2024-06-26T00:00:00"),
		"uuid_column":         "86f701e6-f8f8-4dc4-8cbd-ed84280b5b84",
		"int2_array_column":   []any{int64(1), int64(2)},
		"int4_array_column":   []any{int64(3), int64(4)},
		"int8_array_column":   []any{int64(5), int64(6)},
		"float4_array_column": []any{7.0, 8.0},
		"float8_array_column": []any{9.0, 10.0},
		"text_array_column":   []any{"test1", "test2"},
		"bool_array_column":   []any{true, false},
	})
	dbzAssertCommitTime(t, env, dbzInstant("2024-06-26T02:12:51.221Z"))
	dbzAssertLSN(t, env.Source, 11811869624, "2/C00AD3B8")
	dbzAssertSequence(t, env.Source.Sequence, [2]*uint64{dbzLsn(11811654816), dbzLsn(11811869624)})
}

func test04SnapshotFirstSchema(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "04-r-snapshot-first-schema.json")
	dbzAssertChange(t, env, change.Read, "inventory.customers")
	// "first" is not in the schema's Enum allowed list; it is kept.
	if env.Source.Snapshot != "first" || !env.Source.IsSnapshot() {
		t.Errorf("snapshot = %q", env.Source.Snapshot)
	}
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"id": int64(1001), "first_name": "Sally", "last_name": "Thomas", "email": "sally.thomas@acme.com",
	})
	dbzAssertSequence(t, env.Source.Sequence, [2]*uint64{nil, dbzLsn(36313560)})
	dbzAssertLSN(t, env.Source, 36313560, "0/22A19D8")
}

func test05SnapshotLastInDataCollectionSchema(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "05-r-snapshot-last-in-data-collection-schema.json")
	dbzAssertChange(t, env, change.Read, "inventory.customers")
	if env.Source.Snapshot != "last_in_data_collection" || !env.Source.IsSnapshot() {
		t.Errorf("snapshot = %q", env.Source.Snapshot)
	}
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"id": int64(1004), "first_name": "Anne", "last_name": "Kretchmar", "email": "annek@noanswer.org",
	})
	dbzAssertSequence(t, env.Source.Sequence, [2]*uint64{nil, dbzLsn(36313560)})
	dbzAssertLSN(t, env.Source, 36313560, "0/22A19D8")
}

func test06SnapshotTrueSchemaless(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "06-r-snapshot-true-schemaless.json")
	dbzAssertChange(t, env, change.Read, "inventory.customers")
	if env.Source.Snapshot != "true" || !env.Source.IsSnapshot() || env.Source.TsUs != 0 || env.Source.TxID != 596 {
		t.Errorf("source = %+v", env.Source)
	}
	// No sequence and no transaction key in 1.0.
	dbzAssertSequence(t, env.Source.Sequence, [2]*uint64{nil, nil})
	if env.TxOrder != nil {
		t.Errorf("transaction = %+v", env.TxOrder)
	}
	// The commit time is source.ts_ms, not the payload's ts_ms (…809).
	dbzAssertCommitTime(t, env, time.UnixMilli(1582540780807).UTC())
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"id": int64(1001), "first_name": "Sally", "last_name": "Thomas", "email": "sally.thomas@acme.com",
	})
}

func test07SnapshotLastOtherTypesSchemaless(t *testing.T) {
	name := "07-r-snapshot-last-other-types-schemaless.json"
	env := dbzDecodeCorpus(t, &decode.Debezium{}, name)
	dbzAssertChange(t, env, change.Read, "public.orders")
	if env.Source.Snapshot != "last" {
		t.Errorf("snapshot = %q", env.Source.Snapshot)
	}
	point := json.RawMessage(`{"srid":null,"wkb":"AQEAAAAAAAAAAADwPwAAAAAAAABA","x":1.0,"y":2.0}`)
	// Without declared types the values stay as the JSON has them.
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"o_key": int64(1), "o_boolean": false, "o_bit": true,
		"o_bytea": "ASNFZ4mrze8=",
		"o_json":  `{"k1": "v1", "k2": 11}`,
		"o_xml":   "<!--hahaha-->",
		"o_uuid":  "60f14fe2-f857-404a-b586-3b5375b3259f",
		"o_point": point,
		"o_enum":  "polar",
		"o_char":  "h", "o_varchar": "ha", "o_character": "h", "o_character_varying": "hahaha",
	})

	// With the declared types: bytea is bytes, jsonb raw JSON (its text
	// unchanged), BIT(1) a boolean.
	d := &decode.Debezium{ColumnTypes: map[string]map[string]string{"public.orders": {
		"o_key": "int4", "o_boolean": "boolean", "o_bit": "bit(1)", "o_bytea": "bytea", "o_json": "jsonb",
		"o_xml": "xml", "o_uuid": "uuid", "o_point": "point", "o_enum": "bear", "o_char": "char(1)",
		"o_varchar": "varchar(10)", "o_character": "character(1)", "o_character_varying": "character varying(10)",
	}}}
	env = dbzDecodeCorpus(t, d, name)
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"o_key": int64(1), "o_boolean": false, "o_bit": true,
		"o_bytea": []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef},
		"o_json":  json.RawMessage(`{"k1": "v1", "k2": 11}`),
		"o_xml":   "<!--hahaha-->",
		"o_uuid":  "60f14fe2-f857-404a-b586-3b5375b3259f",
		"o_point": point,
		"o_enum":  "polar",
		"o_char":  "h", "o_varchar": "ha", "o_character": "h", "o_character_varying": "hahaha",
	})
	// The point's WKB: little-endian Point (1.0, 2.0).
	var p struct{ Wkb []byte }
	if err := json.Unmarshal(env.Event.After["o_point"].(json.RawMessage), &p); err != nil {
		t.Fatal(err)
	}
	want := []byte{0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0x40}
	if !bytes.Equal(p.Wkb, want) {
		t.Errorf("wkb = % x, want % x", p.Wkb, want)
	}
}

func test08ReplicaFullDecimalsSchema(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "08-u-replica-full-decimals-schema.json")
	dbzAssertChange(t, env, change.Update, "inventory.customers")
	// REPLICA IDENTITY FULL: every column of the old row, nulls included.
	dbzAssertRow(t, "before", env.Event.Before, change.Row{
		"id": int64(1001), "first_name": "Sally", "last_name": "Thomas", "email": "sally.thomas@acme.com",
		"decimal_test": nil, "decimal_test_5": nil, "decimal_test_5_2": nil, "decimal_test_39": nil,
		"decimal_test_39_0": nil, "decimal_test_39_2": nil, "decimal_test_39_6": nil,
	})
	// after lacks decimal_test_39_0, which the schema declares: a null
	// key dropped by the producer, so NULL (a dropped column would be
	// missing from the schema too).
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"id": int64(1001), "first_name": "Sally", "last_name": "Thomas", "email": "sally.thomas@acme.com",
		"decimal_test_39_0": nil,
		"decimal_test":      dbzDec("123.45"), // VariableScaleDecimal {2, MDk=}
		"decimal_test_5":    dbzDec("123"),
		"decimal_test_5_2":  dbzDec("123.45"),
		"decimal_test_39":   dbzDec("58569102859845154622791691858438258688"),
		"decimal_test_39_2": dbzDec("585691028598451546227916918584382586.22"),
		"decimal_test_39_6": dbzDec("585691028598451546227916918584388.123456"), // 17 bytes
	})
	dbzAssertSequence(t, env.Source.Sequence, [2]*uint64{nil, dbzLsn(34049328)})
	if env.Event.Sparse {
		t.Error("a row image with a schema is Sparse: its schema lists the columns")
	}
}

func test09BeforeNullNumericSchema(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "09-u-before-null-numeric-schema.json")
	// before null with op u: REPLICA IDENTITY DEFAULT, an update all the same.
	dbzAssertChange(t, env, change.Update, "inventory.customers")
	dbzAssertRow(t, "before", env.Event.Before, nil)
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"id": int64(1001), "first_name": "Sally", "last_name": "Thomas", "email": "sally.thomas@acme.com",
		"numeric_test": dbzDec("123456.789"),
		"numeric_5":    dbzDec("1234"),
		"numeric_5_2":  dbzDec("568.01"),
		"numeric_5_6":  dbzDec("0.023456"), // precision 5 < scale 6
		"numeric_5_0":  dbzDec("5"),
		"numeric_39_0": dbzDec("58569102859845154622791691858438258688"),
		"numeric_39_2": dbzDec("5856910285984515462279169185843825868.22"), // 130 bits
		"numeric_39_6": dbzDec("585691028598451546227958438258688.123456"),
	})
}

func test10ReplicaFullNumericBoolSchema(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "10-u-replica-full-numeric-bool-schema.json")
	dbzAssertChange(t, env, change.Update, "inventory.customers")
	common := change.Row{
		"id": int64(1001), "first_name": "Sally", "last_name": "Thomas", "email": "sally.thomas@acme.com",
		"boolean_test": true, "bool_test": false, "bit_test": false,
	}
	before := dbzMaps(common, change.Row{
		"numeric_test": nil, "numeric_5": nil, "numeric_5_2": nil, "numeric_5_6": nil,
		"numeric_5_0": nil, "numeric_39_0": nil, "numeric_39_2": nil, "numeric_39_6": nil,
	})
	dbzAssertRow(t, "before", env.Event.Before, before)
	dbzAssertRow(t, "after", env.Event.After, dbzMaps(common, change.Row{
		"numeric_test": dbzDec("123456.789"),
		"numeric_5":    dbzDec("1234"),
		"numeric_5_2":  dbzDec("578.01"),
		"numeric_5_6":  dbzDec("0.023456"),
		"numeric_5_0":  dbzDec("5"),
		"numeric_39_0": dbzDec("58569102859845154622791691858438258688"),
		"numeric_39_2": dbzDec("585691859845154622791691858438258688.22"),
		"numeric_39_6": dbzDec("585691028591691858438258688.123456"), // 14 bytes
	}))
	dbzAssertSequence(t, env.Source.Sequence, [2]*uint64{dbzLsn(37133376), dbzLsn(37158360)})
}

func dbzMaps(a, b change.Row) change.Row {
	out := change.Row{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func test11ReplicaFullMoneySchema(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "11-u-replica-full-money-schema.json")
	dbzAssertChange(t, env, change.Update, "inventory.customers")
	row := change.Row{"id": int64(1001), "first_name": "Sally", "last_name": "Thomas", "email": "sally.thomas@acme.com"}
	dbzAssertRow(t, "before", env.Event.Before, dbzMaps(row, change.Row{"money_test": nil}))
	// MONEY: scale 2 and no precision parameter.
	dbzAssertRow(t, "after", env.Event.After, dbzMaps(row, change.Row{"money_test": dbzDec("123456.78")}))
}

func test12ToastPlaceholderBeforeNullSchemaless(t *testing.T) {
	name := "12-u-toast-placeholder-before-null-schemaless.json"
	d := &decode.Debezium{ColumnTypes: map[string]map[string]string{"inventory.authors": {
		"id": "integer", "first_name": "text", "last_name": "text", "biography": "text", "dob": "timestamp",
	}}}
	env := dbzDecodeCorpus(t, d, name)
	// 3.x puts transaction before op; order does not matter.
	dbzAssertChange(t, env, change.Update, "inventory.authors")
	dbzAssertRow(t, "before", env.Event.Before, nil)
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"id": int64(1001), "first_name": "Tom", "last_name": "Wolfe",
		// The TOAST placeholder is no value: unchanged.
		"biography": change.Unchanged,
		// A negative MicroTimestamp: −1257206400000000 µs.
		"dob": dbzWall("1930-03-01T00:00:00"),
	})
	dbzAssertRow(t, "key", env.Key, change.Row{"id": int64(1001)})
	dbzAssertCommitTime(t, env, dbzInstant("2025-05-05T10:18:35.942179Z"))
	if env.Source.TsNs != 1746440315942179000 {
		t.Errorf("ts_ns = %d", env.Source.TsNs)
	}

	// Without declared types the placeholder is still unchanged; dob is
	// then the bare integer (only the schema tells µs from ms).
	env = dbzDecodeCorpus(t, &decode.Debezium{}, name)
	if env.Event.After["biography"] != change.Unchanged || env.Event.After["dob"] != int64(-1257206400000000) {
		t.Errorf("after = %v", env.Event.After)
	}

	// A configured placeholder replaces the default one: the default
	// string is then an ordinary value.
	d = &decode.Debezium{UnavailablePlaceholder: "__toasted"}
	env = dbzDecodeCorpus(t, d, name)
	if env.Event.After["biography"] != "__debezium_unavailable_value" {
		t.Errorf("biography = %v with another placeholder configured", env.Event.After["biography"])
	}
}

func test13ReplicaFullSchemaless(t *testing.T) {
	name := "13-u-replica-full-schemaless.json"
	env := dbzDecodeCorpus(t, &decode.Debezium{}, name)
	dbzAssertChange(t, env, change.Update, "inventory.products")
	// Without a schema, 1.0 is the exact decimal of its text.
	dbzAssertRow(t, "before", env.Event.Before, change.Row{
		"id": int64(106), "name": "hammer", "description": "16oz carpenter's hammer", "weight": dbzDec("1.0"),
	})
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"id": int64(106), "name": "hammer", "description": "18oz carpenter hammer", "weight": dbzDec("1.0"),
	})
	d := &decode.Debezium{ColumnTypes: map[string]map[string]string{"inventory.products": {"weight": "double precision"}}}
	env = dbzDecodeCorpus(t, d, name)
	if got := env.Event.Before["weight"]; got != 1.0 {
		t.Errorf("weight = %s, want float64 1", dbzDescribe(got))
	}
}

func test14GsonReserializedDecimalsZonedSchemaless(t *testing.T) {
	name := "14-u-gson-reserialized-decimals-zoned-schemaless.json"
	types := map[string]string{
		"ticket_price": "numeric(10,2)", "surcharge_applied": "numeric(10,2)", "discount": "numeric(10,2)",
		"date_created": "timestamptz", "is_notified_email": "timestamptz", "date_modified": "timestamptz",
		"purchase_time": "timestamp with time zone", "extra": "jsonb",
	}
	d := &decode.Debezium{ColumnTypes: map[string]map[string]string{"public.tickets": types}}
	env := dbzDecodeCorpus(t, d, name)
	dbzAssertChange(t, env, change.Update, "public.tickets")
	// Gson dropped before and transaction: absent reads as null.
	dbzAssertRow(t, "before", env.Event.Before, nil)
	if !env.Event.Sparse {
		t.Error("a schemaless row image is not Sparse: a key dropped for null would read as a dropped column")
	}
	if env.TxOrder != nil {
		t.Errorf("transaction = %+v", env.TxOrder)
	}
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		// Dzw\u003d is Dzw= = 0f3c = 3900; with the declared scale 2: 39.00.
		"ticket_price": dbzDec("39.00"), "surcharge_applied": dbzDec("3.00"), "discount": dbzDec("0.00"),
		"owner_id": int64(1234), "ticket_count": int64(1),
		"date_created":      dbzInstant("2024-02-23T08:52:14.431487Z"),
		"is_notified_email": dbzInstant("2024-02-23T08:52:45.518661Z"),
		"date_modified":     dbzInstant("2024-02-23T08:52:45.519039Z"),
		"purchase_time":     dbzInstant("2024-02-23T08:52:14.431002Z"),
		"extra":             json.RawMessage(`{}`),
		"id":                int64(1111), "validated_count": int64(0), "is_transferable": true,
		"order_id": int64(2222), "plan_id": int64(3333), "status": int64(1),
	})
	dbzAssertLSN(t, env.Source, 25069631224, "5/D64436F8")
	dbzAssertSequence(t, env.Source.Sequence, [2]*uint64{dbzLsn(25069089520), dbzLsn(25069631224)})

	// Without the scale the decoder does not guess: it fails naming the
	// column (the first bad one, by name).
	types = map[string]string{"ticket_price": "numeric", "surcharge_applied": "numeric", "discount": "numeric"}
	d = &decode.Debezium{ColumnTypes: map[string]map[string]string{"public.tickets": types}}
	key, value := dbzReadCorpus(t, name)
	_, err := d.DecodeJSON(key, value)
	dbzFieldError(t, err, "value.after.discount", `"AA=="`)

	// Without declared types the base64 stays text: no decimal is made up.
	env = dbzDecodeCorpus(t, &decode.Debezium{}, name)
	if env.Event.After["ticket_price"] != "Dzw=" || env.Event.After["date_created"] != "2024-02-23T08:52:14.431487Z" {
		t.Errorf("after = %v", env.Event.After)
	}
}

func test15CustomersSchema(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "15-d-customers-schema.json")
	dbzAssertChange(t, env, change.Delete, "inventory.customers")
	dbzAssertRow(t, "before", env.Event.Before, change.Row{
		"id": int64(1004), "first_name": "Anne", "last_name": "Kretchmar", "email": "annek@noanswer.org",
	})
	dbzAssertRow(t, "after", env.Event.After, nil)
}

func test16ProductsFullBeforeSchema(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "16-d-products-full-before-schema.json")
	dbzAssertChange(t, env, change.Delete, "inventory.products")
	dbzAssertRow(t, "before", env.Event.Before, change.Row{
		"id": int64(111), "name": "scooter", "description": "Big 2-wheel scooter ", "weight": 5.17,
	})
	dbzAssertRow(t, "after", env.Event.After, nil)
	// 1.x: no sequence, and an unnamed transaction struct (null here).
	dbzAssertSequence(t, env.Source.Sequence, [2]*uint64{nil, nil})
}

func test17ProductsFullBeforeSchemaless(t *testing.T) {
	name := "17-d-products-full-before-schemaless.json"
	env := dbzDecodeCorpus(t, &decode.Debezium{}, name)
	dbzAssertChange(t, env, change.Delete, "inventory.products")
	dbzAssertRow(t, "before", env.Event.Before, change.Row{
		"id": int64(111), "name": "scooter", "description": "Big 2-wheel scooter ", "weight": dbzDec("5.17"),
	})
	dbzAssertRow(t, "after", env.Event.After, nil)
	d := &decode.Debezium{ColumnTypes: map[string]map[string]string{"inventory.products": {"weight": "float8"}}}
	env = dbzDecodeCorpus(t, d, name)
	if got := env.Event.Before["weight"]; got != 5.17 {
		t.Errorf("weight = %s, want float64 5.17", dbzDescribe(got))
	}
}

func test18TombstoneDoc(t *testing.T) {
	_, value := dbzReadCorpus(t, "18-tombstone-doc.json")
	// The tombstone carries the key of the delete before it (15).
	env, err := (&decode.Debezium{}).DecodeJSON([]byte(`{"id":1004}`), value)
	if err != nil {
		t.Fatal(err)
	}
	if env.Kind != decode.KindTombstone || env.Event.Op != 0 || env.Event.Before != nil || env.Event.After != nil {
		t.Errorf("envelope = %+v, want a tombstone and no event", env)
	}
	dbzAssertRow(t, "key", env.Key, change.Row{"id": int64(1004)})
	// An empty value and a wrapper with a null payload are tombstones too.
	for _, v := range []string{"", " ", `{"schema":null,"payload":null}`} {
		if env, err := (&decode.Debezium{}).DecodeJSON(nil, []byte(v)); err != nil || env.Kind != decode.KindTombstone {
			t.Errorf("value %q: %v, %v", v, env.Kind, err)
		}
	}
}

func test19TruncateDoc(t *testing.T) {
	_, value := dbzReadCorpus(t, "19-t-truncate-doc.json")
	env, err := (&decode.Debezium{}).DecodeJSON([]byte("null"), value) // a truncate's key is null
	if err != nil {
		t.Fatal(err)
	}
	dbzAssertChange(t, env, change.Truncate, "public.customers")
	if env.Event.Before != nil || env.Event.After != nil || env.Key != nil {
		t.Errorf("truncate has rows %v %v or key %v", env.Event.Before, env.Event.After, env.Key)
	}
	// The doc's JSON boolean snapshot reads as "false".
	if env.Source.Snapshot != "false" || env.Source.TxID != 556 {
		t.Errorf("source = %+v", env.Source)
	}
	dbzAssertCommitTime(t, env, dbzInstant("2019-05-28T08:58:24.863112Z"))
}

func test20MessageTransactionalDoc(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "20-m-message-transactional-doc.json")
	if env.Kind != decode.KindMessage || env.Message == nil {
		t.Fatalf("envelope = %+v, want a message", env)
	}
	// Ymfy is 62 67 F2 ("bar" would be YmFy): the raw bytes.
	if env.Message.Prefix != "foo" || !bytes.Equal(env.Message.Content, []byte{0x62, 0x67, 0xf2}) || !env.Message.Transactional {
		t.Errorf("message = %+v", *env.Message)
	}
	if env.Event.Table != "" || env.Source.TxID != 556 || env.Source.Schema != "" {
		t.Errorf("event %+v, source %+v", env.Event, env.Source)
	}
}

func test21MessageNontransactionalDoc(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "21-m-message-nontransactional-doc.json")
	if env.Kind != decode.KindMessage || env.Message == nil {
		t.Fatalf("envelope = %+v, want a message", env)
	}
	// No txId: not transactional.
	if env.Message.Prefix != "foo" || !bytes.Equal(env.Message.Content, []byte{0x62, 0x67, 0xf2}) || env.Message.Transactional {
		t.Errorf("message = %+v", *env.Message)
	}
	if env.Source.TxID != 0 {
		t.Errorf("txId = %d", env.Source.TxID)
	}
}

func test22MessageCapturedDoc(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "22-m-message-captured-doc.json")
	if env.Kind != decode.KindMessage || env.Message == nil {
		t.Fatalf("envelope = %+v, want a message", env)
	}
	want := `{"id": 1, "item": "Debezium in Action", "status": "ENTERED", "quantity": 2, "totalPrice": 39.98}`
	if env.Message.Prefix != "test-prefix" || string(env.Message.Content) != want || !env.Message.Transactional {
		t.Errorf("message = %q %q", env.Message.Prefix, env.Message.Content)
	}
	dbzAssertRow(t, "key", env.Key, change.Row{"prefix": "test-prefix"})
	dbzAssertSequence(t, env.Source.Sequence, [2]*uint64{dbzLsn(26997744), dbzLsn(26997904)})
}

func dbzAssertTx(t *testing.T, env decode.Envelope, kind decode.Kind, want decode.TxInfo) {
	t.Helper()
	if env.Kind != kind || env.Tx == nil {
		t.Fatalf("envelope = %+v, want %v", env, kind)
	}
	if !reflect.DeepEqual(*env.Tx, want) {
		t.Errorf("tx = %+v, want %+v", *env.Tx, want)
	}
	wantOp := change.Op(0)
	if kind == decode.KindTxEnd {
		wantOp = change.Commit
	}
	if env.Event.Op != wantOp {
		t.Errorf("op = %v, want %v", env.Event.Op, wantOp)
	}
	dbzAssertCommitTime(t, env, time.UnixMilli(want.TsMs).UTC())
	var sum int64
	for _, dc := range env.Tx.DataCollections {
		sum += dc.EventCount
	}
	if sum != env.Tx.EventCount {
		t.Errorf("event_count %d is not the sum of data_collections %d", env.Tx.EventCount, sum)
	}
}

func test23TxnBeginDoc(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "23-txn-begin-doc.json")
	dbzAssertTx(t, env, decode.KindTxBegin, decode.TxInfo{ID: "571:53195829", TxID: 571, LSN: 53195829, TsMs: 1486500577125})
}

func test24TxnEndDoc(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "24-txn-end-doc.json")
	dbzAssertTx(t, env, decode.KindTxEnd, decode.TxInfo{ID: "571:53195832", TxID: 571, LSN: 53195832, EventCount: 2,
		DataCollections: []decode.DataCollection{{Name: "s1.a", EventCount: 1}, {Name: "s2.a", EventCount: 1}}, TsMs: 1486500577691})
	// BEGIN and END ids differ; the txId matches them.
	begin := dbzDecodeCorpus(t, &decode.Debezium{}, "23-txn-begin-doc.json")
	if begin.Tx.ID == env.Tx.ID || begin.Tx.TxID != env.Tx.TxID {
		t.Errorf("BEGIN %q / END %q", begin.Tx.ID, env.Tx.ID)
	}
}

func test25TxnBeginNullschemaWrapper(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "25-txn-begin-nullschema-wrapper.json")
	dbzAssertTx(t, env, decode.KindTxBegin, decode.TxInfo{ID: "35352:3962948040", TxID: 35352, LSN: 3962948040, TsMs: 1704269323180})
	if change.FormatLSN(env.Tx.LSN) != "0/EC35C9C8" {
		t.Errorf("lsn = %s", change.FormatLSN(env.Tx.LSN))
	}
}

func test26TxnEndNullschemaWrapper(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "26-txn-end-nullschema-wrapper.json")
	dbzAssertTx(t, env, decode.KindTxEnd, decode.TxInfo{ID: "35352:3962950064", TxID: 35352, LSN: 3962950064, EventCount: 11,
		DataCollections: []decode.DataCollection{{Name: "public.orders_tx", EventCount: 5}, {Name: "public.person", EventCount: 6}},
		TsMs:            1704269323180})
	if change.FormatLSN(env.Tx.LSN) != "0/EC35D1B0" {
		t.Errorf("lsn = %s", change.FormatLSN(env.Tx.LSN))
	}
	begin := dbzDecodeCorpus(t, &decode.Debezium{}, "25-txn-begin-nullschema-wrapper.json")
	if begin.Tx.ID == env.Tx.ID || begin.Tx.TxID != env.Tx.TxID {
		t.Errorf("BEGIN %q / END %q", begin.Tx.ID, env.Tx.ID)
	}
}

func test27CreateSchemaDoc(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "27-c-create-schema-doc.json")
	// The doc's schema names the row PostgreSQL_server.inventory.customers
	// but source.schema is public: the table comes from source.
	dbzAssertChange(t, env, change.Insert, "public.customers")
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"id": int64(1), "first_name": "Anne", "last_name": "Kretchmar", "email": "annek@noanswer.org",
	})
	// snapshot is a JSON boolean in the docs (declared boolean): "true".
	if env.Source.Snapshot != "true" || env.Source.TxID != 555 {
		t.Errorf("source = %+v", env.Source)
	}
	// sequence has no field in the schema's source struct; it is read anyway.
	dbzAssertSequence(t, env.Source.Sequence, [2]*uint64{dbzLsn(24023119), dbzLsn(24023128)})
	dbzAssertCommitTime(t, env, dbzInstant("2019-05-28T08:58:24.863123Z"))
}

func test28UpdateDoc(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "28-u-update-doc.json")
	dbzAssertChange(t, env, change.Update, "public.customers")
	// The doc's before has only the key; nothing is made up for the rest.
	dbzAssertRow(t, "before", env.Event.Before, change.Row{"id": int64(1)})
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"id": int64(1), "first_name": "Anne Marie", "last_name": "Kretchmar", "email": "annek@noanswer.org",
	})
	// The commit time is source's (2019), not the payload's ts_ms (2016).
	dbzAssertCommitTime(t, env, dbzInstant("2019-05-28T08:58:24.863769Z"))
}

func test29DeleteDoc(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{}, "29-d-delete-doc.json")
	dbzAssertChange(t, env, change.Delete, "public.customers")
	dbzAssertRow(t, "before", env.Event.Before, change.Row{"id": int64(1)})
	dbzAssertRow(t, "after", env.Event.After, nil)
	dbzAssertCommitTime(t, env, dbzInstant("2019-05-28T08:58:24.863852Z"))
}

var dbzZonedTypes = map[string]map[string]string{"public.customers": {"created_at": "timestamptz"}}

func test30ZonedTimestampNanosDoc(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{ColumnTypes: dbzZonedTypes}, "30-c-zoned-timestamp-nanos-doc.json")
	dbzAssertChange(t, env, change.Insert, "public.customers")
	// +00:00 as well as Z, and nine fraction digits.
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"id": int64(1), "first_name": "Anne", "last_name": "Kretchmar", "email": "annek@noanswer.org",
		"created_at": dbzInstant("2011-01-11T16:40:30.123456789Z"),
	})
}

func test31ZonedTimestampOffsetConvertedDoc(t *testing.T) {
	env := dbzDecodeCorpus(t, &decode.Debezium{ColumnTypes: dbzZonedTypes}, "31-c-zoned-timestamp-offset-converted-doc.json")
	dbzAssertChange(t, env, change.Insert, "public.customers")
	// −05:00 is the same dbzInstant as 30's; source.id and event_timestamp
	// are ignored.
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"id": int64(1), "first_name": "Anne", "last_name": "Kretchmar", "email": "annek@noanswer.org",
		"created_at": dbzInstant("2011-01-11T16:40:30.123456789Z"),
	})
	other := dbzDecodeCorpus(t, &decode.Debezium{ColumnTypes: dbzZonedTypes}, "30-c-zoned-timestamp-nanos-doc.json")
	if a, b := env.Event.After["created_at"].(time.Time), other.Event.After["created_at"].(time.Time); !a.Equal(b) {
		t.Errorf("%v and %v are not the same instant", a, b)
	}
}

// ---- shared by other tests

// dbzUnscaled encodes an dbzUnscaled decimal value as Debezium does:
// BigInteger.toByteArray, base64.
func dbzUnscaled(n string) string {
	var b big.Int
	b.SetString(n, 10)
	var raw []byte
	if b.Sign() >= 0 {
		raw = b.Bytes()
		if len(raw) == 0 || raw[0]&0x80 != 0 {
			raw = append([]byte{0}, raw...)
		}
	} else {
		// two's complement of the minimal width
		width := (b.BitLen()+8)/8 + 0
		mod := new(big.Int).Lsh(big.NewInt(1), uint(width*8))
		v := new(big.Int).Add(&b, mod)
		raw = v.FillBytes(make([]byte, width))
		for len(raw) > 1 && raw[0] == 0xff && raw[1]&0x80 != 0 {
			raw = raw[1:]
		}
	}
	return base64.StdEncoding.EncodeToString(raw)
}
