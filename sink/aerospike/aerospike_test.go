package aerospike

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	as "github.com/aerospike/aerospike-client-go/v7"
	"github.com/aerospike/aerospike-client-go/v7/types"

	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/sink/sinktest"
)

// serverOptions returns the options for the server named by the
// environment, skipping the test loudly when there is none.
func serverOptions(t *testing.T) Options {
	t.Helper()
	hosts := os.Getenv("AEROSPIKE_HOSTS")
	if hosts == "" {
		what := t.Name() + " needs an Aerospike server and"
		if t.Name() == "TestConformance" {
			what = "the Aerospike conformance suite"
		}
		t.Skipf("AEROSPIKE_HOSTS is not set: %s did NOT run; set AEROSPIKE_HOSTS=127.0.0.1:3000 to run it", what)
	}
	ns := os.Getenv("AEROSPIKE_NAMESPACE")
	if ns == "" {
		ns = "test"
	}
	return Options{Hosts: strings.Split(hosts, ","), Namespace: ns}
}

func openStore(t *testing.T, opts Options) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	opts := serverOptions(t)
	sinktest.Run(t, func(t *testing.T) sinktest.Store { return openStore(t, opts) })
}

func TestConformanceSplit(t *testing.T) {
	opts := serverOptions(t)
	sinktest.RunSplit(t, func(t *testing.T) sinktest.Store { return openStore(t, opts) })
}

// testSet is the one set these tests write to: a namespace holds at most
// 4095 sets and never frees them, so a set per run would run out.
const testSet = "tilefeed_aerospike_test"

// keyMaker returns a function making keys unique to this test and run, and
// deletes the records under them when the test ends.
func keyMaker(t *testing.T, s *Store) func(id string) sink.Key {
	prefix := fmt.Sprintf("%08x_%s_", rand.Uint32(), t.Name())
	var made []sink.Key
	t.Cleanup(func() {
		for _, k := range made {
			ak, err := s.key(k)
			if err == nil {
				_, err = s.client.Delete(nil, ak)
			}
			if err != nil {
				t.Logf("clean up %s: %v", k, err)
			}
		}
	})
	return func(id string) sink.Key {
		k := sink.Key{Set: testSet, ID: prefix + id}
		made = append(made, k)
		return k
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestMapBinsAreKeyOrdered checks the promise of the record layout: the
// client decodes a map as []as.MapPair only when the server flags it as
// KEY_ORDERED, so reading the bin raw tells how it is stored.
func TestMapBinsAreKeyOrdered(t *testing.T) {
	t.Parallel()
	s := openStore(t, serverOptions(t))
	k := keyMaker(t, s)("m")
	tiles := map[any]any{int64(300): "c", int64(100): "a", int64(200): map[any]any{"n": int64(1)}}
	recs := []sink.Record{{Key: k, Bins: map[string]any{"_t60": tiles, "empty": map[any]any{}, "n": int64(1)}}}
	for range 2 { // create, then rewrite
		if err := s.Put(testCtx(t), recs); err != nil {
			t.Fatal(err)
		}
	}
	ak, err := s.key(k)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.client.Get(nil, ak)
	if err != nil {
		t.Fatal(err)
	}
	pairs, ok := raw.Bins["_t60"].([]as.MapPair)
	if !ok {
		t.Fatalf("map bin came back as %T, want []as.MapPair (a KEY_ORDERED map)", raw.Bins["_t60"])
	}
	var order []any
	for _, p := range pairs {
		order = append(order, p.Key)
	}
	if !reflect.DeepEqual(order, []any{100, 200, 300}) {
		t.Errorf("map keys in stored order %v, want [100 200 300]", order)
	}
	got := recs[0]
	recsGot, err := s.Get(testCtx(t), []sink.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(recsGot[0].Bins, got.Bins) {
		t.Errorf("round trip:\n got %#v\nwant %#v", recsGot[0].Bins, got.Bins)
	}
}

// TestPartialConflict documents that a Put is not atomic: records that pass
// their generation check are written, and carry their new generation, even
// when others in the same call conflict.
func TestPartialConflict(t *testing.T) {
	t.Parallel()
	s := openStore(t, serverOptions(t))
	key := keyMaker(t, s)
	a, b, c := key("a"), key("b"), key("c")
	first := []sink.Record{{Key: a, Bins: map[string]any{"v": int64(1)}}}
	if err := s.Put(testCtx(t), first); err != nil {
		t.Fatal(err)
	}
	recs := []sink.Record{
		{Key: a, Gen: 0, Bins: map[string]any{"v": int64(2)}},           // exists: conflict
		{Key: b, Gen: 0, Bins: map[string]any{"v": int64(3)}},           // new: written
		{Key: c, Gen: 7, Bins: map[string]any{"v": int64(4)}},           // missing: conflict
		{Key: a, Gen: first[0].Gen + 5, Bins: map[string]any{"v": "x"}}, // stale: conflict
	}
	err := s.Put(testCtx(t), recs)
	var ce *sink.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, sink.ErrConflict) {
		t.Fatalf("want a *sink.ConflictError, got %v", err)
	}
	if want := []sink.Key{a, c, a}; !reflect.DeepEqual(ce.Keys, want) {
		t.Errorf("conflict keys %v, want %v", ce.Keys, want)
	}
	if recs[0].Gen != 0 || recs[2].Gen != 7 || recs[3].Gen != first[0].Gen+5 {
		t.Errorf("conflicting records' Gen changed: %d %d %d", recs[0].Gen, recs[2].Gen, recs[3].Gen)
	}
	got, err := s.Get(testCtx(t), []sink.Key{a, b, c})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Gen != first[0].Gen || got[0].Bins["v"] != int64(1) {
		t.Errorf("a changed: %+v", got[0])
	}
	if got[1].Gen == 0 || got[1].Gen != recs[1].Gen {
		t.Errorf("b: stored gen %d, Put reported %d", got[1].Gen, recs[1].Gen)
	}
	if got[2].Gen != 0 {
		t.Errorf("c was created: %+v", got[2])
	}
}

// TestSmallBatches runs a Get and a Put split into several requests, with
// a conflict in a middle batch: the batches after it are still written.
func TestSmallBatches(t *testing.T) {
	t.Parallel()
	opts := serverOptions(t)
	opts.BatchSize = 3
	s := openStore(t, opts)
	key := keyMaker(t, s)
	taken := key("4")
	if err := s.Put(testCtx(t), []sink.Record{{Key: taken, Bins: map[string]any{"i": int64(-1)}}}); err != nil {
		t.Fatal(err)
	}
	const n = 10
	recs := make([]sink.Record, n)
	keys := make([]sink.Key, n+1)
	for i := range recs {
		keys[i] = key(fmt.Sprint(i))
		recs[i] = sink.Record{Key: keys[i], Bins: map[string]any{"i": int64(i)}}
	}
	keys[n] = key("absent")
	err := s.Put(testCtx(t), recs)
	var ce *sink.ConflictError
	if !errors.As(err, &ce) || !reflect.DeepEqual(ce.Keys, []sink.Key{taken}) {
		t.Fatalf("Put: %v, want a conflict on %s only", err, taken)
	}
	got, err := s.Get(testCtx(t), keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range got[:n] {
		want := int64(i)
		if i == 4 {
			want = -1
		}
		if r.Key != keys[i] || r.Bins["i"] != want || (i != 4 && r.Gen != recs[i].Gen) {
			t.Errorf("record %d: got %+v (Put reported gen %d)", i, r, recs[i].Gen)
		}
	}
	if got[n].Gen != 0 || got[n].Bins != nil {
		t.Errorf("absent key: %+v", got[n])
	}
}

// TestGetTTL checks that Get reports the remaining TTL in whole seconds.
func TestGetTTL(t *testing.T) {
	t.Parallel()
	s := openStore(t, serverOptions(t))
	k := keyMaker(t, s)("t")
	if err := s.Put(testCtx(t), []sink.Record{{Key: k, TTL: 90*time.Second + time.Millisecond, Bins: map[string]any{"v": int64(1)}}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(testCtx(t), []sink.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	if ttl := got[0].TTL; ttl < 89*time.Second || ttl > 91*time.Second || ttl%time.Second != 0 {
		t.Errorf("TTL %s, want about 91s in whole seconds", ttl)
	}
}

func TestInvalidRecordWritesNothing(t *testing.T) {
	t.Parallel()
	s := openStore(t, serverOptions(t))
	key := keyMaker(t, s)
	k := key("ok")
	err := s.Put(testCtx(t), []sink.Record{
		{Key: k, Bins: map[string]any{"v": int64(1)}},
		{Key: key("bad"), Bins: map[string]any{"v": 1}}, // int, not int64
	})
	if err == nil || !strings.Contains(err.Error(), "type int") {
		t.Fatalf("Put with an int bin: %v", err)
	}
	got, err := s.Get(testCtx(t), []sink.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Gen != 0 {
		t.Errorf("valid record was written although the call failed: %+v", got[0])
	}
}

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	_, err := Open(context.Background(), Options{Hosts: []string{"127.0.0.1:1"}, Namespace: "test", Password: "s3cret", Timeout: time.Second})
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("error does not name the host: %v", err)
	}
	if !errors.Is(err, sink.ErrUnavailable) {
		t.Errorf("connection refused is not ErrUnavailable: %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error shows the password: %v", err)
	}
}

func TestOpenUnknownNamespace(t *testing.T) {
	t.Parallel()
	opts := serverOptions(t)
	opts.Namespace = "no_such_namespace"
	_, err := Open(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), `namespace "no_such_namespace" is not configured`) {
		t.Fatalf("Open with an unknown namespace: %v", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	_, err := Options{
		Hosts:     []string{"127.0.0.1:3000", "nohost", "h:0", ":3000"},
		BatchSize: -1,
		Timeout:   -time.Second,
		TLSName:   "x",
		Password:  "s3cret",
	}.hosts()
	if err == nil {
		t.Fatal("invalid options accepted")
	}
	for _, want := range []string{`hosts[1] "nohost"`, `hosts[2] "h:0"`, `hosts[3] ":3000"`, "namespace: empty", "timeout:", "batch_size:", "tls_name:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not report %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "127.0.0.1:3000") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error reports a valid host or the password:\n%v", err)
	}

	hosts, err := Options{Hosts: []string{"a:3000", "[::1]:4333"}, Namespace: "n", TLS: &tls.Config{}, TLSName: "cluster"}.hosts()
	if err != nil {
		t.Fatal(err)
	}
	want := []*as.Host{{Name: "a", Port: 3000, TLSName: "cluster"}, {Name: "::1", Port: 4333, TLSName: "cluster"}}
	if !reflect.DeepEqual(hosts, want) {
		t.Errorf("hosts %v, want %v", hosts, want)
	}
}

func TestExpiration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ttl  time.Duration
		want uint32
		err  bool
	}{
		{0, as.TTLDontExpire, false},
		{time.Nanosecond, 1, false},
		{time.Second, 1, false},
		{1500 * time.Millisecond, 2, false},
		{time.Hour, 3600, false},
		{maxTTL * time.Second, maxTTL, false},
		{maxTTL*time.Second + 1, 0, true},
		{-time.Second, 0, true},
	}
	for _, tc := range tests {
		got, err := expiration(tc.ttl)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("expiration(%s) = %d, %v; want %d, error %t", tc.ttl, got, err, tc.want, tc.err)
		}
	}
}

func TestBatchWritePolicy(t *testing.T) {
	t.Parallel()
	s := newStore(nil, Options{Namespace: "test"}.withDefaults())
	bins := map[string]any{"a": int64(1), "m": map[any]any{int64(1): "x"}, "gone": nil}
	tests := []struct {
		gen        uint32
		wantAction as.RecordExistsAction
		wantGen    as.GenerationPolicy
	}{
		{0, as.CREATE_ONLY, as.NONE},
		{5, as.UPDATE_ONLY, as.EXPECT_GEN_EQUAL},
	}
	for _, tc := range tests {
		bw, err := s.batchWrite(&sink.Record{Key: sink.Key{Set: "s", ID: "k"}, Gen: tc.gen, TTL: 2 * time.Second, Bins: bins})
		if err != nil {
			t.Fatal(err)
		}
		p := bw.Policy
		if p.RecordExistsAction != tc.wantAction || p.GenerationPolicy != tc.wantGen || p.Generation != tc.gen || p.Expiration != 2 {
			t.Errorf("gen %d: policy %+v", tc.gen, *p)
		}
		// delete-all, put a, put m, make m KEY_ORDERED; the nil bin is skipped.
		if len(bw.Ops) != 4 {
			t.Errorf("gen %d: %d ops, want 4", tc.gen, len(bw.Ops))
		}
	}

	bad := []struct {
		name string
		bins map[string]any
		want string
	}{
		{"no bins", nil, "no bins"},
		{"only nil bins", map[string]any{"a": nil}, "no bins"},
		{"long bin name", map[string]any{"sixteen_chars_xx": int64(1)}, "bin names are 1-15 bytes"},
		{"bad value", map[string]any{"a": []any{uint8(1)}}, `bin "a": [0]: value of type uint8`},
	}
	for _, tc := range bad {
		_, err := s.batchWrite(&sink.Record{Key: sink.Key{Set: "s", ID: "k"}, Bins: tc.bins})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := s.batchWrite(&sink.Record{Key: sink.Key{Set: strings.Repeat("s", 64), ID: "k"}, Bins: bins}); err == nil {
		t.Error("64-byte set name accepted")
	}
}

// TestPutResult checks how per-record results become Put's error.
func TestPutResult(t *testing.T) {
	t.Parallel()
	key := func(id string) sink.Key { return sink.Key{Set: "s", ID: id} }
	ok := func(gen uint32) *as.BatchRecord {
		return &as.BatchRecord{ResultCode: types.OK, Record: &as.Record{Generation: gen}}
	}
	code := func(rc types.ResultCode) *as.BatchRecord { return &as.BatchRecord{ResultCode: rc} }

	tests := []struct {
		name        string
		results     []*as.BatchRecord
		stop        error
		wantNil     bool
		conflicts   []sink.Key
		tooBig      []sink.Key
		unavailable bool
		contains    string
	}{
		{name: "all written", results: []*as.BatchRecord{ok(1), ok(9)}, wantNil: true},
		{
			name:      "conflicts",
			results:   []*as.BatchRecord{ok(2), code(types.GENERATION_ERROR), code(types.KEY_EXISTS_ERROR), code(types.KEY_NOT_FOUND_ERROR)},
			conflicts: []sink.Key{key("1"), key("2"), key("3")},
		},
		{
			name:        "timeout",
			results:     []*as.BatchRecord{ok(2), code(types.TIMEOUT)},
			unavailable: true,
			contains:    "1 of 2 records not confirmed",
		},
		{
			name:        "timeout and conflict",
			results:     []*as.BatchRecord{code(types.KEY_BUSY), code(types.GENERATION_ERROR)},
			conflicts:   []sink.Key{key("1")},
			unavailable: true,
		},
		{
			name:     "too big",
			results:  []*as.BatchRecord{code(types.RECORD_TOO_BIG), ok(1), code(types.RECORD_TOO_BIG)},
			tooBig:   []sink.Key{key("0"), key("2")},
			contains: "2 records are too big for the store (first: s/0)",
		},
		{
			name:     "other failure",
			results:  []*as.BatchRecord{code(types.BIN_NAME_TOO_LONG), ok(1)},
			contains: "1 of 2 records failed (first: record s/0",
		},
		{
			name:        "request failed",
			results:     []*as.BatchRecord{ok(1), code(types.NO_RESPONSE)},
			stop:        wrap("batch write", as.ErrTimeout),
			unavailable: true,
			contains:    "1 of 2 records unanswered and 0 not sent",
		},
		{name: "no generation", results: []*as.BatchRecord{{ResultCode: types.OK}}, contains: "returned no generation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			recs := make([]sink.Record, len(tc.results))
			res := putResult{total: len(recs)}
			for i, br := range tc.results {
				recs[i] = sink.Record{Key: key(fmt.Sprint(i)), Gen: 100, Bins: map[string]any{"v": int64(1)}}
				res.record(&recs[i], br)
			}
			if tc.stop != nil {
				res.stop(tc.stop, 0)
			}
			err := res.err()
			if tc.wantNil != (err == nil) {
				t.Fatalf("error %v", err)
			}
			for i, br := range tc.results {
				want := uint32(100)
				if br.ResultCode == types.OK && br.Record != nil {
					want = br.Record.Generation
				}
				if recs[i].Gen != want {
					t.Errorf("record %d: Gen %d, want %d", i, recs[i].Gen, want)
				}
			}
			if err == nil {
				return
			}
			var ce *sink.ConflictError
			if errors.As(err, &ce) != (tc.conflicts != nil) || (ce != nil && !reflect.DeepEqual(ce.Keys, tc.conflicts)) {
				t.Errorf("conflicts in %v, want %v", err, tc.conflicts)
			}
			var tb *sink.TooBigError
			if errors.As(err, &tb) != (tc.tooBig != nil) || (tb != nil && !reflect.DeepEqual(tb.Keys, tc.tooBig)) {
				t.Errorf("too big in %v, want %v", err, tc.tooBig)
			}
			if errors.Is(err, sink.ErrUnavailable) != tc.unavailable {
				t.Errorf("errors.Is(%v, ErrUnavailable) = %t", err, !tc.unavailable)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not contain %q", err, tc.contains)
			}
		})
	}
}

func TestWrapClassifies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{as.ErrTimeout, true},
		{as.ErrNetwork, true},
		{as.ErrConnectionPoolEmpty, true},
		{as.ErrMaxRetriesExceeded, true},
		{as.ErrServerNotAvailable, true},
		{&as.AerospikeError{ResultCode: types.DEVICE_OVERLOAD}, true},
		{&as.AerospikeError{ResultCode: types.PARAMETER_ERROR}, false},
		{&as.AerospikeError{ResultCode: types.INVALID_NAMESPACE}, false},
		{errors.New("plain"), false},
	} {
		err := wrap("doing", tc.err)
		if errors.Is(err, sink.ErrUnavailable) != tc.want {
			t.Errorf("wrap(%v): unavailable = %t, want %t", tc.err, !tc.want, tc.want)
		}
		if !errors.Is(err, tc.err) || !strings.HasPrefix(err.Error(), "doing: ") {
			t.Errorf("wrap(%v) = %v lost the cause or the context", tc.err, err)
		}
	}
}
