// Package sinktest is the conformance suite every sink store passes: the
// embedded store always, Aerospike when AEROSPIKE_HOSTS is set.
package sinktest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/tilefeed/tilefeed/sink"
)

// Store is what tilefeed needs from a sink store.
type Store interface {
	Get(ctx context.Context, keys []sink.Key) ([]sink.Record, error)
	Put(ctx context.Context, recs []sink.Record) error
	Close() error
}

// Run runs the suite against the store open returns. Each test uses a set
// of its own and record IDs unique to the run, so a store that outlives the
// run (a shared Aerospike namespace) is fine; the set names are fixed
// because an Aerospike namespace never frees a set.
func Run(t *testing.T, open func(t *testing.T) Store) {
	t.Helper()
	run := fmt.Sprintf("c%08x", rand.Uint32())
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store, key keyFunc)
	}{
		{"missing", testMissing},
		{"create_get", testCreateGet},
		{"generation", testGeneration},
		{"conflict", testConflict},
		{"batch", testBatch},
		{"ttl", testTTL},
		{"replace_bins", testReplaceBins},
		{"truncate", testTruncate},
		{"too_big", testTooBig},
		{"any_gen_delete", testAnyGenDelete},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			set := "tfconf_" + tc.name
			tc.fn(t, s, func(id string) sink.Key { return sink.Key{Set: set, ID: run + "-" + id} })
		})
	}
}

// keyFunc names a record of the running test.
type keyFunc func(id string) sink.Key

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func get1(t *testing.T, s Store, k sink.Key) sink.Record {
	t.Helper()
	recs, err := s.Get(ctx(t), []sink.Key{k})
	if err != nil {
		t.Fatalf("Get %s: %v", k, err)
	}
	if len(recs) != 1 || recs[0].Key != k {
		t.Fatalf("Get %s returned %+v", k, recs)
	}
	return recs[0]
}

func testMissing(t *testing.T, s Store, key keyFunc) {
	r := get1(t, s, key("nobody"))
	if r.Gen != 0 || r.Bins != nil {
		t.Fatalf("missing record: got gen %d bins %v, want 0 and nil", r.Gen, r.Bins)
	}
}

// sample holds every bin value type tilefeed writes.
func sample() map[string]any {
	return map[string]any{
		"_lsn":  int64(1) << 40,
		"_ord":  int64(7),
		"name":  "Zoë",
		"score": 2.5,
		"ok":    true,
		"blob":  []byte{0, 1, 2, 255},
		"tags":  []any{"a", int64(2), []any{"nested"}},
		"_t60": map[any]any{
			int64(1700000040): map[any]any{"n": int64(3), "s:amount": "12.50",
				"v:amount": map[any]any{"d:1.25": int64(2)}},
			int64(1700000100): map[any]any{"n": int64(1)},
		},
		// Per-stream positions (Kafka partitions): lists inside a map.
		"_src": map[any]any{"shop.public.orders/0": []any{int64(1) << 40, int64(5), int64(1)},
			"shop.public.orders/1": []any{int64(0), int64(0), int64(3)}},
	}
}

func testCreateGet(t *testing.T, s Store, key keyFunc) {
	k := key("card-1")
	recs := []sink.Record{{Key: k, Bins: sample()}}
	if err := s.Put(ctx(t), recs); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if recs[0].Gen == 0 {
		t.Fatal("Put left Gen 0; want the new generation")
	}
	got := get1(t, s, k)
	if got.Gen != recs[0].Gen {
		t.Errorf("Get gen %d, Put reported %d", got.Gen, recs[0].Gen)
	}
	if !reflect.DeepEqual(got.Bins, sample()) {
		t.Errorf("bins differ:\n got %#v\nwant %#v", got.Bins, sample())
	}
}

func testGeneration(t *testing.T, s Store, key keyFunc) {
	k := key("e")
	r := sink.Record{Key: k, Bins: map[string]any{"n": int64(1)}}
	for i := int64(2); i <= 4; i++ {
		recs := []sink.Record{r}
		if err := s.Put(ctx(t), recs); err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
		if recs[0].Gen == r.Gen {
			t.Fatalf("generation did not change on write (%d)", r.Gen)
		}
		r = recs[0]
		r.Bins = map[string]any{"n": i}
	}
	if got := get1(t, s, k); got.Bins["n"] != int64(3) {
		t.Errorf("after three writes n = %v, want 3", got.Bins["n"])
	}
}

func testConflict(t *testing.T, s Store, key keyFunc) {
	k := key("x")
	first := []sink.Record{{Key: k, Bins: map[string]any{"v": "first"}}}
	if err := s.Put(ctx(t), first); err != nil {
		t.Fatal(err)
	}
	// A second create of the same key must fail: it expects no record.
	err := s.Put(ctx(t), []sink.Record{{Key: k, Bins: map[string]any{"v": "second"}}})
	assertConflict(t, err, k)
	// A write that expects a stale generation must fail too.
	stale := first[0]
	stale.Gen++
	stale.Bins = map[string]any{"v": "stale"}
	assertConflict(t, s.Put(ctx(t), []sink.Record{stale}), k)
	if got := get1(t, s, k); got.Bins["v"] != "first" {
		t.Errorf("after rejected writes v = %v, want first", got.Bins["v"])
	}
}

func assertConflict(t *testing.T, err error, k sink.Key) {
	t.Helper()
	var ce *sink.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, sink.ErrConflict) {
		t.Fatalf("want *sink.ConflictError wrapping ErrConflict, got %v", err)
	}
	if len(ce.Keys) != 1 || ce.Keys[0] != k {
		t.Fatalf("conflict names %v, want [%s]", ce.Keys, k)
	}
}

func testBatch(t *testing.T, s Store, key keyFunc) {
	const n = 700
	recs := make([]sink.Record, n)
	keys := make([]sink.Key, n+1)
	for i := range recs {
		keys[i] = key(fmt.Sprint("k", i))
		recs[i] = sink.Record{Key: keys[i], Bins: map[string]any{"i": int64(i)}}
	}
	keys[n] = key("absent")
	if err := s.Put(ctx(t), recs); err != nil {
		t.Fatalf("Put %d records: %v", n, err)
	}
	got, err := s.Get(ctx(t), keys)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if got[i].Key != keys[i] || got[i].Bins["i"] != int64(i) || got[i].Gen != recs[i].Gen {
			t.Fatalf("record %d: got %+v", i, got[i])
		}
	}
	if got[n].Gen != 0 {
		t.Errorf("absent key came back with gen %d", got[n].Gen)
	}
}

func testTTL(t *testing.T, s Store, key keyFunc) {
	k := key("short")
	keep := key("forever")
	err := s.Put(ctx(t), []sink.Record{
		{Key: k, TTL: time.Second, Bins: map[string]any{"v": int64(1)}},
		{Key: keep, Bins: map[string]any{"v": int64(2)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if get1(t, s, k).Gen == 0 {
		t.Fatal("record with a 1s TTL is gone at once")
	}
	time.Sleep(2500 * time.Millisecond)
	if r := get1(t, s, k); r.Gen != 0 {
		t.Errorf("record with a 1s TTL still there after 2.5s: %+v", r)
	}
	if get1(t, s, keep).Gen == 0 {
		t.Error("record without TTL expired")
	}
	// An expired record can be created again.
	if err := s.Put(ctx(t), []sink.Record{{Key: k, Bins: map[string]any{"v": int64(3)}}}); err != nil {
		t.Errorf("re-create after expiry: %v", err)
	}
}

func testReplaceBins(t *testing.T, s Store, key keyFunc) {
	// A write replaces the whole record: bins it does not name are gone.
	k := key("r")
	recs := []sink.Record{{Key: k, Bins: map[string]any{"a": int64(1), "b": int64(2)}}}
	if err := s.Put(ctx(t), recs); err != nil {
		t.Fatal(err)
	}
	recs[0].Bins = map[string]any{"a": int64(5)}
	if err := s.Put(ctx(t), recs); err != nil {
		t.Fatal(err)
	}
	got := get1(t, s, k)
	if !reflect.DeepEqual(got.Bins, map[string]any{"a": int64(5)}) {
		t.Errorf("bins after replace: %v, want only a=5", got.Bins)
	}
}

// Truncater is the optional capability to empty a set (snapshot.mode
// always and when_needed rebuild a connector's features with it).
type Truncater interface {
	Truncate(ctx context.Context, set string) error
}

// testTruncate: after Truncate the set's records are gone, and a record
// written afterwards (expecting nothing) is kept.
func testTruncate(t *testing.T, s Store, key keyFunc) {
	tr, ok := s.(Truncater)
	if !ok {
		t.Skip("the store cannot truncate a set")
	}
	a, b := key("a"), key("b")
	if err := s.Put(ctx(t), []sink.Record{{Key: a, Bins: sample()}, {Key: b, Bins: sample()}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // Aerospike's cut-off is the server's clock, in milliseconds
	if err := tr.Truncate(ctx(t), a.Set); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for get1(t, s, a).Gen != 0 || get1(t, s, b).Gen != 0 {
		if time.Now().After(deadline) {
			t.Fatal("records still there 10s after Truncate")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond)
	// A write that expects the vanished record's generation is a conflict
	// (the runtime tells a lost checkpoint from it), and changes nothing.
	err := s.Put(ctx(t), []sink.Record{{Key: b, Gen: 1, Bins: sample()}})
	assertConflict(t, err, b)
	if got := get1(t, s, b); got.Gen != 0 {
		t.Errorf("a conflicting write of a vanished record left generation %d", got.Gen)
	}
	rec := []sink.Record{{Key: a, Bins: sample()}}
	if err := s.Put(ctx(t), rec); err != nil {
		t.Fatalf("write after Truncate, expecting no record: %v", err)
	}
	if got := get1(t, s, a); got.Gen == 0 {
		t.Error("a record written after Truncate is gone")
	}
}

// testTooBig: a record over the store's record limit (1 MiB: Aerospike's
// default max-record-size, which the suite assumes) is refused with a
// *sink.TooBigError naming it, and what was stored under its key stays.
func testTooBig(t *testing.T, s Store, key keyFunc) {
	k := key("big")
	small := []sink.Record{{Key: k, Bins: map[string]any{"v": "small"}}}
	if err := s.Put(ctx(t), small); err != nil {
		t.Fatal(err)
	}
	// A multiset as tilefeed stores one: 2 MiB of entries.
	m := make(map[any]any, 60_000)
	for i := range 60_000 {
		m[fmt.Sprintf("s:merchant-%029d", i)] = int64(i + 1)
	}
	big := []sink.Record{{Key: k, Gen: small[0].Gen, Bins: map[string]any{"v": "big", "m": m}}}
	err := s.Put(ctx(t), big)
	var tb *sink.TooBigError
	if !errors.As(err, &tb) || !errors.Is(err, sink.ErrTooBig) {
		t.Fatalf("a 2 MiB record: want *sink.TooBigError wrapping ErrTooBig, got %v", err)
	}
	if len(tb.Keys) != 1 || tb.Keys[0] != k {
		t.Errorf("too big names %v, want [%s]", tb.Keys, k)
	}
	if got := get1(t, s, k); got.Bins["v"] != "small" || got.Gen != small[0].Gen {
		t.Errorf("after the refused write: v = %v gen %d, want small gen %d", got.Bins["v"], got.Gen, small[0].Gen)
	}
}

// testAnyGenDelete: a write with Gen AnyGen creates or replaces whatever
// is stored; nil bins with AnyGen delete, and deleting a missing record is
// no error; a delete that names a generation is refused, nothing written.
func testAnyGenDelete(t *testing.T, s Store, key keyFunc) {
	a, b, gone := key("a"), key("b"), key("never")
	recs := []sink.Record{{Key: a, Gen: sink.AnyGen, Bins: map[string]any{"v": int64(1)}}}
	if err := s.Put(ctx(t), recs); err != nil {
		t.Fatalf("create with AnyGen: %v", err)
	}
	first := recs[0].Gen
	if first == 0 || first == sink.AnyGen {
		t.Fatalf("create with AnyGen left Gen %d", first)
	}
	recs = []sink.Record{{Key: a, Gen: sink.AnyGen, Bins: map[string]any{"v": int64(2)}},
		{Key: b, Bins: map[string]any{"v": int64(3)}}}
	if err := s.Put(ctx(t), recs); err != nil {
		t.Fatalf("replace with AnyGen: %v", err)
	}
	if got := get1(t, s, a); got.Bins["v"] != int64(2) || got.Gen != recs[0].Gen || got.Gen == first {
		t.Fatalf("after replace with AnyGen: %+v (Put said gen %d, first %d)", got, recs[0].Gen, first)
	}
	del := []sink.Record{{Key: a, Gen: sink.AnyGen}, {Key: gone, Gen: sink.AnyGen}}
	if err := s.Put(ctx(t), del); err != nil {
		t.Fatalf("delete a record and a missing one: %v", err)
	}
	if del[0].Gen != 0 {
		t.Errorf("a deleted record's Gen is %d after Put, want 0", del[0].Gen)
	}
	if got := get1(t, s, a); got.Gen != 0 || got.Bins != nil {
		t.Errorf("deleted record still there: %+v", got)
	}
	bad := []sink.Record{{Key: b, Gen: recs[1].Gen}}
	if err := s.Put(ctx(t), bad); err == nil || errors.Is(err, sink.ErrConflict) {
		t.Errorf("a delete naming a generation: %v, want a plain error", err)
	}
	if got := get1(t, s, b); got.Bins["v"] != int64(3) {
		t.Errorf("a refused delete changed the record: %+v", got)
	}
}
