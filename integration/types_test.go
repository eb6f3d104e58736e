package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/decode"
)

// TestTypesRoundTrip writes one column of every common type through
// PostgreSQL's pgoutput and checks that decode.PgOutput yields exactly
// the Go value each one should become, for INSERT, UPDATE and DELETE.
func TestTypesRoundTrip(t *testing.T) {
	conn, db := newDB(t)
	typesExec(t, conn,
		`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`,
		`CREATE TABLE alltypes (
			id int PRIMARY KEY,
			c_smallint smallint, c_integer integer, c_bigint bigint,
			c_numeric_fixed numeric(30,10), c_numeric numeric,
			c_real real, c_double double precision, c_bool bool,
			c_char char(3), c_varchar varchar(20), c_text text, c_bytea bytea,
			c_date date, c_time time, c_timetz timetz, c_timestamp timestamp, c_timestamptz timestamptz,
			c_interval interval, c_uuid uuid, c_json json, c_jsonb jsonb, c_enum mood,
			c_int_array int[], c_text_array text[], c_inet inet, c_cidr cidr, c_money money)`,
		`ALTER TABLE alltypes REPLICA IDENTITY FULL`,
		`CREATE PUBLICATION types_pub FOR TABLE alltypes`,
	)
	slot := typesSlot(t, conn, db)
	typesExec(t, conn,
		`INSERT INTO alltypes VALUES (1,
			32767, 2147483647, 9223372036854775807,
			12345.6789, 1234567890123456789012345678901234567890,
			0.1, 0.1, true,
			'ab', 'héllo', E'it''s "quoted"\nand tabbed\t', '\x00ff10',
			'2024-02-29', '12:34:56.789', '12:34:56+02', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.5+05:30',
			'1 day 02:03:04.5', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{"b": 1,  "a": [1.10, null]}', '{"b": 1,  "a": [1.10, null]}', 'happy',
			'{1,NULL,-3}', '{a,"b c",NULL,"NULL"}', '192.168.0.1/24', '10.0.0.0/8', 1234.56)`,
		`INSERT INTO alltypes (id) VALUES (2)`,
		`INSERT INTO alltypes VALUES (3,
			-32768, -2147483648, -9223372036854775808,
			-0.0000000001, 'NaN',
			'-Infinity', 'NaN', false,
			'', '', '', '\x',
			'infinity', '24:00:00', '00:00:00-08', '-infinity', 'infinity',
			'1 year 2 mons 3 days 04:05:06', '00000000-0000-0000-0000-000000000000', '[]', 'null', 'sad',
			'{}', '{}', '::1', '::/0', -0.01)`,
		`UPDATE alltypes SET c_text = 'changed' WHERE id = 1`,
		`DELETE FROM alltypes WHERE id = 2`,
		`DELETE FROM alltypes WHERE id = 3`,
	)

	dec := func(s string) *apd.Decimal {
		d, _, err := apd.NewFromString(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	row1 := change.Row{
		"id":         int64(1),
		"c_smallint": int64(32767), "c_integer": int64(2147483647), "c_bigint": int64(math.MaxInt64),
		// numeric(30,10) comes with its scale; the unconstrained one with none.
		"c_numeric_fixed": dec("12345.6789000000"),
		"c_numeric":       dec("1234567890123456789012345678901234567890"),
		"c_real":          0.1, // exactly the float64 0.1: decoded from the text "0.1"
		"c_double":        0.1,
		"c_bool":          true,
		"c_char":          "ab ", // char(3) pads
		"c_varchar":       "héllo",
		"c_text":          "it's \"quoted\"\nand tabbed\t",
		"c_bytea":         []byte{0x00, 0xff, 0x10},
		"c_date":          time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
		"c_time":          "12:34:56.789", // time and timetz stay text
		"c_timetz":        "12:34:56+02",
		"c_timestamp":     time.Date(2024, 1, 2, 3, 4, 5, 123456000, time.UTC),
		"c_timestamptz":   time.Date(2024, 1, 1, 21, 34, 5, 500000000, time.UTC),
		"c_interval":      26*time.Hour + 3*time.Minute + 4500*time.Millisecond,
		"c_uuid":          "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"c_json":          json.RawMessage(`{"b": 1,  "a": [1.10, null]}`), // json keeps its text
		"c_jsonb":         json.RawMessage(`{"a": [1.10, null], "b": 1}`),  // jsonb is normalised by PostgreSQL
		"c_enum":          "happy",
		"c_int_array":     []any{int64(1), nil, int64(-3)},
		"c_text_array":    []any{"a", "b c", nil, "NULL"},
		"c_inet":          "192.168.0.1/24",
		"c_cidr":          "10.0.0.0/8",
		"c_money":         "$1,234.56", // lc_monetary C
	}
	row2 := change.Row{"id": int64(2)}
	for col := range row1 {
		if col != "id" {
			row2[col] = nil
		}
	}
	row3 := change.Row{
		"id":         int64(3),
		"c_smallint": int64(-32768), "c_integer": int64(-2147483648), "c_bigint": int64(math.MinInt64),
		"c_numeric_fixed": dec("-0.0000000001"),
		"c_numeric":       dec("NaN"),
		"c_real":          math.Inf(-1),
		"c_double":        math.NaN(),
		"c_bool":          false,
		"c_char":          "   ",
		"c_varchar":       "",
		"c_text":          "",
		"c_bytea":         []byte{},
		"c_date":          change.PosInfinity,
		"c_time":          "24:00:00",
		"c_timetz":        "00:00:00-08",
		"c_timestamp":     change.NegInfinity,
		"c_timestamptz":   change.PosInfinity,
		"c_interval":      "1 year 2 mons 3 days 04:05:06", // months have no fixed length: text
		"c_uuid":          "00000000-0000-0000-0000-000000000000",
		"c_json":          json.RawMessage(`[]`),
		"c_jsonb":         json.RawMessage(`null`), // a JSON null, not SQL NULL
		"c_enum":          "sad",
		"c_int_array":     []any{},
		"c_text_array":    []any{},
		"c_inet":          "::1",
		"c_cidr":          "::/0",
		"c_money":         "-$0.01",
	}
	row1b := change.Row{}
	for k, v := range row1 {
		row1b[k] = v
	}
	row1b["c_text"] = "changed"

	events := typesStream(t, db, slot, "types_pub", 6)
	want := []struct {
		op            change.Op
		before, after change.Row
	}{
		{change.Insert, nil, row1},
		{change.Insert, nil, row2},
		{change.Insert, nil, row3},
		{change.Update, row1, row1b}, // REPLICA IDENTITY FULL: the whole old row
		{change.Delete, row2, nil},
		{change.Delete, row3, nil},
	}
	var rows []change.Event
	var last change.Position
	for _, ev := range events {
		if !last.Less(ev.Pos) {
			t.Errorf("%v at %v after %v", ev.Op, ev.Pos, last)
		}
		last = ev.Pos
		if !ev.Op.IsMarker() {
			rows = append(rows, ev)
		}
	}
	if len(rows) != len(want) {
		t.Fatalf("%d row events, want %d: %+v", len(rows), len(want), rows)
	}
	for i, w := range want {
		ev := rows[i]
		if ev.Op != w.op || ev.Table != "public.alltypes" {
			t.Errorf("event %d: %v %s, want %v public.alltypes", i, ev.Op, ev.Table, w.op)
		}
		for _, msg := range typesDiffRow("Before", w.before, ev.Before) {
			t.Errorf("event %d (%v) %s", i, ev.Op, msg)
		}
		for _, msg := range typesDiffRow("After", w.after, ev.After) {
			t.Errorf("event %d (%v) %s", i, ev.Op, msg)
		}
	}
}

// TestTypesToast updates a row whose text column is TOASTed (stored out
// of line) without touching that column, under REPLICA IDENTITY DEFAULT
// and FULL.
//
// PostgreSQL does not log an unchanged out-of-line value again, so the new
// tuple of the UPDATE carries only the TOAST pointer and pgoutput sends
// 'u' (unchanged) for it: the After image has change.Unchanged, under
// either identity. Under DEFAULT the UPDATE has no old tuple (the key did
// not change). Under FULL the old tuple is complete and carries the value
// itself: heap_update logs the whole old row for replica identity FULL
// and ExtractReplicaIdentity flattens (de-TOASTs) its external values
// first. So with FULL the unchanged value is in Before but not in After.
func TestTypesToast(t *testing.T) {
	conn, db := newDB(t)
	typesExec(t, conn,
		`CREATE TABLE docs_default (id int PRIMARY KEY, body text, n int)`,
		`CREATE TABLE docs_full (id int PRIMARY KEY, body text, n int)`,
		`ALTER TABLE docs_full REPLICA IDENTITY FULL`,
		`CREATE PUBLICATION toast_pub FOR TABLE docs_default, docs_full`,
	)
	slot := typesSlot(t, conn, db)
	// 12 KiB of random bytes as base64: incompressible, so it is stored
	// out of line (the TOAST threshold is about 2 KiB).
	raw := make([]byte, 12<<10)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	big := base64.StdEncoding.EncodeToString(raw)
	for _, table := range []string{"docs_default", "docs_full"} {
		if _, err := conn.Exec(context.Background(), "INSERT INTO "+table+" VALUES (1, $1, 1)", big); err != nil {
			t.Fatal(err)
		}
	}
	var external bool
	if err := conn.QueryRow(context.Background(),
		`SELECT pg_column_size(body) > 8192 AND pg_relation_size(reltoastrelid) > 0
		FROM docs_default, pg_class WHERE relname = 'docs_default'`).Scan(&external); err != nil {
		t.Fatal(err)
	}
	if !external {
		t.Fatal("the body is not stored out of line: the test proves nothing")
	}
	typesExec(t, conn,
		`UPDATE docs_default SET n = 2 WHERE id = 1`,
		`UPDATE docs_full SET n = 2 WHERE id = 1`,
		`UPDATE docs_default SET body = 'short', n = 3 WHERE id = 1`,
		`DELETE FROM docs_default WHERE id = 1`,
		`DELETE FROM docs_full WHERE id = 1`,
	)
	events := typesStream(t, db, slot, "toast_pub", 7)
	type img struct {
		op            change.Op
		table         string
		before, after change.Row
	}
	want := []img{
		{change.Insert, "public.docs_default", nil, change.Row{"id": int64(1), "body": big, "n": int64(1)}},
		{change.Insert, "public.docs_full", nil, change.Row{"id": int64(1), "body": big, "n": int64(1)}},
		// DEFAULT: no old tuple; the TOASTed column is Unchanged.
		{change.Update, "public.docs_default", nil, change.Row{"id": int64(1), "body": change.Unchanged, "n": int64(2)}},
		// FULL: the old tuple carries the de-TOASTed value; the new one
		// still only says Unchanged.
		{change.Update, "public.docs_full",
			change.Row{"id": int64(1), "body": big, "n": int64(1)},
			change.Row{"id": int64(1), "body": change.Unchanged, "n": int64(2)}},
		// Once the column changes, its new value comes in full.
		{change.Update, "public.docs_default", nil, change.Row{"id": int64(1), "body": "short", "n": int64(3)}},
		// DEFAULT: the key only.
		{change.Delete, "public.docs_default", change.Row{"id": int64(1)}, nil},
		// FULL: the whole old row, the TOASTed value included.
		{change.Delete, "public.docs_full", change.Row{"id": int64(1), "body": big, "n": int64(2)}, nil},
	}
	var rows []change.Event
	for _, ev := range events {
		if !ev.Op.IsMarker() {
			rows = append(rows, ev)
		}
	}
	if len(rows) != len(want) {
		t.Fatalf("%d row events, want %d", len(rows), len(want))
	}
	for i, w := range want {
		ev := rows[i]
		if ev.Op != w.op || ev.Table != w.table {
			t.Errorf("event %d: %v %s, want %v %s", i, ev.Op, ev.Table, w.op, w.table)
		}
		for _, msg := range typesDiffRow("Before", w.before, ev.Before) {
			t.Errorf("event %d (%v %s) %s", i, ev.Op, ev.Table, msg)
		}
		for _, msg := range typesDiffRow("After", w.after, ev.After) {
			t.Errorf("event %d (%v %s) %s", i, ev.Op, ev.Table, msg)
		}
	}
}

func typesExec(t *testing.T, conn *pgx.Conn, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := conn.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// typesSlot creates a pgoutput slot of the test's own and drops it when
// the test ends, so slots do not pile up in the shared cluster.
func typesSlot(t *testing.T, conn *pgx.Conn, db string) string {
	t.Helper()
	slot := "types_" + db
	if _, err := conn.Exec(context.Background(), "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot); err != nil {
		t.Fatalf("create slot %s: %v", slot, err)
	}
	t.Cleanup(func() {
		// The walsender may still be exiting: the slot is busy until then.
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, err := conn.Exec(context.Background(),
				"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("drop slot %s: %v", slot, err)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	return slot
}

// typesStream reads the slot from its start with pglogrepl and decodes
// with decode.PgOutput until it has rows row events and the commit of the
// last one.
func typesStream(t *testing.T, db, slot, publication string, rows int) []change.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, cluster.ConnString(db)+" replication=database")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	err = pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + publication + "'"}})
	if err != nil {
		t.Fatalf("start replication: %v", err)
	}
	d := decode.NewPgOutput(nil)
	var events []change.Event
	seen := 0
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("receive after %d row events: %v", seen, err)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok {
			if e, ok := msg.(*pgproto3.ErrorResponse); ok {
				t.Fatalf("replication: %v", pgconn.ErrorResponseToPgError(e))
			}
			continue
		}
		switch cd.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(cd.Data[1:])
			if err != nil {
				t.Fatal(err)
			}
			if ka.ReplyRequested {
				// Nothing is acknowledged (all positions 0): the slot
				// is dropped afterwards.
				if err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{}); err != nil {
					t.Fatal(err)
				}
			}
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
			if err != nil {
				t.Fatal(err)
			}
			n := len(events)
			if events, err = d.Decode(events, xld.WALData); err != nil {
				t.Fatalf("decode: %v", err)
			}
			for _, ev := range events[n:] {
				if !ev.Op.IsMarker() {
					seen++
				} else if ev.Op == change.Commit && seen >= rows {
					return events
				}
			}
		}
	}
}

// typesDiffRow compares two row images value by value.
func typesDiffRow(image string, want, got change.Row) []string {
	if (want == nil) != (got == nil) {
		return []string{fmt.Sprintf("%s = %v, want %v", image, got, want)}
	}
	cols := map[string]bool{}
	for k := range want {
		cols[k] = true
	}
	for k := range got {
		cols[k] = true
	}
	var names []string
	for k := range cols {
		names = append(names, k)
	}
	sort.Strings(names)
	var msgs []string
	for _, k := range names {
		w, inWant := want[k]
		g, inGot := got[k]
		switch {
		case !inGot:
			msgs = append(msgs, fmt.Sprintf("%s.%s missing, want %#v", image, k, w))
		case !inWant:
			msgs = append(msgs, fmt.Sprintf("%s.%s = %#v, not expected", image, k, g))
		default:
			if m := typesDiffValue(w, g); m != "" {
				msgs = append(msgs, fmt.Sprintf("%s.%s: %s", image, k, m))
			}
		}
	}
	return msgs
}

// typesDiffValue compares exactly: the same Go type and value; decimals
// with the same coefficient and exponent, floats bit for bit (NaN equals
// NaN), times as the same instant in UTC.
func typesDiffValue(want, got any) string {
	if reflect.TypeOf(want) != reflect.TypeOf(got) {
		return fmt.Sprintf("got %T %s, want %T %s", got, typesShort(got), want, typesShort(want))
	}
	bad := fmt.Sprintf("got %s, want %s", typesShort(got), typesShort(want))
	switch w := want.(type) {
	case *apd.Decimal:
		g := got.(*apd.Decimal)
		if g.Form != w.Form || g.Negative != w.Negative || g.Exponent != w.Exponent || g.Coeff.Cmp(&w.Coeff) != 0 {
			return fmt.Sprintf("got decimal %s (exponent %d), want %s (exponent %d)", g.Text('f'), g.Exponent, w.Text('f'), w.Exponent)
		}
	case float64:
		g := got.(float64)
		if math.Float64bits(g) != math.Float64bits(w) && !(math.IsNaN(g) && math.IsNaN(w)) {
			return bad
		}
	case time.Time:
		if g := got.(time.Time); !g.Equal(w) || g.Location() != time.UTC {
			return bad
		}
	case []byte:
		if !bytes.Equal(w, got.([]byte)) {
			return bad
		}
	case json.RawMessage:
		if !bytes.Equal(w, got.(json.RawMessage)) {
			return bad
		}
	case []any:
		g := got.([]any)
		if len(g) != len(w) {
			return bad
		}
		for i := range w {
			if m := typesDiffValue(w[i], g[i]); m != "" {
				return fmt.Sprintf("element %d: %s", i, m)
			}
		}
	default:
		if want != got {
			return bad
		}
	}
	return ""
}

func typesShort(v any) string {
	s := fmt.Sprintf("%#v", v)
	if d, ok := v.(*apd.Decimal); ok {
		s = d.Text('f')
	}
	if len(s) > 80 {
		s = s[:40] + "…" + s[len(s)-20:] + fmt.Sprintf(" (%d chars)", len(s))
	}
	return strings.ReplaceAll(s, "\n", `\n`)
}
