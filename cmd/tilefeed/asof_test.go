package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/sink/embedded"
	"github.com/tilefeed/tilefeed/transform"
)

// TestGetAsOf: `get -at` in the past is exact or exits 1 naming the
// feature and when it can be read; -features narrows it to what can be.
func TestGetAsOf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	features := `[{"name": "g", "table": "t", "entity": ["id"], "time": "at", "history": "1d", "columns": {"id": "bigint", "at": "timestamptz"},
		"aggregations": [{"name": "n_1h", "function": "count", "window": "1h"}, {"name": "n_all", "function": "count"}]}]`
	file := writeFile(t, `{"name": "k", "config": {"tilefeed.source": "file", "file.path": "x.ndjson", "embedded.path": "`+path+`", "http.listen": "127.0.0.1:1"},
		"features": `+features+`}`)
	c, err := config.Parse([]byte(`{"name": "k", "config": {"tilefeed.source": "file", "file.path": "x.ndjson"}, "features": `+features+`}`), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	engine, err := transform.Compile(c.Features)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Truncate(time.Hour)
	st := &transform.State{}
	var key sink.Key
	for i, at := range []time.Time{t0.Add(-90 * time.Minute), t0.Add(-10 * time.Minute)} {
		ev := change.Event{Op: change.Insert, Table: "public.t", After: change.Row{"id": int64(1), "at": at},
			Pos: change.Position{LSN: 100, Ordinal: uint32(i + 1)}, CommitTime: at}
		ups, err := engine.Plan(&ev, nil)
		if err != nil || len(ups) != 1 {
			t.Fatalf("plan: %v %v", ups, err)
		}
		key = ups[0].Key
		if err := ups[0].Group.Apply(st, &ups[0], &transform.Stats{}); err != nil {
			t.Fatal(err)
		}
	}
	store, err := embedded.Open(path, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put(context.Background(), []sink.Record{{Key: key, Bins: st.Bins()}}); err != nil {
		t.Fatal(err)
	}
	store.Close()

	at := t0.Add(-30 * time.Minute).Format(time.RFC3339)
	code, out, errs := runCLI("get", "-c", file, "g", "id=1", "-at", at)
	if code != 1 || !strings.Contains(errs, "feature n_all: cannot be read as of "+at) ||
		!strings.Contains(errs, "the earliest instant it can be read as of is "+t0.Add(-10*time.Minute+3749999*time.Microsecond).Format(time.RFC3339Nano)) { // the end of the 16th of a 1m tile holding the row
		t.Errorf("every feature as of %s: exit %d, out %s, err %s", at, code, out, errs)
	}
	code, out, errs = runCLI("get", "-c", file, "g", "id=1", "-at", at, "-features", "n_1h")
	if code != 0 || !strings.Contains(out, `"n_1h": 1`) || strings.Contains(out, "n_all") {
		t.Errorf("n_1h as of %s: exit %d, out %s, err %s", at, code, out, errs)
	}
	code, out, errs = runCLI("get", "-c", file, "g", "id=1")
	if code != 0 || !strings.Contains(out, `"n_all": 2`) {
		t.Errorf("at now: exit %d, out %s, err %s", code, out, errs)
	}
}

// TestExportUsage: export names what it needs.
func TestExportUsage(t *testing.T) {
	file := writeFile(t, connector(t, 5432, ""))
	if code, _, errs := runCLI("export", "-c", file, "-o", "x.csv"); code != 2 || !strings.Contains(errs, "-spine FILE and -o FILE are required") {
		t.Errorf("export without -spine: exit %d, %s", code, errs)
	}
	kafka := writeFile(t, `{"name": "k", "config": {"tilefeed.source": "file", "file.path": "x.ndjson"},
		"features": [{"name": "g", "table": "t", "entity": ["id"], "project": ["v"]}]}`)
	if code, _, errs := runCLI("export", "-c", kafka, "-spine", "s.csv", "-o", "x.csv"); code != 1 || !strings.Contains(errs, "names no database") {
		t.Errorf("export from a file source: exit %d, %s", code, errs)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-source", "sql"}, 2, `-source is table or replay, not "sql"`},
		{[]string{"-archive", "dir"}, 2, "-archive goes with -source replay"},
	} {
		args := append([]string{"export", "-c", kafka, "-spine", "s.csv", "-o", "x.csv"}, tc.args...)
		if code, _, errs := runCLI(args...); code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("export %v: exit %d, %s; want %d, %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
	pg := writeFile(t, connector(t, 5432, ""))
	if code, _, errs := runCLI("export", "-c", pg, "-spine", "s.csv", "-o", "x.csv", "-source", "replay"); code != 1 || !strings.Contains(errs, "a replay needs an archive: set archive.dir") {
		t.Errorf("a replay without an archive: exit %d, %s", code, errs)
	}
	// A replay of an archive from a source without a database: the
	// spine is read (and here found missing), no database is asked for.
	dir := t.TempDir()
	if code, _, errs := runCLI("export", "-c", kafka, "-source", "replay", "-archive", dir, "-spine", filepath.Join(dir, "none.csv"), "-o", filepath.Join(dir, "x.csv")); code != 1 || !strings.Contains(errs, "none.csv: no such file") {
		t.Errorf("a replay without a spine: exit %d, %s", code, errs)
	}
}

// TestExportReplayDebezium: a replay of Debezium NDJSON files (a file
// source's own, when the connector keeps no archive): each example gets
// the changes committed (source.ts_ms) at or before its time, an update
// and a delete only from when they happened, and a record the file holds
// twice (a connector's restart) once.
func TestExportReplayDebezium(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	env := func(op string, before, after string, lsn int, at time.Time) string {
		return fmt.Sprintf(`{"before":%s,"after":%s,"source":{"version":"2.7.3.Final","connector":"postgresql","name":"shop","ts_ms":%d,"snapshot":"false","db":"shop","sequence":"[null,\"%d\"]","schema":"public","table":"orders","txId":%d,"lsn":%d,"xmin":null},"op":%q,"ts_ms":%d}`,
			before, after, at.UnixMilli(), lsn, lsn, lsn, op, at.UnixMilli()+50)
	}
	row := func(id, cust int, amount string) string {
		return fmt.Sprintf(`{"id":%d,"customer_id":%d,"amount":%s,"created_at":"2026-11-02T10:00:00Z"}`, id, cust, amount)
	}
	second := env("c", "null", row(2, 1, "5.5"), 200, t0.Add(time.Hour))
	lines := []string{
		env("c", "null", row(1, 1, "10"), 100, t0),
		second,
		env("u", row(1, 1, "10"), row(1, 1, "20"), 300, t0.Add(2*time.Hour)),
		env("d", row(2, 1, "5.5"), "null", 400, t0.Add(3*time.Hour)),
		second, // sent again after a restart
	}
	events := filepath.Join(dir, "orders.ndjson")
	if err := os.WriteFile(events, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, fmt.Sprintf(`{"name": "k", "config": {"tilefeed.source": "file", "file.path": %q},
		"features": [{"name": "spend", "table": "public.orders", "entity": ["customer_id"],
		  "aggregations": [{"name": "n", "function": "count"}, {"name": "total", "function": "sum", "column": "amount"}]}]}`, events))
	spine := filepath.Join(dir, "labels.csv")
	var b strings.Builder
	b.WriteString("customer_id,ts\n")
	for h := 0; h < 4; h++ {
		fmt.Fprintf(&b, "1,%s\n", t0.Add(time.Duration(h)*time.Hour+30*time.Minute).Format(time.RFC3339))
	}
	b.WriteString("1," + t0.Add(-time.Minute).Format(time.RFC3339) + "\n")
	if err := os.WriteFile(spine, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "training.csv")
	if code, _, errs := runCLI("export", "-c", file, "-source", "replay", "-spine", spine, "-o", out); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "customer_id,ts,spend__n,spend__total\n" +
		"1,2026-11-20T00:30:00Z,1,10\n" +
		"1,2026-11-20T01:30:00Z,2,15.5\n" +
		"1,2026-11-20T02:30:00Z,2,25.5\n" +
		"1,2026-11-20T03:30:00Z,1,20\n" +
		"1,2026-11-19T23:59:00Z,0,0\n"
	// Sums compare as numbers: a sum keeps the scale of a value retracted
	// from it (20.0 once 5.5 is deleted; SQL says 20), online as here.
	g, w := strings.Split(string(got), "\n"), strings.Split(want, "\n")
	if len(g) != len(w) {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	for i := range w {
		gi, wi := strings.Split(g[i], ","), strings.Split(w[i], ",")
		if len(wi) < 4 {
			if g[i] != w[i] {
				t.Errorf("line %d: %q, want %q", i+1, g[i], w[i])
			}
			continue
		}
		if len(gi) != len(wi) || strings.Join(gi[:3], ",") != strings.Join(wi[:3], ",") {
			t.Fatalf("line %d: %q, want %q", i+1, g[i], w[i])
		}
		if i > 0 {
			x, _, err1 := apd.NewFromString(gi[3])
			y, _, err2 := apd.NewFromString(wi[3])
			if err1 != nil || err2 != nil || x.Cmp(y) != 0 {
				t.Errorf("line %d: total %q, want %q", i+1, gi[3], wi[3])
			}
		}
	}
}
