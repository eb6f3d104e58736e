package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		{[]string{"-source", "replay"}, 1, "a replay needs an archive: set archive.dir"},
	} {
		args := append([]string{"export", "-c", kafka, "-spine", "s.csv", "-o", "x.csv"}, tc.args...)
		if code, _, errs := runCLI(args...); code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("export %v: exit %d, %s; want %d, %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
	// A replay of an archive from a source without a database: the
	// spine is read (and here found missing), no database is asked for.
	dir := t.TempDir()
	if code, _, errs := runCLI("export", "-c", kafka, "-source", "replay", "-archive", dir, "-spine", filepath.Join(dir, "none.csv"), "-o", filepath.Join(dir, "x.csv")); code != 1 || !strings.Contains(errs, "none.csv: no such file") {
		t.Errorf("a replay without a spine: exit %d, %s", code, errs)
	}
}
