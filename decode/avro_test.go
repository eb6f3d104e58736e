package decode_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/decode"
)

// The schemas in testdata/avro follow what Confluent's AvroConverter
// registers for Debezium's PostgreSQL connector: the envelope record
// <prefix>.<schema>.<table>.Envelope with before/after as ["null", Value],
// Connect semantic types in connect.name, connect.parameters and
// connect.type, optional fields as unions with null (the non-null branch
// first when the field has a default), io.debezium.connector.postgresql.Source,
// event.block, and the transaction and message topics' records.

const (
	avroKeyID     = 1
	avroValueID   = 2
	avroTxID      = 3
	avroMessageID = 4
	avroMsgKeyID  = 5
)

func avroSchemas(t testing.TB) decode.SchemaFiles {
	t.Helper()
	s, err := decode.LoadSchemaFiles(os.DirFS("testdata/avro"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// avroFrame encodes v with schema id in the Confluent wire format.
func avroFrame(t testing.TB, schemas decode.SchemaFiles, id int, v any) []byte {
	t.Helper()
	body, err := avro.Marshal(schemas[id], v)
	if err != nil {
		t.Fatalf("encode with schema %d: %v", id, err)
	}
	out := []byte{0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(id))
	return append(out, body...)
}

func avroSource() map[string]any {
	return map[string]any{
		"version": "2.7.0.Final", "connector": "postgresql", "name": "dbserver1", "ts_ms": int64(1719690972831),
		"snapshot": "false", "db": "postgres", "sequence": `["34442256","34466480"]`,
		"ts_us": int64(1719690972831867), "ts_ns": int64(1719690972831867000),
		"schema": "inventory", "table": "customers", "txId": int64(767), "lsn": int64(34466480), "xmin": nil,
	}
}

const avroValueName = "dbserver1.inventory.customers.Value"

// avroRow is a Value record with every column null but the required ones.
func avroRow(cols map[string]any) map[string]any {
	row := map[string]any{"id": 1004, "first_name": "Anne", "created_at": nil}
	for _, f := range []string{"small", "price", "tiny", "balance", "amount", "updated_at", "birthday", "opens",
		"stamp3", "span", "attrs", "uid", "mood", "ratio", "score", "active", "photo", "flags", "tags", "counts",
		"location", "seen_at", "bio"} {
		row[f] = nil
	}
	for k, v := range cols {
		row[k] = v
	}
	return row
}

// avroRecords returns Avro records (key, value) that Debezium would
// write: an update with every type, an update with unchanged TOAST
// columns, a delete and its tombstone, BEGIN and END, and a message.
func avroRecords(t testing.TB) (schemas decode.SchemaFiles, records [][2][]byte) {
	schemas = avroSchemas(t)
	key := avroFrame(t, schemas, avroKeyID, map[string]any{"id": 1004})
	full := avroRow(map[string]any{
		"small":      -7,
		"price":      []byte{0x30, 0x39}, // 12345, scale 2
		"tiny":       []byte{0x5b, 0xa0}, // 23456, scale 6 (precision 5)
		"balance":    []byte{0xfe, 0x1d, 0xed},
		"amount":     map[string]any{"io.debezium.data.VariableScaleDecimal": map[string]any{"scale": 3, "value": []byte{0x07, 0x5b, 0xcd, 0x15}}},
		"created_at": int64(1719680162823282),
		"updated_at": "2024-06-26T02:12:51.219026Z",
		"birthday":   19900,
		"opens":      int64(40371219026),
		"stamp3":     int64(1478267490123),
		"span":       int64(37091106780000),
		"attrs":      `{"k1": "v1", "k2": 11}`,
		"uid":        "86f701e6-f8f8-4dc4-8cbd-ed84280b5b84",
		"mood":       "happy",
		"ratio":      float32(0.1),
		"score":      5.17,
		"active":     true,
		"photo":      []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef},
		"flags":      []byte{3},
		"tags":       []any{"a", nil},
		"counts":     []any{3, 4},
		"location": map[string]any{"io.debezium.data.geometry.Point": map[string]any{
			"x": 1.0, "y": 2.0, "wkb": []byte{1, 2}, "srid": nil}},
		"seen_at": time.UnixMicro(1719680162823282).UTC(),
		"bio":     "a long text",
	})
	update := map[string]any{
		"before":      map[string]any{avroValueName: avroRow(nil)},
		"after":       map[string]any{avroValueName: full},
		"source":      avroSource(),
		"transaction": map[string]any{"event.block": map[string]any{"id": "767:34466480", "total_order": int64(2), "data_collection_order": int64(1)}},
		"op":          "u", "ts_ms": int64(1719690973574), "ts_us": nil, "ts_ns": nil,
	}
	const p = decode.DefaultUnavailablePlaceholder
	var pInts []any
	for _, b := range []byte(p) {
		pInts = append(pInts, int(b))
	}
	toast := map[string]any{
		"before": nil,
		"after": map[string]any{avroValueName: avroRow(map[string]any{
			"bio": p, "photo": []byte(p), "tags": []any{p}, "counts": pInts, "attrs": p,
		})},
		"source": avroSource(), "transaction": nil, "op": "u", "ts_ms": nil, "ts_us": nil, "ts_ns": nil,
	}
	del := map[string]any{
		"before": map[string]any{avroValueName: avroRow(nil)}, "after": nil,
		"source": avroSource(), "transaction": nil, "op": "d", "ts_ms": nil, "ts_us": nil, "ts_ns": nil,
	}
	begin := map[string]any{"status": "BEGIN", "id": "767:34442300", "event_count": nil, "data_collections": nil, "ts_ms": int64(1719690972831)}
	end := map[string]any{"status": "END", "id": "767:34466600", "event_count": int64(3),
		"data_collections": []any{map[string]any{"data_collection": "inventory.customers", "event_count": int64(3)}},
		"ts_ms":            int64(1719690972831)}
	src := avroSource()
	src["schema"], src["table"] = "", ""
	message := map[string]any{"op": "m", "ts_ms": nil, "source": src, "transaction": nil,
		"message": map[string]any{"prefix": "foo", "content": []byte{0x62, 0x67, 0xf2}}}
	records = [][2][]byte{
		{key, avroFrame(t, schemas, avroValueID, update)},
		{key, avroFrame(t, schemas, avroValueID, toast)},
		{key, avroFrame(t, schemas, avroValueID, del)},
		{key, nil},
		{nil, avroFrame(t, schemas, avroTxID, begin)},
		{nil, avroFrame(t, schemas, avroTxID, end)},
		{avroFrame(t, schemas, avroMsgKeyID, map[string]any{"prefix": "foo"}), avroFrame(t, schemas, avroMessageID, message)},
	}
	return schemas, records
}

func TestDebeziumAvro(t *testing.T) {
	t.Parallel()
	schemas, records := avroRecords(t)
	d := &decode.Debezium{Schemas: schemas}
	decodeAt := func(i int) decode.Envelope {
		t.Helper()
		env, err := d.DecodeAvro(records[i][0], records[i][1])
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		return env
	}

	// The same values the JSON path gives for the same columns.
	env := decodeAt(0)
	dbzAssertChange(t, env, change.Update, "inventory.customers")
	nulls := change.Row{"id": int64(1004), "first_name": "Anne", "created_at": nil}
	for _, f := range []string{"small", "price", "tiny", "balance", "amount", "updated_at", "birthday", "opens",
		"stamp3", "span", "attrs", "uid", "mood", "ratio", "score", "active", "photo", "flags", "tags", "counts",
		"location", "seen_at", "bio"} {
		nulls[f] = nil
	}
	dbzAssertRow(t, "before", env.Event.Before, nulls)
	dbzAssertRow(t, "after", env.Event.After, change.Row{
		"id": int64(1004), "first_name": "Anne",
		"small":      int64(-7),
		"price":      dbzDec("123.45"),
		"tiny":       dbzDec("0.023456"),
		"balance":    dbzDec("-1234.11"),
		"amount":     dbzDec("123456.789"),
		"created_at": dbzWall("2024-06-29T16:56:02.823282"),
		"updated_at": dbzInstant("2024-06-26T02:12:51.219026Z"),
		"birthday":   dbzWall("2024-06-26T00:00:00"),
		"opens":      "11:12:51.219026",
		"stamp3":     dbzWall("2016-11-04T13:51:30.123"),
		"span":       37091106780000 * time.Microsecond,
		"attrs":      json.RawMessage(`{"k1": "v1", "k2": 11}`),
		"uid":        "86f701e6-f8f8-4dc4-8cbd-ed84280b5b84",
		"mood":       "happy",
		"ratio":      0.1, // float32 0.1 reads as 0.1, not 0.10000000149011612
		"score":      5.17,
		"active":     true,
		"photo":      []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef},
		"flags":      []byte{3},
		"tags":       []any{"a", nil},
		"counts":     []any{int64(3), int64(4)},
		"location":   json.RawMessage(`{"srid":null,"wkb":"AQI=","x":1,"y":2}`),
		"seen_at":    dbzWall("2024-06-29T16:56:02.823282"), // Avro timestamp-micros without connect.name
		"bio":        "a long text",
	})
	dbzAssertRow(t, "key", env.Key, change.Row{"id": int64(1004)})
	dbzAssertSequence(t, env.Source.Sequence, [2]*uint64{dbzLsn(34442256), dbzLsn(34466480)})
	dbzAssertLSN(t, env.Source, 34466480, "0/20DEAB0")
	dbzAssertCommitTime(t, env, dbzInstant("2024-06-29T19:56:12.831867Z"))
	if env.Source.Snapshot != "false" || env.Source.TxID != 767 {
		t.Errorf("source = %+v", env.Source)
	}
	if env.TxOrder == nil || *env.TxOrder != (decode.TxOrder{ID: "767:34466480", TxID: 767, TotalOrder: 2, DataCollectionOrder: 1}) {
		t.Errorf("transaction = %+v", env.TxOrder)
	}

	// Unchanged TOAST columns in their Avro forms.
	env = decodeAt(1)
	for _, col := range []string{"bio", "photo", "tags", "counts", "attrs"} {
		if env.Event.After[col] != change.Unchanged {
			t.Errorf("after.%s = %s, want unchanged", col, dbzDescribe(env.Event.After[col]))
		}
	}
	if env.Event.Before != nil {
		t.Errorf("before = %v", env.Event.Before)
	}

	env = decodeAt(2)
	dbzAssertChange(t, env, change.Delete, "inventory.customers")
	if env.Event.After != nil || env.Event.Before["id"] != int64(1004) {
		t.Errorf("delete = %+v", env.Event)
	}

	env = decodeAt(3)
	if env.Kind != decode.KindTombstone || env.Key["id"] != int64(1004) {
		t.Errorf("tombstone = %+v", env)
	}

	env = decodeAt(4)
	dbzAssertTx(t, env, decode.KindTxBegin, decode.TxInfo{ID: "767:34442300", TxID: 767, LSN: 34442300, TsMs: 1719690972831})
	env = decodeAt(5)
	dbzAssertTx(t, env, decode.KindTxEnd, decode.TxInfo{ID: "767:34466600", TxID: 767, LSN: 34466600, EventCount: 3,
		DataCollections: []decode.DataCollection{{Name: "inventory.customers", EventCount: 3}}, TsMs: 1719690972831})

	env = decodeAt(6)
	if env.Kind != decode.KindMessage || env.Message == nil || env.Message.Prefix != "foo" ||
		!bytes.Equal(env.Message.Content, []byte{0x62, 0x67, 0xf2}) || !env.Message.Transactional {
		t.Errorf("message = %+v %+v", env, env.Message)
	}
	dbzAssertRow(t, "key", env.Key, change.Row{"prefix": "foo"})
}

func TestDebeziumAvroErrors(t *testing.T) {
	t.Parallel()
	schemas, records := avroRecords(t)
	good := records[0][1]
	d := &decode.Debezium{Schemas: schemas}
	overlong := append([]byte{}, good[:5]...)
	overlong = append(overlong, 0x02, 0x02, 0x00, 0xfe, 0xff, 0xff, 0xff, 0x0f) // before: the Value branch, id 1, small null, a first_name of 2^31-1 bytes
	cases := []struct {
		name  string
		value []byte
		path  string
		shows string
	}{
		{"short", []byte{0, 0, 0}, "value", "3 bytes"},
		{"magic byte", append([]byte{1}, good[1:]...), "value", "magic byte 1"},
		{"unknown id", append([]byte{0, 0, 0, 0, 9}, good[5:]...), "value", "schema id 9"},
		{"negative id", append([]byte{0, 0x80, 0, 0, 0}, good[5:]...), "value", "schema id 2147483648"},
		{"truncated", good[:len(good)-3], "value.ts_ms", "ends early"},
		{"trailing bytes", append(append([]byte{}, good...), 0), "value", "bytes left"},
		{"union branch", append(append([]byte{}, good[:5]...), 0x08), "value.before", "4"},
		{"length beyond the record", overlong, "value.before.first_name", "length"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := d.DecodeAvro(nil, tc.value)
			dbzFieldError(t, err, tc.path, tc.shows)
		})
	}
	if _, err := (&decode.Debezium{}).DecodeAvro(nil, good); err == nil || !strings.Contains(err.Error(), "SchemaSource") {
		t.Errorf("no schema source: %v", err)
	}
}

func TestSchemaRegistry(t *testing.T) {
	t.Parallel()
	text, err := os.ReadFile("testdata/avro/1-dbserver1.inventory.customers-key.avsc")
	if err != nil {
		t.Fatal(err)
	}
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		switch r.URL.Path {
		case "/schemas/ids/1":
			_ = json.NewEncoder(w).Encode(map[string]string{"schema": string(text)})
		case "/schemas/ids/6":
			_ = json.NewEncoder(w).Encode(map[string]string{"schema": `{"type":"record"}`, "schemaType": "PROTOBUF"})
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error_code":40403,"message":"Schema not found"}`))
		}
	}))
	defer srv.Close()
	reg := decode.NewSchemaRegistry(srv.URL+"/", srv.Client())
	for range 3 {
		s, err := reg.Schema(1)
		if err != nil {
			t.Fatal(err)
		}
		if s.(*avro.RecordSchema).FullName() != "dbserver1.inventory.customers.Key" {
			t.Errorf("schema = %s", s)
		}
	}
	if gets.Load() != 1 {
		t.Errorf("%d requests for one id, want 1 (cached)", gets.Load())
	}
	if _, err := reg.Schema(7); err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "40403") {
		t.Errorf("missing schema: %v", err)
	}
	if _, err := reg.Schema(6); err == nil || !strings.Contains(err.Error(), "PROTOBUF") {
		t.Errorf("protobuf schema: %v", err)
	}

	// The registry as a Debezium SchemaSource.
	key := []byte{0, 0, 0, 0, 1}
	key = binary.AppendUvarint(key, 2008) // zigzag 1004
	env, err := (&decode.Debezium{Schemas: reg}).DecodeAvro(key, nil)
	if err != nil || env.Kind != decode.KindTombstone || env.Key["id"] != int64(1004) {
		t.Errorf("tombstone via registry: %+v, %v", env, err)
	}
}

func TestLoadSchemaFiles(t *testing.T) {
	t.Parallel()
	s := avroSchemas(t)
	if len(s) != 5 {
		t.Errorf("%d schemas, want 5", len(s))
	}
	if _, err := s.Schema(42); err == nil {
		t.Error("schema 42 found")
	}
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/customers.avsc", []byte(`"string"`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := decode.LoadSchemaFiles(os.DirFS(dir)); err == nil || !strings.Contains(err.Error(), "customers.avsc") {
		t.Errorf("file without an id: %v", err)
	}
}
