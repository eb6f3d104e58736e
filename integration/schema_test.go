package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/connector/postgres"
	"github.com/tilefeed/tilefeed/transform"
)

// TestSchemaChanges: ADD COLUMN while streaming is picked up from the new
// RELATION message without a restart; dropping a column a feature reads
// stops tilefeed with an error naming the group and the column, instead of
// reading it as NULL.
func TestSchemaChanges(t *testing.T) {
	conn, db := newDB(t)
	c := loadConnector(t, connectorJSON(db, storePath(t), "127.0.0.1:0"))
	r := startRuntime(t, c)
	ctx := context.Background()
	w := newWorkload(conn, 15)
	w.run(t, 50)
	if _, err := conn.Exec(ctx, "ALTER TABLE transactions ADD COLUMN note text DEFAULT 'n/a'"); err != nil {
		t.Fatal(err)
	}
	w.run(t, 50)
	waitSync(t, conn, r.read, 1)
	verify(t, conn, r.read, time.Now(), w.cards)

	if _, err := conn.Exec(ctx, "ALTER TABLE transactions DROP COLUMN merchant"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO transactions (card_id, amount, status, created_at) VALUES (1, 2.50, 'approved', now())"); err != nil {
		t.Fatal(err)
	}
	done, err := r.waitExit(30 * time.Second)
	if !done {
		t.Fatal("tilefeed kept running after a column it reads was dropped")
	}
	var se *transform.SchemaError
	if !errors.As(err, &se) || se.Group != "card_activity" || se.Column != "merchant" || !strings.Contains(err.Error(), "dropped or renamed") {
		t.Errorf("want a schema error naming card_activity and merchant, got %v", err)
	}
	r.store.Close()
}

// TestPartitionedTable: a feature group on a partitioned table sees the
// changes of every partition as its own (publish_via_partition_root),
// including UPDATEs that move a row to another partition, and the replica
// identity of each partition is checked and set.
func TestPartitionedTable(t *testing.T) {
	conn, db := newDB(t)
	ctx := context.Background()
	for _, stmt := range []string{
		`CREATE TABLE pay (id bigserial, k int NOT NULL, v numeric NOT NULL, at timestamptz NOT NULL) PARTITION BY RANGE (at)`,
		`CREATE TABLE pay_old PARTITION OF pay FOR VALUES FROM (MINVALUE) TO ('2026-01-01')`,
		`CREATE TABLE pay_new PARTITION OF pay FOR VALUES FROM ('2026-01-01') TO (MAXVALUE)`,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	feature := `"features": [
    {"name": "pay", "table": "public.pay", "entity": ["k"], "time": "at",
     "aggregations": [{"name": "total", "function": "sum", "column": "v"}, {"name": "n", "function": "count"}]},`
	raw := strings.Replace(string(connectorJSON(db, storePath(t), "127.0.0.1:0")), `"features": [`, feature, 1)

	// Without FULL on the partitions, startup names them and the fix.
	engine, err := transform.Compile(loadConnector(t, []byte(raw)).Features)
	if err != nil {
		t.Fatal(err)
	}
	src := postgres.New(loadConnector(t, []byte(raw)).Postgres, postgres.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)), connector.NewMetrics(prometheus.NewRegistry()))
	if err := src.Setup(ctx, engine, 0); err == nil || !strings.Contains(err.Error(), "public.pay_old") {
		t.Fatalf("want an error naming the partitions, got %v", err)
	}

	raw = strings.Replace(raw, `"snapshot.mode"`, `"replica.identity.autoset.values": "public.pay:FULL", "snapshot.mode"`, 1)
	c := loadConnector(t, []byte(raw))
	r := startRuntime(t, c)
	defer r.stop(t)
	for _, stmt := range []string{
		`INSERT INTO pay (k, v, at) SELECT g % 3, g, CASE WHEN g % 2 = 0 THEN '2025-06-01'::timestamptz ELSE now() END FROM generate_series(1, 30) g`,
		`UPDATE pay SET v = v * 2 WHERE id % 4 = 0`,
		`UPDATE pay SET at = now() WHERE id % 5 = 0`, // moves rows from pay_old to pay_new
		`DELETE FROM pay WHERE id % 7 = 0`,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	waitSync(t, conn, r.read, 1)
	for k := 0; k < 3; k++ {
		var n int64
		var total string
		if err := conn.QueryRow(ctx, "SELECT count(*), coalesce(sum(v), 0)::text FROM pay WHERE k = $1", k).Scan(&n, &total); err != nil {
			t.Fatal(err)
		}
		_, got, err := r.read("pay", fmt.Sprint(k), time.Now())
		if err != nil || fmt.Sprint(got["n"]) != fmt.Sprint(n) || fmt.Sprint(got["total"]) != total {
			t.Errorf("pay %d: n=%v total=%v (%v); SQL n=%d total=%s", k, got["n"], got["total"], err, n, total)
		}
	}
}

// TestToastedColumns: an UPDATE that leaves a TOASTed column alone sends it
// as "unchanged" (pgoutput's 'u'): a projection keeps the stored value
// instead of turning it into NULL, and an aggregate over it reads the old
// image of REPLICA IDENTITY FULL.
func TestToastedColumns(t *testing.T) {
	conn, db := newDB(t)
	ctx := context.Background()
	for _, stmt := range []string{
		`CREATE TABLE docs (id int PRIMARY KEY, owner int NOT NULL, body text NOT NULL, views int NOT NULL, at timestamptz NOT NULL DEFAULT now())`,
		`ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL`, // out of line, uncompressed
		`CREATE TABLE notes (id int PRIMARY KEY, body text, n int)`,
		`ALTER TABLE notes ALTER COLUMN body SET STORAGE EXTERNAL`,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	raw := strings.Replace(string(connectorJSON(db, storePath(t), "127.0.0.1:0")), `"features": [`, `"features": [
    {"name": "docs", "table": "public.docs", "entity": ["owner"], "time": "at",
     "aggregations": [{"name": "bodies", "function": "distinct", "column": "body"}, {"name": "views", "function": "sum", "column": "views"}]},
    {"name": "notes", "table": "public.notes", "entity": ["id"], "project": ["body", "n"]},`, 1)
	raw = strings.Replace(raw, `"snapshot.mode"`, `"replica.identity.autoset.values": "public.docs:FULL", "snapshot.mode"`, 1)
	r := startRuntime(t, loadConnector(t, []byte(raw)))
	defer r.stop(t)
	big := strings.Repeat("toast-me ", 2000) // 18 KB
	for _, stmt := range []string{
		`INSERT INTO docs (id, owner, body, views) VALUES (1, 7, '` + big + `', 1), (2, 7, 'short', 1)`,
		`UPDATE docs SET views = views + 10`, // body unchanged: 'u' in the new image
		`INSERT INTO notes VALUES (1, '` + big + `', 1)`,
		`UPDATE notes SET n = 2`, // REPLICA IDENTITY DEFAULT: no old image, body 'u'
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	waitSync(t, conn, r.read, 1)
	_, got, err := r.read("notes", "1", time.Now())
	if err != nil || got["body"] != big || fmt.Sprint(got["n"]) != "2" {
		t.Errorf("notes 1: body of %d bytes (want %d), n=%v, %v", len(fmt.Sprint(got["body"])), len(big), got["n"], err)
	}
	_, got, err = r.read("docs", "7", time.Now())
	if err != nil || fmt.Sprint(got["bodies"]) != "2" || fmt.Sprint(got["views"]) != "22" {
		t.Errorf("docs 7: bodies=%v views=%v (%v), want 2 and 22", got["bodies"], got["views"], err)
	}
}

// TestSchemaAlterType changes the types of a projected and aggregated
// integer (→ bigint → numeric) and of a text column (→ varchar) while
// tilefeed streams. The new RELATION messages apply without a restart,
// and UPDATEs and DELETEs of rows written under the old types retract
// exactly: every feature equals SQL after each change.
func TestSchemaAlterType(t *testing.T) {
	conn, db := newDB(t)
	typesExec(t, conn,
		`CREATE TABLE items (id int PRIMARY KEY, k int NOT NULL, at timestamptz NOT NULL DEFAULT now(), qty int, label text COLLATE "C")`,
		`ALTER TABLE items REPLICA IDENTITY FULL`)
	raw := strings.Replace(string(connectorJSON(db, storePath(t), "127.0.0.1:0")), `"features": [`, `"features": [
    {"name": "item", "table": "public.items", "entity": ["id"], "project": ["qty", "label"]},
    {"name": "items", "table": "public.items", "entity": ["k"], "time": "at", "aggregations": [
      {"name": "sum", "function": "sum", "column": "qty"}, {"name": "max", "function": "max", "column": "qty"},
      {"name": "min", "function": "min", "column": "qty"}, {"name": "distinct", "function": "distinct", "column": "qty"},
      {"name": "last", "function": "last", "column": "qty"}, {"name": "labels", "function": "distinct", "column": "label"},
      {"name": "max_label", "function": "max", "column": "label"}]},`, 1)
	r := startRuntime(t, loadConnector(t, []byte(raw)))
	defer r.stop(t)
	sync := 0
	check := func(step string) {
		t.Helper()
		sync++
		waitSync(t, conn, r.read, sync)
		for id := 1; id <= 6; id++ {
			want := schemaSQL(t, conn, `SELECT json_build_object('qty', qty, 'label', label)::text FROM items WHERE id = $1`, id)
			found, got, err := r.read("item", fmt.Sprint(id), time.Now())
			if err != nil || found != (want != "") || (found && schemaJSON(got, "qty", "label") != want) {
				t.Errorf("%s: item %d = %v %v (%v), SQL %s", step, id, found, got, err, want)
			}
		}
		for k := 1; k <= 2; k++ {
			want := schemaSQL(t, conn, `SELECT json_build_object('sum', coalesce(sum(qty), 0), 'max', max(qty), 'min', min(qty),
				'distinct', count(DISTINCT qty), 'last', (SELECT qty FROM items WHERE k = $1 AND qty IS NOT NULL ORDER BY at DESC LIMIT 1),
				'labels', count(DISTINCT label), 'max_label', max(label))::text FROM items WHERE k = $1`, k)
			_, got, err := r.read("items", fmt.Sprint(k), time.Now())
			if g := schemaJSON(got, "sum", "max", "min", "distinct", "last", "labels", "max_label"); err != nil || g != want {
				t.Errorf("%s: items %d = %s (%v), SQL %s", step, k, g, err, want)
			}
		}
	}
	typesExec(t, conn,
		`INSERT INTO items (id, k, at, qty, label) VALUES (1, 1, now() - interval '5 s', 5, 'a'), (2, 1, now() - interval '4 s', 7, 'b'),
			(3, 2, now() - interval '3 s', 5, 'a'), (4, 2, now() - interval '2 s', NULL, NULL)`)
	check("before")
	typesExec(t, conn, `ALTER TABLE items ALTER COLUMN qty TYPE bigint`,
		`INSERT INTO items (id, k, qty, label) VALUES (5, 1, 9000000000, 'c')`,
		`UPDATE items SET qty = qty + 1 WHERE id = 1`)
	check("int → bigint")
	typesExec(t, conn, `ALTER TABLE items ALTER COLUMN qty TYPE numeric(20,2)`,
		`INSERT INTO items (id, k, qty, label) VALUES (6, 2, 5.00, 'a')`, // 5 again: distinct counts it once
		`UPDATE items SET qty = 2.5 WHERE id = 2`,                        // retracts the integer 7
		`DELETE FROM items WHERE id = 3`)                                 // retracts the integer 5
	check("bigint → numeric")
	typesExec(t, conn, `ALTER TABLE items ALTER COLUMN label TYPE varchar(10)`,
		`UPDATE items SET label = 'z' WHERE id = 1`,
		`DELETE FROM items WHERE id = 5`,
		`INSERT INTO items (id, k, qty, label) VALUES (3, 1, 1, 'b')`)
	check("text → varchar")
	if done, err := r.exited(); done {
		t.Fatalf("tilefeed stopped: %v", err)
	}
}

// TestSchemaRename: renaming a column no feature reads streams on;
// renaming one a feature reads (here a projected column) stops tilefeed
// with a SchemaError naming the group and the column.
func TestSchemaRename(t *testing.T) {
	conn, db := newDB(t)
	typesExec(t, conn, `CREATE TABLE people (id int PRIMARY KEY, name text, nick text, age int)`)
	raw := strings.Replace(string(connectorJSON(db, storePath(t), "127.0.0.1:0")), `"features": [`, `"features": [
    {"name": "person", "table": "public.people", "entity": ["id"], "project": ["name", "age"]},`, 1)
	r := startRuntime(t, loadConnector(t, []byte(raw)))
	typesExec(t, conn, `INSERT INTO people VALUES (1, 'ann', 'a', 30)`,
		`ALTER TABLE people RENAME COLUMN nick TO nickname`,
		`INSERT INTO people VALUES (2, 'bob', 'b', 40)`)
	waitSync(t, conn, r.read, 1)
	if _, got, err := r.read("person", "2", time.Now()); err != nil || got["name"] != "bob" {
		t.Fatalf("after renaming an unused column: person 2 = %v (%v)", got, err)
	}
	typesExec(t, conn, `ALTER TABLE people RENAME COLUMN age TO years`,
		`INSERT INTO people VALUES (3, 'cy', 'c', 50)`)
	done, err := r.waitExit(30 * time.Second)
	if !done {
		t.Fatal("tilefeed kept running after a column it projects was renamed")
	}
	var se *transform.SchemaError
	if !errors.As(err, &se) || se.Group != "person" || se.Column != "age" || !strings.Contains(err.Error(), "dropped or renamed") {
		t.Errorf("want a schema error naming person and age, got %v", err)
	}
	r.store.Close()
}

func schemaSQL(t *testing.T, conn *pgx.Conn, query string, arg int) string {
	t.Helper()
	var s *string
	if err := conn.QueryRow(context.Background(), query, arg).Scan(&s); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("%s: %v", query, err)
	}
	if s == nil {
		return ""
	}
	return schemaNormal(*s)
}

// schemaJSON renders the named features as json_build_object would, for
// comparison after schemaNormal: numbers by value, so 5, 5.0 and "5.00"
// (a projected numeric is a string) are equal.
func schemaJSON(got map[string]any, names ...string) string {
	m := map[string]any{}
	for _, n := range names {
		m[n] = got[n]
	}
	b, _ := json.Marshal(m)
	return schemaNormal(string(b))
}

func schemaNormal(s string) string {
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return s
	}
	for k, v := range m {
		text := fmt.Sprint(v)
		if dec, _, err := apd.NewFromString(text); err == nil {
			dec.Reduce(dec)
			m[k] = "n:" + dec.Text('f')
		}
	}
	b, _ := json.Marshal(m)
	return string(b)
}
