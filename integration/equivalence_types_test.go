package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/decode"
	"github.com/tilefeed/tilefeed/decode/debeziumtest"
	"github.com/tilefeed/tilefeed/serve"
	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/transform"
)

// matrixCol is a column of the equivalence matrix: rows 1..4 take values
// (SQL literals), row 5 is NULL everywhere, and the update phase gives row
// 1 the value update.
type matrixCol struct {
	typedCol
	values [4]string
	update string
}

// matrixBig is a TOASTed text of 700,000 characters that compresses
// poorly, so it is stored out of line; rows not updated keep it as an
// unchanged-TOAST value in the stream.
const matrixBig = `(SELECT string_agg(md5(i::text || %d), '') FROM generate_series(1, 21875) i)`

// matrixCols are the types every path carries the same (typed). Each
// column's aggregates are what docs/types.md allows for its type.
var matrixCols = []matrixCol{
	{typedCol{"c_smallint", "smallint", "int", numberAggs}, [4]string{"32767", "-32768", "7", "0"}, "1"},
	{typedCol{"c_integer", "integer", "int", numberAggs}, [4]string{"2147483647", "-2147483648", "7", "8"}, "9"},
	{typedCol{"c_bigint", "bigint", "int", numberAggs}, [4]string{"9223372036854775807", "-9223372036854775808", "7", "-9"}, "1"},
	{typedCol{"c_numeric", "numeric", "numeric", numberAggs},
		[4]string{"12345.6789", "-0.0000000001", "12345678901234567890123456789012345678", "1.5"}, "99.99"},
	{typedCol{"c_numeric_38", "numeric(38,10)", "numeric", numberAggs},
		[4]string{"1234567890123456789012345678.1234567890", "0", "-1.5", "NULL"}, "2.5"},
	{typedCol{"c_real", "real", "float", numberAggs}, [4]string{"0.1", "'-Infinity'", "'NaN'", "1.5e30"}, "'Infinity'"},
	{typedCol{"c_double", "double precision", "float", numberAggs}, [4]string{"0.1", "'NaN'", "1e-300", "-2.5"}, "'Infinity'"},
	{typedCol{"c_bool", "bool", "bool", orderedAggs}, [4]string{"true", "false", "true", "NULL"}, "false"},
	{typedCol{"c_char", `char(3) COLLATE "C"`, "text", orderedAggs}, [4]string{"'ab'", "''", "'x'", "NULL"}, "'zz'"},
	{typedCol{"c_varchar", `varchar(20) COLLATE "C"`, "text", orderedAggs}, [4]string{"'héllo'", "''", "'b'", "'a'"}, "'c'"},
	{typedCol{"c_text", `text COLLATE "C"`, "text", orderedAggs},
		[4]string{`E'it''s "quoted"\nand\ttabbed'`, "''", "'b'", "NULL"}, "'changed'"},
	{typedCol{"c_bytea", "bytea", "bytea", orderedAggs}, [4]string{`'\x00ff10'`, `'\x'`, `'\xff'`, "NULL"}, `'\xabcd'`},
	{typedCol{"c_date", "date", "time", orderedAggs}, [4]string{"'2024-02-29'", "'0044-03-15 BC'", "'1970-01-01'", "NULL"}, "'2000-01-01'"},
	{typedCol{"c_time", "time", "string", orderedAggs}, [4]string{"'12:34:56.789'", "'24:00:00'", "'00:00:00'", "'00:00:00.000001'"}, "'01:00:00'"},
	{typedCol{"c_timestamp", "timestamp", "time", orderedAggs},
		[4]string{"'2024-01-02 03:04:05.123456'", "'0001-01-01 00:00:00 BC'", "'-infinity'", "'infinity'"}, "'1999-12-31 23:59:59.999999'"},
	{typedCol{"c_timestamptz", "timestamptz", "time", orderedAggs},
		[4]string{"'2024-01-02 03:04:05.5+05:30'", "'infinity'", "'-infinity'", "'0010-01-01 00:00:00+00 BC'"}, "'2000-01-01 00:00:00+00'"},
	{typedCol{"c_uuid", "uuid", "string", orderedAggs},
		[4]string{"'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", "'00000000-0000-0000-0000-000000000000'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'", "NULL"},
		"'11111111-1111-1111-1111-111111111111'"},
	{typedCol{"c_json", "json", "json", []string{"count", "last"}}, [4]string{`'{"b": 1,  "a": [1.10, null]}'`, "'[]'", "'null'", "'1'"}, `'{"x": "y"}'`},
	{typedCol{"c_jsonb", "jsonb", "json", unorderedAggs}, [4]string{`'{"b": 1,  "a": [1.10, null]}'`, "'[]'", "'null'", "'1'"}, `'{"x": "y"}'`},
	{typedCol{"c_enum", "mood", "string", unorderedAggs}, [4]string{"'happy'", "'sad'", "'ok'", "NULL"}, "'ok'"},
	{typedCol{"c_int_array", "int[]", "array", unorderedAggs}, [4]string{"'{1,NULL,-3}'", "'{}'", "'{-2147483648}'", "'{NULL}'"}, "'{5}'"},
	{typedCol{"c_text_array", "text[]", "array", unorderedAggs},
		[4]string{`'{a,"b c",NULL,"NULL"}'`, "'{}'", "'{é}'", `'{""}'`}, "'{z}'"},
	{typedCol{"c_inet", "inet", "string", unorderedAggs}, [4]string{"'192.168.0.1/24'", "'::1'", "'10.0.0.1'", "NULL"}, "'1.1.1.1'"},
	{typedCol{"c_cidr", "cidr", "string", unorderedAggs}, [4]string{"'10.0.0.0/8'", "'::/0'", "'2001:db8::/32'", "NULL"}, "'0.0.0.0/0'"},
	{typedCol{"c_range", "int4range", "string", unorderedAggs}, [4]string{"'[1,10)'", "'empty'", "'(,5]'", "NULL"}, "'[2,3]'"},
	{typedCol{"c_dom_int", "dom_int", "int", numberAggs}, [4]string{"11", "22", "33", "NULL"}, "44"},
	{typedCol{"c_dom_num", "dom_num", "numeric", numberAggs}, [4]string{"1.5", "2.25", "3", "NULL"}, "4.5"},
	{typedCol{"c_dom_text", `dom_text COLLATE "C"`, "text", orderedAggs}, [4]string{"'a'", "'b'", "'c'", "NULL"}, "'d'"},
	{typedCol{"c_big", "text", "text", []string{"count"}},
		[4]string{fmt.Sprintf(matrixBig, 1), fmt.Sprintf(matrixBig, 2), "NULL", "'small'"}, "'small'"},
}

// matrixLossyCols are the types whose Debezium encoding differs from
// what pgoutput gives (docs/debezium-decoding.md, "Types Debezium
// changes"): every path of tilefeed's own reads them alike, and the
// Debezium paths must serve them by the documented rule (matrixRule).
var matrixLossyCols = []matrixCol{
	{typedCol{"c_numeric_zeros", "numeric", "numeric", numberAggs}, [4]string{"1.00", "2.50", "-0.0", "NULL"}, "10.10"},
	{typedCol{"c_money", "money", "string", unorderedAggs}, [4]string{"1234.56", "-0.01", "0", "NULL"}, "1000000.01"},
	{typedCol{"c_timetz", "timetz", "string", unorderedAggs}, [4]string{"'12:34:56.5+02'", "'00:00:00-08'", "'23:59:59-12'", "NULL"}, "'01:00:00+01'"},
	{typedCol{"c_interval", "interval", "interval", unorderedAggs},
		[4]string{"'1 day 02:03:04.5'", "'1 year 2 mons 3 days 04:05:06'", "'-3 days'", "NULL"}, "'00:00:00.000001'"},
}

// matrixDirectCols are values and types Debezium's PostgreSQL connector
// cannot carry as tilefeed reads them (numeric NaN and ±Infinity under
// decimal.handling.mode=precise, date ±infinity, geometric types, a
// negative numeric scale, multi-dimensional arrays): the
// direct paths must agree on them and the encoder must refuse them.
var matrixDirectCols = []matrixCol{
	{typedCol{"c_xnum", "numeric", "numeric", numberAggs}, [4]string{"'NaN'", "'Infinity'", "'-Infinity'", "1"}, "'-Infinity'"},
	{typedCol{"c_xdate", "date", "time", orderedAggs}, [4]string{"'infinity'", "'-infinity'", "'2000-01-01'", "NULL"}, "'-infinity'"},
	{typedCol{"c_numeric_neg", "numeric(5,-2)", "numeric", numberAggs}, [4]string{"12345", "99", "-500", "NULL"}, "100"},
	{typedCol{"c_int_array2", "int[]", "array", unorderedAggs}, [4]string{"'{{1,2},{3,4}}'", "'{{NULL}}'", "'{{{1}},{{2}}}'", "NULL"}, "'{{5,6}}'"},
	{typedCol{"c_text_array2", "text[]", "array", unorderedAggs}, [4]string{"'{{a,b},{c,NULL}}'", `'{{""}}'`, "'{{x}}'", "NULL"}, "'{{z}}'"},
	{typedCol{"c_point", "point", "string", []string{"count", "last"}}, [4]string{"'(1,2)'", "'(-1.5,0)'", "NULL", "'(0,0)'"}, "'(3,4)'"},
}

var matrixTables = []struct {
	name string
	cols []matrixCol
}{{"typed", matrixCols}, {"typed_l", matrixLossyCols}, {"typed_x", matrixDirectCols}}

func matrixTyped(cols []matrixCol) []typedCol {
	out := make([]typedCol, len(cols))
	for i, c := range cols {
		out[i] = c.typedCol
	}
	return out
}

// matrixPhases are the SQL of the three phases on each table: insert rows
// 1..5, update (a value, an entity move, a value to NULL) and delete one,
// then delete everything.
func matrixPhases(table string, cols []matrixCol) [3][]string {
	var p [3][]string
	for id := 1; id <= 5; id++ {
		vals := make([]string, len(cols))
		for i, c := range cols {
			vals[i] = "NULL"
			if id <= 4 {
				vals[i] = c.values[id-1]
			}
		}
		p[0] = append(p[0], fmt.Sprintf(`INSERT INTO %s VALUES (%d, %d, '2026-01-01 00:00:00+00'::timestamptz + interval '%d seconds', %s)`,
			table, id, 1+(id-1)/2, id, strings.Join(vals, ", ")))
	}
	var set, null []string
	for _, c := range cols {
		if c.name != "c_big" {
			set = append(set, c.name+" = "+c.update)
		}
		null = append(null, c.name+" = NULL")
	}
	p[1] = []string{
		"UPDATE " + table + " SET " + strings.Join(set, ", ") + " WHERE id = 1", // c_big stays: unchanged TOAST
		"UPDATE " + table + " SET k = 3 WHERE id = 2",
		"UPDATE " + table + " SET " + strings.Join(null, ", ") + " WHERE id = 3",
		"DELETE FROM " + table + " WHERE id = 4",
	}
	p[2] = []string{"DELETE FROM " + table}
	return p
}

// matrixSetup creates the types and the matrix tables in a database.
func matrixSetup(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	stmts := []string{
		`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`,
		`CREATE DOMAIN dom_int AS int`,
		`CREATE DOMAIN dom_num AS numeric(10,2)`,
		`CREATE DOMAIN dom_text AS text`,
	}
	for _, tb := range matrixTables {
		stmts = append(stmts, typedTable(tb.name, matrixTyped(tb.cols)), "ALTER TABLE "+tb.name+" REPLICA IDENTITY FULL")
	}
	typesExec(t, conn, stmts...)
}

// matrixKeys are the records of the matrix groups.
func matrixKeys(tables ...string) []sink.Key {
	var keys []sink.Key
	for _, tb := range tables {
		for id := 1; id <= 5; id++ {
			keys = append(keys, sink.Key{Set: tb + "_row", ID: fmt.Sprint(id)})
		}
		for k := 1; k <= 3; k++ {
			keys = append(keys, sink.Key{Set: tb + "_agg", ID: fmt.Sprint(k)})
		}
	}
	return keys
}

// storedView is what a store holds for some keys: each record's bins but
// recordMeta, and the features a client reads, as JSON.
type storedView struct {
	keys     []sink.Key
	bins     []map[string]any
	features [][]byte
}

func viewStore(t *testing.T, engine *transform.Engine, st connector.Store, keys []sink.Key) storedView {
	t.Helper()
	recs, err := st.Get(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	v := storedView{keys: keys}
	for i, k := range keys {
		bins := map[string]any{}
		for n, b := range recs[i].Bins {
			if !recordMeta[n] {
				bins[n] = b
			}
		}
		v.bins = append(v.bins, bins)
		ents, err := (&serve.Reader{Engine: engine, Store: st}).Read(context.Background(), k.Set, [][]string{{k.ID}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(ents[0].FeatureMap())
		v.features = append(v.features, b)
	}
	return v
}

// sameView reports every record and feature set of got that differs from
// want.
func sameView(t *testing.T, what string, want, got storedView) {
	t.Helper()
	diffs := 0
	for i, k := range want.keys {
		if !sameBins(want.bins[i], got.bins[i]) {
			for n, w := range want.bins[i] {
				if g := got.bins[i][n]; !sameBins(w, g) {
					t.Errorf("%s: %s bin %s: %s", what, k, n, firstDiff(fmt.Sprint(w), fmt.Sprint(g)))
				}
			}
			diffs++
		}
		if !bytes.Equal(want.features[i], got.features[i]) {
			diffs++
			t.Errorf("%s: features of %s differ: %s", what, k, firstDiff(string(want.features[i]), string(got.features[i])))
		}
	}
	if diffs == 0 {
		t.Logf("%s: %d records and their features identical", what, len(want.keys))
	}
}

// sameBins is reflect.DeepEqual but for NaN, which equals itself in a
// stored bin.
func sameBins(a, b any) bool {
	return reflect.DeepEqual(a, b) || fmt.Sprintf("%#v", a) == fmt.Sprintf("%#v", b)
}

// firstDiff shows where two renderings part.
func firstDiff(want, got string) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	from := max(0, i-80)
	return fmt.Sprintf("\n want …%s\n got  …%s", shorten(want[from:min(len(want), i+80)]), shorten(got[from:min(len(got), i+80)]))
}

func shorten(s string) string {
	if len(s) > 3000 {
		return s[:3000] + "…"
	}
	return s
}

// TestTypeEquivalence is the type matrix (issue 13): every type of
// docs/types.md, domains, enums, arrays, NULLs and extreme values, the
// same rows inserted, updated and deleted, through (a) the initial
// snapshot, (b) the stream, and, encoded as Debezium's PostgreSQL
// connector writes them, (c) JSON with schema, (d) schemaless JSON with
// nulls kept and dropped, and JSON with schema with nulls dropped, (e)
// Avro. After each phase the stored records (but positions and write
// times) and the features read are byte for byte the same on every path,
// and equal PostgreSQL's answer; after the delete phase every record is
// empty again. Types Debezium encodes differently are served by the
// documented rule; values it cannot carry are refused by the encoder.
func TestTypeEquivalence(t *testing.T) {
	connS, dbS := newDB(t) // rows read by the initial snapshot
	connT, dbT := newDB(t) // rows streamed
	matrixSetup(t, connS)
	matrixSetup(t, connT)
	phases := map[string][3][]string{}
	for _, tb := range matrixTables {
		phases[tb.name] = matrixPhases(tb.name, tb.cols)
	}
	run := func(conn *pgx.Conn, phase int) {
		for _, tb := range matrixTables {
			typesExec(t, conn, phases[tb.name][phase]...)
		}
	}
	run(connS, 0)

	var groups []string
	var tables []string
	for _, tb := range matrixTables {
		groups = append(groups, typedGroups(tb.name, matrixTyped(tb.cols)))
		tables = append(tables, "public."+tb.name)
	}
	connector := func(db, mode string) *config.Connector {
		raw := typedConnector(db, storePath(t), groups...)
		return loadConnector(t, []byte(strings.Replace(raw, `"no_data"`, `"`+mode+`"`, 1)))
	}
	cS, cT := connector(dbS, "initial"), connector(dbT, "no_data")
	engine, err := transform.Compile(cT.Features)
	if err != nil {
		t.Fatal(err)
	}

	// Debezium's view of both databases, captured as its connector would.
	capTables := append(append([]string{}, tables...), "public.sync")
	type capture struct {
		evs   chan []capturedEvent
		ready chan struct{}
	}
	captures := map[string]*capture{}
	for _, db := range []string{dbS, dbT} {
		c := &capture{evs: make(chan []capturedEvent, 1), ready: make(chan struct{})}
		captures[db] = c
		go func() { c.evs <- captureAsDebezium(t, db, capTables, func() { close(c.ready) }, 3) }()
		<-c.ready
	}
	rS := startRuntime(t, cS)
	defer rS.stop(t)
	waitSnapshot(t, rS)
	rT := startRuntime(t, cT)
	defer rT.stop(t)

	keys := matrixKeys("typed", "typed_l", "typed_x")
	views := [3]storedView{}
	var truth [3]map[string]map[string]any
	for phase := 0; phase < 3; phase++ {
		if phase > 0 {
			run(connS, phase)
		}
		run(connT, phase)
		waitSync(t, connS, rS.read, phase+1)
		waitSync(t, connT, rT.read, phase+1)
		for _, tb := range matrixTables {
			checkTyped(t, connT, rT, tb.name, matrixTyped(tb.cols), 5, 3)
		}
		views[phase] = viewStore(t, engine, rT.store, keys)
		truth[phase] = matrixRuleTruth(t, connT)
		sameView(t, fmt.Sprintf("phase %d: snapshot vs stream", phase), views[phase], viewStore(t, engine, rS.store, keys))
	}
	// Every retraction took back what it added.
	for i, k := range keys {
		if !matrixEmpty(views[2].bins[i]) {
			t.Errorf("after deleting every row, %s holds %s", k, shorten(fmt.Sprint(views[2].bins[i])))
		}
	}

	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	enc, err := debeziumtest.New(debeziumtest.Options{TopicPrefix: "matrix", Database: dbT})
	if err != nil {
		t.Fatal(err)
	}
	registry := httptest.NewServer(enc.Registry())
	defer registry.Close()
	for _, db := range []string{dbS, dbT} {
		var evs []capturedEvent
		select {
		case evs = <-captures[db].evs:
		case <-time.After(2 * time.Minute):
			t.Fatal("capture did not see the last sentinel")
		}
		evs = matrixDebeziumEvents(t, connT, evs)
		colTypes := map[string]map[string]string{}
		for _, e := range evs {
			colTypes[e.ev.Table] = enc.ColumnTypes(matrixTable(e))
		}
		for phase := 0; phase < 3; phase++ {
			prefix := matrixUntil(evs, phase+1)
			for _, f := range []struct {
				name        string
				format      debeziumtest.Format
				dec         *decode.Debezium
				dropNulls   bool
				contentType string
			}{
				{"json-schema", debeziumtest.JSON, &decode.Debezium{}, false, "application/json"},
				{"json-schema-nulls-dropped", debeziumtest.JSON, &decode.Debezium{}, true, "application/json"},
				{"json-schemaless", debeziumtest.JSONPayload, &decode.Debezium{ColumnTypes: colTypes}, false, "application/json"},
				{"json-schemaless-nulls-dropped", debeziumtest.JSONPayload, &decode.Debezium{ColumnTypes: colTypes}, true, "application/json"},
				{"avro", debeziumtest.Avro, &decode.Debezium{Schemas: decode.NewSchemaRegistry(registry.URL, nil)}, false, "avro/bytes"},
			} {
				what := fmt.Sprintf("%s phase %d: %s", map[string]string{dbS: "snapshot", dbT: "stream"}[db], phase, f.name)
				bodies := matrixBodies(t, enc, f.format, prefix, f.dropNulls)
				got := viewStore(t, engine, postDebezium(t, cT, log, f.dec, f.contentType, bodies).store, matrixKeys("typed", "typed_l"))
				want := views[phase]
				n := len(matrixKeys("typed"))
				sameView(t, what, storedView{keys: want.keys[:n], bins: want.bins[:n], features: want.features[:n]},
					storedView{keys: got.keys[:n], bins: got.bins[:n], features: got.features[:n]})
				matrixRules(t, what, truth[phase], want, got)
			}
		}
	}
}

// matrixEmpty reports whether a record's bins hold nothing but its key:
// what a record is once every row it counted is gone.
func matrixEmpty(bins map[string]any) bool {
	for n := range bins {
		if n != "_key" {
			return false
		}
	}
	return true
}

// matrixTable is the Debezium table of a captured event, with the labels
// of its enum columns.
func matrixTable(e capturedEvent) debeziumtest.Table {
	tb := debeziumtest.TableOf(e.ev.Table, e.cols, dbzKeys[e.ev.Table]...)
	for i, c := range tb.Columns {
		if c.Name == "c_enum" {
			tb.Columns[i].Enum = []string{"sad", "ok", "happy"}
		}
	}
	return tb
}

// matrixDebeziumEvents drops the changes of typed_x, checking that the
// encoder refuses each (its columns have types or values Debezium does not
// carry; a point column makes that every change of the table).
func matrixDebeziumEvents(t *testing.T, conn *pgx.Conn, evs []capturedEvent) []capturedEvent {
	t.Helper()
	enc, err := debeziumtest.New(debeziumtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out []capturedEvent
	refused := 0
	for _, e := range evs {
		if e.ev.Table != "public.typed_x" {
			out = append(out, e)
			continue
		}
		if _, err := enc.Encode(debeziumtest.JSON, matrixTable(e), e.ev, e.src); err == nil {
			t.Errorf("Debezium encoded %s %v, which holds a value it cannot carry", e.ev.Op, e.ev.After)
		}
		refused++
	}
	if refused == 0 {
		t.Error("the capture holds no change of typed_x")
	}
	return out
}

// matrixUntil returns the events up to the commit of sentinel sync=id.
func matrixUntil(evs []capturedEvent, id int) []capturedEvent {
	for i, e := range evs {
		if e.ev.Table == "public.sync" && e.ev.After["id"] == int64(id) {
			return evs[:i+1]
		}
	}
	return evs
}

// matrixBodies encodes evs and batches them as Debezium Server's HTTP
// sink posts them (JSON arrays of 50 values, one Avro record a request),
// without tombstones; dropNulls re-serializes every JSON value without
// its null object members, as Gson-based producers do.
func matrixBodies(t *testing.T, enc *debeziumtest.Encoder, f debeziumtest.Format, evs []capturedEvent, dropNulls bool) [][]byte {
	t.Helper()
	var bodies [][]byte
	var values []string
	for _, c := range evs {
		recs, err := enc.Encode(f, matrixTable(c), c.ev, c.src)
		if err != nil {
			t.Fatalf("encode %s %s: %v", c.ev.Op, c.ev.Table, err)
		}
		for _, r := range recs {
			if r.Value == nil {
				continue
			}
			if f == debeziumtest.Avro {
				bodies = append(bodies, r.Value)
				continue
			}
			v := r.Value
			if dropNulls {
				v = withoutNulls(t, v)
			}
			values = append(values, string(v))
			if len(values) == 50 {
				bodies = append(bodies, []byte("["+strings.Join(values, ",")+"]"))
				values = nil
			}
		}
	}
	if len(values) > 0 {
		bodies = append(bodies, []byte("["+strings.Join(values, ",")+"]"))
	}
	return bodies
}

// withoutNulls re-serializes a JSON value without null object members
// (array elements stay).
func withoutNulls(t *testing.T, b []byte) []byte {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	var drop func(any) any
	drop = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if e == nil {
					delete(x, k)
				} else {
					x[k] = drop(e)
				}
			}
		case []any:
			for i, e := range x {
				x[i] = drop(e)
			}
		}
		return v
	}
	out, err := json.Marshal(drop(v))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// matrixRule is, per lossy column, the SQL of what a Debezium path serves
// for a row of typed_l (docs/debezium-decoding.md, "Types Debezium
// changes"); interval is computed from its parts.
var matrixRule = map[string]string{
	// VariableScaleDecimal drops trailing zeros.
	"c_numeric_zeros": `trim_scale(c_numeric_zeros)::text`,
	// money is a Decimal of scale 2.
	"c_money": `c_money::numeric::text`,
	// ZonedTime: the time at UTC, ISO 8601 with Z.
	"c_timetz": `regexp_replace((c_timetz AT TIME ZONE 'UTC')::text, '\+00$', 'Z')`,
	// MicroDuration: a month is 30.4375 days, a year 12 months.
	"c_interval": `round(((extract(year FROM c_interval) * 12 + extract(month FROM c_interval)) * 30.4375 * 86400
		+ extract(day FROM c_interval) * 86400 + extract(epoch FROM c_interval::time)) * 1000000)::text`,
}

// matrixRuleTruth reads what matrixRule says for every row of typed_l.
func matrixRuleTruth(t *testing.T, conn *pgx.Conn) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for id := 1; id <= 5; id++ {
		row := map[string]any{}
		for col, expr := range matrixRule {
			v := typedSQL(t, conn, "SELECT "+expr+" FROM typed_l WHERE id = $1", id)
			if v == nil {
				row[col] = nil
				continue
			}
			row[col] = *v
			if col == "c_interval" {
				var us int64
				fmt.Sscan(*v, &us)
				row[col] = (time.Duration(us) * time.Microsecond).String()
			}
		}
		var exists bool
		if err := conn.QueryRow(context.Background(), "SELECT EXISTS (SELECT FROM typed_l WHERE id = $1)", id).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists {
			out[fmt.Sprint(id)] = row
		}
	}
	return out
}

// matrixRules checks the projected lossy columns of a Debezium path
// against matrixRule's truth, and that their counts equal the direct
// path's.
func matrixRules(t *testing.T, what string, truth map[string]map[string]any, direct, got storedView) {
	t.Helper()
	for i, k := range got.keys {
		var g, d map[string]any
		_ = json.Unmarshal(got.features[i], &g)
		_ = json.Unmarshal(direct.features[i], &d)
		switch k.Set {
		case "typed_l_row":
			want := truth[k.ID]
			for col := range matrixRule {
				if want == nil {
					if len(g) > 0 && g[col] != nil {
						t.Errorf("%s: %s %s = %v, want no row", what, k, col, g[col])
					}
					continue
				}
				if !reflect.DeepEqual(g[col], want[col]) {
					t.Errorf("%s: %s %s = %#v, the documented rule says %#v", what, k, col, g[col], want[col])
				}
			}
		case "typed_l_agg":
			for name, v := range d {
				if strings.HasPrefix(name, "count_") && !reflect.DeepEqual(g[name], v) {
					t.Errorf("%s: %s %s = %v, direct %v", what, k, name, g[name], v)
				}
			}
		}
	}
}
