package decode_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/decode"
)

// dbzFuzzTypes declares column types for some corpus tables, so the
// fuzzer reaches the typed schemaless path as well as the plain one.
var dbzFuzzTypes = map[string]map[string]string{
	"public.tickets": {"ticket_price": "numeric(10,2)", "discount": "numeric", "date_created": "timestamptz",
		"extra": "jsonb", "owner_id": "int8"},
	"public.orders":     {"o_bytea": "bytea", "o_json": "jsonb", "o_bit": "bit(1)", "o_point": "point"},
	"inventory.authors": {"dob": "timestamp(3)", "biography": "text"},
	"public.customers":  {"created_at": "timestamptz", "id": "int4[]"},
	"inventory.products": {"weight": "float8", "description": "time", "name": "date",
		"id": "interval"},
}

// FuzzDebeziumJSON feeds arbitrary keys and values to DecodeJSON, seeded
// with the corpus (each value with its key) and small records of every
// value form.
//
// Invariant: DecodeJSON never panics and is deterministic: decoding the
// same record again (when its schema is known and JsonConverter's compact
// wrapper is recognized without parsing the schema) gives the same
// envelope or the same error. Bad input
// yields a *decode.FieldError whose Path names the part of the record
// that is wrong ("value…" or "key…"). Good input yields an envelope whose
// kind matches its contents: a change names a schema-qualified table and
// carries the images its op implies, rows hold only change.Row's value
// types (times in UTC, valid raw JSON), and the unavailable-value
// placeholder never survives as a column value.
func FuzzDebeziumJSON(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(dbzCorpusDir, "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		if strings.HasSuffix(file, "-key.json") {
			continue
		}
		value, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		key, _ := os.ReadFile(strings.TrimSuffix(file, ".json") + "-key.json")
		f.Add(key, value)
		// Compact, as JsonConverter writes it: the second decode of a
		// record then takes the known-schema path.
		var buf bytes.Buffer
		if json.Compact(&buf, value) == nil {
			f.Add(key, buf.Bytes())
		}
	}
	for _, s := range []struct{ schema, value string }{
		{dbzDecimalSchema("2"), `"/w=="`},
		{dbzLogical("string", "io.debezium.time.ZonedTimestamp"), `"+21016-11-04T06:51:30.123456789-05:30"`},
		{dbzLogical("int64", "io.debezium.time.MicroTime"), `86400000000`},
		{dbzLogical("int64", "io.debezium.time.MicroDuration"), `37091106780000`},
		{`{"type":"array","items":{"type":"int32","optional":true}}`, `[95,95,100]`},
		{`{"type":"map","keys":{"type":"string"},"values":{"type":"string"}}`, `{"a":"b"}`},
		{`{"type":"struct","name":"io.debezium.data.VariableScaleDecimal","fields":[{"type":"int32","field":"scale"},{"type":"bytes","field":"value"}]}`, `{"scale":2,"value":"MDk="}`},
		{"", `{"scale":2,"value":"MDk="}`},
		{"", `[1.5,"x",{"a":[]}]`},
	} {
		f.Add([]byte(nil), dbzEnvelope(s.schema, s.value))
	}
	f.Fuzz(func(t *testing.T, key, value []byte) {
		d := &decode.Debezium{ColumnTypes: dbzFuzzTypes}
		env, err := d.DecodeJSON(key, value)
		env2, err2 := d.DecodeJSON(key, value)
		dbzCheckDecoded(t, env, err, env2, err2)
	})
}

// FuzzAvroWire feeds arbitrary bytes to DecodeAvro, as a value and as a
// key, with the schemas of testdata/avro; it is seeded with records
// encoded with them (every value type, TOAST placeholders, delete,
// tombstone, BEGIN, END, message).
//
// Invariant: DecodeAvro never panics, never allocates more than the
// input's size per length or count it reads, and is deterministic. Bad
// input — a short frame, an unknown schema id, a truncated datum, a bad
// union branch, trailing bytes — yields a *decode.FieldError naming the
// field; good input obeys FuzzDebeziumJSON's envelope invariant.
func FuzzAvroWire(f *testing.F) {
	schemas, records := avroRecords(f)
	for _, r := range records {
		if r[0] != nil {
			f.Add(r[0])
		}
		if r[1] != nil {
			f.Add(r[1])
		}
	}
	d := &decode.Debezium{Schemas: schemas}
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := d.DecodeAvro(nil, data)
		env2, err2 := d.DecodeAvro(nil, data)
		dbzCheckDecoded(t, env, err, env2, err2)
		env, err = d.DecodeAvro(data, nil)
		env2, err2 = d.DecodeAvro(data, nil)
		dbzCheckDecoded(t, env, err, env2, err2)
	})
}

func dbzCheckDecoded(t *testing.T, env decode.Envelope, err error, env2 decode.Envelope, err2 error) {
	t.Helper()
	if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
		t.Fatalf("not deterministic: %v, then %v", err, err2)
	}
	if err != nil {
		var fe *decode.FieldError
		if !errors.As(err, &fe) || !(strings.HasPrefix(fe.Path, "value") || strings.HasPrefix(fe.Path, "key")) {
			t.Fatalf("error %q does not name the field", err)
		}
		return
	}
	if env.Kind != env2.Kind || env.Event.Op != env2.Event.Op || env.Event.Table != env2.Event.Table ||
		!env.Event.CommitTime.Equal(env2.Event.CommitTime) || env.Source.LSN != env2.Source.LSN ||
		!dbzSameRows(env.Event.Before, env2.Event.Before) || !dbzSameRows(env.Event.After, env2.Event.After) ||
		!dbzSameRows(env.Key, env2.Key) {
		t.Fatalf("not deterministic: %+v, then %+v", env, env2)
	}
	switch env.Kind {
	case decode.KindChange:
		if !strings.Contains(env.Event.Table, ".") {
			t.Fatalf("change of table %q", env.Event.Table)
		}
		switch env.Event.Op {
		case change.Insert, change.Read, change.Update:
			if env.Event.After == nil {
				t.Fatalf("%v without a new row", env.Event.Op)
			}
		case change.Delete:
		case change.Truncate:
			if env.Event.Before != nil || env.Event.After != nil {
				t.Fatal("truncate with rows")
			}
		default:
			t.Fatalf("change with op %v", env.Event.Op)
		}
	case decode.KindTombstone:
		if env.Event.Op != 0 {
			t.Fatalf("tombstone with op %v", env.Event.Op)
		}
	case decode.KindMessage:
		if env.Message == nil {
			t.Fatal("message without a message")
		}
	case decode.KindTxBegin, decode.KindTxEnd:
		if env.Tx == nil {
			t.Fatal("transaction metadata without Tx")
		}
	default:
		t.Fatalf("kind %v", env.Kind)
	}
	for _, row := range []change.Row{env.Event.Before, env.Event.After, env.Key} {
		for col, v := range row {
			if v == decode.DefaultUnavailablePlaceholder {
				t.Fatalf("column %s holds the placeholder as a value", col)
			}
			dbzCheckValue(t, col, v)
		}
	}
}

// dbzCheckValue checks that v is one of change.Row's value types.
func dbzCheckValue(t *testing.T, col string, v any) {
	switch x := v.(type) {
	case nil, bool, int64, float64, string, []byte, time.Duration:
	case *apd.Decimal:
		if x == nil {
			t.Fatalf("column %s: nil decimal", col)
		}
	case time.Time:
		if x.Location() != time.UTC {
			t.Fatalf("column %s: time in %v", col, x.Location())
		}
	case json.RawMessage:
		if !json.Valid(x) {
			t.Fatalf("column %s: invalid raw JSON %q", col, x)
		}
	case []any:
		for _, e := range x {
			dbzCheckValue(t, col, e)
		}
	default:
		if v != change.Unchanged {
			t.Fatalf("column %s: value of type %T", col, v)
		}
	}
}

// dbzSameRows compares two decodings of one row.
func dbzSameRows(a, b change.Row) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok {
			return false
		}
		if !dbzSameValue(vb, va) {
			return false
		}
	}
	return true
}
