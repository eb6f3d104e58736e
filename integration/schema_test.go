package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

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
	select {
	case err := <-r.done:
		var se *transform.SchemaError
		if !errors.As(err, &se) || se.Group != "card_activity" || se.Column != "merchant" || !strings.Contains(err.Error(), "dropped or renamed") {
			t.Errorf("want a schema error naming card_activity and merchant, got %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tilefeed kept running after a column it reads was dropped")
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
