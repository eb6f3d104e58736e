package export

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/transform"
)

func writeSpine(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "spine.csv")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func compile(t *testing.T, fs ...config.Feature) *transform.Engine {
	t.Helper()
	engine, err := transform.Compile(fs)
	if err != nil {
		t.Fatal(err)
	}
	return engine
}

var cardGroup = config.Feature{Name: "g", Table: "t", Entity: []string{"card_id"}, Time: "at",
	Aggregations: []config.Aggregation{{Name: "n", Function: "count"}, {Name: "total", Function: "sum", Column: "amount"}}}

// TestReadSpine reads the README's spine: every timestamp form it shows,
// and each example lands with its entity, its time and its row.
func TestReadSpine(t *testing.T) {
	engine := compile(t, cardGroup)
	sp, err := openSpine(writeSpine(t, "card_id,ts,is_fraud\n42,2026-11-20T09:15:00Z,0\n42,2026-11-21 18:02:11.5+00,1\n7,2026-11-21,0\n"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := readSpine(sp, engine.Groups(), "ts", t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer keys.close()
	it, err := keys.byGroup[0].Merge()
	if err != nil {
		t.Fatal(err)
	}
	var got []example
	for {
		e, ok, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, e)
	}
	want := []example{
		{"42", time.Date(2026, 11, 20, 9, 15, 0, 0, time.UTC), 0},
		{"42", time.Date(2026, 11, 21, 18, 2, 11, 5e8, time.UTC), 1},
		{"7", time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC), 2},
	}
	if keys.rows != 3 || len(got) != len(want) {
		t.Fatalf("%d rows, examples %v", keys.rows, got)
	}
	for i, w := range want {
		if got[i].id != w.id || !got[i].at.Equal(w.at) || got[i].row != w.row {
			t.Errorf("example %d: %+v, want %+v", i, got[i], w)
		}
	}
	if !keys.earliest.Equal(want[0].at) {
		t.Errorf("earliest %s", keys.earliest)
	}
}

// TestSpineErrors: a bad spine is an error naming the column and the
// first bad line.
func TestSpineErrors(t *testing.T) {
	engine := compile(t, cardGroup)
	for _, tc := range []struct{ in, want string }{
		{"card_id,ts\n1,2026-01-01\n2,soon\n", `spine line 3, column ts: "soon" is not a timestamp`},
		{"a,b\n1,2\n", `spine has no timestamp column "ts" (columns: a, b; -time names another)`},
		{"a,ts\n1,2026-01-01\n", `spine has no column "card_id" (group g is keyed by card_id)`},
		{"card_id,ts\n1,2026-01-01,3\n", "wrong number of fields"},
		{"", "spine header: the file is empty"},
	} {
		sp, err := openSpine(writeSpine(t, tc.in))
		if err == nil {
			var keys *spineKeys
			if keys, err = readSpine(sp, engine.Groups(), "ts", t.TempDir(), 1<<20); err == nil {
				keys.close()
			}
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}

// TestCSVTable: fields that need quoting, NULLs and the spine's own
// columns survive a round trip through a CSV reader.
func TestCSVTable(t *testing.T) {
	var b bytes.Buffer
	tb, err := newCSVTable(&b, []column{{Name: "id"}, {Name: "ts"}, {Name: "note"}, {Name: "g__a"}, {Name: "g__b"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ spine, feats []any }{
		{[]any{"1", "2026-01-01", `say "hi", twice`}, []any{"x,y", nil}},
		{[]any{"2", "2026-01-02", ""}, []any{nil, int64(3)}},
	} {
		if err := tb.Write(spineRow{vals: r.spine}, [][]any{r.feats}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tb.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"id", "ts", "note", "g__a", "g__b"}, {"1", "2026-01-01", `say "hi", twice`, "x,y", ""}, {"2", "2026-01-02", "", "", "3"}}
	if fmt.Sprint(recs) != fmt.Sprint(want) {
		t.Errorf("read back %q, want %q", recs, want)
	}
}

func decimal(s string) *apd.Decimal {
	d, _, err := apd.NewFromString(s)
	if err != nil {
		panic(err)
	}
	return d
}

// TestValueRoundTrip: every type a feature can have comes back from its
// spilled form as it went in, decimals with their scale.
func TestValueRoundTrip(t *testing.T) {
	in := []any{nil, int64(-7), int64(math.MaxInt64), 0.1, math.Inf(-1), decimal("12.50"), decimal("NaN"), decimal("-Infinity"), "", "naïve, \"quoted\"",
		time.Date(-200, 3, 1, 4, 5, 6, 7, time.UTC), time.Date(12000, 1, 1, 0, 0, 0, 999999999, time.UTC), change.PosInfinity, true, false,
		[]byte{0, 255}, json.RawMessage(`{"a":[1]}`), 90 * time.Minute, []any{int64(1), nil, "x", []any{decimal("1.0")}}}
	var b []byte
	for _, v := range in {
		var err error
		if b, err = appendValue(b, v); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range in {
		var got any
		var err error
		if got, b, err = readValue(b); err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		if fmt.Sprintf("%T %v", got, got) != fmt.Sprintf("%T %v", want, want) {
			t.Errorf("value %d: %T %v, want %T %v", i, got, got, want, want)
		}
	}
	if len(b) != 0 {
		t.Errorf("%d bytes left", len(b))
	}
	if _, err := appendValue(nil, struct{}{}); err == nil {
		t.Error("a struct was exported")
	}
}

// FuzzReadValue: whatever the bytes, readValue returns a value or an
// error, never panics, and what it reads writes back to the same bytes.
func FuzzReadValue(f *testing.F) {
	for _, v := range []any{int64(3), decimal("1.20"), "s", []any{nil, true}, time.Unix(1, 2)} {
		b, _ := appendValue(nil, v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, rest, err := readValue(b)
		if err != nil {
			return
		}
		again, err := appendValue(nil, v)
		if err != nil {
			t.Fatalf("%T %v read from %x does not write back: %v", v, v, b, err)
		}
		v2, rest2, err := readValue(again)
		if err != nil || len(rest2) != 0 || fmt.Sprintf("%T %v", v, v) != fmt.Sprintf("%T %v", v2, v2) {
			t.Fatalf("%x → %T %v → %x → %T %v (%v)", b[:len(b)-len(rest)], v, v, again, v2, v2, err)
		}
	})
}

// TestReportProgress: the progress line says how far, how fast, how long.
func TestReportProgress(t *testing.T) {
	engine := compile(t, cardGroup)
	var b strings.Builder
	reportProgress(&b, engine.Group("g"), "rows", 250_000, 1_000_000, 5*time.Second)
	if want := "export: group g: 250000 of about 1000000 rows replayed (25%), 50000/s, about 15s left\n"; b.String() != want {
		t.Errorf("%q, want %q", b.String(), want)
	}
}

// memTable is a Table over rows held in memory, read in the order
// PostgreSQL would give them.
type memTable map[string][]change.Row

func (m memTable) Read(_ context.Context, table string, order []string, timeCol string, from time.Time, fn func(change.Row) error) error {
	rows := slices.Clone(m[table])
	slices.SortStableFunc(rows, func(a, b change.Row) int {
		for _, c := range order {
			if x := strings.Compare(fmt.Sprint(a[c]), fmt.Sprint(b[c])); x != 0 {
				return x
			}
		}
		return a[timeCol].(time.Time).Compare(b[timeCol].(time.Time))
	})
	for _, r := range rows {
		if !from.IsZero() && r[timeCol].(time.Time).Before(from) {
			continue
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// TestRunSpills: an export whose sorts spill a run every few records
// writes the same file as one that holds everything in memory, and that
// file is right: spine order, labels passed through, each row's features
// as of its time, entities without rows and rows at the same instant.
func TestRunSpills(t *testing.T) {
	engine := compile(t, cardGroup)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var rows []change.Row
	for i := range 200 {
		rows = append(rows, change.Row{"card_id": int64(i % 7), "at": t0.Add(time.Duration(i) * time.Minute), "amount": decimal(fmt.Sprintf("%d.50", i))})
	}
	src := memTable{"t": rows}
	var spine strings.Builder
	spine.WriteString("label,card_id,ts\n")
	var want []string
	for i := range 300 {
		card := (i * 5) % 9 // cards 7 and 8 have no rows
		at := t0.Add(time.Duration((i*37)%220) * time.Minute)
		fmt.Fprintf(&spine, "l%d,%d,%s\n", i, card, at.Format(time.RFC3339))
		n, sum := 0, apd.New(0, 0)
		for _, r := range rows {
			if r["card_id"] == int64(card) && !r["at"].(time.Time).After(at) {
				n++
				apd.BaseContext.Add(sum, sum, r["amount"].(*apd.Decimal))
			}
		}
		want = append(want, fmt.Sprintf("l%d,%d,%s,%d,%s", i, card, at.Format(time.RFC3339), n, sum.Text('f'))) // a sum of nothing is 0
	}
	path := writeSpine(t, spine.String())
	var outs []string
	for _, budget := range []int{0, 200} {
		out := filepath.Join(t.TempDir(), "out.csv")
		if err := Run(context.Background(), engine, src, Options{Spine: path, Out: out, SpillBytes: budget}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, string(b))
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*")); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	}
	if outs[0] != outs[1] {
		t.Errorf("spilled export differs from the in-memory one")
	}
	lines := strings.Split(strings.TrimSuffix(outs[1], "\n"), "\n")
	if lines[0] != "label,card_id,ts,g__n,g__total" {
		t.Errorf("header %q", lines[0])
	}
	for i, w := range want {
		if lines[i+1] != w {
			t.Errorf("row %d: %q, want %q", i+1, lines[i+1], w)
		}
	}
}
