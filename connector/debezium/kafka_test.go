package debezium

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	cryptorand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tilefeed/tilefeed/change"
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

// simRun returns a sim after a snapshot of rows rows per table and txs
// transactions.
func simRun(seed uint64, rows, txs int) *sim {
	s := newSim(seed)
	if rows > 0 {
		s.snapshot(rows)
	}
	for i := 0; i < txs; i++ {
		s.tx()
	}
	return s
}

// resend appends the records from index i on again: Debezium, restarted
// after a crash, sends again what followed its last committed offset.
func (s *sim) resend(i int) {
	for _, r := range s.recs[i:len(s.recs):len(s.recs)] {
		s.recs = append(s.recs, &kgo.Record{Topic: r.Topic, Partition: r.Partition, Key: r.Key, Value: r.Value})
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
	k.poll = 20 * time.Millisecond
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
		interrupt func(t *testing.T, c *kfake.Cluster, st *embedded.Store, s *sim, second []*kgo.Record) connector.Store
	}{
		{"one run", func(t *testing.T, c *kfake.Cluster, st *embedded.Store, s *sim, second []*kgo.Record) connector.Store {
			return st
		}},
		{"stop mid-stream", func(t *testing.T, c *kfake.Cluster, st *embedded.Store, s *sim, second []*kgo.Record) connector.Store {
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
			if cp := checkpoint(t, st); cp.Changes >= s.changes {
				t.Fatalf("stopped after every change (%d) was durable: not mid-stream", cp.Changes)
			}
			return st
		}},
		{"crash between records and checkpoint", func(t *testing.T, c *kfake.Cluster, st *embedded.Store, s *sim, second []*kgo.Record) connector.Store {
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
			if cp := checkpoint(t, st); cp.Changes >= s.changes {
				t.Fatalf("crashed after every change (%d) was durable: not mid-stream", cp.Changes)
			}
			return split
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, first, second := simulate(11)
			c := cluster(t)
			st := openStore(t)
			produce(t, c, first)
			store := tc.interrupt(t, c, st, s, second)
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

// TestKafkaDebeziumResendsAppliedOnce: Debezium delivers at least once;
// after its own restart it sends a run of records again, which take the
// positions they had and change nothing.
func TestKafkaDebeziumResendsAppliedOnce(t *testing.T) {
	t.Parallel()
	s := newSim(5)
	s.snapshot(3)
	mark := len(s.recs)
	for i := 0; i < 12; i++ {
		s.tx()
	}
	s.resend(mark) // every streamed record again
	s.resend(len(s.recs) - 4)
	c, st := cluster(t), openStore(t)
	produce(t, c, s.recs)
	r := start(t, source(t, c, config.Source{}, simTopics()), st, simFeatures, connector.Options{BatchMax: 10})
	want := ends(s.recs)
	waitFor(t, r, "every partition's end", caughtUp(t, st, want))
	checkTruth(t, st, s)
	if cp := checkpoint(t, st); cp.Changes != s.changes {
		t.Errorf("checkpoint counts %d changes, want %d", cp.Changes, s.changes)
	}
}

// TestKafkaMalformedRecord: a record that does not decode stops tilefeed
// with an error naming it (errors.tolerance=none) or becomes a dead
// letter keyed by it (all), never a silent drop.
func TestKafkaMalformedRecord(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		deadLetter string
	}{{"errors.tolerance=none", ""}, {"errors.tolerance=all", "dead"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSim(9)
			s.snapshot(2)
			s.tx()
			bad := &kgo.Record{Topic: ordersTopic, Partition: 1, Value: []byte(`{"op":"c","source":{"lsn":`)}
			s.recs = append(s.recs, bad)
			for i := 0; i < 6; i++ {
				s.tx()
			}
			origin := fmt.Sprintf("%s/1@%d", ordersTopic, ends(s.recs[:len(s.recs)-1])[ordersTopic+"/1"]-1)
			for i, r := range s.recs {
				if r == bad {
					origin = fmt.Sprintf("%s/1@%d", ordersTopic, ends(s.recs[:i])[ordersTopic+"/1"])
				}
			}
			c, st := cluster(t), openStore(t)
			produce(t, c, s.recs)
			r := start(t, source(t, c, config.Source{}, simTopics()), st, simFeatures, connector.Options{BatchMax: 5, DeadLetterSet: tc.deadLetter})
			if tc.deadLetter == "" {
				select {
				case <-r.done:
				case <-time.After(15 * time.Second):
					t.Fatal("the runtime did not stop")
				}
				if !errors.Is(r.err, connector.ErrFatal) || !strings.Contains(r.err.Error(), origin) {
					t.Fatalf("Run: %v, want a fatal error naming %s", r.err, origin)
				}
				return
			}
			want := ends(s.recs)
			waitFor(t, r, "every partition's end", caughtUp(t, st, want))
			checkTruth(t, st, s)
			recs, err := st.Get(context.Background(), []sink.Key{{Set: "dead", ID: "c/" + origin}})
			if err != nil || recs[0].Gen == 0 || recs[0].Bins["origin"] != origin {
				t.Errorf("dead letter of %s: %+v (%v)", origin, recs, err)
			}
		})
	}
}

// TestKafkaPartitionsInterleave: the changes of one entity come from two
// partitions whose positions interleave, and the later partition is read
// first; the earlier one is applied all the same, since positions are
// compared only within a partition.
func TestKafkaPartitionsInterleave(t *testing.T) {
	t.Parallel()
	var early, late []*kgo.Record
	lc := uint64(0x4000)
	for i := 1; i <= 8; i++ {
		lsn := lc + 0x28
		v := envelope("public.orders", "c", "false", nil, map[string]any{"id": i, "customer": 1, "amount": i}, &lc, lsn, int64(900+i), 1_790_000_000_000+int64(i)*1000)
		if i%2 == 1 {
			early = append(early, &kgo.Record{Topic: ordersTopic, Partition: 0, Value: v})
		} else {
			late = append(late, &kgo.Record{Topic: ordersTopic, Partition: 2, Value: v})
		}
		lc = lsn + 0x30
	}
	c, st := cluster(t), openStore(t)
	produce(t, c, late)
	r := start(t, source(t, c, config.Source{}, []string{ordersTopic}), st, simFeatures, connector.Options{BatchMax: 3})
	waitFor(t, r, "the later partition", func() bool { return checkpoint(t, st).Changes == 4 })
	produce(t, c, early)
	waitFor(t, r, "the earlier partition", func() bool { return checkpoint(t, st).Changes == 8 })
	if got := features(t, st, simFeatures, "orders", []string{"1"})["1"]; got != "8 36" {
		t.Errorf("customer 1: got %q, want \"8 36\" (count sum)", got)
	}
}

// TestKafkaCorpusRecords reads real Debezium records (decode's corpus):
// a snapshot with and without schema, a delete, its tombstone, a create.
func TestKafkaCorpusRecords(t *testing.T) {
	t.Parallel()
	const topic = "dbserver1.inventory.customers"
	var recs []*kgo.Record
	for _, f := range []string{
		"04-r-snapshot-first-schema.json",
		"05-r-snapshot-last-in-data-collection-schema.json",
		"15-d-customers-schema.json",
		"18-tombstone-doc.json",
		"02-c-customers-schemaless.json",
	} {
		b, err := os.ReadFile(filepath.Join("..", "..", "decode", "testdata", "debezium", f))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			t.Fatal(err)
		}
		v := buf.Bytes()
		if string(v) == "null" {
			v = nil // a tombstone's value is null in Kafka
		}
		recs = append(recs, &kgo.Record{Topic: topic, Value: v})
	}
	fs := []config.Feature{{Name: "customers", Table: "inventory.customers", Entity: []string{"id"},
		Aggregations: []config.Aggregation{{Name: "n", Function: "count"}}}}
	c, st := cluster(t, kfake.SeedTopics(1, topic)), openStore(t)
	produce(t, c, recs)
	r := start(t, source(t, c, config.Source{}, []string{topic}), st, fs, connector.Options{})
	waitFor(t, r, "the partition's end", caughtUp(t, st, map[string]int64{topic + "/0": 5}))
	got := features(t, st, fs, "customers", []string{"1001", "1004", "1005"})
	if want := map[string]string{"1001": "1", "1004": "0", "1005": "1"}; !maps.Equal(got, want) {
		t.Errorf("counts by id: got %v, want %v", got, want)
	}
	if cp := checkpoint(t, st); cp.Changes != 4 {
		t.Errorf("checkpoint counts %d changes, want 4", cp.Changes)
	}
}

// TestKafkaTopicsRegex reads the topics topics.regex matches at start.
func TestKafkaTopicsRegex(t *testing.T) {
	t.Parallel()
	s := simRun(21, 2, 10)
	c, st := cluster(t, kfake.SeedTopics(1, "dbserver1.other.table")), openStore(t)
	produce(t, c, s.recs)
	cfg := config.Source{Kafka: config.Kafka{TopicsRegex: regexp.MustCompile(`^(?:dbserver1\.public\..*)$`)}}
	r := start(t, source(t, c, cfg, nil), st, simFeatures, connector.Options{})
	want := ends(s.recs)
	waitFor(t, r, "every partition's end", caughtUp(t, st, want))
	checkTruth(t, st, s)
	if cp := checkpoint(t, st); len(cp.Streams) != len(want) {
		t.Errorf("checkpoint streams %v, want only the matching topics' %v", cp.Streams, want)
	}
}

// TestKafkaTopicMissing: a topic that does not exist stops the source
// with an error naming it and the property to check.
func TestKafkaTopicMissing(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	for _, tc := range []struct {
		name   string
		topics []string
		regex  *regexp.Regexp
		want   string
	}{
		{"topics", []string{ordersTopic, "dbserver1.public.nope"}, nil, "dbserver1.public.nope; check the topics property"},
		{"topics.regex", nil, regexp.MustCompile(`^(?:nothing\..*)$`), `topics.regex ^(?:nothing\..*)$ matches no topic`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := source(t, c, config.Source{Kafka: config.Kafka{TopicsRegex: tc.regex}}, tc.topics)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := k.Stream(ctx, connector.Checkpoint{}, make(chan change.Event, 1))
			if !errors.Is(err, ErrTopicMissing) || !errors.Is(err, connector.ErrFatal) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Stream: %v, want a fatal ErrTopicMissing saying %q", err, tc.want)
			}
		})
	}
}

// TestKafkaBrokerUnreachable: brokers that do not answer are retried,
// not fatal, and Ready says which.
func TestKafkaBrokerUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	k, err := NewKafka(config.Source{Kafka: config.Kafka{Brokers: []string{addr}}}, []string{ordersTopic}, &decode.Debezium{}, discard(), connector.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	done, cancel := streamUntilUnready(t, k, func(err error) bool { return strings.Contains(err.Error(), addr) })
	select {
	case err := <-done:
		t.Fatalf("Stream gave up: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Stream after cancel: %v", err)
	}
}

// TestKafkaPartitionAdded: a partition created while tilefeed runs is
// found and read from its start.
func TestKafkaPartitionAdded(t *testing.T) {
	t.Parallel()
	s := simRun(33, 0, 8)
	c, st := cluster(t), openStore(t)
	produce(t, c, s.recs)
	k := source(t, c, config.Source{}, simTopics())
	k.rediscover = 30 * time.Millisecond
	// A fetch in flight waits up to FetchMaxWait before the new partition joins.
	k.opts = append(k.opts, kgo.MetadataMinAge(10*time.Millisecond), kgo.FetchMaxWait(50*time.Millisecond))
	r := start(t, k, st, simFeatures, connector.Options{})
	waitFor(t, r, "every partition's end", caughtUp(t, st, ends(s.recs)))

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreatePartitionsRequest()
	rt := kmsg.NewCreatePartitionsRequestTopic()
	rt.Topic, rt.Count = ordersTopic, 4
	req.Topics, req.TimeoutMillis = append(req.Topics, rt), 5000
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("create partitions: %v %+v", err, resp)
	}
	lc := s.lastCommit
	s.rows["public.orders"][999] = &dbRow{Customer: 2, Amount: 40}
	v := envelope("public.orders", "c", "false", nil, s.rows["public.orders"][999].json(999), &lc, s.lsn+0x28, s.txID+1, s.tsMs+1000)
	produce(t, c, []*kgo.Record{{Topic: ordersTopic, Partition: 3, Value: v}})
	waitFor(t, r, "the new partition", func() bool { return checkpoint(t, st).Streams[ordersTopic+"/3"].Offset == 1 })
	checkTruth(t, st, s)
}

// TestKafkaSASL reads over SASL/SCRAM; a wrong password shows in Ready,
// never in a message or a log.
func TestKafkaSASL(t *testing.T) {
	t.Parallel()
	const user, pass = "tilefeed", "s3cret-pw"
	c := cluster(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", user, pass))
	s := simRun(44, 0, 5)
	produce(t, c, s.recs, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
	cfg := config.Source{Kafka: config.Kafka{SecurityProtocol: "SASL_PLAINTEXT", SASLMechanism: "SCRAM-SHA-256", SASLUser: user, SASLPassword: pass}}
	st := openStore(t)
	r := start(t, source(t, c, cfg, simTopics()), st, simFeatures, connector.Options{})
	waitFor(t, r, "every partition's end", caughtUp(t, st, ends(s.recs)))
	checkTruth(t, st, s)

	cfg.Kafka.SASLPassword = "wrong-pw"
	cfg.Kafka.Brokers = c.ListenAddrs()
	var logs syncBuffer
	k, err := NewKafka(cfg, simTopics(), &decode.Debezium{}, slog.New(slog.NewTextHandler(&logs, nil)), connector.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	done, cancel := streamUntilUnready(t, k, func(err error) bool { return !strings.Contains(err.Error(), "not connected yet") })
	msg := k.Ready().Error()
	cancel()
	<-done
	if strings.Contains(msg, "wrong-pw") || strings.Contains(logs.String(), "wrong-pw") {
		t.Errorf("the password leaked: Ready %q, logs %q", msg, logs.String())
	}
}

// streamUntilUnready runs k.Stream until Ready reports an error that
// want accepts.
func streamUntilUnready(t *testing.T, k *Kafka, want func(error) bool) (done chan error, cancel context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan error, 1)
	go func() { done <- k.Stream(ctx, connector.Checkpoint{}, make(chan change.Event, 1)) }()
	deadline := time.Now().Add(10 * time.Second)
	for err := k.Ready(); err == nil || !want(err); err = k.Ready() {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("Ready: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return done, cancel
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestNewKafkaConfig reports every problem of the Kafka settings at once,
// each naming its property, and never the password.
func TestNewKafkaConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  config.Source
		want []string
	}{
		{"ok", config.Source{Kafka: config.Kafka{Brokers: []string{"b:9092"}, SecurityProtocol: "SASL_SSL", SASLMechanism: "SCRAM-SHA-512", SASLUser: "u", SASLPassword: "pw-secret"}}, nil},
		{"everything wrong", config.Source{ValueConverter: "xml", Kafka: config.Kafka{SecurityProtocol: "SASL_PLAINTEXT", SASLPassword: "pw-secret"}},
			[]string{"kafka.bootstrap.servers", "value.converter", "kafka.sasl.username"}},
		{"mechanism", config.Source{Kafka: config.Kafka{Brokers: []string{"b:9092"}, SecurityProtocol: "SASL_SSL", SASLMechanism: "GSSAPI", SASLUser: "u"}}, []string{"kafka.sasl.mechanism"}},
		{"protocol", config.Source{Kafka: config.Kafka{Brokers: []string{"b:9092"}, SecurityProtocol: "TLS"}}, []string{"kafka.security.protocol"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewKafka(tc.cfg, []string{"t"}, &decode.Debezium{}, discard(), connector.NewMetrics(prometheus.NewRegistry()))
			if (err != nil) != (tc.want != nil) {
				t.Fatalf("NewKafka: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
			if err != nil && strings.Contains(err.Error(), "pw-secret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func TestDefaultTopics(t *testing.T) {
	t.Parallel()
	got := DefaultTopics("dbserver1", []string{"public.payments", "public.orders", "public.orders"})
	if want := []string{"dbserver1.public.orders", "dbserver1.public.payments"}; !slices.Equal(got, want) {
		t.Errorf("DefaultTopics: %v, want %v", got, want)
	}
}

// TestKafkaResendAcrossRestart: tilefeed stops when each partition ends
// with a change (or a delete and its tombstone) that Debezium then sends
// again; after the restart the resent records still take the positions
// they had, though the Converter starts from the checkpoint alone.
func TestKafkaResendAcrossRestart(t *testing.T) {
	t.Parallel()
	s := simRun(55, 2, 10)
	s.deleteOne("public.orders")
	s.deleteOne("public.payments")
	c, st := cluster(t), openStore(t)
	produce(t, c, s.recs)
	r := start(t, source(t, c, config.Source{}, simTopics()), st, simFeatures, connector.Options{})
	waitFor(t, r, "every partition's end", caughtUp(t, st, ends(s.recs)))
	if err := r.stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	n := len(s.recs)
	s.resend(n - 4) // each partition: the delete and its tombstone again
	produce(t, c, s.recs[n:])
	r = start(t, source(t, c, config.Source{}, simTopics()), st, simFeatures, connector.Options{})
	waitFor(t, r, "every partition's end", caughtUp(t, st, ends(s.recs)))
	checkTruth(t, st, s)
	if cp := checkpoint(t, st); cp.Changes != s.changes {
		t.Errorf("checkpoint counts %d changes, want %d", cp.Changes, s.changes)
	}
}

// TestKafkaTLS reads over TLS from brokers whose certificate a private CA
// signed (kafka.tls.ca.file) and that require a client certificate
// (kafka.tls.cert.file, kafka.tls.key.file); without the CA the brokers
// are not trusted and Ready says so.
func TestKafkaTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, caKey := newCert(t, nil, nil, "tilefeed test CA")
	srv, srvKey := newCert(t, ca, caKey, "127.0.0.1")
	cli, cliKey := newCert(t, ca, caKey, "tilefeed")
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	writePEM(t, filepath.Join(dir, "client.pem"), "CERTIFICATE", cli.Raw)
	writePEM(t, filepath.Join(dir, "client.key"), "PRIVATE KEY", mustPKCS8(t, cliKey))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	serverTLS := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{srv.Raw}, PrivateKey: srvKey}},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12,
	}
	c := cluster(t, kfake.TLS(serverTLS))
	s := simRun(45, 0, 5)
	clientTLS := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{cli.Raw}, PrivateKey: cliKey}}}
	produce(t, c, s.recs, kgo.DialTLSConfig(clientTLS))

	cfg := config.Source{Kafka: config.Kafka{SecurityProtocol: "SSL", TLSCAFile: filepath.Join(dir, "ca.pem"),
		TLSCertFile: filepath.Join(dir, "client.pem"), TLSKeyFile: filepath.Join(dir, "client.key")}}
	st := openStore(t)
	r := start(t, source(t, c, cfg, simTopics()), st, simFeatures, connector.Options{})
	waitFor(t, r, "every partition's end", caughtUp(t, st, ends(s.recs)))
	checkTruth(t, st, s)

	cfg.Kafka.TLSCAFile = ""
	cfg.Kafka.Brokers = c.ListenAddrs()
	k, err := NewKafka(cfg, simTopics(), &decode.Debezium{}, slog.New(slog.NewTextHandler(io.Discard, nil)), connector.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	done, cancel := streamUntilUnready(t, k, func(err error) bool { return strings.Contains(err.Error(), "certificate") })
	cancel()
	<-done

	for _, bad := range []config.Kafka{
		{SecurityProtocol: "SSL", TLSCAFile: filepath.Join(dir, "missing.pem")},
		{SecurityProtocol: "SSL", TLSCAFile: filepath.Join(dir, "client.key")},
		{SecurityProtocol: "SSL", TLSCertFile: filepath.Join(dir, "client.pem")},
	} {
		bad.Brokers = c.ListenAddrs()
		if _, err := NewKafka(config.Source{Kafka: bad}, simTopics(), &decode.Debezium{}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil); err == nil || !strings.Contains(err.Error(), "kafka.tls.") {
			t.Errorf("%+v: %v, want an error naming the kafka.tls property", bad, err)
		}
	}
}

// newCert makes a certificate for name signed by parent (self-signed, a
// CA, when parent is nil).
func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(cryptorand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func mustPKCS8(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestKafkaGroupOffsets: with kafka.group.id set, the durable offsets are
// committed to that consumer group, where Kafka's tools read lag; a group
// that refuses them (it has live members) costs a warning and a counted
// error, never the stream.
func TestKafkaGroupOffsets(t *testing.T) {
	t.Parallel()
	committed := func(t *testing.T, c *kfake.Cluster, group string) map[string]int64 {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Group = group
		for _, tb := range simTables {
			rt := kmsg.NewOffsetFetchRequestTopic()
			rt.Topic = tb.topic
			for p := range tb.parts {
				rt.Partitions = append(rt.Partitions, p)
			}
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(context.Background(), cl)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, tp := range resp.Topics {
			for _, p := range tp.Partitions {
				if p.Offset >= 0 {
					out[streamName(tp.Topic, p.Partition)] = p.Offset
				}
			}
		}
		return out
	}
	run := func(t *testing.T, group string, busy bool) (*kfake.Cluster, map[string]int64, float64) {
		s, first, second := simulate(5)
		c := cluster(t)
		produce(t, c, append(first, second...))
		if busy { // a live member: commits from outside the group are refused
			member, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(ordersTopic))
			if err != nil {
				t.Fatal(err)
			}
			defer member.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			member.PollFetches(ctx) // joins the group
		}
		m := connector.NewMetrics(prometheus.NewRegistry())
		k, err := NewKafka(config.Source{Kafka: config.Kafka{Brokers: c.ListenAddrs(), GroupID: group}}, simTopics(), &decode.Debezium{}, discard(), m)
		if err != nil {
			t.Fatal(err)
		}
		k.poll, k.commitEvery = 20*time.Millisecond, 20*time.Millisecond
		st := openStore(t)
		want := ends(s.recs)
		r := start(t, k, st, simFeatures, connector.Options{BatchMax: 9})
		waitFor(t, r, "every partition's end", caughtUp(t, st, want))
		if !busy {
			waitFor(t, r, "the group's offsets", func() bool { return reflect.DeepEqual(committed(t, c, group), want) })
		} else {
			waitFor(t, r, "a refused commit", func() bool { return testutil.ToFloat64(m.Errors.WithLabelValues("kafka_commit")) > 0 })
		}
		if err := r.stop(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v", err)
		}
		checkTruth(t, st, s)
		return c, want, testutil.ToFloat64(m.Errors.WithLabelValues("kafka_commit"))
	}
	t.Run("committed", func(t *testing.T) {
		t.Parallel()
		_, _, errs := run(t, "tilefeed-c", false)
		if errs != 0 {
			t.Errorf("%v commit errors counted", errs)
		}
	})
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		c, want, _ := run(t, "busy", true)
		if got := committed(t, c, "busy"); reflect.DeepEqual(got, want) {
			t.Errorf("a group with a live member took tilefeed's offsets: %v", got)
		}
	})
}
