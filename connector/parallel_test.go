package connector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/transform"
)

// TestParallelApply: a batch applied by four workers (records read back
// from the store decoded by them too) leaves every record,
// and the checkpoint's counts, exactly as one worker does, for a mix of
// inserts, updates and deletes over many entities (run with -race, it also
// checks that the workers share nothing unguarded).
func TestParallelApply(t *testing.T) {
	t.Parallel()
	features := []config.Feature{{Name: "g", Table: "public.t", Entity: []string{"k"}, Time: "at",
		Aggregations: []config.Aggregation{
			{Name: "n", Function: "count", Window: "1h"}, {Name: "total", Function: "sum", Column: "v"},
			{Name: "top", Function: "max", Column: "v", Window: "10m"}, {Name: "kinds", Function: "distinct", Column: "v"},
			{Name: "last_v", Function: "last", Column: "v"},
		}}}
	const keys = 300
	rng := rand.New(rand.NewPCG(1, 2))
	live := map[int64]change.Row{}
	var evs []change.Event
	for tx := 1; tx <= 1500; tx++ {
		lsn := uint64(tx * 100)
		for i := 1; i <= 3; i++ {
			p := change.Position{LSN: lsn, Ordinal: uint32(i)}
			id := rng.Int64N(2000)
			row := change.Row{"id": id, "k": id % keys, "v": rng.Int64N(50), "at": t0.Add(-time.Duration(rng.IntN(7200)) * time.Second)}
			old, ok := live[id]
			switch {
			case !ok:
				evs = append(evs, change.Event{Op: change.Insert, Table: "public.t", Pos: p, CommitTime: t0, After: row})
				live[id] = row
			case rng.IntN(3) == 0:
				evs = append(evs, change.Event{Op: change.Delete, Table: "public.t", Pos: p, CommitTime: t0, Before: old})
				delete(live, id)
			default:
				evs = append(evs, change.Event{Op: change.Update, Table: "public.t", Pos: p, CommitTime: t0, Before: old, After: row})
				live[id] = row
			}
		}
		evs = append(evs, change.Event{Op: change.Commit, Pos: change.Position{LSN: lsn, Ordinal: 4}, CommitTime: t0, Resume: lsn + 50})
	}
	runWith := func(workers int) (map[string][]transform.Feature, Checkpoint) {
		e, err := transform.Compile(features)
		if err != nil {
			t.Fatal(err)
		}
		st := openStore(t)
		src := &fakeSource{events: evs}
		rt := New("c", src, st, e, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()),
			Options{BatchMax: 5000, QueueMax: 5000, ApplyWorkers: workers, CacheEntities: 50}) // records read back: decoded by the workers too
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- rt.Run(ctx) }()
		for deadline := time.Now().Add(20 * time.Second); src.lastAck() < 1500*100+50 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v", err)
		}
		got := map[string][]transform.Feature{}
		for k := range keys {
			recs, err := st.Get(context.Background(), []sink.Key{{Set: "g", ID: fmt.Sprint(k)}})
			if err != nil {
				t.Fatal(err)
			}
			s, err := transform.DecodeState(recs[0].Bins)
			if err != nil {
				t.Fatal(err)
			}
			got[fmt.Sprint(k)] = e.Group("g").Read(s, t0)
		}
		cp, _, _, err := LoadCheckpoint(context.Background(), st, "c")
		if err != nil {
			t.Fatal(err)
		}
		return got, cp
	}
	one, cp1 := runWith(1)
	four, cp4 := runWith(4)
	// (Records written depends on where batches were cut.)
	if cp1.Changes != 4500 || cp4.Changes != cp1.Changes || cp4.Groups["g"].Changes != cp1.Groups["g"].Changes ||
		cp4.Groups["g"].Unmatched != cp1.Groups["g"].Unmatched {
		t.Errorf("checkpoints: one worker %d changes %+v, four %d changes %+v", cp1.Changes, cp1.Groups, cp4.Changes, cp4.Groups)
	}
	for k, f := range one {
		if fmt.Sprint(f) != fmt.Sprint(four[k]) {
			t.Errorf("entity %s: one worker %v, four %v", k, f, four[k])
		}
	}
	if fmt.Sprint(one["7"]) == fmt.Sprint([]transform.Feature{}) {
		t.Error("entity 7 has no features")
	}
}
