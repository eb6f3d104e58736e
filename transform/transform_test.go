package transform

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/sink"
)

// txFeature is an aggregating group with a filter, reading every column
// the data-error cases need.
func txFeature() config.Feature {
	return config.Feature{
		Name: "tx", Table: "transactions", Entity: []string{"customer_id"}, Time: "created_at",
		Where: "status != 'declined'",
		Aggregations: []config.Aggregation{
			{Name: "n_1h", Function: "count", Window: "1h"},
			{Name: "sum_1h", Function: "sum", Column: "amount", Window: "1h"},
			{Name: "max_life", Function: "max", Column: "tag"},
		},
	}
}

func txRow(id int64, customer any, amount any) change.Row {
	return change.Row{"id": id, "customer_id": customer, "amount": amount, "status": "ok",
		"tag": "a", "created_at": at("-1m")}
}

func TestDataErrors(t *testing.T) {
	t.Parallel()
	good := txRow(1, int64(7), dec("12.50"))
	p := pos(0x16_0000_0001, 3)
	cases := []struct {
		name     string
		features []config.Feature
		ev       change.Event
		column   string // "" when the error is about the whole change
		reason   string
	}{
		{name: "NULL entity key", ev: insert(p, t0, with(good, "customer_id", nil)),
			column: "customer_id", reason: "entity key is NULL"},
		{name: "unchanged entity key", ev: insert(p, t0, with(good, "customer_id", change.Unchanged)),
			column: "customer_id", reason: "unchanged TOAST"},
		{name: "NULL entity key in old image", ev: remove(p, t0, with(good, "customer_id", nil)),
			column: "customer_id", reason: "entity key is NULL"},
		{name: "NULL event time", ev: insert(p, t0, with(good, "created_at", nil)),
			column: "created_at", reason: "event time is NULL"},
		{name: "event time not a timestamp", ev: insert(p, t0, with(good, "created_at", "2026-11-22")),
			column: "created_at", reason: "event time is a string, not a timestamp"},
		{name: "sum of a string", ev: insert(p, t0, with(good, "amount", "12.50")),
			column: "amount", reason: "is not a number, so it cannot be summed"},
		{name: "event time infinity", ev: insert(p, t0, with(good, "created_at", change.PosInfinity)),
			column: "created_at", reason: "event time is infinity, which falls in no tile"},
		{name: "unchanged TOAST in an insert", ev: insert(p, t0, with(good, "amount", change.Unchanged)),
			column: "amount", reason: "unchanged TOAST value the source did not send"},
		{name: "unchanged TOAST the old image does not have", ev: update(p, t0,
			change.Row{"id": int64(1), "customer_id": int64(7), "status": "ok", "tag": "a", "created_at": at("-1m")},
			with(good, "amount", change.Unchanged)),
			column: "amount", reason: "unchanged TOAST"},
		{name: "value that cannot be aggregated", ev: insert(p, t0, with(good, "tag", []any{map[string]any{}})),
			column: "tag", reason: "cannot be aggregated"},
		{name: "TRUNCATE", ev: change.Event{Op: change.Truncate, Table: table, Pos: p, CommitTime: t0},
			reason: "is a TRUNCATE"},
		{name: "UPDATE without old image", ev: update(p, t0, nil, good),
			reason: "has no old row image: set REPLICA IDENTITY FULL"},
		{name: "DELETE without old image", ev: remove(p, t0, nil),
			reason: "is a DELETE without the old row"},
		{name: "filter fails",
			features: []config.Feature{{Name: "tx", Table: "transactions", Entity: []string{"customer_id"}, Where: "amount > 0", Project: []string{"status"}}},
			ev:       insert(p, t0, with(good, "amount", "lots")), reason: `where "amount > 0" failed`},
		{name: "filter is not boolean",
			features: []config.Feature{{Name: "tx", Table: "transactions", Entity: []string{"customer_id"}, Where: "amount", Project: []string{"status"}}},
			ev:       insert(p, t0, good), reason: "not a boolean"},
		{name: "projection of an unstorable value",
			features: []config.Feature{{Name: "tx", Table: "transactions", Entity: []string{"customer_id"}, Project: []string{"status"}}},
			ev:       insert(p, t0, with(good, "status", struct{}{})),
			column:   "status", reason: "cannot be stored"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			features := tc.features
			if features == nil {
				features = []config.Feature{txFeature()}
			}
			h := newHarness(t, features)
			_, err := h.apply(tc.ev)
			var de *DataError
			if !errors.As(err, &de) {
				t.Fatalf("apply = %v, want a *DataError", err)
			}
			if de.Group != "tx" || de.Table != table || de.Pos != p || de.Column != tc.column {
				t.Errorf("DataError{Group %q Table %q Pos %v Column %q}, want tx %s %v %q", de.Group, de.Table, de.Pos, de.Column, table, p, tc.column)
			}
			msg := err.Error()
			for _, want := range []string{"feature group tx", "public.transactions", "16/1#3", tc.reason} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not mention %q", msg, want)
				}
			}
			if tc.column != "" && !strings.Contains(msg, "column "+tc.column) {
				t.Errorf("error %q does not name column %s", msg, tc.column)
			}
			for k, st := range h.states {
				if !st.IsEmpty() {
					t.Errorf("a failed change left record %s: %v", k, describeState(st))
				}
			}
		})
	}
}

// TestDataErrorInOldImageKeepsState checks that a change failing on its old
// image leaves what is stored alone: the harness, like the runtime,
// discards the failed state.
func TestDataErrorInOldImageKeepsState(t *testing.T) {
	t.Parallel()
	h := newHarness(t, []config.Feature{txFeature()})
	row := txRow(1, int64(7), dec("5"))
	h.mustApply(insert(pos(1, 1), t0, row))
	before := h.state("tx", "7").Bins()
	_, err := h.apply(update(pos(2, 1), t0, with(row, "amount", "five"), with(row, "amount", dec("6"))))
	var de *DataError
	if !errors.As(err, &de) || de.Column != "amount" {
		t.Fatalf("apply = %v, want a DataError on amount", err)
	}
	if after := h.state("tx", "7").Bins(); !reflect.DeepEqual(before, after) {
		t.Errorf("record changed by a failed change:\nbefore %v\nafter  %v", before, after)
	}
}

func TestProjectionNeedsNoOldImage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, []config.Feature{{Name: "acct", Table: "transactions", Entity: []string{"id"}, Project: []string{"status", "note"}}})
	h.mustApply(
		insert(pos(1, 1), t0, change.Row{"id": int64(1), "status": "open", "note": "n"}),
		update(pos(2, 1), t0, nil, change.Row{"id": int64(1), "status": "closed", "note": change.Unchanged}),
	)
	got := h.readShown("acct", "1", t0)
	want := map[string]string{"status": "s:closed", "note": "s:n"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read = %v, want %v", got, want)
	}
	if g := h.eng.Group("acct"); g.NeedsOldImage() {
		t.Errorf("a projection-only group without filter needs no old image")
	}
}

func TestPlanIgnoresWhatIsNotItsBusiness(t *testing.T) {
	t.Parallel()
	h := newHarness(t, []config.Feature{txFeature()})
	row := txRow(1, int64(7), dec("1"))
	cases := []change.Event{
		{Op: change.Insert, Table: "public.other", After: row, Pos: pos(1, 1), CommitTime: t0},
		{Op: change.Truncate, Table: "public.other", Pos: pos(1, 2), CommitTime: t0},
		{Op: change.Commit, Table: table, Pos: pos(1, 3), CommitTime: t0, Resume: 9},
		{Op: change.Heartbeat, Resume: 10},
		{Op: change.Insert, Table: table, After: with(row, "status", "declined"), Pos: pos(1, 4), CommitTime: t0},
	}
	for _, ev := range cases {
		ups, err := h.eng.Plan(&ev, nil)
		if err != nil || len(ups) != 0 {
			t.Errorf("Plan(%s on %q) = %v, %v; want nothing", ev.Op, ev.Table, ups, err)
		}
	}
	// A snapshot read is an insert.
	h.mustApply(change.Event{Op: change.Read, Table: table, After: row, Pos: pos(2, 1), CommitTime: t0})
	if got := h.read("tx", "7", t0)["n_1h"]; got != int64(1) {
		t.Errorf("after a snapshot read n_1h = %v, want 1", got)
	}
	// Plan appends to dst.
	dst := []Update{{Pos: pos(0, 9)}}
	ev := insert(pos(3, 1), t0, row)
	dst, err := h.eng.Plan(&ev, dst)
	if err != nil || len(dst) != 2 || dst[0].Pos != pos(0, 9) || dst[1].Key != (sink.Key{Set: "tx", ID: "7"}) {
		t.Errorf("Plan did not append: %+v, %v", dst, err)
	}
}

func TestCompile(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		feature config.Feature
		ttl     time.Duration
	}{
		{"windowed only: longest window + tile + a day",
			config.Feature{Name: "g", Table: "t", Entity: []string{"id"}, Time: "at", Aggregations: []config.Aggregation{
				{Name: "a", Function: "count", Window: "10m"}, {Name: "b", Function: "count", Window: "1h", Tile: "5m"}}},
			time.Hour + 5*time.Minute + 24*time.Hour},
		{"30d", config.Feature{Name: "g", Table: "t", Entity: []string{"id"}, Time: "at", Aggregations: []config.Aggregation{
			{Name: "a", Function: "count", Window: "30d"}}},
			30*24*time.Hour + 12*time.Hour + 24*time.Hour},
		{"lifetime aggregate: forever", config.Feature{Name: "g", Table: "t", Entity: []string{"id"}, Time: "at", Aggregations: []config.Aggregation{
			{Name: "a", Function: "count", Window: "10m"}, {Name: "b", Function: "count"}}}, 0},
		{"projection: forever", config.Feature{Name: "g", Table: "t", Entity: []string{"id"}, Time: "at", Project: []string{"x"},
			Aggregations: []config.Aggregation{{Name: "a", Function: "count", Window: "10m"}}}, 0},
		{"explicit ttl", config.Feature{Name: "g", Table: "t", Entity: []string{"id"}, Time: "at", TTL: "2w", Project: []string{"x"}}, 14 * 24 * time.Hour},
		{"explicit forever", config.Feature{Name: "g", Table: "t", Entity: []string{"id"}, Time: "at", TTL: "0",
			Aggregations: []config.Aggregation{{Name: "a", Function: "count", Window: "10m"}}}, 0},
	}
	for _, tc := range cases {
		eng, err := compileFeatures([]config.Feature{tc.feature})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := eng.Group("g").TTL; got != tc.ttl {
			t.Errorf("%s: TTL = %v, want %v", tc.name, got, tc.ttl)
		}
	}

	eng, err := compileFeatures([]config.Feature{
		{Name: "b", Table: "orders", Entity: []string{"id"}, Project: []string{"id", "x"}},
		{Name: "a", Table: "public.transactions", Entity: []string{"customer_id", "merchant"}, Time: "created_at",
			Where: "amount > 0", Project: []string{"merchant", "note"},
			Aggregations: []config.Aggregation{{Name: "s", Function: "sum", Column: "amount"}, {Name: "n", Function: "count"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := eng.Tables(); !reflect.DeepEqual(got, []string{"public.orders", "public.transactions"}) {
		t.Errorf("Tables = %v", got)
	}
	if gs := eng.Groups(); len(gs) != 2 || gs[0].Name != "b" || gs[1].Name != "a" {
		t.Errorf("Groups not in file order")
	}
	if eng.Group("nope") != nil {
		t.Errorf("Group(nope) is not nil")
	}
	if got := eng.Group("a").Columns(); !reflect.DeepEqual(got, []string{"customer_id", "merchant", "created_at", "note", "amount"}) {
		t.Errorf("Columns = %v", got)
	}
	if !eng.Group("a").NeedsOldImage() || eng.Group("b").NeedsOldImage() {
		t.Errorf("NeedsOldImage wrong")
	}

	// Compile reports what only it can see, for files that skipped
	// validation.
	bad := []config.Feature{
		{Name: "g", Table: "public.t", Entity: []string{"id"}, Where: "amount +", Project: []string{"x"}},
		{Name: "g", Table: "public.t", Entity: []string{"id"}, Aggregations: []config.Aggregation{{Name: "a", Function: "median", Column: "x"}}},
		{Name: "g", Table: "public.t", Entity: []string{"id"}, Aggregations: []config.Aggregation{{Name: "a", Function: "count", Window: "1h", Tile: "7m"}}},
	}
	for i, f := range bad {
		if _, err := Compile([]config.Feature{f}); err == nil || !strings.Contains(err.Error(), "features[0]") {
			t.Errorf("Compile(bad[%d]) = %v, want an error naming features[0]", i, err)
		}
	}
}

func TestEntityID(t *testing.T) {
	t.Parallel()
	cases := []struct {
		values []any
		want   string
	}{
		{[]any{int64(42)}, "42"},
		{[]any{"4111-1111"}, "4111-1111"},
		{[]any{dec("12.50")}, "12.50"},
		{[]any{0.5}, "0.5"},
		{[]any{true}, "true"},
		{[]any{[]byte{0xca, 0xfe}}, "cafe"},
		{[]any{time.Date(2026, 11, 22, 3, 0, 0, 0, time.FixedZone("x", 3600))}, "2026-11-22T02:00:00Z"},
		{[]any{int64(7), "acme"}, `["7","acme"]`},
		{[]any{`a"b`, "c"}, `["a\"b","c"]`},
	}
	for _, tc := range cases {
		texts := make([]string, len(tc.values))
		for i, v := range tc.values {
			s, err := entityText(v)
			if err != nil {
				t.Fatalf("entityText(%v): %v", v, err)
			}
			texts[i] = s
		}
		if got := EntityID(texts); got != tc.want {
			t.Errorf("EntityID(%v) = %q, want %q", tc.values, got, tc.want)
		}
	}
	for _, v := range []any{nil, change.Unchanged, change.Row{}, map[string]any{}} {
		if _, err := entityText(v); err == nil {
			t.Errorf("entityText(%v) succeeded", v)
		}
	}
}

func TestCompareValues(t *testing.T) {
	t.Parallel()
	cases := []struct {
		a, b any
		want int
	}{
		{int64(1), int64(2), -1},
		{int64(2), dec("1.5"), 1},
		{dec("1.50"), dec("1.5"), 0},
		{1.5, dec("1.5"), 0},
		{int64(3), 3.5, -1},
		{-0.1, int64(0), -1},
		{"a", "b", -1},
		{"b", "a", 1},
		{int64(999), "a", -1}, // numbers before strings
		{"z", t0, -1},         // strings before times
		{t0, t0.Add(time.Nanosecond), -1},
		{true, false, 1},
		{false, false, 0},
		{time.Second, time.Minute, -1},
		{[]byte("a"), []byte("b"), -1},
		{json.RawMessage(`1`), json.RawMessage(`2`), -1},
		// PostgreSQL's order: -Infinity < numbers < Infinity < NaN.
		{dec("NaN"), dec("1E+1000"), 1},
		{math.NaN(), dec("Infinity"), 1},
		{dec("NaN"), math.NaN(), 0},
		{dec("Infinity"), math.Inf(1), 0},
		{dec("-Infinity"), int64(math.MinInt64), -1},
		{math.Inf(-1), dec("-1E+1000"), -1},
		{change.NegInfinity, time.Date(-4000, 1, 1, 0, 0, 0, 0, time.UTC), -1},
		{change.PosInfinity, time.Date(294276, 1, 1, 0, 0, 0, 0, time.UTC), 1},
		{change.PosInfinity, change.NegInfinity, 1},
		{"infinity", change.NegInfinity, -1}, // a string is not a time
		{[]any{int64(1), int64(2)}, []any{int64(1), int64(3)}, -1},
		{[]any{int64(1)}, []any{int64(1), int64(0)}, -1},
		{[]any{nil}, []any{int64(1)}, 1}, // NULL elements last
	}
	for _, tc := range cases {
		if got := sign(compareValues(tc.a, tc.b)); got != tc.want {
			t.Errorf("compareValues(%v, %v) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := sign(compareValues(tc.b, tc.a)); got != -tc.want {
			t.Errorf("compareValues(%v, %v) = %d, want %d (antisymmetry)", tc.b, tc.a, got, -tc.want)
		}
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func TestJSONValue(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   any
		want string
	}{
		{dec("0.30"), `0.30`},
		{dec("-1E+3"), `-1000`},
		{time.Date(2026, 11, 22, 3, 0, 0, 5, time.FixedZone("x", 3600)), `"2026-11-22T02:00:00.000000005Z"`},
		{90 * time.Minute, `"1h30m0s"`},
		{int64(3), `3`},
		{nil, `null`},
		{json.RawMessage(`{"a":1}`), `{"a":1}`},
		{[]byte("hi"), `"aGk="`},
		// JSON has no NaN or infinities: PostgreSQL's spelling, as strings.
		{dec("NaN"), `"NaN"`},
		{dec("-Infinity"), `"-Infinity"`},
		{math.Inf(1), `"Infinity"`},
		{math.NaN(), `"NaN"`},
		{change.PosInfinity, `"infinity"`},
		{[]any{dec("1.50"), nil, []any{math.Inf(-1)}}, `[1.50,null,["-Infinity"]]`},
	}
	for _, tc := range cases {
		b, err := json.Marshal(JSONValue(tc.in))
		if err != nil || string(b) != tc.want {
			t.Errorf("JSONValue(%v) marshals to %s, %v; want %s", tc.in, b, err, tc.want)
		}
	}
}

func TestDecodeState(t *testing.T) {
	t.Parallel()
	st, err := DecodeState(nil)
	if err != nil || !st.IsEmpty() {
		t.Errorf("DecodeState(nil) = %+v, %v", st, err)
	}
	ok := map[string]any{
		"_lsn": int64(5), "_ord": int64(2), "_ts": int64(7), "_key": []any{"7"},
		"_future": "ignored", "status": "open",
		"_t60":   map[any]any{int64(120): map[any]any{"n": int64(1), "c:amount": int64(1), "s:amount": "2.5", "v:amount": map[any]any{"d:2.5": int64(1)}, "x:unknown": int64(3)}},
		"_tlife": map[any]any{int64(0): map[any]any{"n": int64(1), "l:m": map[any]any{"09223372036854775808|s:a": int64(1)}}},
	}
	st, err = DecodeState(ok)
	if err != nil {
		t.Fatalf("DecodeState: %v", err)
	}
	if st.Pos != pos(5, 2) || st.Updated != 7 || !reflect.DeepEqual(st.Key, []string{"7"}) || st.Row["status"] != "open" || len(st.Row) != 1 {
		t.Errorf("decoded %+v", st)
	}
	if tile := st.Scales[60][120]; tile == nil || tile.Rows != 1 || tile.sum("amount").Text('f') != "2.5" || tile.values("amount").get("d:2.5") != 1 {
		t.Errorf("decoded tile %+v", st.Scales[60][120])
	}
	if st.Scales[0][0].timedValues("m").get("09223372036854775808|s:a") != 1 {
		t.Errorf("decoded lifetime tile %+v", st.Scales[0][0])
	}

	// Positions of the Debezium path and of named streams round-trip.
	st.Pos.Seq = 9
	st.Streams = map[string]change.Position{"db.public.t/0": {LSN: 1, Seq: 2, Ordinal: 3}, "db.public.t/1": {LSN: 4}}
	back, err := DecodeState(st.Bins())
	if err != nil || back.Pos != st.Pos || !reflect.DeepEqual(back.Streams, st.Streams) {
		t.Errorf("round trip of positions: %+v %+v (%v), want %+v %+v", back.Pos, back.Streams, err, st.Pos, st.Streams)
	}

	bad := map[string]map[string]any{
		"lsn not an integer":  {"_lsn": "5"},
		"ts not an integer":   {"_ts": 1.5},
		"key not a list":      {"_key": "7"},
		"scale not a map":     {"_t60": "x"},
		"scale size not int":  {"_tx": map[any]any{}},
		"tile start not int":  {"_t60": map[any]any{"120": map[any]any{}}},
		"tile not a map":      {"_t60": map[any]any{int64(120): "x"}},
		"rows not an integer": {"_t60": map[any]any{int64(120): map[any]any{"n": "1"}}},
		"sum not a decimal":   {"_t60": map[any]any{int64(120): map[any]any{"s:a": "abc"}}},
		"sum not a string":    {"_t60": map[any]any{int64(120): map[any]any{"s:a": int64(3)}}},
		"multiset not a map":  {"_t60": map[any]any{int64(120): map[any]any{"v:a": "x"}}},
		"multiplicity bad":    {"_t60": map[any]any{int64(120): map[any]any{"v:a": map[any]any{"i:1": "1"}}}},
		"multiset key bad":    {"_tlife": map[any]any{int64(0): map[any]any{"l:a": map[any]any{int64(1): int64(1)}}}},
		"streams not a map":   {"_src": []any{}},
		"stream pos short":    {"_src": map[any]any{"t/0": []any{int64(1), int64(2)}}},
		"stream pos not int":  {"_src": map[any]any{"t/0": []any{int64(1), "2", int64(3)}}},
	}
	for name, bins := range bad {
		if _, err := DecodeState(bins); err == nil {
			t.Errorf("%s: DecodeState(%v) succeeded", name, bins)
		}
	}
}

// TestDeterminism applies the same changes twice from nothing and expects
// identical records, then replays them all onto the first store and
// expects no change at all: every replayed update is skipped by position.
func TestDeterminism(t *testing.T) {
	t.Parallel()
	seeds, n := []uint64{1, 2, 3}, 1500
	if testing.Short() || raceEnabled {
		seeds, n = seeds[:1], 800
	}
	for _, seed := range seeds {
		evs := generate(seed, n)
		a := newHarness(t, modelFeatures())
		b := newHarness(t, modelFeatures())
		a.mustApply(evs...)
		b.mustApply(evs...)
		if !reflect.DeepEqual(allBins(a), allBins(b)) {
			t.Fatalf("seed %d: two runs over the same changes differ", seed)
		}
		before, stats := allBins(a), a.stats
		for _, ev := range evs {
			outs, err := a.apply(ev)
			if err != nil {
				t.Fatalf("seed %d: replay of %s: %v", seed, ev.Pos, err)
			}
			for _, o := range outs {
				if o.applied {
					t.Fatalf("seed %d: replay of %s applied to %s", seed, ev.Pos, o.key)
				}
			}
		}
		if !reflect.DeepEqual(before, allBins(a)) || a.stats != stats {
			t.Fatalf("seed %d: a replay changed the records", seed)
		}
		// Replaying as a single batch skips everything too.
		a.begin()
		for _, ev := range evs {
			if _, err := a.apply(ev); err != nil {
				t.Fatal(err)
			}
		}
		a.end()
		if !reflect.DeepEqual(before, allBins(a)) {
			t.Fatalf("seed %d: a batched replay changed the records", seed)
		}
	}
}

func allBins(h *harness) map[sink.Key]map[string]any {
	out := make(map[sink.Key]map[string]any, len(h.states))
	for k, st := range h.states {
		out[k] = st.Bins()
	}
	return out
}

// TestSchemaChange: a new row image without a key, time or aggregated
// column (dropped or renamed while streaming) is a *SchemaError naming the
// group and the column, never read as NULL; a missing projected column is
// not (the stored value is kept).
func TestSchemaChange(t *testing.T) {
	t.Parallel()
	p := pos(16, 3)
	good := change.Row{"id": int64(1), "customer_id": int64(7), "amount": int64(5), "status": "ok", "tag": "a", "created_at": t0}
	projected := config.Feature{Name: "tx", Table: "transactions", Entity: []string{"customer_id"}, Project: []string{"note"},
		Where: "let s = status; s != 'declined' && len(upper(s)) > 0"}
	for _, tc := range []struct {
		f   config.Feature
		col string
	}{
		{txFeature(), "customer_id"}, // entity
		{txFeature(), "amount"},      // aggregated
		{txFeature(), "created_at"},  // time
		{txFeature(), "status"},      // in the filter
		{projected, "note"},          // projected
		{projected, "status"},        // in the filter, through a variable
	} {
		h := newHarness(t, []config.Feature{tc.f})
		row := with(good, "note", "n")
		delete(row, tc.col)
		_, err := h.apply(insert(p, t0, row))
		var se *SchemaError
		if !errors.As(err, &se) || se.Column != tc.col || se.Group != "tx" || !strings.Contains(err.Error(), "dropped or renamed") {
			t.Errorf("without %s: got %v, want a *SchemaError naming it", tc.col, err)
		}
	}
	// A column no feature reads may go; function names are not columns.
	h := newHarness(t, []config.Feature{projected})
	if _, err := h.apply(insert(p, t0, with(good, "note", "n", "amount", nil))); err != nil {
		t.Errorf("a column the group does not read: %v", err)
	}
	row := with(good, "note", "n")
	delete(row, "amount")
	if _, err := h.apply(insert(pos(17, 1), t0, row)); err != nil {
		t.Errorf("without a column the group does not read: %v", err)
	}
}

// TestCommitTimeGroupRetraction: a group without a time column would use
// the commit time as event time, and an UPDATE or DELETE would then retract
// its old row from the tile of its own commit, not the one the row was
// added to. Such groups are refused for windowed aggregates and first/last;
// lifetime count, sum, avg, min, max and distinct do not depend on the
// tile and stay allowed.
func TestCommitTimeGroupRetraction(t *testing.T) {
	t.Parallel()
	for _, a := range []config.Aggregation{
		{Name: "n_1h", Function: "count", Window: "1h"},
		{Name: "last_life", Function: "last", Column: "amount"},
		{Name: "first_life", Function: "first", Column: "amount"},
	} {
		_, err := Compile([]config.Feature{{Name: "c", Table: "public.t", Entity: []string{"customer_id"}, Aggregations: []config.Aggregation{a}}})
		if err == nil || !strings.Contains(err.Error(), "features[0].time: is required") {
			t.Errorf("%s without a time column: got %v", a.Name, err)
		}
	}
	h := newHarness(t, []config.Feature{{Name: "c", Table: "transactions", Entity: []string{"customer_id"},
		Aggregations: []config.Aggregation{
			{Name: "n", Function: "count"},
			{Name: "max", Function: "max", Column: "amount"},
		}}})
	row := change.Row{"id": int64(1), "customer_id": int64(7), "amount": int64(100)}
	h.mustApply(
		insert(pos(1, 1), at("0"), change.Row{"id": int64(2), "customer_id": int64(7), "amount": int64(5)}),
		insert(pos(2, 1), at("10m"), row),
		remove(pos(3, 1), at("20m"), row),
	)
	got := h.readShown("c", "7", at("20m"))
	if want := map[string]string{"n": "i:1", "max": "i:5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("lifetime aggregates without a time column: read %v, want %v", got, want)
	}
}

// aggFeature is group tx on transactions, by customer_id, with aggs.
func aggFeature(aggs []config.Aggregation) config.Feature {
	return config.Feature{Name: "tx", Table: "transactions", Entity: []string{"customer_id"}, Time: "created_at", Aggregations: aggs}
}

// TestNonFiniteNumbers: NaN and the infinities are summed, averaged and
// ordered as PostgreSQL does (NaN above every number; Infinity plus
// -Infinity is NaN), and retract exactly, through a store round trip.
func TestNonFiniteNumbers(t *testing.T) {
	t.Parallel()
	f := aggFeature([]config.Aggregation{
		{Name: "sum", Function: "sum", Column: "amount"},
		{Name: "avg", Function: "avg", Column: "amount"},
		{Name: "min", Function: "min", Column: "amount"},
		{Name: "max", Function: "max", Column: "amount"},
		{Name: "distinct", Function: "distinct", Column: "amount"},
		{Name: "sum_1h", Function: "sum", Column: "amount", Window: "1h"},
	})
	h := newHarness(t, []config.Feature{f})
	rows := map[int64]change.Row{}
	steps := []struct {
		op     string
		id     int64
		amount any
		want   map[string]string // by show
	}{
		{"insert", 1, dec("1.50"), map[string]string{"sum": "d:1.50", "max": "d:1.5", "distinct": "i:1"}},
		{"insert", 2, dec("NaN"), map[string]string{"sum": "d:NaN", "avg": "d:NaN", "min": "d:1.5", "max": "d:NaN", "sum_1h": "d:NaN", "distinct": "i:2"}},
		{"insert", 3, math.NaN(), map[string]string{"sum": "d:NaN", "distinct": "i:2"}}, // float NaN is the same NaN
		{"insert", 4, math.Inf(1), map[string]string{"sum": "d:NaN", "distinct": "i:3"}},
		{"delete", 2, nil, map[string]string{"sum": "d:NaN"}},
		{"delete", 3, nil, map[string]string{"sum": "d:Infinity", "avg": "d:Infinity", "max": "f:+Inf", "min": "d:1.5"}},
		{"insert", 5, dec("-Infinity"), map[string]string{"sum": "d:NaN", "min": "d:-Infinity"}},
		{"delete", 4, nil, map[string]string{"sum": "d:-Infinity", "max": "d:1.5"}},
		{"delete", 5, nil, map[string]string{"sum": "d:1.50", "avg": "d:1.5", "min": "d:1.5", "max": "d:1.5", "sum_1h": "d:1.50", "distinct": "i:1"}},
	}
	for i, s := range steps {
		p := pos(uint64(i+1), 1)
		row := change.Row{"id": s.id, "customer_id": int64(7), "amount": s.amount, "created_at": at("-1m")}
		if s.op == "insert" {
			rows[s.id] = row
			h.mustApply(insert(p, t0, row))
		} else {
			h.mustApply(remove(p, t0, rows[s.id]))
		}
		got := h.readShown("tx", "7", t0)
		for name, want := range s.want {
			if got[name] != want {
				t.Errorf("step %d (%s %d): %s = %s, want %s", i, s.op, s.id, name, got[name], want)
			}
		}
	}
	if st := h.state("tx", "7"); st != nil && st.Scales[0][0].view().nonFinite("amount") != [3]int64{} {
		t.Errorf("non-finite counts left after every non-finite row left: %v", describeState(st))
	}
}

// TestNumberTypeChange: after ALTER COLUMN TYPE integer → numeric (or
// double), old rows come back in the new type. Their retraction finds
// what the old type added, and distinct counts 5 and 5.0 once.
func TestNumberTypeChange(t *testing.T) {
	t.Parallel()
	f := aggFeature([]config.Aggregation{
		{Name: "max", Function: "max", Column: "amount"},
		{Name: "distinct", Function: "distinct", Column: "amount"},
		{Name: "last", Function: "last", Column: "amount"},
	})
	h := newHarness(t, []config.Feature{f})
	row := func(id int64, amount any, offset string) change.Row {
		return change.Row{"id": id, "customer_id": int64(7), "amount": amount, "created_at": at(offset)}
	}
	h.mustApply(insert(pos(1, 1), t0, row(1, int64(9), "-3m")), insert(pos(2, 1), t0, row(2, int64(5), "-2m")))
	// The column is numeric now; then double precision.
	h.mustApply(insert(pos(3, 1), t0, row(3, dec("5.0"), "-1m")))
	if got := h.readShown("tx", "7", t0); got["distinct"] != "i:2" || got["max"] != "i:9" {
		t.Errorf("after the type change: %v, want distinct 2 and max 9", got)
	}
	h.mustApply(update(pos(4, 1), t0, row(1, dec("9"), "-3m"), row(1, dec("1"), "-3m")),
		remove(pos(5, 1), t0, row(2, 5.0, "-2m")),
		remove(pos(6, 1), t0, row(3, 5.0, "-1m")))
	got := h.readShown("tx", "7", t0)
	if got["distinct"] != "i:1" || got["max"] != "d:1" || got["last"] != "d:1" {
		t.Errorf("after retracting old rows in the new type: %v, want distinct 1, max 1, last 1", got)
	}
	if st := h.state("tx", "7"); len(st.Scales[0][0].view().values("amount")) != 1 {
		t.Errorf("stale values left: %v", describeState(st))
	}
}

// TestArraysAndInfinityAggregate: arrays can be counted distinct and be
// first/last, and infinite times order around every time.
func TestArraysAndInfinityAggregate(t *testing.T) {
	t.Parallel()
	f := aggFeature([]config.Aggregation{
		{Name: "tags", Function: "distinct", Column: "tags"},
		{Name: "last_tags", Function: "last", Column: "tags"},
		{Name: "min_due", Function: "min", Column: "due"},
		{Name: "max_due", Function: "max", Column: "due"},
	})
	h := newHarness(t, []config.Feature{f})
	row := func(id int64, tags []any, due any, offset string) change.Row {
		return change.Row{"id": id, "customer_id": int64(7), "tags": tags, "due": due, "created_at": at(offset)}
	}
	r1 := row(1, []any{[]any{int64(1), int64(2)}, []any{int64(3), int64(4)}}, change.PosInfinity, "-3m")
	r2 := row(2, []any{int64(1), int64(2), int64(3), int64(4)}, t0, "-2m")
	r3 := row(3, []any{int64(1), nil}, change.NegInfinity, "-1m")
	h.mustApply(insert(pos(1, 1), t0, r1), insert(pos(2, 1), t0, r2), insert(pos(3, 1), t0, r3))
	got := h.read("tx", "7", t0)
	if got["tags"] != int64(3) || !reflect.DeepEqual(got["last_tags"], []any{int64(1), nil}) ||
		got["min_due"] != change.NegInfinity || got["max_due"] != change.PosInfinity {
		t.Errorf("got %v", got)
	}
	h.mustApply(remove(pos(4, 1), t0, r1), remove(pos(5, 1), t0, r3))
	got = h.read("tx", "7", t0)
	if got["tags"] != int64(1) || got["min_due"] != t0 || got["max_due"] != t0 {
		t.Errorf("after deletes: %v", got)
	}
}
