package connector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/sink/embedded"
	"github.com/tilefeed/tilefeed/transform"
)

// fakeSource replays a script of events from the resume position on, the
// way a replication slot does, and records acknowledgements.
type fakeSource struct {
	events []change.Event
	mu     sync.Mutex
	acks   []uint64
	// dup sends every event twice, as a reconnect can.
	dup bool
}

func (s *fakeSource) Stream(ctx context.Context, from Checkpoint, out chan<- change.Event) error {
	resume := from.Resume
	for _, ev := range s.events {
		if ev.Op == change.Commit && ev.Resume <= resume {
			continue
		}
		if ev.Op != change.Commit && ev.Pos.LSN < resume {
			continue
		}
		for n := 0; n < 1+btoi(s.dup); n++ {
			if err := send(ctx, out, ev); err != nil {
				return err
			}
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

func send(ctx context.Context, out chan<- change.Event, ev change.Event) error {
	select {
	case out <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *fakeSource) Ack(cp Checkpoint) {
	resume := cp.Resume
	s.mu.Lock()
	s.acks = append(s.acks, resume)
	s.mu.Unlock()
}

func (s *fakeSource) lastAck() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.acks) == 0 {
		return 0
	}
	return s.acks[len(s.acks)-1]
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// script builds n transactions of 3 inserts each on entity k%2, amounts 1..
func script(n int) []change.Event {
	var evs []change.Event
	amount := int64(0)
	for tx := 1; tx <= n; tx++ {
		lsn := uint64(tx * 100)
		for i := 1; i <= 3; i++ {
			amount++
			evs = append(evs, change.Event{Op: change.Insert, Table: "public.t", Pos: change.Position{LSN: lsn, Ordinal: uint32(i)},
				CommitTime: t0, After: change.Row{"k": int64(tx % 2), "v": amount, "at": t0}})
		}
		evs = append(evs, change.Event{Op: change.Commit, Pos: change.Position{LSN: lsn, Ordinal: 4}, CommitTime: t0, Resume: lsn + 50})
	}
	return evs
}

func newEngine(t *testing.T) *transform.Engine {
	t.Helper()
	e, err := transform.Compile([]config.Feature{{Name: "g", Table: "public.t", Entity: []string{"k"}, Time: "at",
		Aggregations: []config.Aggregation{{Name: "n", Function: "count"}, {Name: "total", Function: "sum", Column: "v"}}}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func run(t *testing.T, src Source, st Store, opts Options, until func() bool) *Runtime {
	t.Helper()
	rt := New("c", src, st, newEngine(t), slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()), opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !until() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	return rt
}

func totals(t *testing.T, st Store) (n0, sum0, n1, sum1 string) {
	t.Helper()
	e := newEngine(t)
	g := e.Group("g")
	recs, err := st.Get(context.Background(), []sink.Key{{Set: "g", ID: "0"}, {Set: "g", ID: "1"}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		s, err := transform.DecodeState(r.Bins)
		if err != nil {
			t.Fatal(err)
		}
		f := g.Read(s, t0)
		out = append(out, fmt.Sprint(f[0].Value), fmt.Sprint(transform.JSONValue(f[1].Value)))
	}
	return out[0], out[1], out[2], out[3]
}

func openStore(t *testing.T) *embedded.Store {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "s.db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestDuplicatesAcrossReconnect: events delivered twice (a reconnect
// resends what was received but not durable) are applied once.
func TestDuplicatesAcrossReconnect(t *testing.T) {
	st := openStore(t)
	src := &fakeSource{events: script(10), dup: true}
	run(t, src, st, Options{BatchMax: 4}, func() bool { return src.lastAck() == 1050 })
	n0, s0, n1, s1 := totals(t, st)
	// Even transactions (k=0) hold amounts 4-6, 10-12, …, 28-30; odd ones k=1.
	if n0 != "15" || n1 != "15" || s0 != "255" || s1 != "210" {
		t.Errorf("got n0=%s sum0=%s n1=%s sum1=%s, want 15 255 15 210", n0, s0, n1, s1)
	}
}

// TestNoAckBeforeDurable: while the store fails, nothing is acknowledged;
// once it recovers, the acknowledgement follows the checkpoint.
func TestNoAckBeforeDurable(t *testing.T) {
	st := openStore(t)
	var failing sync.Mutex
	down := true
	st.InjectFault(func(op string, _ []sink.Record) error {
		failing.Lock()
		defer failing.Unlock()
		if down && op == "put" {
			return sink.ErrUnavailable
		}
		return nil
	})
	src := &fakeSource{events: script(3)}
	go func() {
		time.Sleep(300 * time.Millisecond)
		if a := src.lastAck(); a != 0 {
			t.Errorf("acknowledged %d while the store was down", a)
		}
		failing.Lock()
		down = false
		failing.Unlock()
	}()
	rt := run(t, src, st, Options{}, func() bool { return src.lastAck() == 350 })
	cp, _, ok, err := LoadCheckpoint(context.Background(), st, "c")
	if err != nil || !ok || cp.Resume != 350 || cp.Changes != 9 {
		t.Errorf("checkpoint %+v (%v, %v), want resume 350 and 9 changes", cp, ok, err)
	}
	if s := rt.Status(); !s.SinkOK {
		t.Errorf("status after recovery: %+v", s)
	}
}

// TestRestartReplaysNothingTwice: a second run over the same script from
// the stored checkpoint changes nothing.
func TestRestartReplaysNothingTwice(t *testing.T) {
	st := openStore(t)
	src := &fakeSource{events: script(6)}
	run(t, src, st, Options{BatchMax: 5}, func() bool { return src.lastAck() == 650 })
	a0, b0, a1, b1 := totals(t, st)
	// Forget the checkpoint's progress but keep the records: every event
	// is replayed and must be skipped by the records' own positions.
	if err := st.Put(context.Background(), []sink.Record{{Key: checkpointKey("c"), Gen: gen(t, st), Bins: map[string]any{"lsn": int64(0), "ord": int64(0), "resume": int64(0)}}}); err != nil {
		t.Fatal(err)
	}
	src2 := &fakeSource{events: script(6)}
	run(t, src2, st, Options{BatchMax: 5}, func() bool { return src2.lastAck() == 650 })
	c0, d0, c1, d1 := totals(t, st)
	if a0 != c0 || b0 != d0 || a1 != c1 || b1 != d1 {
		t.Errorf("replay changed the features: %s %s %s %s → %s %s %s %s", a0, b0, a1, b1, c0, d0, c1, d1)
	}
}

func gen(t *testing.T, st Store) uint32 {
	recs, err := st.Get(context.Background(), []sink.Key{checkpointKey("c")})
	if err != nil {
		t.Fatal(err)
	}
	return recs[0].Gen
}

// streamsSource sends the events of several streams, each in its own
// order, and records the last checkpoint acknowledged.
type streamsSource struct {
	events []change.Event
	mu     sync.Mutex
	acked  Checkpoint
	from   Checkpoint
}

func (s *streamsSource) Stream(ctx context.Context, from Checkpoint, out chan<- change.Event) error {
	s.mu.Lock()
	s.from = from
	s.mu.Unlock()
	for _, ev := range s.events {
		if err := send(ctx, out, ev); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *streamsSource) Ack(cp Checkpoint) {
	s.mu.Lock()
	s.acked = cp
	s.mu.Unlock()
}

func (s *streamsSource) ackedChanges() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked.Changes
}

// TestStreamsOrderedEachOnItsOwn: two streams whose positions interleave
// (partition b lags behind a) both reach one record: a change is skipped
// only when its own stream has passed it, and a full redelivery after a
// restart changes nothing. Offsets are checkpointed per stream.
func TestStreamsOrderedEachOnItsOwn(t *testing.T) {
	st := openStore(t)
	var evs []change.Event
	for _, stream := range []string{"a", "b"} {
		for i := 1; i <= 5; i++ {
			lsn := uint64(1000 + 100*i)
			if stream == "b" {
				lsn = uint64(100 * i) // all before a's
			}
			evs = append(evs, change.Event{Op: change.Insert, Table: "public.t", Stream: stream, Offset: int64(i + 1),
				Pos: change.Position{LSN: lsn, Seq: lsn + 7, Ordinal: 1}, CommitTime: t0,
				After: change.Row{"k": int64(0), "v": int64(i), "at": t0}})
		}
	}
	src := &streamsSource{events: evs}
	run(t, src, st, Options{BatchMax: 3}, func() bool { return src.ackedChanges() == 10 })
	if n0, s0, _, _ := totals(t, st); n0 != "10" || s0 != "30" {
		t.Fatalf("after first run: count %s sum %s, want 10 30", n0, s0)
	}
	cp, _, ok, err := LoadCheckpoint(context.Background(), st, "c")
	if err != nil || !ok {
		t.Fatalf("checkpoint: %v %v", ok, err)
	}
	want := map[string]StreamPos{
		"a": {Pos: change.Position{LSN: 1500, Seq: 1507, Ordinal: 1}, Offset: 6},
		"b": {Pos: change.Position{LSN: 500, Seq: 507, Ordinal: 1}, Offset: 6},
	}
	if !reflect.DeepEqual(cp.Streams, want) {
		t.Errorf("checkpoint streams %+v, want %+v", cp.Streams, want)
	}

	// A marker after the redelivery: once it is acknowledged, everything
	// before it went through the runtime.
	end := change.Event{Op: change.Commit, Pos: change.Position{LSN: 9}, Resume: 9, CommitTime: t0}
	src2 := &streamsSource{events: append(evs[:len(evs):len(evs)], end)}
	run(t, src2, st, Options{BatchMax: 4}, func() bool {
		src2.mu.Lock()
		defer src2.mu.Unlock()
		return src2.acked.Resume == 9
	})
	if n0, s0, _, _ := totals(t, st); n0 != "10" || s0 != "30" {
		t.Errorf("after redelivery: count %s sum %s, want 10 30", n0, s0)
	}
	if !reflect.DeepEqual(src2.from.Streams, want) {
		t.Errorf("second run started from %+v, want %+v", src2.from.Streams, want)
	}
}

// TestRecordTooBig: a lifetime "last" keeps one entry per row, so an
// entity's record outgrows the store's record limit. The runtime stops at
// once (no retry can help) with an error that names the group, the entity
// and the aggregate to give a window; what was durable before stays.
func TestRecordTooBig(t *testing.T) {
	t.Parallel()
	e, err := transform.Compile([]config.Feature{{Name: "g", Table: "public.t", Entity: []string{"k"}, Time: "at",
		Aggregations: []config.Aggregation{{Name: "n", Function: "count"}, {Name: "last_v", Function: "last", Column: "v"}}}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(filepath.Join(t.TempDir(), "s.db"), embedded.Options{MaxRecordBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var evs []change.Event
	const txs = 2000 // about 4 bytes each in the stored multiset
	for tx := 1; tx <= txs; tx++ {
		lsn := uint64(tx * 100)
		evs = append(evs,
			change.Event{Op: change.Insert, Table: "public.t", Pos: change.Position{LSN: lsn, Ordinal: 1}, CommitTime: t0,
				After: change.Row{"k": int64(7), "v": int64(tx), "at": t0.Add(time.Duration(tx) * time.Second)}},
			change.Event{Op: change.Commit, Pos: change.Position{LSN: lsn, Ordinal: 2}, CommitTime: t0, Resume: lsn + 50})
	}
	rt := New("c", &fakeSource{events: evs}, st, e, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()),
		Options{BatchMax: 10, DeadLetterSet: "dead"})
	done := make(chan error, 1)
	go func() { done <- rt.Run(context.Background()) }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the runtime kept going (retrying?) with a record over the store's limit")
	}
	for _, want := range []string{`feature group "g", entity "7"`, "too big for the store", "(4", "limit 4096)", "last_v", "a window bounds them", "lower record.split.bytes", "embedded.max.record.bytes"} {
		if err == nil || !errors.Is(err, ErrFatal) || !errors.Is(err, sink.ErrTooBig) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Run: %v; want a fatal ErrTooBig naming %q", err, want)
		}
	}
	cp, _, _, err := LoadCheckpoint(context.Background(), st, "c")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := st.Get(context.Background(), []sink.Key{{Set: "g", ID: "7"}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := transform.DecodeState(recs[0].Bins)
	if err != nil {
		t.Fatal(err)
	}
	f := e.Group("g").Read(s, t0.Add(time.Hour))
	if cp.Changes == 0 || cp.Changes >= txs || f[0].Value != cp.Changes || f[1].Value != cp.Changes {
		t.Errorf("durable: checkpoint %d changes, record count %v last %v; want the same, between 1 and %d", cp.Changes, f[0].Value, f[1].Value, txs-1)
	}
}

// putSizes counts the group records in each Put; the first Put waits for
// release, so the source fills the queue meanwhile.
type putSizes struct {
	Store
	release chan struct{}
	mu      sync.Mutex
	sizes   []int
}

func (s *putSizes) Put(ctx context.Context, recs []sink.Record) error {
	n := 0
	for _, r := range recs {
		if r.Key.Set == "g" {
			n++
		}
	}
	s.mu.Lock()
	first := len(s.sizes) == 0
	s.sizes = append(s.sizes, n)
	s.mu.Unlock()
	if first {
		<-s.release
	}
	return s.Store.Put(ctx, recs)
}

func (s *putSizes) largest() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Max(append([]int{0}, s.sizes...))
}

// A batch of snapshot rows takes up to SnapshotBatchMax changes, one of
// streamed changes BatchMax; either way every change lands.
func TestSnapshotBatchMax(t *testing.T) {
	t.Parallel()
	const rows, batchMax, snapMax = 600, 10, 250
	for _, op := range []change.Op{change.Read, change.Insert} {
		t.Run(op.String(), func(t *testing.T) {
			var evs []change.Event
			for i := 1; i <= rows; i++ {
				evs = append(evs, change.Event{Op: op, Table: "public.t", Pos: change.Position{LSN: 99, Ordinal: uint32(i)},
					CommitTime: t0, After: change.Row{"k": int64(i), "v": int64(1), "at": t0}})
			}
			evs = append(evs, change.Event{Op: change.Commit, Pos: change.Position{LSN: 99, Ordinal: rows + 1}, CommitTime: t0, Resume: 100})
			st := &putSizes{Store: openStore(t), release: make(chan struct{})}
			src := &fakeSource{events: evs}
			go func() {
				time.Sleep(200 * time.Millisecond) // the queue fills behind the first write
				close(st.release)
			}()
			run(t, src, st, Options{BatchMax: batchMax, SnapshotBatchMax: snapMax, QueueMax: 1000}, func() bool { return src.lastAck() == 100 })
			g := newEngine(t).Group("g")
			for i := 1; i <= rows; i++ {
				recs, err := st.Get(context.Background(), []sink.Key{{Set: "g", ID: fmt.Sprint(i)}})
				if err != nil {
					t.Fatal(err)
				}
				s, err := transform.DecodeState(recs[0].Bins)
				if err != nil {
					t.Fatal(err)
				}
				if n := fmt.Sprint(g.Read(s, t0)[0].Value); n != "1" {
					t.Fatalf("entity %d: count %s, want 1", i, n)
				}
			}
			want := batchMax
			if op == change.Read {
				want = snapMax
			}
			if got := st.largest(); got != want {
				t.Errorf("%s rows: the largest batch wrote %d records, want %d", op, got, want)
			}
		})
	}
}
