package transform

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
)

// The as-of property test: the model groups, with history, fed a random
// stream; then, for random instants T, every feature the engine answers as
// of T equals the brute-force model over the live rows whose event time is
// at or before T (windows as documented, ending at T). Refusals must name
// an instant that is answered, and a share of the reads must be answered.

func asOfFeatures(history string) []config.Feature {
	fs := modelFeatures()
	for i := range fs {
		if fs[i].Time != "" {
			fs[i].History = history
		}
	}
	return fs
}

// asOf returns the model as of T: the live rows with an event time at or
// before T, read with each window ending at T; projected columns as now
// (the engine answers them only from the row's last change on).
func (m *model) asOf(T time.Time) *model {
	past := *m
	past.live = map[int64]change.Row{}
	for k, r := range m.live {
		if !r["created_at"].(time.Time).After(T) {
			past.live[k] = r
		}
	}
	return &past
}

func TestAsOfModel(t *testing.T) {
	t.Parallel()
	seeds := []uint64{3, 11, 2024}
	if testing.Short() || raceEnabled {
		seeds = seeds[:2]
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			runAsOfModel(t, seed, 2500)
		})
	}
}

func runAsOfModel(t *testing.T, seed uint64, n int) {
	features := asOfFeatures("45d")
	h := newHarness(t, features)
	m := newModel(features)
	r := rand.New(rand.NewPCG(seed, 2))
	evs := generate(seed, n)
	var latest time.Time
	for i, ev := range evs {
		if _, err := h.apply(ev); err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
		m.apply(ev)
		if ev.CommitTime.After(latest) {
			latest = ev.CommitTime
		}
	}
	// Instants over the stream's 40 days and a little after: random ones,
	// the last microsecond of a day (the end of every tile size), and the
	// instants refusals name.
	var instants []time.Time
	for range 60 {
		instants = append(instants, latest.Add(-time.Duration(r.Int64N(int64(42*24*time.Hour)))+time.Hour))
	}
	for d := 0; d < 40; d += 3 {
		instants = append(instants, latest.Truncate(24*time.Hour).Add(-time.Duration(d)*24*time.Hour-time.Microsecond))
	}
	answered, refused := 0, 0
	for k := 0; k < len(instants); k++ {
		T := instants[k]
		past := m.asOf(T)
		for _, f := range features {
			g := h.eng.Group(f.Name)
			ids := sortedIDs(m.ids[f.Name])
			if len(ids) > 30 { // the projection keyed by row: a sample
				r.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
				ids = ids[:30]
			}
			for _, id := range ids {
				st := h.state(f.Name, id)
				if st == nil {
					st = &State{}
				}
				want := past.read(f, id, T)
				got := map[string]any{}
				for _, ft := range g.ReadMemo(st, T, nil) {
					got[ft.Name] = ft.Value
				}
				for _, name := range g.FeatureNames() {
					err := g.CheckAsOf(st, T, name)
					var ae *AsOfError
					if errors.As(err, &ae) {
						refused++
						if !ae.From.After(T) || ae.Feature != name || ae.Group != f.Name {
							t.Fatalf("refusal as of %s names From %s: %v", T, ae.From, err)
						}
						if !ae.Before.IsZero() {
							if err := g.CheckAsOf(st, ae.Before.Add(-time.Microsecond), name); err != nil {
								t.Fatalf("refusal as of %s says it answers before %s, but: %v", T, ae.Before, err)
							}
						}
						if len(instants) < 200 && !ae.From.IsZero() {
							instants = append(instants, ae.From)
						}
						continue
					}
					if err != nil {
						t.Fatal(err)
					}
					answered++
					if !sameFeature(functionOf(f, name), got[name], want[name]) {
						t.Fatalf("as of %s: %s/%s %s = %s, model says %s\nrecord:\n%s", T.Format(time.RFC3339Nano), f.Name, id, name,
							show(got[name]), showModel(want[name]), strings.Join(describeState(st), "\n"))
					}
				}
			}
		}
	}
	t.Logf("%d features answered, %d refused, over %d instants", answered, refused, len(instants))
	if answered < refused/4 || answered < 1000 {
		t.Errorf("only %d answered (%d refused)", answered, refused)
	}
}

func functionOf(f config.Feature, name string) string {
	for _, a := range f.Aggregations {
		if a.Name == name {
			return a.Function
		}
	}
	return ""
}

func sortedIDs(m map[string]bool) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// TestAsOfIgnoresLaterChanges: changes that only touch rows whose event
// time is after T (inserts, updates, deletes) change no value answered as
// of T, and at the last microsecond of a day (the end of every tile) the
// windowed aggregates that answered still answer.
func TestAsOfIgnoresLaterChanges(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{5, 77} {
		evs := generate(seed, 1500)
		latest := evs[len(evs)-1].CommitTime
		for _, e := range evs {
			if e.CommitTime.After(latest) {
				latest = e.CommitTime
			}
		}
		r := rand.New(rand.NewPCG(seed, 3))
		windowed := map[string]bool{} // group/aggregate
		for _, f := range asOfFeatures("") {
			for _, a := range f.Aggregations {
				windowed[f.Name+"/"+a.Name] = a.Window != ""
			}
		}
		instants := []time.Time{
			latest.Truncate(24 * time.Hour).Add(-2*24*time.Hour - time.Microsecond),
			latest.Add(-time.Duration(r.Int64N(int64(20 * 24 * time.Hour)))),
			latest.Add(-time.Duration(r.Int64N(int64(3 * time.Hour)))),
		}
		for i, T := range instants {
			t.Run(fmt.Sprintf("seed=%d/T%d", seed, i), func(t *testing.T) {
				t.Parallel()
				r := rand.New(rand.NewPCG(seed, 10+uint64(i)))
				features := asOfFeatures("45d")
				h := newHarness(t, features)
				m := newModel(features)
				for _, ev := range evs {
					h.mustApply(ev)
					m.apply(ev)
				}
				before := readAllAsOf(h, features, T)
				later := laterChanges(r, m, T, evs[len(evs)-1].Pos.LSN, latest, 300)
				for _, ev := range later {
					h.mustApply(ev)
					m.apply(ev)
				}
				after := readAllAsOf(h, features, T)
				compared, kept := 0, 0
				for k, v := range before {
					w, ok := after[k]
					if !ok {
						if i == 0 && windowed[k.group+"/"+k.name] {
							t.Errorf("%s/%s %s answered as of %s before the later changes, refused after", k.group, k.id, k.name, T)
						}
						continue
					}
					kept++
					if v != w {
						t.Errorf("%s/%s %s as of %s: %s before later changes, %s after", k.group, k.id, k.name, T, v, w)
					}
					compared++
				}
				if compared < 100 {
					t.Errorf("only %d values compared (%d answered before)", compared, len(before))
				}
				t.Logf("%d later changes; %d values answered before, %d still answered and equal", len(later), len(before), kept)
			})
		}
	}
}

type featureRef struct{ group, id, name string }

func readAllAsOf(h *harness, features []config.Feature, T time.Time) map[featureRef]string {
	out := map[featureRef]string{}
	for _, f := range features {
		g := h.eng.Group(f.Name)
		for key, st := range h.states {
			if key.Set != f.Name {
				continue
			}
			for _, ft := range g.ReadMemo(st, T, nil) {
				if g.CheckAsOf(st, T, ft.Name) == nil {
					out[featureRef{f.Name, key.ID, ft.Name}] = show(ft.Value)
				}
			}
		}
	}
	return out
}

// laterChanges returns n changes that only touch rows with an event time
// after T: new rows after T, updates of such rows that keep them after T,
// and their deletes; positions and commit times follow the stream's.
func laterChanges(r *rand.Rand, m *model, T time.Time, lsn uint64, commit time.Time, n int) []change.Event {
	g := &generator{r: r, commit: commit, lsn: lsn, nextID: 1 << 20, live: map[int64]change.Row{}}
	after := func() time.Time {
		return T.Add(time.Microsecond + time.Duration(r.Int64N(int64(3*24*time.Hour))))
	}
	var later []int64
	for id, row := range m.live {
		if row["created_at"].(time.Time).After(T) {
			later = append(later, id)
		}
	}
	sort.Slice(later, func(i, j int) bool { return later[i] < later[j] })
	rows := map[int64]change.Row{}
	for _, id := range later {
		rows[id] = m.live[id]
	}
	var out []change.Event
	for len(out) < n {
		g.lsn += 1 + uint64(r.IntN(100))
		g.commit = g.commit.Add(time.Duration(r.Int64N(int64(time.Minute))))
		ev := change.Event{Table: table, Pos: change.Position{LSN: g.lsn, Ordinal: 1}, CommitTime: g.commit}
		switch x := r.Float64(); {
		case len(later) == 0 || x < 0.4:
			row := g.newRow()
			row["created_at"] = after()
			id := row["id"].(int64)
			rows[id], later = row, append(later, id)
			ev.Op, ev.After = change.Insert, copyRow(row)
		case x < 0.8:
			id := later[r.IntN(len(later))]
			old := rows[id]
			next := copyRow(old)
			next["amount"], next["merchant"], next["status"] = g.amount(), g.merchant(), g.status()
			next["customer_id"] = int64(1 + r.IntN(5))
			if r.IntN(2) == 0 {
				next["created_at"] = after()
			}
			rows[id] = next
			ev.Op, ev.Before, ev.After = change.Update, copyRow(old), copyRow(next)
		default:
			k := r.IntN(len(later))
			id := later[k]
			later = append(later[:k], later[k+1:]...)
			ev.Op, ev.Before = change.Delete, copyRow(rows[id])
			delete(rows, id)
		}
		out = append(out, ev)
	}
	return out
}

// TestCheckMissingAsOf: a missing record may be one that expired; as of an
// instant its windows could still see from its expiry, nothing is known.
func TestCheckMissingAsOf(t *testing.T) {
	e, err := Compile([]config.Feature{{Name: "g", Table: "t", Entity: []string{"id"}, Time: "at",
		Aggregations: []config.Aggregation{{Name: "n_1h", Function: "count", Window: "1h"}}}})
	if err != nil {
		t.Fatal(err)
	}
	g := e.Group("g")
	if g.TTL != time.Hour+time.Minute+24*time.Hour {
		t.Fatalf("TTL %s", g.TTL)
	}
	if err := g.CheckMissingAsOf(t0.Add(-23*time.Hour), t0); err != nil {
		t.Errorf("a day back: %v", err)
	}
	var ae *AsOfError
	if err := g.CheckMissingAsOf(t0.Add(-25*time.Hour), t0); !errors.As(err, &ae) || !ae.From.Equal(t0.Add(-24*time.Hour)) {
		t.Errorf("25 hours back: %v, want a refusal answerable from 24 hours back", err)
	}
}

// TestTileCountsOrderFree: a tile's time counts, like its row count,
// depend on the rows it holds, not on the order the changes came in (the
// Kafka path interleaves a table's partitions): two interleavings that keep
// each row's changes in order give the same counts. (The text of a
// decimal sum can differ: it keeps the scale of a value added and taken
// back.)
func TestTileCountsOrderFree(t *testing.T) {
	// History enough that no tile is trimmed: what a reordered commit
	// time lets a window drop is another matter.
	features := asOfFeatures("400d")
	evs := generate(9, 1500)
	// A second order: the changes of each row stay in order, rows
	// interleave at random.
	r := rand.New(rand.NewPCG(9, 9))
	byRow := map[int64][]change.Event{}
	var rows []int64
	for _, ev := range evs {
		row := ev.After
		if row == nil {
			row = ev.Before
		}
		id := row["id"].(int64)
		if byRow[id] == nil {
			rows = append(rows, id)
		}
		byRow[id] = append(byRow[id], ev)
	}
	var shuffled []change.Event
	for len(rows) > 0 {
		k := r.IntN(len(rows))
		id := rows[k]
		shuffled = append(shuffled, byRow[id][0])
		if byRow[id] = byRow[id][1:]; len(byRow[id]) == 0 {
			rows = append(rows[:k], rows[k+1:]...)
		}
	}
	// Positions must grow in the order applied; commit times stay.
	for i := range shuffled {
		shuffled[i].Pos = change.Position{LSN: uint64(0x1000 + i), Ordinal: 1}
	}
	a, b := newHarness(t, features), newHarness(t, features)
	for _, ev := range evs {
		a.mustApply(ev)
	}
	for _, ev := range shuffled {
		b.mustApply(ev)
	}
	counted, windowed := 0, 0
	counts := func(h *harness) map[string]string {
		out := map[string]string{}
		for key, st := range h.states {
			for size, tiles := range st.Scales {
				for start, tl := range tiles {
					v := tl.view()
					if size > 0 && h == a {
						windowed++
						if len(v.when) > 0 {
							counted++
						}
					}
					out[fmt.Sprintf("%s %d@%d", key, size, start)] = fmt.Sprint(v.Rows, v.when, v.whenLost)
				}
			}
		}
		return out
	}
	ca, cb := counts(a), counts(b)
	if windowed < 100 || counted < windowed {
		t.Fatalf("%d windowed tiles, %d with time counts", windowed, counted)
	}
	for k, v := range ca {
		if cb[k] != v {
			t.Errorf("tile %s: rows, counts by time %s in one order, %q in the other", k, v, cb[k])
		}
	}
	for k := range cb {
		if _, ok := ca[k]; !ok {
			t.Errorf("tile %s only in the second order", k)
		}
	}
}
