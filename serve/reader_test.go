package serve

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/transform"
)

// memGetter serves records from memory, counting reads.
type memGetter struct {
	mu   sync.Mutex
	recs map[sink.Key]sink.Record
}

func (m *memGetter) Get(_ context.Context, keys []sink.Key) ([]sink.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]sink.Record, len(keys))
	for i, k := range keys {
		out[i] = m.recs[k]
		out[i].Key = k
	}
	return out, nil
}

// cardRecord is card 1's record after n inserts of amount 1 at commit
// position lsn, one a minute before t0.
func cardRecord(t *testing.T, engine *transform.Engine, n int, lsn uint64) map[string]any {
	t.Helper()
	st := &transform.State{}
	for i := range n {
		ev := change.Event{Op: change.Insert, Table: "public.tx", Pos: change.Position{LSN: lsn, Ordinal: uint32(i + 1)}, CommitTime: t0,
			After: change.Row{"card_id": int64(1), "amount": int64(1), "at": t0.Add(-time.Duration(i+1) * time.Minute)}}
		ups, err := engine.Plan(&ev, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range ups {
			if err := u.Group.Apply(st, &u, &transform.Stats{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return st.Bins()
}

// TestReaderCache: a cached record is used only while the stored record
// is the same version (generation, position, commit time); reads at other
// times compute their own windows; concurrent reads of one cached record
// are safe (-race).
func TestReaderCache(t *testing.T) {
	engine, err := transform.Compile([]config.Feature{{Name: "g", Table: "public.tx", Entity: []string{"card_id"}, Time: "at",
		Aggregations: []config.Aggregation{{Name: "n_10m", Function: "count", Window: "10m"}, {Name: "n", Function: "count"}}}})
	if err != nil {
		t.Fatal(err)
	}
	k := sink.Key{Set: "g", ID: "1"}
	store := &memGetter{recs: map[sink.Key]sink.Record{k: {Gen: 1, Bins: cardRecord(t, engine, 5, 100)}}}
	r := &Reader{Engine: engine, Store: store, Cache: NewCache(1 << 20)}
	read := func(at time.Time) string {
		t.Helper()
		ents, err := r.Read(context.Background(), "g", [][]string{{"1"}}, at)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(ents[0].FeatureMap())
	}
	if got := read(t0); got != "map[n:5 n_10m:5]" {
		t.Fatalf("first read: %s", got)
	}
	if got := read(t0.Add(8 * time.Minute)); got != "map[n:5 n_10m:2]" {
		t.Errorf("read 8 minutes later, from the cache: %s", got)
	}
	// The same version with other bins: the cache answers (nothing is
	// decoded again), which is how a hit shows.
	other := cardRecord(t, engine, 9, 100)
	for name, v := range cardRecord(t, engine, 5, 100) {
		if _, tile := other[name]; !tile || name[:2] != "_t" {
			other[name] = v // the tiles of 9 inserts, the version of 5
		}
	}
	store.recs[k] = sink.Record{Gen: 1, Bins: other}
	if got := read(t0); got != "map[n:5 n_10m:5]" {
		t.Errorf("same version: %s, want the cached record's features", got)
	}
	// A new generation, and the same generation at another position (a
	// store that lost its records and was written again): decoded again.
	for _, v := range []struct {
		gen uint32
		lsn uint64
		n   int
	}{{2, 100, 7}, {2, 200, 3}} {
		store.recs[k] = sink.Record{Gen: v.gen, Bins: cardRecord(t, engine, v.n, v.lsn)}
		want := fmt.Sprintf("map[n:%d n_10m:%d]", v.n, min(v.n, 10))
		if got := read(t0); got != want {
			t.Errorf("gen %d at %d: %s, want %s", v.gen, v.lsn, got, want)
		}
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				ents, err := r.Read(context.Background(), "g", [][]string{{"1"}}, t0.Add(time.Duration(i*50+j)*time.Second))
				if err != nil || !ents[0].Found {
					t.Errorf("concurrent read: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
