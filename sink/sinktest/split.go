package sinktest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/sink/split"
)

// RunSplit runs the suite of split records (sink/split) over the store
// open returns: the whole conformance suite through the split store, then
// what is particular to records split into a head and parts.
func RunSplit(t *testing.T, open func(t *testing.T) Store) {
	t.Helper()
	t.Run("through_split", func(t *testing.T) {
		Run(t, func(t *testing.T) Store { return wrapSplit(open(t)) })
	})
	run := fmt.Sprintf("c%08x", rand.Uint32())
	tests := []struct {
		name string
		fn   func(t *testing.T, inner *spy, key keyFunc)
	}{
		{"round_trip", testSplitRoundTrip},
		{"local_rewrite", testSplitLocalRewrite},
		{"shrink_delete", testSplitShrinkDelete},
		{"crash_before_head", testSplitCrashBeforeHead},
		{"conflict", testSplitConflict},
		{"reader_during_rewrite", testSplitReaderDuringRewrite},
		{"cached_parts", testSplitCachedParts},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inner := &spy{Store: open(t)}
			set := "tfsplit_" + tc.name
			tc.fn(t, inner, func(id string) sink.Key { return sink.Key{Set: set, ID: run + "-" + id} })
		})
	}
}

type splitStore struct{ *split.Split }

func wrapSplit(s Store) Store { return splitStore{split.New(s, split.Options{})} }

// spy counts what goes through a store and can fail or delay its calls.
type spy struct {
	Store
	mu      sync.Mutex
	puts    [][]sink.Record
	failPut func(recs []sink.Record) error
	onGet   func(keys []sink.Key)
	gets    int
}

func (s *spy) Put(ctx context.Context, recs []sink.Record) error {
	s.mu.Lock()
	s.puts = append(s.puts, slices.Clone(recs))
	f := s.failPut
	s.mu.Unlock()
	if f != nil {
		if err := f(recs); err != nil {
			return err
		}
	}
	return s.Store.Put(ctx, recs)
}

func (s *spy) Get(ctx context.Context, keys []sink.Key) ([]sink.Record, error) {
	s.mu.Lock()
	f := s.onGet
	s.gets++
	s.mu.Unlock()
	if f != nil {
		f(keys)
	}
	return s.Store.Get(ctx, keys)
}

// written returns the records put since the last call: parts and heads.
func (s *spy) written() (parts, heads []sink.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, put := range s.puts {
		for _, r := range put {
			if _, ok := r.Bins["p"]; ok || (r.Bins == nil && r.Gen == sink.AnyGen) {
				parts = append(parts, r)
			} else {
				heads = append(heads, r)
			}
		}
	}
	s.puts = nil
	return parts, heads
}

// bigBins is an entity's record as tilefeed writes a busy one: a few
// small bins and tile blobs of mb MiB in all, of bytes that do not repeat.
func bigBins(seed uint64, mb float64) map[string]any {
	rng := rand.New(rand.NewPCG(seed, 1))
	blob := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	return map[string]any{
		"_lsn":   int64(42),
		"_key":   []any{"card-7"},
		"_ts":    int64(1_700_000_000_000_000),
		"_t3600": blob(int(mb * 0.75 * (1 << 20))),
		"_tlife": blob(int(mb * 0.25 * (1 << 20))),
		"_t60":   blob(1000),
	}
}

func testSplitRoundTrip(t *testing.T, inner *spy, key keyFunc) {
	s := split.New(inner, split.Options{})
	k := key("busy")
	want := bigBins(1, 3)
	recs := []sink.Record{{Key: k, Bins: want}}
	if err := s.Put(ctx(t), recs); err != nil {
		t.Fatalf("Put a 3 MiB record: %v", err)
	}
	parts, heads := inner.written()
	if len(heads) != 1 || len(parts) < 3*1024/256 {
		t.Fatalf("a 3 MiB record was written as %d heads and %d parts", len(heads), len(parts))
	}
	for _, p := range parts {
		if n := len(p.Bins["p"].([]byte)); n > 256<<10 {
			t.Errorf("part %q is %d bytes, over 256 KiB", p.Key.ID, n)
		}
	}
	head := get1(t, inner, k)
	if _, ok := head.Bins["_parts"]; !ok || head.Bins["_t3600"] != nil || head.Bins["_t60"] == nil {
		t.Errorf("stored head: bins %v; want _parts, the small _t60 and not _t3600", slices.Sorted(mapKeys(head.Bins)))
	}
	got := get1(t, s, k)
	if !reflect.DeepEqual(got.Bins, want) || got.Gen != recs[0].Gen {
		t.Fatalf("read back: gen %d (put %d), bins equal: %v", got.Gen, recs[0].Gen, reflect.DeepEqual(got.Bins, want))
	}
	// A new process (nothing known of the parts) reads it the same.
	if got := get1(t, wrapSplit(inner), k); !reflect.DeepEqual(got.Bins, want) {
		t.Fatal("a second split store reads other bins")
	}
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// testSplitLocalRewrite: a change in the middle of a blob rewrites the
// parts around it only, and the parts no longer named are deleted.
func testSplitLocalRewrite(t *testing.T, inner *spy, key keyFunc) {
	s := split.New(inner, split.Options{})
	k := key("busy")
	bins := bigBins(2, 3)
	recs := []sink.Record{{Key: k, Bins: bins}}
	if err := s.Put(ctx(t), recs); err != nil {
		t.Fatal(err)
	}
	before, _ := inner.written()
	blob := bins["_t3600"].([]byte)
	mid := len(blob) / 2
	changed := slices.Concat(blob[:mid], []byte("a tile that changed"), blob[mid+100:])
	next := map[string]any{}
	for k, v := range bins {
		next[k] = v
	}
	next["_t3600"] = changed
	recs[0].Bins = next
	if err := s.Put(ctx(t), recs); err != nil {
		t.Fatal(err)
	}
	parts, _ := inner.written()
	var wrote, deleted []sink.Key
	for _, p := range parts {
		if p.Bins == nil {
			deleted = append(deleted, p.Key)
		} else {
			wrote = append(wrote, p.Key)
		}
	}
	if len(wrote) == 0 || len(wrote) > 3 || len(deleted) == 0 || len(deleted) > 3 {
		t.Errorf("a 100-byte change in a 3 MiB record (%d parts) wrote %d parts and deleted %d; want 1-3 each", len(before), len(wrote), len(deleted))
	}
	for _, d := range deleted {
		if r := get1(t, inner, d); r.Gen != 0 {
			t.Errorf("part %q no head names is still stored", d.ID)
		}
	}
	if got := get1(t, wrapSplit(inner), k); !reflect.DeepEqual(got.Bins, next) {
		t.Error("after the local change the record reads back otherwise")
	}
}

// testSplitShrinkDelete: a split record that becomes small is stored
// whole and its parts deleted; deleting a split record deletes its parts.
func testSplitShrinkDelete(t *testing.T, inner *spy, key keyFunc) {
	s := split.New(inner, split.Options{})
	a, b := key("shrinks"), key("deleted")
	recs := []sink.Record{{Key: a, Bins: bigBins(3, 2)}, {Key: b, Bins: bigBins(4, 2)}}
	if err := s.Put(ctx(t), recs); err != nil {
		t.Fatal(err)
	}
	parts, _ := inner.written()
	small := map[string]any{"_lsn": int64(43), "_t60": []byte("small")}
	recs[0].Bins = small
	recs[1].Bins, recs[1].Gen = nil, sink.AnyGen
	if err := s.Put(ctx(t), recs); err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if r := get1(t, inner, p.Key); r.Gen != 0 {
			t.Errorf("part %q of a head that shrank or was deleted is still stored", p.Key.ID)
		}
	}
	if got := get1(t, s, a); !reflect.DeepEqual(got.Bins, small) {
		t.Errorf("shrunk record reads %v", got.Bins)
	}
	if got := get1(t, s, b); got.Gen != 0 {
		t.Errorf("deleted split record reads gen %d", got.Gen)
	}
}

// testSplitCrashBeforeHead: when the parts are written and the head is
// not (a crash, an unavailable store), the record reads as before, parts
// included; a retry from a re-read then lands.
func testSplitCrashBeforeHead(t *testing.T, inner *spy, key keyFunc) {
	s := split.New(inner, split.Options{})
	k := key("busy")
	old := bigBins(5, 2)
	recs := []sink.Record{{Key: k, Bins: old}}
	if err := s.Put(ctx(t), recs); err != nil {
		t.Fatal(err)
	}
	inner.failPut = func(recs []sink.Record) error {
		if _, part := recs[0].Bins["p"]; part {
			return nil
		}
		return fmt.Errorf("crash: %w", sink.ErrUnavailable)
	}
	next := bigBins(6, 2)
	recs[0].Bins = next
	if err := s.Put(ctx(t), recs); !errors.Is(err, sink.ErrUnavailable) {
		t.Fatalf("Put with the head write failing: %v", err)
	}
	inner.failPut = nil
	got := get1(t, wrapSplit(inner), k)
	if !reflect.DeepEqual(got.Bins, old) {
		t.Fatal("after a failed head write the record does not read as before")
	}
	retry := []sink.Record{{Key: k, Gen: got.Gen, Bins: next}}
	if err := s.Put(ctx(t), retry); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := get1(t, wrapSplit(inner), k); !reflect.DeepEqual(got.Bins, next) {
		t.Fatal("after the retry the record does not read as written")
	}
}

// testSplitConflict: the head's generation check holds for split records.
func testSplitConflict(t *testing.T, inner *spy, key keyFunc) {
	s := split.New(inner, split.Options{})
	k := key("busy")
	first := bigBins(7, 2)
	recs := []sink.Record{{Key: k, Bins: first}}
	if err := s.Put(ctx(t), recs); err != nil {
		t.Fatal(err)
	}
	err := s.Put(ctx(t), []sink.Record{{Key: k, Gen: recs[0].Gen + 1, Bins: bigBins(8, 2)}})
	assertConflict(t, err, k)
	err = s.Put(ctx(t), []sink.Record{{Key: k, Bins: bigBins(9, 2)}})
	assertConflict(t, err, k)
	if got := get1(t, wrapSplit(inner), k); !reflect.DeepEqual(got.Bins, first) || got.Gen != recs[0].Gen {
		t.Fatal("a refused write of a split record changed what reads back")
	}
}

// testSplitReaderDuringRewrite: a reader that gets the head, then finds
// its parts deleted by a writer that replaced it, reads the new record.
func testSplitReaderDuringRewrite(t *testing.T, inner *spy, key keyFunc) {
	w := split.New(inner.Store, split.Options{})
	k := key("busy")
	recs := []sink.Record{{Key: k, Bins: bigBins(10, 2)}}
	if err := w.Put(ctx(t), recs); err != nil {
		t.Fatal(err)
	}
	next := bigBins(11, 2)
	gets := 0
	inner.onGet = func(keys []sink.Key) {
		gets++
		if gets == 2 { // the head was read; its parts are next
			recs[0].Bins = next
			if err := w.Put(ctx(t), recs); err != nil {
				t.Errorf("concurrent write: %v", err)
			}
		}
	}
	got := get1(t, split.New(inner, split.Options{}), k)
	if !reflect.DeepEqual(got.Bins, next) || got.Gen != recs[0].Gen {
		t.Fatalf("read across a rewrite: gen %d (writer: %d); want the rewritten record", got.Gen, recs[0].Gen)
	}
}

// testSplitCachedParts: parts never change, so a split store keeps those
// it wrote or read, and reading the record again takes one round trip
// (its head); without the cache, two.
func testSplitCachedParts(t *testing.T, inner *spy, key keyFunc) {
	k := key("busy")
	want := bigBins(12, 3)
	s := split.New(inner, split.Options{})
	if err := s.Put(ctx(t), []sink.Record{{Key: k, Bins: want}}); err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string]split.Options{"writer": {}, "uncached": {CacheBytes: -1}} {
		r := s
		if name != "writer" {
			r = split.New(inner, opts)
		}
		for i := range 2 {
			inner.mu.Lock()
			inner.gets = 0
			inner.mu.Unlock()
			if got := get1(t, r, k); !reflect.DeepEqual(got.Bins, want) {
				t.Fatalf("%s read %d: other bins", name, i)
			}
			want := 1
			if name == "uncached" {
				want = 2
			}
			if inner.gets != want {
				t.Errorf("%s read %d took %d round trips, want %d", name, i, inner.gets, want)
			}
		}
	}
}
