package transform

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/sink"
)

// The benchmarks run the integration tests' card_activity group over
// benchEntities cards. Before timing, every card gets a history of
// benchHistory rows spread over the last 40 days, so records hold the
// tiles a live system's would.
const (
	benchEntities = 10_000
	benchHistory  = 20
	// benchApplyChanges is how many changes one iteration of BenchmarkApply
	// applies: enough that -benchtime 1x (make bench) is meaningful.
	benchApplyChanges = 200_000
	// benchReads is how many entities one iteration of BenchmarkRead and
	// BenchmarkStateBins handles; their per-op figures are per entity.
	benchReads = 1_000
)

var benchFeatures = []config.Feature{{
	Name: "card_activity", Table: "public.transactions", Entity: []string{"card_id"},
	Time: "created_at", Where: "status != 'declined'",
	Aggregations: []config.Aggregation{
		{Name: "txn_count_10m", Function: "count", Window: "10m"},
		{Name: "amount_sum_1h", Function: "sum", Column: "amount", Window: "1h"},
		{Name: "amount_avg_30d", Function: "avg", Column: "amount", Window: "30d"},
		{Name: "amount_max_24h", Function: "max", Column: "amount", Window: "24h"},
		{Name: "merchants_24h", Function: "distinct", Column: "merchant", Window: "24h"},
		{Name: "amount_min", Function: "min", Column: "amount"},
		{Name: "txn_count", Function: "count"},
		{Name: "last_amount", Function: "last", Column: "amount"},
		{Name: "last_txn_at", Function: "max", Column: "created_at"},
	},
}}

// benchWorld is a group, its records in memory, and a seeded generator of
// changes to them: 70% inserts, 20% updates (amount, sometimes merchant
// and status), 10% deletes, event times as in the integration workload.
type benchWorld struct {
	eng    *Engine
	group  *Group
	states map[sink.Key]*State
	stats  Stats

	rng   *rand.Rand
	live  [][]change.Row // per card: rows that may be updated or deleted
	id    int64
	lsn   uint64
	clock time.Time // commit time of the last change
	ups   []Update
	dirty map[sink.Key]*State // records changed since the last write, when not nil
}

func newBenchWorld(b *testing.B) *benchWorld {
	b.Helper()
	eng, err := compileFeatures(benchFeatures)
	if err != nil {
		b.Fatal(err)
	}
	w := &benchWorld{eng: eng, group: eng.Group("card_activity"), states: map[sink.Key]*State{},
		rng: rand.New(rand.NewPCG(3, 4)), live: make([][]change.Row, benchEntities),
		lsn: 0x100_0000, clock: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	for card := 0; card < benchEntities; card++ {
		for i := 0; i < benchHistory; i++ {
			ev := w.insert(card)
			w.apply(b, &ev)
		}
	}
	return w
}

func (w *benchWorld) next() (change.Position, time.Time) {
	w.lsn += 64
	w.clock = w.clock.Add(time.Millisecond)
	return change.Position{LSN: w.lsn, Ordinal: 1}, w.clock
}

func (w *benchWorld) row(card int, created time.Time) change.Row {
	w.id++
	status := "approved"
	if w.rng.IntN(6) == 0 {
		status = "declined"
	}
	return change.Row{
		"id": w.id, "card_id": int64(card), "merchant": fmt.Sprintf("merchant-%04d", w.rng.IntN(500)),
		"amount": apd.New(w.rng.Int64N(50_000), -2), "status": status, "created_at": created,
	}
}

// createdAt is an event time before the commit: 30% within 15 minutes,
// 30% within 48 hours, the rest within 40 days.
func (w *benchWorld) createdAt(commit time.Time) time.Time {
	var back time.Duration
	switch p := w.rng.IntN(10); {
	case p < 3:
		back = time.Duration(w.rng.Int64N(int64(15 * time.Minute)))
	case p < 6:
		back = time.Duration(w.rng.Int64N(int64(48 * time.Hour)))
	default:
		back = time.Duration(w.rng.Int64N(int64(40 * 24 * time.Hour)))
	}
	return commit.Add(-back).Truncate(time.Microsecond)
}

func (w *benchWorld) insert(card int) change.Event {
	pos, commit := w.next()
	r := w.row(card, w.createdAt(commit))
	if len(w.live[card]) < 2*benchHistory {
		w.live[card] = append(w.live[card], r)
	}
	return change.Event{Op: change.Insert, Table: "public.transactions", After: r, Pos: pos, CommitTime: commit}
}

// event returns the next change of the mix.
func (w *benchWorld) event() change.Event {
	card := w.rng.IntN(benchEntities)
	rows := w.live[card]
	p := w.rng.IntN(10)
	if p < 7 || len(rows) == 0 {
		return w.insert(card)
	}
	pos, commit := w.next()
	i := w.rng.IntN(len(rows))
	old := rows[i]
	if p < 9 {
		r := make(change.Row, len(old))
		for k, v := range old {
			r[k] = v
		}
		r["amount"] = apd.New(w.rng.Int64N(50_000), -2)
		if w.rng.IntN(4) == 0 {
			r["merchant"] = fmt.Sprintf("merchant-%04d", w.rng.IntN(500))
			r["status"] = []string{"approved", "declined"}[w.rng.IntN(2)]
		}
		rows[i] = r
		return change.Event{Op: change.Update, Table: "public.transactions", Before: old, After: r, Pos: pos, CommitTime: commit}
	}
	rows[i] = rows[len(rows)-1]
	w.live[card] = rows[:len(rows)-1]
	return change.Event{Op: change.Delete, Table: "public.transactions", Before: old, Pos: pos, CommitTime: commit}
}

// apply plans and applies one change to the records in memory, as the
// runtime does between reading records and writing them.
func (w *benchWorld) apply(b *testing.B, ev *change.Event) {
	var err error
	if w.ups, err = w.eng.Plan(ev, w.ups[:0]); err != nil {
		b.Fatal(err)
	}
	for i := range w.ups {
		u := &w.ups[i]
		st := w.states[u.Key]
		if st == nil {
			st = &State{}
			w.states[u.Key] = st
		}
		if err := u.Group.Apply(st, u, &w.stats); err != nil {
			b.Fatal(err)
		}
		if w.dirty != nil {
			w.dirty[u.Key] = st
		}
	}
}

// BenchmarkApply plans and applies inserts, updates and deletes to the
// card_activity records of benchEntities cards (records in memory: no
// store, no encoding). One iteration applies benchApplyChanges changes.
func BenchmarkApply(b *testing.B) { runApply(b, newBenchWorld(b), 0) }

// runApply applies benchApplyChanges changes per iteration; with batch > 0
// it renders the records each batch of that many changed as sink bins.
func runApply(b *testing.B, w *benchWorld, batch int) {
	evs := make([]change.Event, benchApplyChanges)
	if batch > 0 {
		w.dirty = map[sink.Key]*State{}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := range evs {
			evs[j] = w.event()
		}
		b.StartTimer()
		for j := range evs {
			w.apply(b, &evs[j])
			if batch > 0 && ((j+1)%batch == 0 || j == len(evs)-1) {
				for k, st := range w.dirty {
					st.Bins()
					delete(w.dirty, k)
				}
			}
		}
	}
	b.StopTimer()
	total := float64(b.N) * benchApplyChanges
	b.ReportMetric(total/b.Elapsed().Seconds(), "changes/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/total, "ns/change")
}

// perEntity runs f on benchReads records per iteration and reports ns/op,
// B/op and allocs/op per record, so -benchtime 1x still measures 1,000.
func perEntity(b *testing.B, w *benchWorld, f func(st *State)) {
	keys := make([]sink.Key, 0, len(w.states))
	for k := range w.states {
		keys = append(keys, k)
	}
	b.ReportAllocs()
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < benchReads; j++ {
			f(w.states[keys[(i*benchReads+j)%len(keys)]])
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	n := float64(b.N) * benchReads
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/op")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/n, "B/op")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/n, "allocs/op")
}

// BenchmarkRead computes every feature of one card as of now (the latest
// commit time), from its decoded record. ns/op is per card read.
func BenchmarkRead(b *testing.B) {
	w := newBenchWorld(b)
	for range benchApplyChanges / 4 {
		ev := w.event()
		w.apply(b, &ev)
	}
	now := w.clock
	var got []Feature
	perEntity(b, w, func(st *State) { got = w.group.Read(st, now) })
	if len(got) != len(benchFeatures[0].Aggregations) {
		b.Fatalf("read %d features", len(got))
	}
}

// BenchmarkStateBins encodes one card's record into sink bins and decodes
// it back: what the runtime pays per record written (Bins) and per record
// read from the store on a cache miss (DecodeState). ns/op is per record.
func BenchmarkStateBins(b *testing.B) {
	w := newBenchWorld(b)
	perEntity(b, w, func(st *State) {
		if _, err := DecodeState(st.Bins()); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkApplyWrite is BenchmarkApply as the runtime does it: changes in
// batches of 1,000, and after each batch every record the batch changed is
// rendered as sink bins (what a store write costs tilefeed, the store's
// own encoding aside). heap_KB/entity is the heap the records hold after
// the run, per entity: what a record costs in the cache.
func BenchmarkApplyWrite(b *testing.B) {
	w := newBenchWorld(b)
	for _, st := range w.states {
		st.Bins() // as records are after their first write
	}
	runApply(b, w, 1000)
	var with, without runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&with)
	n := len(w.states)
	w.states = nil
	runtime.GC()
	runtime.ReadMemStats(&without)
	b.ReportMetric(float64(with.HeapAlloc-without.HeapAlloc)/1024/float64(n), "heap_KB/entity")
	runtime.KeepAlive(w)
}

// BenchmarkReadBusy reads the busy card of TestBusyEntity: 100k
// transactions in 29 days, each at a merchant of its own, with an exact
// 30-day count, max and distinct and a lifetime min. "decoded" computes
// the features from the record in memory (the runtime's cache), "stored"
// decodes the record's bins first (a read from the store, the store's own
// round trips aside). ns/op is per read.
func BenchmarkReadBusy(b *testing.B) {
	eng, err := compileFeatures([]config.Feature{{Name: "busy", Table: "public.transactions", Entity: []string{"card_id"}, Time: "created_at",
		Aggregations: []config.Aggregation{
			{Name: "n_30d", Function: "count", Window: "30d"},
			{Name: "max_30d", Function: "max", Column: "amount", Window: "30d"},
			{Name: "merchants_30d", Function: "distinct", Column: "merchant", Window: "30d"},
			{Name: "min_ever", Function: "min", Column: "amount"}}}})
	if err != nil {
		b.Fatal(err)
	}
	g := eng.Group("busy")
	st := &State{}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	var ups []Update
	var stats Stats
	for i := 1; i <= 100_000; i++ {
		amount, _, _ := apd.NewFromString(fmt.Sprintf("%d.%02d", i*7919%1000003/100, i*7919%100))
		ev := change.Event{Op: change.Insert, Table: "public.transactions", Pos: change.Position{LSN: uint64(i)}, CommitTime: now,
			After: change.Row{"card_id": int64(7), "merchant": fmt.Sprintf("merchant-%d", i), "amount": amount,
				"created_at": now.Add(-time.Duration(i) * 25 * time.Second)}}
		if ups, err = eng.Plan(&ev, ups[:0]); err != nil {
			b.Fatal(err)
		}
		for j := range ups {
			if err := g.Apply(st, &ups[j], &stats); err != nil {
				b.Fatal(err)
			}
		}
	}
	bins := st.Bins()
	size := 0
	for _, v := range bins {
		if blob, ok := v.([]byte); ok {
			size += len(blob)
		}
	}
	b.Logf("the busy card's record: %d bytes of tiles", size)
	b.Run("decoded", func(b *testing.B) {
		for range b.N {
			if f := g.Read(st, now); f[0].Value != int64(100_000) {
				b.Fatalf("n_30d = %v", f[0].Value)
			}
		}
	})
	b.Run("stored", func(b *testing.B) {
		for range b.N {
			s, err := DecodeState(bins)
			if err != nil {
				b.Fatal(err)
			}
			g.Read(s, now)
		}
	})
}
