package export

import (
	"encoding/csv"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/transform"
)

// TestReadCSV reads the README's spine: every timestamp form it shows.
func TestReadCSV(t *testing.T) {
	sp, err := ReadCSV(strings.NewReader("card_id,ts,is_fraud\n42,2026-11-20T09:15:00Z,0\n42,2026-11-21 18:02:11.5+00,1\n7,2026-11-21,0\n"), "ts")
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Time{time.Date(2026, 11, 20, 9, 15, 0, 0, time.UTC), time.Date(2026, 11, 21, 18, 2, 11, 5e8, time.UTC), time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)}
	if len(sp.At) != 3 || len(sp.Rows) != 3 || sp.Rows[1][2] != "1" {
		t.Fatalf("%+v", sp)
	}
	for i, w := range want {
		if !sp.At[i].Equal(w) {
			t.Errorf("row %d at %s, want %s", i+1, sp.At[i], w)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"a,ts\n1,2026-01-01\n2,soon\n", `spine line 3, column ts: "soon" is not a timestamp`},
		{"a,b\n1,2\n", `spine has no timestamp column "ts" (columns: a, b; -time names another)`},
		{"a,ts\n1,2026-01-01,3\n", "wrong number of fields"},
	} {
		if _, err := ReadCSV(strings.NewReader(tc.in), "ts"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}

// TestWriteCSV: fields that need quoting, NULLs and the spine's own
// columns survive a round trip through a CSV reader.
func TestWriteCSV(t *testing.T) {
	engine, err := transform.Compile([]config.Feature{{Name: "g", Table: "t", Entity: []string{"id"}, Project: []string{"a", "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	g := engine.Group("g")
	sp := &Spine{Header: []string{"id", "ts", "note"}, Rows: [][]string{{"1", "2026-01-01", `say "hi", twice`}, {"2", "2026-01-02", ""}}}
	var feats []string
	for _, vals := range [][]any{{"x,y", nil}, {nil, int64(3)}} {
		s, err := render([]transform.Feature{{Name: "a", Value: vals[0]}, {Name: "b", Value: vals[1]}})
		if err != nil {
			t.Fatal(err)
		}
		feats = append(feats, s)
	}
	var b strings.Builder
	if err := WriteCSV(&b, sp, []*transform.Group{g}, [][]string{feats}); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(strings.NewReader(b.String())).ReadAll()
	if err != nil {
		t.Fatalf("%v in:\n%s", err, b.String())
	}
	want := [][]string{{"id", "ts", "note", "g__a", "g__b"}, {"1", "2026-01-01", `say "hi", twice`, "x,y", ""}, {"2", "2026-01-02", "", "", "3"}}
	if fmt.Sprint(recs) != fmt.Sprint(want) {
		t.Errorf("read back %q, want %q", recs, want)
	}
}

// TestReportProgress: the progress line says how far, how fast, how long.
func TestReportProgress(t *testing.T) {
	engine, err := transform.Compile([]config.Feature{{Name: "g", Table: "t", Entity: []string{"id"}, Time: "at",
		Aggregations: []config.Aggregation{{Name: "n", Function: "count"}}}})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	reportProgress(&b, engine.Group("g"), 250_000, 1_000_000, 5*time.Second)
	if want := "export: group g: 250000 of about 1000000 rows of t replayed (25%), 50000 rows/s, about 15s left\n"; b.String() != want {
		t.Errorf("%q, want %q", b.String(), want)
	}
}
