package debezium

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/decode"
	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/sink/embedded"
	"github.com/tilefeed/tilefeed/transform"
)

// The topics of the simulated database: Debezium's default names, with
// the partition counts of the test cluster.
const (
	ordersTopic   = "dbserver1.public.orders"
	paymentsTopic = "dbserver1.public.payments"
)

var simTables = []struct {
	table, topic string
	parts        int32
}{{"public.orders", ordersTopic, 3}, {"public.payments", paymentsTopic, 2}}

// dbRow is a row of orders or payments.
type dbRow struct{ Customer, Amount int64 }

func (r *dbRow) json(id int) map[string]any {
	if r == nil {
		return nil
	}
	return map[string]any{"id": id, "customer": r.Customer, "amount": r.Amount}
}

// sim plays a database captured by Debezium: a snapshot, then
// transactions of inserts, updates and deletes (REPLICA IDENTITY FULL,
// tombstones after deletes), written as the records Debezium produces,
// each to the partition of its row's key. It keeps the tables, the truth
// the features must equal.
type sim struct {
	rng        *rand.Rand
	lsn        uint64
	lastCommit uint64
	txID       int64
	tsMs       int64
	nextID     int
	rows       map[string]map[int]*dbRow
	recs       []*kgo.Record
	changes    int64 // distinct change events: each must be applied once
}

func newSim(seed uint64) *sim {
	s := &sim{rng: rand.New(rand.NewPCG(seed, 7)), lsn: 0x2000000, txID: 700, tsMs: 1_790_000_000_000,
		rows: map[string]map[int]*dbRow{}}
	for _, t := range simTables {
		s.rows[t.table] = map[int]*dbRow{}
	}
	return s
}

// envelope renders one change as JsonConverter writes it without schemas.
func envelope(table, op, snapshot string, before, after map[string]any, seq0 *uint64, lsn uint64, txID, tsMs int64) []byte {
	schema, name, _ := strings.Cut(table, ".")
	last := "null"
	if seq0 != nil {
		last = fmt.Sprintf("%q", fmt.Sprint(*seq0))
	}
	v := map[string]any{
		"before": before, "after": after, "op": op, "ts_ms": tsMs + 3, "transaction": nil,
		"source": map[string]any{
			"version": "2.7.3.Final", "connector": "postgresql", "name": "dbserver1", "ts_ms": tsMs,
			"snapshot": snapshot, "db": "shop", "sequence": fmt.Sprintf("[%s,%q]", last, fmt.Sprint(lsn)),
			"schema": schema, "table": name, "txId": txID, "lsn": lsn, "xmin": nil,
		},
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func (s *sim) topicOf(table string) (string, int32) {
	for _, t := range simTables {
		if t.table == table {
			return t.topic, t.parts
		}
	}
	panic(table)
}

func (s *sim) record(table string, id int, value []byte) {
	topic, parts := s.topicOf(table)
	key, _ := json.Marshal(map[string]any{"id": id})
	s.recs = append(s.recs, &kgo.Record{Topic: topic, Partition: int32(id) % parts, Key: key, Value: value})
}

// snapshot reads n rows of each table, as Debezium's initial snapshot.
func (s *sim) snapshot(n int) {
	snapLSN := s.lsn
	for ti, t := range simTables {
		for i := 0; i < n; i++ {
			id := s.newRow(t.table)
			mark := "true"
			switch {
			case ti == 0 && i == 0:
				mark = "first"
			case ti == len(simTables)-1 && i == n-1:
				mark = "last"
			case i == n-1:
				mark = "last_in_data_collection"
			}
			s.record(t.table, id, envelope(t.table, "r", mark, nil, s.rows[t.table][id].json(id), nil, snapLSN, s.txID, s.tsMs))
			s.changes++
		}
	}
	s.lastCommit = s.lsn + 0x100
	s.lsn = s.lastCommit + 0x40
}

func (s *sim) newRow(table string) int {
	s.nextID++
	s.rows[table][s.nextID] = &dbRow{Customer: int64(s.rng.IntN(5)), Amount: int64(1 + s.rng.IntN(100))}
	return s.nextID
}

// tx commits one transaction of 1 to 3 changes.
func (s *sim) tx() {
	s.txID++
	s.tsMs += 1000
	for n := 1 + s.rng.IntN(3); n > 0; n-- {
		t := simTables[s.rng.IntN(len(simTables))].table
		ids := s.ids(t)
		op := "c"
		if len(ids) > 0 {
			switch r := s.rng.IntN(100); {
			case r < 25:
				op = "u"
			case r < 40:
				op = "d"
			}
		}
		s.change(t, op, ids)
	}
	s.lastCommit = s.lsn + 0x30
	s.lsn = s.lastCommit + 0x18
}

func (s *sim) ids(table string) []int {
	var ids []int
	for id := range s.rows[table] {
		ids = append(ids, id)
	}
	slices.Sort(ids) // map order is random; the run must be reproducible
	return ids
}

func (s *sim) change(table, op string, ids []int) {
	s.lsn += 0x28
	lc := s.lastCommit
	var id int
	var before, after map[string]any
	switch op {
	case "c":
		id = s.newRow(table)
		after = s.rows[table][id].json(id)
	case "u":
		id = ids[s.rng.IntN(len(ids))]
		before = s.rows[table][id].json(id)
		r := *s.rows[table][id]
		r.Amount = int64(1 + s.rng.IntN(100))
		if s.rng.IntN(3) == 0 {
			r.Customer = int64(s.rng.IntN(5))
		}
		s.rows[table][id] = &r
		after = r.json(id)
	case "d":
		id = ids[s.rng.IntN(len(ids))]
		before = s.rows[table][id].json(id)
		delete(s.rows[table], id)
	}
	s.record(table, id, envelope(table, op, "false", before, after, &lc, s.lsn, s.txID, s.tsMs))
	s.changes++
	if op == "d" {
		s.record(table, id, nil) // the tombstone
	}
}

// deleteOne commits a transaction deleting one row of table, so that its
// partition ends with a tombstone.
func (s *sim) deleteOne(table string) {
	s.txID++
	s.tsMs += 1000
	s.change(table, "d", s.ids(table)[:1])
	s.lastCommit = s.lsn + 0x30
	s.lsn = s.lastCommit + 0x18
}

// resend appends the records from index i on again: Debezium, restarted
// after a crash, sends again what followed its last committed offset.
func (s *sim) resend(i int) {
	for _, r := range s.recs[i:len(s.recs):len(s.recs)] {
		c := *r
		s.recs = append(s.recs, &c)
	}
}

// ends returns each partition's end offset once recs are produced.
func ends(recs []*kgo.Record) map[string]int64 {
	out := map[string]int64{}
	for _, t := range simTables {
		for p := int32(0); p < t.parts; p++ {
			out[streamName(t.topic, p)] = 0
		}
	}
	for _, r := range recs {
		out[streamName(r.Topic, r.Partition)]++
	}
	return out
}

// truth returns the features the tables imply: customer → "count sum".
func (s *sim) truth(table string) map[string]string {
	n, sum := map[int64]int64{}, map[int64]int64{}
	for _, r := range s.rows[table] {
		n[r.Customer]++
		sum[r.Customer] += r.Amount
	}
	out := map[string]string{}
	for c := int64(0); c < 5; c++ {
		out[fmt.Sprint(c)] = fmt.Sprintf("%d %d", n[c], sum[c])
	}
	return out
}

var simFeatures = []config.Feature{
	{Name: "orders", Table: "public.orders", Entity: []string{"customer"},
		Aggregations: []config.Aggregation{{Name: "n", Function: "count"}, {Name: "total", Function: "sum", Column: "amount"}}},
	{Name: "payments", Table: "public.payments", Entity: []string{"customer"},
		Aggregations: []config.Aggregation{{Name: "n", Function: "count"}, {Name: "total", Function: "sum", Column: "amount"}}},
}

// features reads group's count and sum of every customer from the store.
func features(t *testing.T, st connector.Store, fs []config.Feature, group string, ids []string) map[string]string {
	t.Helper()
	e, err := transform.Compile(fs)
	if err != nil {
		t.Fatal(err)
	}
	g := e.Group(group)
	keys := make([]sink.Key, len(ids))
	for i, id := range ids {
		keys[i] = sink.Key{Set: group, ID: id}
	}
	recs, err := st.Get(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for i, r := range recs {
		s, err := transform.DecodeState(r.Bins)
		if err != nil {
			t.Fatal(err)
		}
		var vals []string
		for _, f := range g.Read(s, time.Now()) {
			v := transform.JSONValue(f.Value)
			if v == nil {
				v = 0
			}
			vals = append(vals, fmt.Sprint(v))
		}
		out[ids[i]] = strings.Join(vals, " ")
	}
	return out
}

func customers() []string { return []string{"0", "1", "2", "3", "4"} }

func checkTruth(t *testing.T, st connector.Store, s *sim) {
	t.Helper()
	for _, f := range simFeatures {
		got, want := features(t, st, simFeatures, f.Name, customers()), s.truth(f.Table)
		for _, c := range customers() {
			if got[c] != want[c] {
				t.Errorf("%s of customer %s: got %q, want %q (count sum)", f.Name, c, got[c], want[c])
			}
		}
	}
}

// cluster starts an in-process Kafka holding the simulated topics.
func cluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)
	for _, tb := range simTables {
		opts = append(opts, kfake.SeedTopics(tb.parts, tb.topic))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func produce(t *testing.T, c *kfake.Cluster, recs []*kgo.Record, opts ...kgo.Opt) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func source(t *testing.T, c *kfake.Cluster, cfg config.Source, topics []string) *Kafka {
	t.Helper()
	cfg.Kafka.Brokers = c.ListenAddrs()
	k, err := NewKafka(cfg, topics, &decode.Debezium{}, discard(), connector.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	k.idle = 20 * time.Millisecond
	return k
}

func simTopics() []string { return []string{ordersTopic, paymentsTopic} }

// running is a runtime in its own goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // what Run returned, once done is closed
}

func start(t *testing.T, src connector.Source, st connector.Store, fs []config.Feature, opts connector.Options) *running {
	t.Helper()
	e, err := transform.Compile(fs)
	if err != nil {
		t.Fatal(err)
	}
	if opts.IdleCheckpoint == 0 {
		opts.IdleCheckpoint = 20 * time.Millisecond
	}
	rt := connector.New("c", src, st, e, discard(), connector.NewMetrics(prometheus.NewRegistry()), opts)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = rt.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop stops the runtime (a clean stop) and returns what Run returned.
func (r *running) stop() error {
	r.cancel()
	<-r.done
	return r.err
}

func checkpoint(t *testing.T, st connector.Store) connector.Checkpoint {
	t.Helper()
	cp, _, _, err := connector.LoadCheckpoint(context.Background(), st, "c")
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// waitFor polls cond until it holds, failing after 15 s; it stops early
// when the runtime ends.
func waitFor(t *testing.T, r *running, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		select {
		case <-r.done:
			t.Fatalf("waiting for %s: the runtime stopped: %v", what, r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// caughtUp reports whether the checkpoint holds every partition's end.
func caughtUp(t *testing.T, st connector.Store, want map[string]int64) func() bool {
	return func() bool {
		cp := checkpoint(t, st)
		for name, end := range want {
			if cp.Streams[name].Offset != end {
				return false
			}
		}
		return true
	}
}

func checkOffsets(t *testing.T, st connector.Store, want map[string]int64) {
	t.Helper()
	cp := checkpoint(t, st)
	for name, end := range want {
		if got := cp.Streams[name].Offset; got != end {
			t.Errorf("checkpoint offset of %s is %d, want the partition's end %d", name, got, end)
		}
	}
}

func openStore(t *testing.T) *embedded.Store {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "s.db"), embedded.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// splitStore hides the embedded store's atomic Put, so the runtime writes
// a batch's records and its checkpoint in two writes, as with Aerospike,
// and a crash can fall between them.
type splitStore struct{ st *embedded.Store }

func (s splitStore) Get(ctx context.Context, keys []sink.Key) ([]sink.Record, error) {
	return s.st.Get(ctx, keys)
}

func (s splitStore) Put(ctx context.Context, recs []sink.Record) error { return s.st.Put(ctx, recs) }

// simulate returns a run of a snapshot and 80 transactions (with a
// Debezium restart that sends 15 of them again), split in two halves.
func simulate(seed uint64) (s *sim, first, second []*kgo.Record) {
	s = newSim(seed)
	s.snapshot(6)
	for i := 0; i < 40; i++ {
		s.tx()
	}
	half := len(s.recs)
	for i := 0; i < 25; i++ {
		s.tx()
	}
	mark := len(s.recs)
	for i := 0; i < 15; i++ {
		s.tx()
	}
	s.resend(mark)
	s.deleteOne("public.orders")
	s.deleteOne("public.payments")
	return s, s.recs[:half], s.recs[half:]
}

// TestKafkaExactlyOnce streams a snapshot and transactions over five
// partitions of two topics, with Debezium sending a run again, and stops
// tilefeed part-way in three ways; the features always equal the tables,
// every change is counted once, and the checkpoint ends at every
// partition's end offset.
func TestKafkaExactlyOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// interrupt runs tilefeed over the first half (and maybe more),
		// stopping it somehow; the second half is produced meanwhile.
		interrupt func(t *testing.T, c *kfake.Cluster, st *embedded.Store, second []*kgo.Record) connector.Store
	}{
		{"one run", func(t *testing.T, c *kfake.Cluster, st *embedded.Store, second []*kgo.Record) connector.Store {
			return st
		}},
		{"stop mid-stream", func(t *testing.T, c *kfake.Cluster, st *embedded.Store, second []*kgo.Record) connector.Store {
			// A slow store, so the stop falls in the middle.
			st.InjectFault(func(string, []sink.Record) error { time.Sleep(2 * time.Millisecond); return nil })
			r := start(t, source(t, c, config.Source{}, simTopics()), st, simFeatures, connector.Options{BatchMax: 4})
			waitFor(t, r, "some changes", func() bool { return checkpoint(t, st).Changes >= 20 })
			produce(t, c, second)
			waitFor(t, r, "more changes", func() bool { return checkpoint(t, st).Changes >= 60 })
			if err := r.stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run: %v", err)
			}
			st.InjectFault(nil)
			if cp := checkpoint(t, st); cp.Changes >= 150 {
				t.Logf("stopped late: %d changes durable", cp.Changes)
			}
			return st
		}},
		{"crash between records and checkpoint", func(t *testing.T, c *kfake.Cluster, st *embedded.Store, second []*kgo.Record) connector.Store {
			split := splitStore{st}
			var puts atomic.Int32
			var lastHadRecords atomic.Bool
			st.InjectFault(func(op string, recs []sink.Record) error {
				if op != "put" {
					return nil
				}
				if recs[0].Key.Set != sink.CheckpointSet {
					lastHadRecords.Store(true)
					return nil
				}
				if lastHadRecords.Swap(false) && puts.Add(1) == 8 {
					return fmt.Errorf("%w: injected crash after the records, before the checkpoint", connector.ErrFatal)
				}
				return nil
			})
			r := start(t, source(t, c, config.Source{}, simTopics()), split, simFeatures, connector.Options{BatchMax: 5})
			produce(t, c, second)
			select {
			case <-r.done:
				if !strings.Contains(fmt.Sprint(r.err), "injected crash") {
					t.Fatalf("Run: %v, want the injected crash", r.err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the crash was not injected")
			}
			st.InjectFault(nil)
			return split
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, first, second := simulate(11)
			c := cluster(t)
			st := openStore(t)
			produce(t, c, first)
			store := tc.interrupt(t, c, st, second)
			want := ends(s.recs)
			r := start(t, source(t, c, config.Source{}, simTopics()), store, simFeatures, connector.Options{BatchMax: 7})
			if tc.name == "one run" {
				produce(t, c, second) // while tilefeed runs
			}
			waitFor(t, r, "every partition's end", caughtUp(t, store, want))
			if err := r.stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run: %v", err)
			}
			checkTruth(t, store, s)
			checkOffsets(t, store, want)
			if cp := checkpoint(t, store); cp.Changes != s.changes {
				t.Errorf("checkpoint counts %d changes, want %d: each exactly once", cp.Changes, s.changes)
			}
		})
	}
}
