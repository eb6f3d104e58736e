package integration

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/tilefeed/tilefeed/archive"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/connector/postgres"
	"github.com/tilefeed/tilefeed/export"
	"github.com/tilefeed/tilefeed/transform"
)

// TestExportTable: a training set from the feature table (source=table):
// for a spine of every card at 12 past instants, each exported value
// equals SQL over the rows with created_at <= T (the windows ending at T),
// computed independently; the spine's other columns pass through in
// spine order. Then only rows later than every instant change (updates,
// inserts, deletes): a second export is byte for byte the same.
func TestExportTable(t *testing.T) {
	t.Parallel()
	conn, db := newDB(t)
	w := newWorkload(conn, 777)
	w.run(t, 120)
	c := loadConnector(t, connectorJSON(db, storePath(t), "127.0.0.1:0"))
	engine, err := transform.Compile(c.Features)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rng := rand.New(rand.NewPCG(5, 5))
	var instants []time.Time
	for i := 0; i < 10; i++ {
		instants = append(instants, now.Add(-time.Hour-time.Duration(rng.Int64N(int64(35*24*time.Hour)))).Truncate(time.Microsecond))
	}
	// The last microsecond of a tile, and a whole day.
	instants = append(instants, now.Add(-50*time.Hour).Truncate(15*time.Minute).Add(-time.Microsecond), now.Add(-3*24*time.Hour).Truncate(24*time.Hour))
	dir := t.TempDir()
	spine := filepath.Join(dir, "labels.csv")
	var b strings.Builder
	b.WriteString("label,card_id,when\n")
	type ex struct {
		card int
		at   time.Time
	}
	var order []ex
	for _, i := range rng.Perm(len(instants) * w.cards) { // spine order is not time order
		e := ex{i % w.cards, instants[i/w.cards]}
		order = append(order, e)
		fmt.Fprintf(&b, "y%d,%d,%s\n", len(order), e.card, e.at.UTC().Format(time.RFC3339Nano))
	}
	if err := os.WriteFile(spine, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(out string) []byte {
		t.Helper()
		tr, err := postgres.OpenTableReader(context.Background(), c.Postgres)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		var progress bytes.Buffer
		if err := export.Run(context.Background(), engine, tr, export.Options{Spine: spine, Out: out, TimeColumn: "when",
			Groups: []string{"card_activity"}, Progress: &progress}); err != nil {
			t.Fatal(err)
		}
		t.Log(strings.TrimSpace(progress.String()))
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	first := run(filepath.Join(dir, "training.csv"))
	recs, err := csv.NewReader(bytes.NewReader(first)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(order)+1 || recs[0][0] != "label" || recs[0][3] != "card_activity__txn_count_10m" {
		t.Fatalf("%d rows, header %v", len(recs), recs[0])
	}
	values := map[ex]map[string]any{}
	for i, rec := range recs[1:] {
		if rec[0] != fmt.Sprintf("y%d", i+1) || rec[1] != fmt.Sprint(order[i].card) {
			t.Fatalf("row %d is %v: not in spine order", i+1, rec[:3])
		}
		m := map[string]any{}
		for j, name := range recs[0][3:] {
			if v := rec[3+j]; v != "" {
				m[strings.TrimPrefix(name, "card_activity__")] = v
			} else {
				m[strings.TrimPrefix(name, "card_activity__")] = nil
			}
		}
		values[order[i]] = m
	}
	read := func(group, key string, at time.Time) (bool, map[string]any, error) {
		var card int
		fmt.Sscan(key, &card)
		return true, values[ex{card, at}], nil
	}
	for _, at := range instants {
		if m := cardMismatches(t, conn, read, at, w.cards, true); len(m) > 0 {
			t.Errorf("%d exported features differ from SQL over the rows as of %s:\n%s", len(m), at.Format(time.RFC3339Nano), strings.Join(m, "\n"))
		}
	}

	// The same set in Parquet: a row per example, each feature typed by
	// what PostgreSQL's columns hold (the values themselves are checked
	// against the CSV in export's tests and by DuckDB in integration/duckdb).
	run(filepath.Join(dir, "training.parquet"))
	pf, err := os.Open(filepath.Join(dir, "training.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := pf.Stat()
	file, err := parquet.OpenFile(pf, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	schema := file.Schema().String()
	for _, want := range []string{"optional binary label (STRING);", "optional binary when (STRING);",
		"optional int64 card_activity__txn_count_10m (INT(64,true));", "optional fixed_len_byte_array(16) card_activity__amount_sum_1h (DECIMAL(38,2));",
		"card_activity__amount_avg_30d (DECIMAL(38,", "optional fixed_len_byte_array(16) card_activity__amount_max_24h (DECIMAL(38,2));",
		"optional int64 card_activity__merchants_24h (INT(64,true));", "optional fixed_len_byte_array(16) card_activity__amount_min (DECIMAL(38,2));",
		"optional int64 card_activity__last_txn_at (TIMESTAMP(isAdjustedToUTC=true,unit=MICROS));"} {
		if !strings.Contains(schema, want) {
			t.Errorf("training.parquet has no %q:\n%s", want, schema)
		}
	}
	if file.NumRows() != int64(len(order)) {
		t.Errorf("training.parquet has %d rows, want %d", file.NumRows(), len(order))
	}
	pf.Close()

	// Only rows later than every instant change.
	latest := instants[0]
	for _, at := range instants {
		if at.After(latest) {
			latest = at
		}
	}
	ctx := context.Background()
	for _, stmt := range []string{
		`UPDATE transactions SET amount = amount + 1, merchant = 'later' WHERE created_at > $1 AND id % 3 = 0`,
		`UPDATE transactions SET created_at = created_at + interval '1 minute' WHERE created_at > $1 AND id % 3 = 1`,
		`DELETE FROM transactions WHERE created_at > $1 AND id % 3 = 2`,
		`INSERT INTO transactions (card_id, merchant, amount, status, created_at)
			SELECT g % 40, 'new', 9.99, 'ok', $1::timestamptz + make_interval(secs => g) FROM generate_series(1, 200) g`,
	} {
		tag, err := conn.Exec(ctx, stmt, latest)
		if err != nil {
			t.Fatal(err)
		}
		if tag.RowsAffected() == 0 {
			t.Fatalf("%s changed nothing", stmt)
		}
	}
	if second := run(filepath.Join(dir, "training2.csv")); !bytes.Equal(first, second) {
		t.Errorf("changing rows after every instant changed the export")
	}
}

// TestExportErrors: a bad spine is an error naming the column and line,
// and nothing is written.
func TestExportErrors(t *testing.T) {
	t.Parallel()
	conn, db := newDB(t)
	for _, stmt := range []string{`INSERT INTO transactions (card_id, merchant, amount, status, created_at)
		SELECT g % 10, 'm', 1, 'ok', now() FROM generate_series(1, 500) g`, "ANALYZE transactions"} {
		if _, err := conn.Exec(context.Background(), stmt); err != nil {
			t.Fatal(err)
		}
	}
	c := loadConnector(t, connectorJSON(db, storePath(t), "127.0.0.1:0"))
	engine, err := transform.Compile(c.Features)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := postgres.OpenTableReader(context.Background(), c.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	dir := t.TempDir()
	for _, tc := range []struct{ spine, groups, want string }{
		{"card_id,ts\n1,2026-01-01T00:00:00Z\n2,yesterday\n", "card_activity", `spine line 3, column ts: "yesterday" is not a timestamp`},
		{"card,ts\n1,2026-01-01T00:00:00Z\n", "card_activity", `spine has no column "card_id" (group card_activity is keyed by card_id)`},
		{"card_id,time\n1,2026-01-01\n", "card_activity", `spine has no timestamp column "ts"`},
		{"card_id,ts\n1,2026-01-01\n", "nope", `no feature group "nope"`},
		{"id,ts\n1,2026-01-01\n", "customer", `group customer has no time column`},
	} {
		spine := filepath.Join(dir, "spine.csv")
		out := filepath.Join(dir, "out.csv")
		if err := os.WriteFile(spine, []byte(tc.spine), 0o600); err != nil {
			t.Fatal(err)
		}
		err := export.Run(context.Background(), engine, tr, export.Options{Spine: spine, Out: out, Groups: []string{tc.groups}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("spine %q: %v, want %q", tc.spine, err, tc.want)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("spine %q: output written", tc.spine)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, ".out.csv*")); len(left) > 0 {
			t.Errorf("temporary files left: %v", left)
		}
	}
	// Without -groups: every group with a time column (card_activity).
	spine := filepath.Join(dir, "spine.csv")
	if err := os.WriteFile(spine, []byte("card_id,ts\n1,2026-01-01\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	if err := export.Run(context.Background(), engine, tr, export.Options{Spine: spine, Out: filepath.Join(dir, "all.csv"), Progress: &progress}); err != nil {
		t.Errorf("every group: %v", err)
	} else if data, _ := os.ReadFile(filepath.Join(dir, "all.csv")); !strings.HasPrefix(string(data), "card_id,ts,card_activity__") ||
		!strings.Contains(progress.String(), "group customer left out: it has no time column") {
		t.Errorf("every group: %s\n%s", data, progress.String())
	}
	if err := os.WriteFile(filepath.Join(dir, "labels.parquet"), []byte("card_id,ts\n1,2026-01-01\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = export.Run(context.Background(), engine, tr, export.Options{Spine: filepath.Join(dir, "labels.parquet"), Out: filepath.Join(dir, "out.parquet")})
	if err == nil || !strings.Contains(err.Error(), "labels.parquet is not a Parquet file") {
		t.Errorf("a CSV file named .parquet: %v", err)
	}
	if n := tr.Estimate(context.Background(), "public.transactions"); n != 500 {
		t.Errorf("estimate of 500 analyzed rows: %d", n)
	}
}

// TestExportReplay: train == serve. While tilefeed streams a mixed
// workload (inserts, updates that move rows in time and between cards,
// deletes) with archive.* set, every card is read online at 50 instants,
// each taken when all that was committed is durable; an export of that
// spine with source=replay gives, for every example, exactly the value
// that was served.
func TestExportReplay(t *testing.T) {
	t.Parallel()
	conn, db := newDB(t)
	c := loadConnector(t, connectorJSON(db, storePath(t), "127.0.0.1:0"))
	archiveDir := t.TempDir()
	c.Runtime.Archive = config.Archive{Dir: archiveDir, RotateBytes: 16 << 10, Gzip: true}
	r := startRuntime(t, c)
	w := newWorkload(conn, 2468)
	var examples []servedExample
	notFound := 0
	for i := 0; i < 50; i++ {
		w.run(t, 15)
		waitSync(t, conn, r.read, i+1) // everything committed is durable
		ex, missing := readServed(t, r.read, w.cards, time.Now())
		examples, notFound = append(examples, ex...), notFound+missing
	}
	r.stop(t)
	if len(examples) < 1000 {
		t.Fatalf("only %d examples found online (%d not found)", len(examples), notFound)
	}
	files, err := archive.Files(archiveDir)
	if err != nil || len(files) < 2 {
		t.Fatalf("archive files %v (%v): want rotation", files, err)
	}
	checkReplay(t, c, archiveDir, examples)
}

// servedExample is what a card read online returned at an instant.
type servedExample struct {
	card int
	at   time.Time
	vals map[string]any
}

// readServed reads every card's card_activity online at an instant: the
// cards found, and how many were not.
func readServed(t *testing.T, read featureReader, cards int, at time.Time) ([]servedExample, int) {
	t.Helper()
	var out []servedExample
	missing := 0
	for card := 0; card < cards; card++ {
		found, vals, err := read("card_activity", fmt.Sprint(card), at)
		if err != nil {
			t.Fatal(err)
		}
		if !found {
			missing++
			continue
		}
		out = append(out, servedExample{card, at, vals})
	}
	return out, missing
}

// checkReplay exports the served examples as a spine with source=replay
// from the archive and checks that every value is the one served.
func checkReplay(t *testing.T, c *config.Connector, archiveDir string, examples []servedExample) {
	t.Helper()
	dir := t.TempDir()
	spine := filepath.Join(dir, "served.csv")
	var b strings.Builder
	b.WriteString("example,card_id,ts\n")
	for i, e := range examples {
		fmt.Fprintf(&b, "%d,%d,%s\n", i, e.card, e.at.UTC().Format(time.RFC3339Nano))
	}
	if err := os.WriteFile(spine, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	engine, err := transform.Compile(c.Features)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "replayed.csv")
	var progress bytes.Buffer
	if err := export.Run(context.Background(), engine, nil, export.Options{Spine: spine, Out: out, Groups: []string{"card_activity"},
		Archive: archiveDir, SpillBytes: 64 << 10, Progress: &progress}); err != nil {
		t.Fatal(err)
	}
	t.Log(strings.TrimSpace(progress.String()))
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(examples)+1 {
		t.Fatalf("%d rows for %d examples", len(recs)-1, len(examples))
	}
	header := recs[0]
	differ := 0
	for i, rec := range recs[1:] {
		e := examples[i]
		for j := 3; j < len(header); j++ {
			name := strings.TrimPrefix(header[j], "card_activity__")
			want := ""
			switch v := e.vals[name].(type) {
			case nil:
			case string:
				want = v
			default:
				want = fmt.Sprint(v)
			}
			if rec[j] != want {
				if differ++; differ <= 10 {
					t.Errorf("card %d at %s: %s replayed %q, served %q", e.card, e.at.Format(time.RFC3339Nano), name, rec[j], want)
				}
			}
		}
	}
	if differ > 0 {
		t.Errorf("%d replayed values differ from what was served, of %d", differ, len(examples)*(len(header)-3))
	}
}
