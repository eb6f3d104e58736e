package transform

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/sink"
)

// t0 is the reference time of the tests: every "@offset" is relative to it.
var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

const table = "public.transactions"

// harness mimics the runtime around an Engine: a store of records (one
// State per sink.Key), position checks against the state as loaded at the
// start of a batch, and a round trip through the storage encoding after
// every applied update.
type harness struct {
	tb     testing.TB
	eng    *Engine
	states map[sink.Key]*State
	stats  Stats
	// loaded holds, while a batch is open, the position of every record
	// as it was when the batch first touched it.
	loaded map[sink.Key]change.Position
	// memos are the read memos of the states as they are; any change
	// forgets them all. Every read is made with and without its memo,
	// which must agree.
	memos map[*State]*Memo
	// open keeps states as Apply left them, never encoded, as the
	// runtime's cache and an export's replay hold them: reads then go
	// through what open tiles keep (the min/max extremes).
	open bool
}

// outcome is what happened to one planned update.
type outcome struct {
	key     sink.Key
	applied bool
	at      change.Position // the record's position the update was checked against
}

func (o outcome) String() string {
	if o.applied {
		return o.key.String() + ": applied"
	}
	return fmt.Sprintf("%s: skipped (record at %s)", o.key, o.at)
}

// newHarness validates features through config.Parse (so tables are
// qualified and files are checked as in production) and compiles them.
func newHarness(tb testing.TB, features []config.Feature) *harness {
	tb.Helper()
	eng, err := compileFeatures(features)
	if err != nil {
		tb.Fatal(err)
	}
	return &harness{tb: tb, eng: eng, states: map[sink.Key]*State{}}
}

// compileFeatures runs features through config.Parse and Compile.
func compileFeatures(features []config.Feature) (*Engine, error) {
	file := map[string]any{
		"name": "test",
		"config": map[string]any{
			"plugin.name": "pgoutput", "snapshot.mode": "no_data",
			"database.hostname": "localhost", "database.user": "u", "database.dbname": "d",
		},
		"features": features,
	}
	b, err := json.Marshal(file)
	if err != nil {
		return nil, err
	}
	c, err := config.Parse(b, func(string) string { return "" })
	if err != nil {
		return nil, fmt.Errorf("features do not validate:\n%w", err)
	}
	return Compile(c.Features)
}

// begin opens a batch: until end, updates are checked against the
// positions records had when the batch first touched them.
func (h *harness) begin() { h.loaded = map[sink.Key]change.Position{} }

// end closes the batch.
func (h *harness) end() { h.loaded = nil }

// apply plans and applies one event. Outside a batch the event is a batch
// of its own. On error nothing of the event is kept, as the runtime would
// discard it.
func (h *harness) apply(ev change.Event) ([]outcome, error) {
	h.memos = nil
	h.tb.Helper()
	ups, err := h.eng.Plan(&ev, nil)
	if err != nil {
		return nil, err
	}
	var out []outcome
	staged := map[sink.Key]*State{}
	for i := range ups {
		u := &ups[i]
		cur := staged[u.Key]
		if cur == nil {
			cur = h.states[u.Key]
		}
		if cur == nil {
			cur = &State{}
		}
		at := cur.Pos
		if h.loaded != nil {
			if p, ok := h.loaded[u.Key]; ok {
				at = p
			} else {
				h.loaded[u.Key] = at
			}
		}
		if !at.Less(u.Pos) {
			out = append(out, outcome{key: u.Key, at: at})
			continue
		}
		if h.open {
			if err := u.Group.Apply(cur, u, &h.stats); err != nil {
				return out, err
			}
			staged[u.Key] = cur
			out = append(out, outcome{key: u.Key, applied: true, at: at})
			continue
		}
		// Work on a decoded copy, as the runtime works on what it read.
		st := h.roundTrip(cur)
		if err := u.Group.Apply(st, u, &h.stats); err != nil {
			return out, err
		}
		staged[u.Key] = h.roundTrip(st)
		out = append(out, outcome{key: u.Key, applied: true, at: at})
	}
	for k, st := range staged {
		h.states[k] = st
	}
	return out, nil
}

// mustApply applies events, each its own batch, and fails on any error.
func (h *harness) mustApply(evs ...change.Event) {
	h.tb.Helper()
	for _, ev := range evs {
		if _, err := h.apply(ev); err != nil {
			h.tb.Fatalf("apply %s at %s: %v", ev.Op, ev.Pos, err)
		}
	}
}

// roundTrip encodes st as bins and decodes it again, failing when the
// encoding loses anything.
func (h *harness) roundTrip(st *State) *State {
	h.tb.Helper()
	bins := st.Bins()
	back, err := DecodeState(bins)
	if err != nil {
		h.tb.Fatalf("DecodeState(Bins()): %v\nbins: %v", err, bins)
	}
	if again := back.Bins(); !reflect.DeepEqual(again, bins) {
		h.tb.Fatalf("bins do not survive a round trip:\nbefore %v\nafter  %v", bins, again)
	}
	if back.Pos != st.Pos || back.Updated != st.Updated || !sameStrings(back.Key, st.Key) {
		h.tb.Fatalf("round trip changed pos/updated/key: %v %v %v -> %v %v %v",
			st.Pos, st.Updated, st.Key, back.Pos, back.Updated, back.Key)
	}
	if back.IsEmpty() != st.IsEmpty() {
		h.tb.Fatalf("round trip changed emptiness: %v (row %#v) -> %v", st.IsEmpty(), st.Row, back.IsEmpty())
	}
	return back
}

func sameStrings(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

// state returns the record of group for entity id (nil when none).
func (h *harness) state(group, id string) *State {
	return h.states[sink.Key{Set: group, ID: id}]
}

// read computes a group's features for an entity at a read time, by name.
func (h *harness) read(group, id string, at time.Time) map[string]any {
	h.tb.Helper()
	g := h.eng.Group(group)
	if g == nil {
		h.tb.Fatalf("no group %s", group)
	}
	st := h.state(group, id)
	if st == nil {
		st = &State{}
	}
	out := map[string]any{}
	for _, f := range g.Read(st, at) {
		out[f.Name] = f.Value
	}
	if h.memos == nil {
		h.memos = map[*State]*Memo{}
	}
	m := h.memos[st]
	if m == nil {
		m = &Memo{}
		h.memos[st] = m
	}
	for range 2 { // the first computes and remembers, the second remembers
		for _, f := range g.ReadMemo(st, at, m) {
			if show(f.Value) != show(out[f.Name]) {
				h.tb.Fatalf("%s/%s at %s: %s read with a memo is %s, without %s", group, id, at, f.Name, show(f.Value), show(out[f.Name]))
			}
		}
	}
	return out
}

// readShown is read with every value rendered by show.
func (h *harness) readShown(group, id string, at time.Time) map[string]string {
	h.tb.Helper()
	out := map[string]string{}
	for k, v := range h.read(group, id, at) {
		out[k] = show(v)
	}
	return out
}

// show renders a value with its type, unambiguously: i:42, d:0.30,
// f:0.1, s:text, t:2026-…, b:true, null.
func show(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case int64:
		return "i:" + strconv.FormatInt(x, 10)
	case float64:
		return "f:" + strconv.FormatFloat(x, 'g', -1, 64)
	case *apd.Decimal:
		return "d:" + x.Text('f')
	case string:
		return "s:" + x
	case time.Time:
		return "t:" + x.UTC().Format(time.RFC3339Nano)
	case bool:
		return "b:" + strconv.FormatBool(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = show(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return fmt.Sprintf("%T:%v", v, v)
}

// dec parses a decimal literal.
func dec(s string) *apd.Decimal {
	d, _, err := apd.NewFromString(s)
	if err != nil {
		panic(err)
	}
	return d
}

// at returns t0 plus an offset in config.ParseDuration syntax with an
// optional sign and an optional leading whole number of days: "-3d",
// "90s", "-1d2h", "0".
func at(offset string) time.Time {
	d, err := parseOffset(offset)
	if err != nil {
		panic(err)
	}
	return t0.Add(d)
}

func parseOffset(s string) (time.Duration, error) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	var d time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		days, err := strconv.Atoi(s[:i])
		if err != nil {
			return 0, fmt.Errorf("offset %q: %v", s, err)
		}
		d = time.Duration(days) * 24 * time.Hour
		s = s[i+1:]
	}
	if s != "" {
		rest, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("offset %q: %v", s, err)
		}
		d += rest
	}
	if neg {
		d = -d
	}
	return d, nil
}

// pos builds a position.
func pos(lsn uint64, ord uint32) change.Position { return change.Position{LSN: lsn, Ordinal: ord} }

func insert(p change.Position, commit time.Time, after change.Row) change.Event {
	return change.Event{Op: change.Insert, Table: table, After: after, Pos: p, CommitTime: commit}
}

func update(p change.Position, commit time.Time, before, after change.Row) change.Event {
	return change.Event{Op: change.Update, Table: table, Before: before, After: after, Pos: p, CommitTime: commit}
}

func remove(p change.Position, commit time.Time, before change.Row) change.Event {
	return change.Event{Op: change.Delete, Table: table, Before: before, Pos: p, CommitTime: commit}
}

// with returns a copy of r with kv (name, value, name, value…) set.
func with(r change.Row, kv ...any) change.Row {
	out := make(change.Row, len(r)+len(kv)/2)
	for k, v := range r {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// describeState renders a record for golden files: position, freshness,
// key, projected row and every tile with its accumulators, sorted.
func describeState(st *State) []string {
	if st == nil {
		return []string{"no record"}
	}
	var out []string
	out = append(out, fmt.Sprintf("pos %s updated %s key %q", st.Pos, offsetOf(time.UnixMicro(st.Updated)), st.Key))
	if st.Row != nil {
		cols := make([]string, 0, len(st.Row))
		for c := range st.Row {
			cols = append(cols, c)
		}
		sort.Strings(cols)
		parts := make([]string, len(cols))
		for i, c := range cols {
			parts[i] = c + "=" + show(st.Row[c])
		}
		out = append(out, "row "+strings.Join(parts, " "))
	} else {
		out = append(out, "row none")
	}
	sizes := make([]int64, 0, len(st.Scales))
	for s := range st.Scales {
		sizes = append(sizes, s)
	}
	sort.Slice(sizes, func(i, j int) bool { return sizes[i] < sizes[j] })
	for _, size := range sizes {
		for _, start := range sortedStarts(st.Scales[size]) {
			t := st.Scales[size][start].view()
			label := "lifetime"
			if size > 0 {
				label = fmt.Sprintf("%v tile @%s", time.Duration(size)*time.Second, offsetOf(time.Unix(start, 0)))
			}
			out = append(out, label+": "+describeTile(t))
		}
	}
	return out
}

func describeTile(t *Tile) string {
	parts := []string{fmt.Sprintf("n=%d", t.Rows)}
	for _, c := range t.cols {
		if c.count != 0 {
			parts = append(parts, fmt.Sprintf("c:%s=%d", c.name, c.count))
		}
	}
	for _, c := range t.cols {
		if c.sum != nil {
			parts = append(parts, fmt.Sprintf("s:%s=%s", c.name, c.sum.Text('f')))
		}
	}
	for _, c := range t.cols {
		if len(c.vals) > 0 {
			parts = append(parts, fmt.Sprintf("v:%s=%s", c.name, describeMultiset(c.vals, false)))
		}
	}
	for _, c := range t.cols {
		if len(c.timed) > 0 {
			parts = append(parts, fmt.Sprintf("l:%s=%s", c.name, describeMultiset(c.timed, true)))
		}
	}
	return strings.Join(parts, " ")
}

func describeMultiset(m multiset, timed bool) string {
	parts := make([]string, 0, len(m))
	for _, e := range m {
		label := e.key
		if timed {
			ts, v, _ := strings.Cut(e.key, "|")
			n, _ := strconv.ParseUint(ts, 10, 64)
			label = "@" + offsetOf(time.UnixMicro(int64(n-1<<63))) + "|" + v
		}
		if e.n != 1 {
			label += fmt.Sprintf("×%d", e.n)
		}
		parts = append(parts, label)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// offsetOf renders a time as its offset from t0: "0s", "-5m0s", "-3d1h0m0s".
func offsetOf(t time.Time) string {
	d := t.Sub(t0)
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	if days := d / (24 * time.Hour); days > 0 {
		rest := d - days*24*time.Hour
		if rest == 0 {
			return fmt.Sprintf("%s%dd", sign, days)
		}
		return fmt.Sprintf("%s%dd%s", sign, days, rest)
	}
	return sign + d.String()
}

// sortedStarts returns tile starts in increasing order.
func sortedStarts(tiles map[int64]*Tile) []int64 {
	out := make([]int64, 0, len(tiles))
	for s := range tiles {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
