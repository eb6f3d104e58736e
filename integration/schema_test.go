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
