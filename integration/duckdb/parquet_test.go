package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"
	_ "github.com/duckdb/duckdb-go/v2"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/export"
	"github.com/tilefeed/tilefeed/transform"
)

// table is an export.Table over a DuckDB table of card transactions.
type table struct{ db *sql.DB }

func (t table) Read(ctx context.Context, name string, order []string, timeCol string, from time.Time, fn func(change.Row) error) error {
	if name != "t" || strings.Join(order, ",") != "card_id" || timeCol != "at" {
		return fmt.Errorf("unexpected read of %s by %v, %s", name, order, timeCol)
	}
	rows, err := t.db.QueryContext(ctx, `SELECT card_id, "at", CAST(amount AS VARCHAR), merchant FROM t WHERE "at" >= ? ORDER BY card_id, "at"`, from)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var card int64
		var at time.Time
		var amount, merchant string
		if err := rows.Scan(&card, &at, &amount, &merchant); err != nil {
			return err
		}
		d, _, err := apd.NewFromString(amount)
		if err != nil {
			return err
		}
		if err := fn(change.Row{"card_id": card, "at": at.UTC(), "amount": d, "merchant": merchant}); err != nil {
			return err
		}
	}
	return rows.Err()
}

// TestParquetReadByDuckDB: DuckDB writes a spine, tilefeed exports a
// training set from it, and DuckDB reads the set back: every column with
// the type it should have (the spine's own, BIGINT counts, DECIMAL(38,2)
// sums, TIMESTAMP WITH TIME ZONE times, DOUBLE days), the rows in spine
// order, and every lifetime feature equal to DuckDB's own SQL over the
// rows with a time at or before each example's.
func TestParquetReadByDuckDB(t *testing.T) {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // one in-memory database
	dir := t.TempDir()
	spine, out := filepath.Join(dir, "labels.parquet"), filepath.Join(dir, "training.parquet")
	for _, q := range []string{
		`SET TimeZone = 'UTC'`,
		`CREATE TABLE t AS SELECT (i % 5)::BIGINT AS card_id, TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_minutes(i) AS "at",
			(i + (i % 100) / 100)::DECIMAL(12,2) AS amount, 'm,' || (i % 3) AS merchant FROM range(120) r(i)`,
		`COPY (SELECT (i * 3 % 7)::BIGINT AS card_id, TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_minutes((i * 37) % 140) AS ts,
			i % 2 = 0 AS is_fraud, (i / 4)::DECIMAL(10,2) AS weight, 'ex-' || i AS example_id FROM range(300) r(i)) TO '` + spine + `' (FORMAT parquet)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	engine, err := transform.Compile([]config.Feature{{Name: "g", Table: "t", Entity: []string{"card_id"}, Time: "at",
		Aggregations: []config.Aggregation{
			{Name: "n", Function: "count"},
			{Name: "total", Function: "sum", Column: "amount"},
			{Name: "avg_30m", Function: "avg", Column: "amount", Window: "30m"},
			{Name: "last_merchant", Function: "last", Column: "merchant"},
			{Name: "last_at", Function: "max", Column: "at"},
			{Name: "days", Function: "days_since_last", Column: "at"},
		}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := export.Run(context.Background(), engine, table{db}, export.Options{Spine: spine, Out: out, SpillBytes: 4096}); err != nil {
		t.Fatal(err)
	}

	types := map[string]string{}
	rows, err := db.Query(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('` + out + `'))`)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			t.Fatal(err)
		}
		types[name] = typ
		order = append(order, name)
	}
	rows.Close()
	want := map[string]string{"card_id": "BIGINT", "ts": "TIMESTAMP WITH TIME ZONE", "is_fraud": "BOOLEAN", "weight": "DECIMAL(10,2)",
		"example_id": "VARCHAR", "g__n": "BIGINT", "g__total": "DECIMAL(38,2)", "g__last_merchant": "VARCHAR",
		"g__last_at": "TIMESTAMP WITH TIME ZONE", "g__days": "DOUBLE"}
	for name, w := range want {
		if types[name] != w {
			t.Errorf("column %s is %q, want %s", name, types[name], w)
		}
	}
	if !strings.HasPrefix(types["g__avg_30m"], "DECIMAL(38,") {
		t.Errorf("g__avg_30m is %s", types["g__avg_30m"])
	}
	if got := strings.Join(order, ","); got != "card_id,ts,is_fraud,weight,example_id,g__n,g__total,g__avg_30m,g__last_merchant,g__last_at,g__days" {
		t.Errorf("columns in the order %s", got)
	}

	// Spine order: the same examples, row for row.
	var n, misplaced int
	if err := db.QueryRow(`SELECT count(*), count(*) FILTER (WHERE s.example_id IS DISTINCT FROM p.example_id OR s.ts IS DISTINCT FROM p.ts
		OR s.weight IS DISTINCT FROM p.weight OR s.is_fraud IS DISTINCT FROM p.is_fraud)
		FROM (SELECT *, row_number() OVER () AS r FROM read_parquet('`+spine+`')) s
		FULL JOIN (SELECT *, row_number() OVER () AS r FROM read_parquet('`+out+`')) p USING (r)`).Scan(&n, &misplaced); err != nil {
		t.Fatal(err)
	}
	if n != 300 || misplaced != 0 {
		t.Errorf("%d rows, %d differ from the spine's row at their place", n, misplaced)
	}

	// The features, against DuckDB's SQL over rows with at <= ts.
	q := `WITH truth AS (
		SELECT s.example_id, count(t.card_id) AS n, coalesce(sum(t.amount), 0) AS total, max(t."at") AS last_at,
		       arg_max(t.merchant, t."at") AS last_merchant,
		       (epoch(s.ts) - epoch(max(t."at"))) / 86400 AS days
		FROM read_parquet('` + spine + `') s LEFT JOIN t ON t.card_id = s.card_id AND t."at" <= s.ts
		GROUP BY s.example_id, s.ts)
	SELECT count(*), count(*) FILTER (WHERE p.g__n IS DISTINCT FROM q.n OR p.g__total IS DISTINCT FROM q.total
		OR p.g__last_at IS DISTINCT FROM q.last_at OR p.g__last_merchant IS DISTINCT FROM q.last_merchant
		OR abs(p.g__days - q.days) > 1e-9 OR (p.g__days IS NULL) <> (q.days IS NULL)),
		count(*) FILTER (WHERE q.n = 0), string_agg(CASE WHEN p.g__n IS DISTINCT FROM q.n OR p.g__total IS DISTINCT FROM q.total THEN p.example_id END, ' ')
	FROM read_parquet('` + out + `') p JOIN truth q USING (example_id)`
	var differ, empty int
	var which sql.NullString
	if err := db.QueryRow(q).Scan(&n, &differ, &empty, &which); err != nil {
		t.Fatal(err)
	}
	if n != 300 || differ != 0 {
		t.Errorf("%d examples, %d differ from DuckDB's SQL: %s", n, differ, which.String)
	}
	if empty == 0 || empty == n {
		t.Errorf("%d of %d examples have no rows: the test checks nothing on one side", empty, n)
	}
	var avgs int
	if err := db.QueryRow(`SELECT count(g__avg_30m) FROM read_parquet('` + out + `')`).Scan(&avgs); err != nil || avgs == 0 {
		t.Errorf("no avg_30m value (%v)", err)
	}
}
