package integration

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pgx/v5"
)

// typedCol is one column of the typed test table: its SQL type, how its
// values look in JSON (kind), and the aggregates the test runs over it.
type typedCol struct {
	name, sqlType, kind string
	aggs                []string
}

var (
	numberAggs  = []string{"count", "sum", "avg", "min", "max", "last", "distinct"}
	orderedAggs = []string{"count", "min", "max", "last", "distinct"}
	// Types whose min/max tilefeed refuses (TestTypesAggregatesRejected).
	unorderedAggs = []string{"count", "last", "distinct"}
)

// typedCols has a column of every common PostgreSQL type. Kinds: int,
// numeric, float, bool, text, bytea, time (date and timestamps), interval,
// json, array, string (served as PostgreSQL's own text).
var typedCols = []typedCol{
	{"c_smallint", "smallint", "int", numberAggs},
	{"c_integer", "integer", "int", numberAggs},
	{"c_bigint", "bigint", "int", numberAggs},
	{"c_numeric", "numeric", "numeric", numberAggs},
	{"c_numeric_fixed", "numeric(30,10)", "numeric", numberAggs},
	{"c_real", "real", "float", numberAggs},
	{"c_double", "double precision", "float", numberAggs},
	{"c_bool", "bool", "bool", orderedAggs},
	{"c_char", `char(3) COLLATE "C"`, "text", orderedAggs},
	{"c_varchar", `varchar(20) COLLATE "C"`, "text", orderedAggs},
	{"c_text", `text COLLATE "C"`, "text", orderedAggs}, // min/max compare bytes,
	{"c_bytea", "bytea", "bytea", orderedAggs},
	{"c_date", "date", "time", orderedAggs},
	{"c_time", "time", "string", orderedAggs},
	{"c_timetz", "timetz", "string", unorderedAggs},
	{"c_timestamp", "timestamp", "time", orderedAggs},
	{"c_timestamptz", "timestamptz", "time", orderedAggs},
	{"c_interval", "interval", "interval", unorderedAggs},
	{"c_uuid", "uuid", "string", orderedAggs},
	{"c_json", "json", "json", []string{"count", "last"}}, // json has no equality: no distinct in SQL
	{"c_jsonb", "jsonb", "json", unorderedAggs},
	{"c_enum", "mood", "string", unorderedAggs},
	{"c_int_array", "int[]", "array", unorderedAggs},
	{"c_text_array", "text[]", "array", unorderedAggs},
	{"c_inet", "inet", "string", unorderedAggs},
	{"c_cidr", "cidr", "string", unorderedAggs},
	{"c_money", "money", "string", unorderedAggs},
}

// TestTypesFeatures streams a table with a column of every common type
// through tilefeed, with a group that projects every column and a group
// that aggregates every column, drives it with INSERT, UPDATE and DELETE
// (NaN, infinities, NULLs, a numeric of 55 digits included), and checks
// every feature, as the read API serves it, against PostgreSQL's own
// answer to the same question.
func TestTypesFeatures(t *testing.T) {
	conn, db := newDB(t)
	typesExec(t, conn,
		`SET TimeZone = 'UTC'`,
		`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`,
		typedTable("typed", typedCols),
		`ALTER TABLE typed REPLICA IDENTITY FULL`)
	raw := typedConnector(db, storePath(t), typedGroups("typed", typedCols, `{"name": "rows", "function": "count"}`,
		`{"name": "sum_numeric_1h", "function": "sum", "column": "c_numeric", "window": "1h"}`))
	r := startRuntime(t, loadConnector(t, []byte(raw)))
	defer r.stop(t)

	// Each row has its own event time (at), so first/last have no ties.
	insert := func(id, k int, values string) string {
		return fmt.Sprintf(`INSERT INTO typed VALUES (%d, %d, now() - interval '%d seconds', %s)`, id, k, 100-id, values)
	}
	typesExec(t, conn,
		`SET TimeZone = 'UTC'`,
		insert(1, 1, `32767, 2147483647, 9223372036854775807,
			12345.6789, 12345.6789, 0.1, 0.1, true,
			'ab', 'héllo', E'it''s "quoted"\nand tabbed\t', '\x00ff10',
			'2024-02-29', '12:34:56.789', '12:34:56+02', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.5+05:30',
			'1 day 02:03:04.5', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{"b": 1,  "a": [1.10, null]}', '{"b": 1,  "a": [1.10, null]}', 'happy',
			'{1,NULL,-3}', '{a,"b c",NULL,"NULL"}', '192.168.0.1/24', '10.0.0.0/8', 1234.56`),
		`INSERT INTO typed (id, k, at) VALUES (2, 1, now() - interval '98 seconds')`,
		insert(3, 1, `-32768, -2147483648, -9223372036854775808,
			'NaN', -0.0000000001, '-Infinity', 'NaN', false,
			'', '', '', '\x',
			'infinity', '24:00:00', '00:00:00-08', '-infinity', 'infinity',
			'1 year 2 mons 3 days 04:05:06', '00000000-0000-0000-0000-000000000000', '[]', 'null', 'sad',
			'{}', '{}', '::1', '::/0', -0.01`),
		insert(4, 2, `7, 7, 7,
			1234567890123456789012345678901234567890.123456789012345, 99999999999999999999.9999999999, 1.5e30, 1e-300, true,
			'x', 'b', 'b', '\xff',
			'-infinity', '00:00:00', '23:59:59-12', '1999-12-31 23:59:59.999999', '-infinity',
			'-3 days', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '{"x": "y"}', '{"x": "y"}', 'ok',
			'{{1,2},{3,4}}', '{"", "\"quoted\""}', '10.0.0.1', '2001:db8::/32', 0`),
		insert(5, 2, `7, 8, -9,
			0.000000000000000000000000000000000000000000000000001, 1.00, 2.5, -2.5, false,
			'x', 'a', 'c', '\x00',
			'1970-01-01', '00:00:00.000001', '00:00:00+00', '0001-01-01 00:00:00', '2262-04-12 00:00:00+00',
			'3 days', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', '{"x": "y"}', '{"x": "y"}', 'sad',
			'{1,2}', '{a}', '10.0.0.1', '2001:db8::/32', 1000000.01`),
		insert(6, 2, `1, 1, 1,
			'Infinity', 1, 'Infinity', '-Infinity', true,
			'y', 'a', 'a', '\x0000',
			'2000-01-01', '01:00:00', '01:00:00+01', '2000-01-01 00:00:00', '2000-01-01 00:00:00+00',
			'00:00:00.000001', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', '{}', '{}', 'happy',
			'{NULL}', '{NULL}', '0.0.0.0/0', '0.0.0.0/0', -1`),
		// NaN enters k=2 and leaves again: the sums must come back exact.
		insert(7, 2, `0, 0, 0, 'NaN', 0, 'NaN', 'NaN', false,
			'z', 'z', 'z', '\xee', '2000-01-02', '02:00:00', '02:00:00+02', '2000-01-02 00:00:00', '2000-01-02 00:00:00+00',
			'1 mon', '11111111-1111-1111-1111-111111111111', '1', '1', 'ok', '{9}', '{z}', '1.1.1.1', '1.1.1.1', 5`),
	)
	typesExec(t, conn,
		`UPDATE typed SET c_numeric = c_numeric + 0.000000000000001, c_text = 'changed', c_bytea = '\xabcd',
			c_timestamptz = 'infinity', c_jsonb = '{"changed": true}', c_int_array = '{5}', c_double = 'Infinity' WHERE id = 5`,
		`UPDATE typed SET c_numeric_fixed = NULL, c_interval = NULL, c_enum = NULL WHERE id = 4`,
		`DELETE FROM typed WHERE id = 7`,
		`UPDATE typed SET k = 2 WHERE id = 1`, // moves between entities
		`INSERT INTO typed (id, k, at, c_numeric, c_money) VALUES (8, 3, now(), 1.5, 2)`,
		`UPDATE typed SET c_numeric = NULL, c_money = NULL WHERE id = 8`,
	)
	waitSync(t, conn, r.read, 1)

	checkTyped(t, conn, r, "typed", typedCols, 8, 3)
	for k := 1; k <= 3; k++ {
		_, got, err := r.read("typed_agg", strconv.Itoa(k), time.Now())
		if err != nil {
			t.Fatalf("read typed_agg %d: %v", k, err)
		}
		rows := typedSQL(t, conn, "SELECT count(*)::text FROM typed WHERE k = $1", k)
		if msg := typedCompare("int", true, got["rows"], rows); msg != "" {
			t.Errorf("typed_agg %d rows: %s", k, msg)
		}
		win := typedSQL(t, conn, "SELECT coalesce(sum(c_numeric), 0)::text FROM typed WHERE k = $1 AND at > now() - interval '1 hour'", k)
		if msg := typedCompare("numeric", true, got["sum_numeric_1h"], win); msg != "" {
			t.Errorf("typed_agg %d sum_numeric_1h: %s", k, msg)
		}
	}
}

// typedTable creates table (id, entity k, event time at) with cols.
func typedTable(table string, cols []typedCol) string {
	var defs []string
	for _, c := range cols {
		defs = append(defs, c.name+" "+c.sqlType)
	}
	return `CREATE TABLE ` + table + ` (id int PRIMARY KEY, k int NOT NULL, at timestamptz NOT NULL, ` + strings.Join(defs, ", ") + `)`
}

// typedGroups are two feature groups over table: <table>_row projects
// every column of cols by id, <table>_agg runs each column's aggregates
// (and extra) by k.
func typedGroups(table string, cols []typedCol, extra ...string) string {
	var project, aggs []string
	for _, c := range cols {
		project = append(project, strconv.Quote(c.name))
		for _, fn := range c.aggs {
			aggs = append(aggs, fmt.Sprintf(`{"name": %q, "function": %q, "column": %q}`, fn+"_"+c.name, fn, c.name))
		}
	}
	aggs = append(aggs, extra...)
	return `{"name": "` + table + `_row", "table": "public.` + table + `", "entity": ["id"], "project": [` + strings.Join(project, ", ") + `]},
    {"name": "` + table + `_agg", "table": "public.` + table + `", "entity": ["k"], "time": "at", "aggregations": [` + strings.Join(aggs, ",\n      ") + `]},`
}

// typedConnector is the test connector file with groups (typedGroups) more.
func typedConnector(db, store string, groups ...string) string {
	return strings.Replace(string(connectorJSON(db, store, "127.0.0.1:0")), `"features": [`, `"features": [
    `+strings.Join(groups, "\n    "), 1)
}

// checkTyped compares the <table>_row features of rows 1..ids and the
// <table>_agg features of entities 1..ks over cols (typedGroups) with
// PostgreSQL's answer.
func checkTyped(t *testing.T, conn *pgx.Conn, r *runtime, table string, cols []typedCol, ids, ks int) {
	t.Helper()
	ctx := context.Background()
	for id := 1; id <= ids; id++ {
		found, got, err := r.read(table+"_row", strconv.Itoa(id), time.Now())
		if err != nil {
			t.Fatalf("read %s_row %d: %v", table, id, err)
		}
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM "+table+" WHERE id = $1)", id).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if found != exists {
			t.Errorf("%s_row %d: found=%v, in SQL %v", table, id, found, exists)
		}
		if !exists {
			continue
		}
		for _, c := range cols {
			want := typedSQL(t, conn, typedRender(c.kind, c.name)+" FROM "+table+" WHERE id = $1", id)
			if msg := typedCompare(c.kind, false, got[c.name], want); msg != "" {
				t.Errorf("%s_row %d %s (%s): %s", table, id, c.name, c.sqlType, msg)
			}
		}
	}
	for k := 1; k <= ks; k++ {
		_, got, err := r.read(table+"_agg", strconv.Itoa(k), time.Now())
		if err != nil {
			t.Fatalf("read %s_agg %d: %v", table, k, err)
		}
		for _, c := range cols {
			for _, fn := range c.aggs {
				query, kind := typedTruth(table, c, fn)
				want := typedSQL(t, conn, query, k)
				if msg := typedCompare(kind, true, got[fn+"_"+c.name], want); msg != "" {
					t.Errorf("%s_agg %d %s(%s %s): %s", table, k, fn, c.name, c.sqlType, msg)
				}
			}
		}
	}
}

// typedTruth is the SQL that computes fn over column c of table for the entity $1,
// and the kind of its result.
func typedTruth(table string, c typedCol, fn string) (string, string) {
	rows := " FROM " + table + " WHERE k = $1"
	nonNull := rows + " AND " + c.name + " IS NOT NULL"
	// Floats sum as exact decimals of their shortest text (docs/types.md):
	// PostgreSQL's own float sum depends on the order of the additions.
	arg := c.name
	if c.kind == "float" {
		arg += "::numeric"
	}
	switch fn {
	case "count":
		return "SELECT count(" + c.name + ")::text" + rows, "int"
	case "distinct":
		return "SELECT count(DISTINCT " + c.name + ")::text" + rows, "int"
	case "sum":
		// tilefeed's sum of nothing is 0; SQL's is NULL.
		return "SELECT coalesce(sum(" + arg + "), 0)::text" + rows, "numeric"
	case "avg":
		return "SELECT avg(" + arg + ")::text" + rows, "avg"
	case "min", "max":
		// ORDER BY uses the type's own ordering: what min and max mean
		// in PostgreSQL, also for types without min/max (bool, bytea,
		// uuid).
		dir := map[string]string{"min": "ASC", "max": "DESC"}[fn]
		return typedRender(c.kind, c.name) + nonNull + " ORDER BY " + table + "." + c.name + " " + dir + " LIMIT 1", c.kind
	case "last":
		return typedRender(c.kind, c.name) + nonNull + " ORDER BY at DESC LIMIT 1", c.kind
	}
	panic(fn)
}

// typedRender renders column col of a kind as text that typedCompare
// reads (the session's TimeZone is UTC).
func typedRender(kind, col string) string {
	switch kind {
	case "text", "string":
		// The type's output function: char(n) keeps its padding and inet
		// has no /32, which ::text would drop and add.
		return "SELECT CASE WHEN " + col + " IS NULL THEN NULL ELSE format('%s', " + col + ") END"
	case "time":
		// Years as RFC 3339 and Go write them: astronomical (1 BC is 0000,
		// 44 BC -0043), where to_char writes 0001 and 0044.
		year := "(CASE WHEN extract(year FROM " + col + ") < 0 THEN extract(year FROM " + col + ") + 1 ELSE extract(year FROM " + col + ") END)::int"
		return "SELECT CASE WHEN isfinite(" + col + ") THEN (CASE WHEN " + year + " < 0 THEN '-' ELSE '' END) || lpad(abs(" + year + ")::text, 4, '0') || to_char(" + col + `, '-MM-DD"T"HH24:MI:SS.US"Z"') ELSE ` + col + "::text END"
	case "interval":
		return "SELECT CASE WHEN extract(year FROM " + col + ") = 0 AND extract(month FROM " + col + ") = 0 THEN 'us:' || (extract(epoch FROM " + col + ") * 1000000)::bigint ELSE " + col + "::text END"
	case "array":
		return "SELECT array_to_json(" + col + ")::text"
	}
	return "SELECT " + col + "::text"
}

func typedSQL(t *testing.T, conn *pgx.Conn, query string, arg int) *string {
	t.Helper()
	var s *string
	err := conn.QueryRow(context.Background(), query, arg).Scan(&s)
	if err != nil && err != pgx.ErrNoRows {
		t.Fatalf("%s: %v", query, err)
	}
	return s
}

// typedCompare compares a feature as the read API serves it (JSON decoded
// with UseNumber) with PostgreSQL's answer rendered by typedRender (nil:
// NULL). agg tells an aggregate from a projected column: a projected
// numeric is a string (stored as such, exact), an aggregate one a number;
// a projected json is its text, an aggregated one the JSON itself.
func typedCompare(kind string, agg bool, got any, want *string) string {
	bad := fmt.Sprintf("got %s, want %s", typedShort(got), typedShortPtr(want))
	if want == nil {
		if got != nil {
			return bad
		}
		return ""
	}
	w := *want
	switch kind {
	case "int":
		if n, ok := got.(json.Number); !ok || n.String() != w {
			return bad
		}
	case "numeric", "avg", "float":
		if w == "NaN" || w == "Infinity" || w == "-Infinity" {
			if got != w {
				return bad
			}
			return ""
		}
		var text string
		switch g := got.(type) {
		case json.Number:
			if !agg && kind == "numeric" {
				return bad + " (a projected numeric is a string)"
			}
			text = g.String()
		case string:
			if agg || kind != "numeric" {
				return bad + " (a number is a JSON number)"
			}
			if g != w {
				return bad // projected: PostgreSQL's text, scale and all
			}
			text = g
		default:
			return bad
		}
		if kind == "float" {
			gf, err1 := strconv.ParseFloat(text, 64)
			wf, err2 := strconv.ParseFloat(w, 64)
			if err1 != nil || err2 != nil || gf != wf {
				return bad
			}
			return ""
		}
		gd, _, err1 := apd.NewFromString(text)
		wd, _, err2 := apd.NewFromString(w)
		if err1 != nil || err2 != nil {
			return bad
		}
		if kind == "avg" {
			// tilefeed rounds an average to 20 significant digits,
			// PostgreSQL to a scale of its own: equal to 1e-15 relative.
			var diff, tol apd.Decimal
			apd.BaseContext.Sub(&diff, gd, wd)
			diff.Abs(&diff)
			apd.BaseContext.Mul(&tol, wd, apd.New(1, -15))
			tol.Abs(&tol)
			if diff.Cmp(&tol) > 0 {
				return bad
			}
			return ""
		}
		if gd.Cmp(wd) != 0 { // exact
			return bad
		}
	case "bool":
		if b, ok := got.(bool); !ok || strconv.FormatBool(b) != w {
			return bad
		}
	case "bytea":
		raw, err := hex.DecodeString(strings.TrimPrefix(w, `\x`))
		if err != nil {
			return bad
		}
		// []byte is base64 in JSON.
		enc, _ := json.Marshal(raw)
		if s, ok := got.(string); !ok || `"`+s+`"` != string(enc) {
			return bad
		}
	case "time":
		s, ok := got.(string)
		if !ok {
			return bad
		}
		if w == "infinity" || w == "-infinity" {
			if s != w {
				return bad
			}
			return ""
		}
		// time.Parse takes no negative (BC) year: compare without the sign.
		if strings.HasPrefix(s, "-") != strings.HasPrefix(w, "-") {
			return bad
		}
		gt, err1 := time.Parse(time.RFC3339Nano, strings.TrimPrefix(s, "-"))
		wt, err2 := time.Parse(time.RFC3339Nano, strings.TrimPrefix(w, "-"))
		if err1 != nil || err2 != nil || !gt.Equal(wt) || !strings.HasSuffix(s, "Z") {
			return bad
		}
	case "interval":
		if us, ok := strings.CutPrefix(w, "us:"); ok {
			n, _ := strconv.ParseInt(us, 10, 64)
			w = (time.Duration(n) * time.Microsecond).String()
		}
		if got != w {
			return bad
		}
	case "json":
		if !agg {
			if got != w {
				return bad // projected: the text PostgreSQL sent
			}
			return ""
		}
		fallthrough
	case "array":
		var wv any
		d := json.NewDecoder(strings.NewReader(w))
		d.UseNumber()
		if err := d.Decode(&wv); err != nil || !reflect.DeepEqual(got, wv) {
			return bad
		}
	default: // text, string
		if got != w {
			return bad
		}
	}
	return ""
}

func typedShort(v any) string {
	s := fmt.Sprintf("%T %#v", v, v)
	if len(s) > 120 {
		s = s[:100] + "…"
	}
	return s
}

func typedShortPtr(s *string) string {
	if s == nil {
		return "NULL"
	}
	return strconv.Quote(*s)
}

// TestTypesAggregatesRejected: min and max over a type whose values
// tilefeed cannot order as PostgreSQL does (they arrive as text that
// sorts otherwise, or have no order), and over text under a collation
// that is not byte order, are refused at startup with an error naming
// the group, the column and its type. Type modifiers do not hide a
// type: numeric(30,10) sums and timestamp(3) is a time column.
func TestTypesAggregatesRejected(t *testing.T) {
	conn, db := newDB(t)
	typesExec(t, conn,
		`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`,
		`CREATE TABLE odd (id int PRIMARY KEY, at timestamp(3) with time zone NOT NULL, n numeric(30,10), v varchar(20), c char(3) COLLATE "C",
			tz timetz, iv interval, e mood, arr int[], ip inet, net cidr, m money, j json, jb jsonb, u text COLLATE "und-x-icu")`,
		`ALTER TABLE odd REPLICA IDENTITY FULL`)
	rejected := map[string]string{"tz": "time with time zone", "iv": "interval", "e": "mood", "arr": "integer[]",
		"ip": "inet", "net": "cidr", "m": "money", "j": "json", "jb": "jsonb", "u": "und-x-icu"}
	var groups []string
	add := func(name, fn, col string) {
		groups = append(groups, fmt.Sprintf(`{"name": %q, "table": "public.odd", "entity": ["id"], "time": "at",
			"aggregations": [{"name": "x", "function": %q, "column": %q}]}`, name, fn, col))
	}
	for col := range rejected {
		add("max_"+col, "max", col)
		add("min_"+col, "min", col)
		add("last_"+col, "last", col) // fine for every type
	}
	add("sum_n", "sum", "n")
	add("max_v", "max", "v")
	add("min_c", "min", "c")
	raw := strings.Replace(string(connectorJSON(db, storePath(t), "127.0.0.1:0")), `"features": [`,
		`"features": [`+strings.Join(groups, ",\n")+",", 1)
	err := setupOnly(t, []byte(raw))
	if err == nil {
		t.Fatal("Setup accepted min/max over types it cannot order")
	}
	msg := err.Error()
	for col, typ := range rejected {
		for _, fn := range []string{"min", "max"} {
			want := fmt.Sprintf("feature group %s_%s: %s(%s)", fn, col, fn, col)
			if !strings.Contains(msg, want) || !strings.Contains(msg, typ) {
				t.Errorf("the error does not name %q and %s:\n%s", want, typ, msg)
			}
		}
	}
	for _, ok := range []string{"feature group last_", "feature group sum_n", "feature group max_v", "feature group min_c", "time column"} {
		if strings.Contains(msg, ok) {
			t.Errorf("the error refuses %q, which is fine:\n%s", ok, msg)
		}
	}
	t.Logf("Setup refuses:\n%s", msg)
}
