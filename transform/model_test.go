package transform

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
)

// The property test: random inserts, updates and deletes over a few
// entities, applied through the harness (plan, position check, apply,
// storage round trip), compared after every few changes with a brute-force
// model that recomputes every feature from the set of live rows, using the
// documented window semantics and nothing of the engine's state.

// modelFeatures are the groups the property test runs: windows of 10m, 1h
// (1m and 5m tiles) and 30d (12h and 1d tiles), lifetime aggregates,
// filters (one on NULL), a string entity key, projection alone and
// projection beside aggregates in a filtered group.
func modelFeatures() []config.Feature {
	var aggs []config.Aggregation
	add := func(name, fn, col, window, tile string) {
		aggs = append(aggs, config.Aggregation{Name: name, Function: fn, Column: col, Window: window, Tile: tile})
	}
	add("n_10m", "count", "", "10m", "")
	add("n_1h", "count", "", "1h", "")
	add("n_30d", "count", "", "30d", "")
	add("n_life", "count", "", "", "")
	add("cnt_amt_1h", "count", "amount", "1h", "")
	add("cnt_amt_life", "count", "amount", "", "")
	add("sum_10m", "sum", "amount", "10m", "")
	add("sum_1h", "sum", "amount", "1h", "5m")
	add("sum_30d", "sum", "amount", "30d", "")
	add("sum_life", "sum", "amount", "", "")
	add("avg_1h", "avg", "amount", "1h", "")
	add("avg_30d", "avg", "amount", "30d", "1d")
	add("avg_life", "avg", "amount", "", "")
	add("min_10m", "min", "amount", "10m", "")
	add("max_1h", "max", "amount", "1h", "")
	add("min_30d", "min", "amount", "30d", "")
	add("max_30d", "max", "amount", "30d", "")
	add("min_life", "min", "amount", "", "")
	add("max_life", "max", "amount", "", "")
	add("first_1h", "first", "merchant", "1h", "")
	add("last_1h", "last", "merchant", "1h", "")
	add("first_30d", "first", "merchant", "30d", "")
	add("last_30d", "last", "merchant", "30d", "")
	add("first_life", "first", "merchant", "", "")
	add("last_life", "last", "merchant", "", "")
	add("first_amt", "first", "amount", "", "")
	add("last_amt_1h", "last", "amount", "1h", "")
	add("distinct_1h", "distinct", "merchant", "1h", "")
	add("distinct_30d", "distinct", "merchant", "30d", "")
	add("distinct_life", "distinct", "merchant", "", "")
	add("dsl_10m", "days_since_last", "created_at", "10m", "")
	add("dsl_30d", "days_since_last", "created_at", "30d", "")
	add("dsl_life", "days_since_last", "created_at", "", "")
	return []config.Feature{
		{Name: "agg", Table: "transactions", Entity: []string{"customer_id"}, Time: "created_at",
			Where: "status != 'void'", Aggregations: aggs},
		{Name: "bymerchant", Table: "transactions", Entity: []string{"merchant"}, Time: "created_at",
			Where: "merchant != nil",
			Aggregations: []config.Aggregation{
				{Name: "n_1h", Function: "count", Window: "1h"},
				{Name: "sum_life", Function: "sum", Column: "amount"},
				{Name: "max_30d", Function: "max", Column: "amount", Window: "30d"},
				{Name: "distinct_cust", Function: "distinct", Column: "customer_id"},
				{Name: "last_cust_10m", Function: "last", Column: "customer_id", Window: "10m"},
			}},
		{Name: "proj", Table: "transactions", Entity: []string{"id"}, Project: []string{"status", "merchant", "amount"}},
		{Name: "custproj", Table: "transactions", Entity: []string{"customer_id"}, Time: "created_at",
			Where:        "status == 'ok'",
			Project:      []string{"merchant"},
			Aggregations: []config.Aggregation{{Name: "n_ok", Function: "count"}, {Name: "n_ok_1h", Function: "count", Window: "1h"}}},
	}
}

// generator makes a random but valid change stream: every change plans
// and applies without error.
type generator struct {
	r      *rand.Rand
	commit time.Time
	lsn    uint64
	nextID int64
	live   map[int64]change.Row
}

var merchants = []string{"acme", "bolt", "cafe", "dojo", "echo"}

// generate returns n changes from seed, in transactions of 1-4 changes
// that share a commit LSN and time.
func generate(seed uint64, n int) []change.Event {
	g := &generator{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), commit: t0.Add(-40 * 24 * time.Hour),
		lsn: 0x1000, nextID: 1, live: map[int64]change.Row{}}
	var out []change.Event
	for len(out) < n {
		g.advance()
		size := 1 + g.r.IntN(4)
		for ord := 1; ord <= size && len(out) < n; ord++ {
			ev := g.change()
			ev.Pos = change.Position{LSN: g.lsn, Ordinal: uint32(ord)}
			ev.CommitTime = g.commit
			out = append(out, ev)
		}
	}
	return out
}

func (g *generator) advance() {
	g.lsn += 1 + uint64(g.r.IntN(1000))
	var d time.Duration
	switch x := g.r.Float64(); {
	case x < 0.05:
		d = -time.Duration(g.r.Int64N(int64(30 * time.Second))) // commit times are not monotonic
	case x < 0.60:
		d = time.Duration(g.r.Int64N(int64(time.Minute)))
	case x < 0.85:
		d = time.Minute + time.Duration(g.r.Int64N(int64(30*time.Minute)))
	case x < 0.96:
		d = time.Hour + time.Duration(g.r.Int64N(int64(5*time.Hour)))
	default:
		d = 12*time.Hour + time.Duration(g.r.Int64N(int64(60*time.Hour)))
	}
	g.commit = g.commit.Add(d)
}

func (g *generator) amount() any {
	switch x := g.r.Float64(); {
	case x < 0.08:
		return nil
	case x < 0.38:
		return int64(g.r.IntN(550) - 50)
	case x < 0.78:
		// Two decimals, sometimes written with more trailing zeros.
		d := apd.New(int64(g.r.IntN(100000)-10000), -2)
		if g.r.IntN(4) == 0 {
			d = apd.New(d.Coeff.Int64()*10, -3)
			if d.Negative {
				d.Coeff.Neg(&d.Coeff)
			}
		}
		return d
	default:
		return float64(g.r.IntN(5000)-500) / 10
	}
}

func (g *generator) merchant() any {
	if g.r.IntN(20) == 0 {
		return nil
	}
	return merchants[g.r.IntN(len(merchants))]
}

func (g *generator) status() string {
	switch x := g.r.Float64(); {
	case x < 0.7:
		return "ok"
	case x < 0.85:
		return "void"
	}
	return "pending"
}

func (g *generator) eventTime() time.Time {
	micros := time.Duration(g.r.Int64N(1_000_000)) * time.Microsecond
	var back time.Duration
	switch x := g.r.Float64(); {
	case x < 0.50:
		back = time.Duration(g.r.Int64N(int64(15 * time.Minute)))
	case x < 0.75:
		back = 15*time.Minute + time.Duration(g.r.Int64N(int64(3*time.Hour)))
	case x < 0.90:
		back = 3*time.Hour + time.Duration(g.r.Int64N(int64(32*24*time.Hour)))
	case x < 0.95:
		back = -time.Duration(g.r.Int64N(int64(10 * time.Minute))) // in the future
	default:
		back = 32*24*time.Hour + time.Duration(g.r.Int64N(int64(30*24*time.Hour)))
	}
	return g.commit.Add(-back).Truncate(time.Second).Add(micros)
}

func (g *generator) newRow() change.Row {
	id := g.nextID
	g.nextID++
	return change.Row{
		"id": id, "customer_id": int64(1 + g.r.IntN(5)), "merchant": g.merchant(),
		"amount": g.amount(), "status": g.status(), "created_at": g.eventTime(),
		"note": "n" + strconv.Itoa(g.r.IntN(3)),
	}
}

func (g *generator) pickLive() int64 {
	ids := make([]int64, 0, len(g.live))
	for id := range g.live {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids[g.r.IntN(len(ids))]
}

func (g *generator) change() change.Event {
	x := g.r.Float64()
	switch {
	case len(g.live) == 0 || (len(g.live) < 40 && x < 0.40):
		row := g.newRow()
		g.live[row["id"].(int64)] = row
		return change.Event{Op: change.Insert, Table: table, After: copyRow(row)}
	case x < 0.75:
		id := g.pickLive()
		old := g.live[id]
		next := copyRow(old)
		// Change one to three things at once.
		for k := 1 + g.r.IntN(3); k > 0; k-- {
			switch g.r.IntN(7) {
			case 0, 1:
				next["amount"] = g.amount()
			case 2:
				next["customer_id"] = int64(1 + g.r.IntN(5)) // moves between entities
			case 3:
				next["created_at"] = g.eventTime() // moves between tiles
			case 4:
				next["status"] = g.status() // in and out of the filters
			case 5:
				next["merchant"] = g.merchant()
			case 6:
				next["note"] = "n" + strconv.Itoa(g.r.IntN(3))
			}
		}
		g.live[id] = next
		after := copyRow(next)
		// Columns that did not change may come as unchanged TOAST.
		for _, col := range []string{"amount", "merchant", "note", "status"} {
			if reflect.DeepEqual(old[col], next[col]) && g.r.IntN(3) == 0 {
				after[col] = change.Unchanged
			}
		}
		return change.Event{Op: change.Update, Table: table, Before: copyRow(old), After: after}
	default:
		id := g.pickLive()
		old := g.live[id]
		delete(g.live, id)
		return change.Event{Op: change.Delete, Table: table, Before: copyRow(old)}
	}
}

func copyRow(r change.Row) change.Row {
	out := make(change.Row, len(r))
	for k, v := range r {
		out[k] = v
	}
	return out
}

// model is the brute-force reference: the live rows, and the projected
// rows per group and entity as the documented semantics define them.
type model struct {
	features []config.Feature
	live     map[int64]change.Row
	// rows holds, per group and entity ID, the projected row (bin form;
	// nil: none).
	rows map[string]map[string]map[string]any
	// ids lists every entity ID seen per group.
	ids map[string]map[string]bool
}

func newModel(features []config.Feature) *model {
	m := &model{features: features, live: map[int64]change.Row{},
		rows: map[string]map[string]map[string]any{}, ids: map[string]map[string]bool{}}
	for _, f := range features {
		m.rows[f.Name] = map[string]map[string]any{}
		m.ids[f.Name] = map[string]bool{}
	}
	return m
}

// filled is the new image with unchanged TOAST values taken from the old.
func filled(ev change.Event) change.Row {
	if ev.After == nil {
		return nil
	}
	out := copyRow(ev.After)
	for k, v := range out {
		if v == change.Unchanged {
			out[k] = ev.Before[k]
		}
	}
	return out
}

// modelWhere evaluates the three filters the model features use.
func modelWhere(where string, row change.Row) bool {
	switch where {
	case "":
		return true
	case "status != 'void'":
		return row["status"] != "void"
	case "status == 'ok'":
		return row["status"] == "ok"
	case "merchant != nil":
		return row["merchant"] != nil
	}
	panic("model has no filter " + where)
}

func modelKey(f config.Feature, row change.Row) string {
	texts := make([]string, len(f.Entity))
	for i, col := range f.Entity {
		switch v := row[col].(type) {
		case int64:
			texts[i] = strconv.FormatInt(v, 10)
		case string:
			texts[i] = v
		default:
			panic(fmt.Sprintf("model entity value %T", v))
		}
	}
	if len(texts) == 1 {
		return texts[0]
	}
	return "[" + strings.Join(texts, ",") + "]"
}

// binForm is how a projected value is stored.
func binForm(v any) any {
	switch x := v.(type) {
	case *apd.Decimal:
		return x.Text('f')
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	return v
}

func (m *model) apply(ev change.Event) {
	oldRow, newRow := ev.Before, filled(ev)
	for _, f := range m.features {
		oldIn := oldRow != nil && modelWhere(f.Where, oldRow)
		newIn := newRow != nil && modelWhere(f.Where, newRow)
		var oldKey, newKey string
		if oldIn {
			oldKey = modelKey(f, oldRow)
			m.ids[f.Name][oldKey] = true
		}
		if newIn {
			newKey = modelKey(f, newRow)
			m.ids[f.Name][newKey] = true
		}
		if len(f.Project) == 0 {
			continue
		}
		// The projected row is the last one written to the entity; a
		// retraction (delete, key move, leaving the filter) clears it.
		if oldIn && (!newIn || oldKey != newKey) {
			m.rows[f.Name][oldKey] = nil
		}
		if newIn {
			row := map[string]any{}
			for _, col := range f.Project {
				if v := newRow[col]; v != nil {
					row[col] = binForm(v)
				}
			}
			if len(row) == 0 {
				row = nil
			}
			m.rows[f.Name][newKey] = row
		}
	}
	switch ev.Op {
	case change.Insert, change.Update:
		m.live[newRow["id"].(int64)] = newRow
	case change.Delete:
		delete(m.live, oldRow["id"].(int64))
	}
}

// read computes a group's features for one entity at now from the live
// rows alone.
func (m *model) read(f config.Feature, id string, now time.Time) map[string]any {
	var rows []change.Row
	for _, r := range m.live {
		if modelWhere(f.Where, r) && modelKey(f, r) == id {
			rows = append(rows, r)
		}
	}
	out := map[string]any{}
	for _, col := range f.Project {
		out[col] = m.rows[f.Name][id][col]
	}
	for _, a := range f.Aggregations {
		tile, err := config.TileOf(a)
		if err != nil {
			panic(err)
		}
		window := config.WindowOf(a)
		var in []change.Row
		for _, r := range rows {
			if inWindow(r["created_at"].(time.Time), now, window, tile) {
				in = append(in, r)
			}
		}
		out[a.Name] = modelAggregate(a, in, now)
	}
	return out
}

// inWindow is the documented window: the tiles that start in [c-W, c],
// c the start of the tile holding now. Lifetime: everything.
func inWindow(event, now time.Time, window, tile time.Duration) bool {
	if window == 0 {
		return true
	}
	size := int64(tile / time.Second)
	floorSec := func(t time.Time) int64 {
		s := t.Unix() // whole seconds, rounded down
		return s - ((s%size)+size)%size
	}
	c := floorSec(now)
	start := floorSec(event)
	return start >= c-int64(window/time.Second) && start <= c
}

func modelAggregate(a config.Aggregation, rows []change.Row, now time.Time) any {
	var vals []any
	for _, r := range rows {
		if a.Column != "" && r[a.Column] != nil {
			vals = append(vals, r[a.Column])
		}
	}
	switch a.Function {
	case "count":
		if a.Column == "" {
			return int64(len(rows))
		}
		return int64(len(vals))
	case "sum", "avg":
		sum := apd.New(0, 0)
		for _, v := range vals {
			if _, err := apd.BaseContext.WithPrecision(300).Add(sum, sum, modelDecimal(v)); err != nil {
				panic(err)
			}
		}
		if a.Function == "sum" {
			return sum
		}
		if len(vals) == 0 {
			return nil
		}
		avg := new(apd.Decimal)
		if _, err := apd.BaseContext.WithPrecision(20).Quo(avg, sum, apd.New(int64(len(vals)), 0)); err != nil {
			panic(err)
		}
		return avg
	case "min", "max", "days_since_last":
		var best any
		for _, v := range vals {
			if best == nil {
				best = v
				continue
			}
			c := modelCompare(v, best)
			if (a.Function == "min" && c < 0) || (a.Function != "min" && c > 0) {
				best = v
			}
		}
		if a.Function != "days_since_last" || best == nil {
			return best
		}
		return max(now.Sub(best.(time.Time)), 0).Hours() / 24
	case "distinct":
		seen := map[string]bool{}
		for _, v := range vals {
			seen[modelTag(v)] = true
		}
		return int64(len(seen))
	case "first", "last":
		// By event time, ties broken by the tagged value's text.
		var best *modelTimed
		for _, r := range rows {
			v := r[a.Column]
			if v == nil {
				continue
			}
			c := modelTimed{at: r["created_at"].(time.Time).UnixMicro(), tag: modelTag(v)}
			if best == nil || (a.Function == "first" && c.less(*best)) || (a.Function == "last" && best.less(c)) {
				best = &c
			}
		}
		if best == nil {
			return nil
		}
		return taggedResult(best.tag)
	}
	panic("model has no function " + a.Function)
}

// taggedResult marks a first/last result, compared by its tagged text.
type taggedResult string

type modelTimed struct {
	at  int64
	tag string
}

func (x modelTimed) less(y modelTimed) bool {
	if x.at != y.at {
		return x.at < y.at
	}
	return x.tag < y.tag
}

func modelDecimal(v any) *apd.Decimal {
	switch x := v.(type) {
	case int64:
		return apd.New(x, 0)
	case *apd.Decimal:
		return x
	case float64:
		d, _, err := apd.NewFromString(strconv.FormatFloat(x, 'g', -1, 64))
		if err != nil {
			panic(err)
		}
		return d
	}
	panic(fmt.Sprintf("model: %T is not a number", v))
}

// modelTag is the tagged text a value is stored under: numbers keep their
// type, decimals are reduced (12.50 and 12.5 are one value).
func modelTag(v any) string {
	switch x := v.(type) {
	case int64:
		return "i:" + strconv.FormatInt(x, 10)
	case *apd.Decimal:
		var r apd.Decimal
		r.Reduce(x)
		return "d:" + r.Text('f')
	case float64:
		return "f:" + strconv.FormatFloat(x, 'g', -1, 64)
	case string:
		return "s:" + x
	case time.Time:
		return "t:" + x.UTC().Format(time.RFC3339Nano)
	}
	panic(fmt.Sprintf("model: no tag for %T", v))
}

func modelCompare(a, b any) int {
	switch x := a.(type) {
	case string:
		return strings.Compare(x, b.(string))
	case time.Time:
		return x.Compare(b.(time.Time))
	}
	return modelDecimal(a).Cmp(modelDecimal(b))
}

// sameFeature compares an engine value with the model's for function fn
// ("" for a projected column).
func sameFeature(fn string, got, want any) bool {
	switch fn {
	case "count", "distinct":
		g, ok := got.(int64)
		return ok && g == want.(int64)
	case "sum", "avg":
		// Exact value, any representation (12.50 and 12.5 are equal).
		if want == nil {
			return got == nil
		}
		g, ok := got.(*apd.Decimal)
		return ok && g.Cmp(want.(*apd.Decimal)) == 0
	case "min", "max":
		if want == nil || got == nil {
			return got == want
		}
		if _, ok := want.(string); ok {
			return got == want
		}
		// Numbers by value: equal values of different numeric types may
		// win either way.
		g, ok := toDecimal(got)
		return ok && g.Cmp(modelDecimal(want)) == 0
	case "days_since_last":
		return got == want
	case "first", "last":
		if want == nil {
			return got == nil
		}
		tag, err := encodeValue(got)
		return err == nil && tag == string(want.(taggedResult))
	}
	return reflect.DeepEqual(got, want)
}

func TestModel(t *testing.T) {
	t.Parallel()
	events := 4000
	seeds := []uint64{1, 7, 42, 1234, 99991}
	if testing.Short() || raceEnabled {
		events, seeds = 2000, seeds[:2]
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			runModel(t, seed, events, false)
		})
	}
	// States kept open across changes, as the runtime's cache and an
	// export hold them.
	t.Run("open", func(t *testing.T) {
		t.Parallel()
		runModel(t, seeds[1], events, true)
	})
}

func runModel(t *testing.T, seed uint64, n int, open bool) {
	features := modelFeatures()
	h := newHarness(t, features)
	h.open = open
	m := newModel(features)
	evs := generate(seed, n)
	r := rand.New(rand.NewPCG(seed, 1))
	var latest time.Time
	checks := 0
	for i := 0; i < len(evs); {
		// A batch of 1-12 changes, sometimes with a replay of an applied
		// change inside it.
		size := 1 + r.IntN(12)
		h.begin()
		batchStart := i
		for j := 0; j < size && i < len(evs); j++ {
			// Replays come from earlier batches: within a batch positions
			// are checked against the records as loaded, so a change
			// repeated inside one batch would apply twice (the runtime
			// never builds such a batch).
			if batchStart > 0 && r.IntN(10) == 0 {
				old := evs[r.IntN(batchStart)]
				outs, err := h.apply(old)
				if err != nil {
					t.Fatalf("replay of %s: %v", old.Pos, err)
				}
				for _, o := range outs {
					if o.applied {
						t.Fatalf("replay of %s applied to %s", old.Pos, o.key)
					}
				}
			}
			ev := evs[i]
			if _, err := h.apply(ev); err != nil {
				t.Fatalf("change %d (%s at %s): %v", i, ev.Op, ev.Pos, err)
			}
			m.apply(ev)
			if ev.CommitTime.After(latest) {
				latest = ev.CommitTime
			}
			i++
		}
		h.end()
		if r.IntN(8) == 0 || i == len(evs) {
			// Reads at or after every applied commit, as the engine
			// promises nothing for reads before a record's freshness.
			for _, d := range []time.Duration{0, time.Duration(r.Int64N(int64(time.Hour))), 10 * time.Minute, time.Hour, 31 * 24 * time.Hour} {
				compareAll(t, h, m, latest.Add(d), fmt.Sprintf("after change %d", i))
				checks++
			}
		}
	}
	if h.stats.Unmatched != 0 {
		t.Errorf("Unmatched = %d with no row older than the stream", h.stats.Unmatched)
	}
	if checks < 50 {
		t.Errorf("only %d checks", checks)
	}
}

func compareAll(t *testing.T, h *harness, m *model, now time.Time, when string) {
	t.Helper()
	for _, f := range m.features {
		ids := make([]string, 0, len(m.ids[f.Name]))
		for id := range m.ids[f.Name] {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		fns := map[string]string{}
		for _, a := range f.Aggregations {
			fns[a.Name] = a.Function
		}
		for _, id := range ids {
			if st := h.state(f.Name, id); st != nil && len(st.Key) > 0 && EntityID(st.Key) != id {
				t.Fatalf("%s: record %s/%s holds key %q", when, f.Name, id, st.Key)
			}
			got := h.read(f.Name, id, now)
			want := m.read(f, id, now)
			if len(got) != len(want) {
				t.Fatalf("%s: %s/%s: %d features, model has %d", when, f.Name, id, len(got), len(want))
			}
			for name, w := range want {
				if !sameFeature(fns[name], got[name], w) {
					t.Fatalf("%s, read at %s: %s/%s %s = %s, model says %s\nrecord:\n%s",
						when, now.Format(time.RFC3339Nano), f.Name, id, name, show(got[name]), showModel(w),
						strings.Join(describeState(h.state(f.Name, id)), "\n"))
				}
			}
		}
	}
}

func showModel(v any) string {
	if s, ok := v.(taggedResult); ok {
		return string(s)
	}
	return show(v)
}
