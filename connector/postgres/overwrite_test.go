package postgres

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/sink/embedded"
)

// agingStore lets time pass between each read and the next write: the
// window in which a tombstone (goneTTL) expires under a loaded machine.
type agingStore struct {
	connector.Store
	mu  sync.Mutex
	now time.Time
	age time.Duration // added after every Get
}

func (s *agingStore) clock() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

func (s *agingStore) Get(ctx context.Context, keys []sink.Key) ([]sink.Record, error) {
	recs, err := s.Store.Get(ctx, keys)
	s.mu.Lock()
	s.now = s.now.Add(s.age)
	s.mu.Unlock()
	return recs, err
}

func newAgingStore(t *testing.T) *agingStore {
	t.Helper()
	s := &agingStore{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	st, err := embedded.Open(filepath.Join(t.TempDir(), "s.db"), embedded.Options{Now: s.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s.Store = st
	return s
}

// A snapshot that starts again (snapshot.mode=always, or a retry) writes
// over the tombstones of the one before; when a tombstone expires between
// the read of its generation and the write, the write still lands
// (TestSnapshotAlways failed this way under load: "record …/snapshot
// changed since it was read"). The snapshot's own records are now written
// whatever their generation, without a read.
func TestWriteOverExpiringTombstones(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newAgingStore(t)
	const name = "c"
	old := &snapshot{store: st, name: name, prog: &progress{Slot: 100, Next: 1, replace: true}}
	if err := old.save(ctx, nil); err != nil {
		t.Fatal(err)
	}
	chunk := &stagedChunk{Table: "public.t", First: 1, Rows: 1}
	if err := old.stage(ctx, chunk, []byte("rows")); err != nil {
		t.Fatal(err)
	}
	keys := []sink.Key{progressKey(name), stagingKey(name, chunk.ID(), 0)}
	if err := expireRecords(ctx, st, keys); err != nil { // the snapshot is over
		t.Fatal(err)
	}

	// From here every read is followed by 2 s: each tombstone expires
	// between the read of its generation and the write.
	st.age = 2 * goneTTL
	fresh := &snapshot{store: st, name: name, prog: &progress{Slot: 200, Next: 1, replace: true}}
	if err := fresh.save(ctx, nil); err != nil {
		t.Fatalf("first progress write of a fresh snapshot over an expiring tombstone: %v", err)
	}
	if err := fresh.stage(ctx, chunk, []byte("rows again")); err != nil {
		t.Fatalf("staging a chunk over an expiring tombstone: %v", err)
	}
	p, err := loadProgress(ctx, st, name)
	if err != nil || p == nil || p.Slot != 200 {
		t.Fatalf("progress after the fresh write: %+v, %v", p, err)
	}
	// Later writes compare generations again: a second writer is caught.
	st.age = 0
	rival := &snapshot{store: st, name: name, prog: &progress{Slot: 300, Next: 1, gen: p.gen}}
	if err := rival.save(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := fresh.save(ctx, nil); err == nil {
		t.Error("a progress write over another writer's record succeeded")
	}
}
