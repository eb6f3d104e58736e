package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/connector/postgres"
	"github.com/tilefeed/tilefeed/integration/pgcluster"
	"github.com/tilefeed/tilefeed/serve"
	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/sink/aerospike"
	"github.com/tilefeed/tilefeed/sink/embedded"
	"github.com/tilefeed/tilefeed/sink/split"
	"github.com/tilefeed/tilefeed/transform"
)

// The benchmarks run tilefeed as the command does (production options,
// fsync on in the embedded store) against the test cluster, which runs
// PostgreSQL with fsync=off and, by default, synchronous_commit=off.

const (
	// backlogRounds × backlogRows rows are inserted; each round also
	// updates a tenth and deletes a twentieth of the rows it inserted.
	backlogRounds = 10
	backlogRows   = 100_000
	backlogCards  = 10_000

	latencyWarmup = 2 * time.Second
	latencyRun    = 20 * time.Second
)

// BenchmarkBacklog measures catch-up: with tilefeed down, a backlog of
// over a million changes (inserts, updates, deletes in large
// transactions) accumulates in the replication slot; then tilefeed starts
// on the embedded store, and the clock runs until a sentinel committed
// after the backlog is readable. changes/s is end to end over that time.
//
// Also reported: the process's peak RSS during catch-up (peak_rss_MB,
// VmHWM; peak_anon_MB leaves out the store's memory map), the store
// file's size, CPU seconds used by this process and by the walsender
// (PostgreSQL's decoding, which shares the cores), and the store calls
// (see storeBusy.report).
//
// It runs with the integration tests' card_activity group over
// backlogCards cards, then with a group of count, sum, max and distinct
// over one window, for 1h and 90d windows and 10k and 500k cards: memory
// and throughput should not depend on either.
func BenchmarkBacklog(b *testing.B) {
	for _, store := range []string{"embedded", "aerospike"} {
		b.Run("group=card_activity/cards=10000/store="+store, func(b *testing.B) { benchBacklog(b, backlogCards, "", store) })
		for _, cards := range []int{10_000, 500_000} {
			if cards > 10_000 && store == "aerospike" {
				continue // the test namespace of a local Aerospike holds 10k cards' records, not 500k
			}
			for _, window := range []string{"1h", "90d"} {
				b.Run(fmt.Sprintf("group=window/cards=%d/window=%s/store=%s", cards, window, store), func(b *testing.B) { benchBacklog(b, cards, window, store) })
			}
		}
	}
}

// benchBacklog runs the backlog over cards cards; window, when set,
// replaces card_activity's aggregates with count, sum, max and distinct
// over that window. store is embedded or aerospike (AEROSPIKE_HOSTS; the
// run is skipped loudly without it).
func benchBacklog(b *testing.B, cards int, window, store string) {
	var elapsed time.Duration
	var changes int64
	var peakKB, anonKB, storeBytes int64
	var busy storeBusy
	var ownCPU, walsenderCPU, refElapsed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		conn, db := benchDB(b)
		c := benchConnector(b, db)
		if store == "aerospike" {
			withAerospike(b, c)
		}
		if window != "" {
			if c.Features[0].Name != "card_activity" {
				b.Fatalf("the first group is %s, not card_activity", c.Features[0].Name)
			}
			c.Features[0].Aggregations = []config.Aggregation{
				{Name: "n", Function: "count", Window: window},
				{Name: "amount_sum", Function: "sum", Column: "amount", Window: window},
				{Name: "amount_max", Function: "max", Column: "amount", Window: window},
				{Name: "merchants", Function: "distinct", Column: "merchant", Window: window},
			}
		}

		// A first run creates the slot and writes a checkpoint, as a
		// tilefeed that then went down would have.
		r := startBench(b, c, nil)
		insertSync(b, conn, 0)
		waitFound(b, r, 0, time.Minute)
		r.stop(b)
		// The reference: pg_recvlogical on a second pgoutput slot made
		// now, which holds the same backlog.
		execSQL(b, conn, "SELECT pg_create_logical_replication_slot('bench_ref', 'pgoutput')")

		loadStart := time.Now()
		want := loadBacklog(b, conn, cards)
		insertSync(b, conn, 1)
		want++
		b.Logf("backlog of %d changes committed in %s", want, time.Since(loadStart).Round(time.Millisecond))
		refElapsed += recvlogical(b, conn, db, "bench_ref", c.Postgres.PublicationName)

		debug.FreeOSMemory() // collects first
		hwm := resetPeakRSS()
		sampler := sampleRSS()
		cpu0 := processCPU()
		b.StartTimer()
		start := time.Now()
		r = startBench(b, c, func(s connector.Store) connector.Store { return &timedStore{Store: s, busy: &busy} })
		waitFound(b, r, 1, 45*time.Minute)
		d := time.Since(start)
		b.StopTimer()
		elapsed += d
		ownCPU += processCPU() - cpu0
		walsenderCPU += slotCPU(b, conn, c.Postgres.SlotName)
		peak, anon := sampler()
		if hwm {
			peak = max(peak, statusKB("VmHWM"))
		}
		peakKB, anonKB = max(peakKB, peak), max(anonKB, anon)
		if fi, err := os.Stat(c.Sink.EmbeddedPath); err == nil {
			storeBytes = max(storeBytes, fi.Size())
		}

		// The status counts changes since the first start, from the
		// checkpoint, which follows the sentinel's records.
		var got int64
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if got = r.rt.Status().ChangesTotal - r.before; got >= want {
				break
			}
		}
		if got != want {
			b.Errorf("tilefeed applied %d changes from the slot, the backlog holds %d", got, want)
		}
		changes += got
		if d > 5*time.Minute {
			b.Logf("catch-up took %s, more than the 5 minutes aimed for", d.Round(time.Second))
		}
		r.stop(b)
		dropSlot(b, conn, c.Postgres.SlotName)
	}
	n := float64(b.N)
	rate, ref := float64(changes)/elapsed.Seconds(), float64(changes)/refElapsed.Seconds()
	b.ReportMetric(rate, "changes/s")
	b.ReportMetric(ref, "pg_recvlogical_changes/s")
	b.ReportMetric(rate/ref, "x_pg_recvlogical")
	b.ReportMetric(loadAverage(), "loadavg_1m")
	b.ReportMetric(float64(changes)/n, "changes")
	b.ReportMetric(elapsed.Seconds()/n, "catchup_s")
	b.ReportMetric(float64(peakKB)/1024, "peak_rss_MB")
	b.ReportMetric(float64(anonKB)/1024, "peak_anon_MB")
	b.ReportMetric(float64(storeBytes)/(1<<20), "store_file_MB")
	b.ReportMetric(ownCPU.Seconds()/n, "tilefeed_cpu_s")
	b.ReportMetric(walsenderCPU.Seconds()/n, "walsender_cpu_s")
	busy.report(b, n)
}

// BenchmarkLatency measures commit→durable latency at a steady rate: from
// the moment a client's COMMIT returns to the moment a checkpoint written
// to the sink covers the transaction. The client commits with
// synchronous_commit=on, so PostgreSQL hands the commit to the walsender
// at once rather than at the WAL writer's next round (up to 200ms).
//
// Each transaction's clock starts when the client sends it (its commit
// happens within that round trip), so the figures hold the transaction's
// own execution, a fraction of a millisecond, and are never negative. It
// runs at 200 and 2,000 transactions per second.
func BenchmarkLatency(b *testing.B) {
	for _, rate := range []int{200, 2000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) { benchLatency(b, rate) })
	}
}

func benchLatency(b *testing.B, rate int) {
	var lat []time.Duration
	var busy storeBusy
	var sent int
	var sentFor time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		conn, db := benchDB(b)
		c := benchConnector(b, db)
		if _, err := conn.Exec(context.Background(), "SET synchronous_commit = on"); err != nil {
			b.Fatal(err)
		}
		cps := &checkpointLog{}
		r := startBench(b, c, func(s connector.Store) connector.Store {
			return &timedStore{Store: s, busy: &busy, checkpoints: cps}
		})
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		drive(b, conn, rng, latencyWarmup, rate)
		// Only the steady state counts: the warm-up lets the runtime settle
		// (connections, first batches, the store file's first growth).
		busy.reset()
		b.StartTimer()
		txs := drive(b, conn, rng, latencyRun, rate)
		last := txs[len(txs)-1].lsn
		for deadline := time.Now().Add(30 * time.Second); cps.covered() < last; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("no checkpoint reached %s within 30s of the last commit", lsnText(last))
			}
		}
		b.StopTimer()
		r.stop(b)
		dropSlot(b, conn, c.Postgres.SlotName)
		got, err := cps.latencies(txs)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, got...)
		sent += len(txs)
		sentFor += txs[len(txs)-1].committed.Sub(txs[0].committed)
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(ms(pct(0.50)), "p50_ms")
	b.ReportMetric(ms(pct(0.99)), "p99_ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max_ms")
	b.ReportMetric(ms(lat[0]), "min_ms")
	b.ReportMetric(float64(sent)/sentFor.Seconds(), "txn/s")
	b.ReportMetric(float64(len(lat))/float64(b.N), "txns")
	busy.report(b, float64(b.N))
}

func lsnText(lsn uint64) string { return pglogrepl.LSN(lsn).String() }

// recvlogical reads slot to the current end of the WAL with pg_recvlogical
// (pgoutput, as tilefeed reads it; output to /dev/null), drops the slot
// and returns how long the read took: what reading the backlog alone
// costs, the reference for tilefeed's catch-up.
func recvlogical(b *testing.B, conn *pgx.Conn, db, slot, publication string) time.Duration {
	b.Helper()
	ctx := context.Background()
	var end string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		b.Fatal(err)
	}
	bin, err := pgcluster.BinDir()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "pg_recvlogical"), "-d", cluster.ConnString(db), "--slot", slot, "--start",
		"--endpos", end, "--no-loop", "-F", "0", "-o", "proto_version=1", "-o", "publication_names="+publication, "-f", "/dev/null")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("pg_recvlogical: %v\n%s", err, out)
	}
	d := time.Since(start)
	dropSlot(b, conn, slot)
	return d
}

// loadAverage is the machine's 1-minute load average (/proc/loadavg).
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(data))[0], 64)
	return f
}

func execSQL(b *testing.B, conn *pgx.Conn, sql string) {
	b.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		b.Fatalf("%s: %v", sql, err)
	}
}

// benchDB creates a database with the test schema (newDB, for a B).
func benchDB(b *testing.B) (*pgx.Conn, string) {
	b.Helper()
	if cluster == nil {
		b.Skip("no PostgreSQL server: install postgresql-15 (apt-get install postgresql-15) or set PG_BIN")
	}
	ctx := context.Background()
	name := fmt.Sprintf("bench_%d_%d", os.Getpid(), dbSeq.Add(1))
	conn, err := cluster.CreateDatabase(ctx, name)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close(context.Background()) })
	for _, stmt := range schema {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			b.Fatalf("%s: %v", stmt, err)
		}
	}
	return conn, name
}

// benchConnector is the tests' connector file with the default batch and
// queue sizes (the tests use a small batch to cut many).
func benchConnector(b *testing.B, db string) *config.Connector {
	b.Helper()
	raw := string(connectorJSON(db, filepath.Join(b.TempDir(), "store.db"), "127.0.0.1:0"))
	const small = `"batch.max.changes": 700`
	large := fmt.Sprintf(`"batch.max.changes": %d, "queue.max.changes": %d`, config.DefaultBatchMax, config.DefaultQueueMax)
	if !strings.Contains(raw, small) {
		b.Fatalf("connectorJSON no longer sets %s", small)
	}
	c, err := config.Parse([]byte(strings.Replace(raw, small, large, 1)), func(string) string { return "" })
	if err != nil {
		b.Fatalf("connector file: %v", err)
	}
	return c
}

// benchRun is tilefeed running in this process (runtime, for a B).
type benchRun struct {
	rt     *connector.Runtime
	reader *serve.Reader
	store  *split.Split
	cancel context.CancelFunc
	done   chan error
	before int64 // changes applied before this start, per the checkpoint
}

// startBench starts tilefeed with the options the command uses. wrap, when
// not nil, decorates the store the runtime writes to.
func startBench(b *testing.B, c *config.Connector, wrap func(connector.Store) connector.Store) *benchRun {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	engine, err := transform.Compile(c.Features)
	if err != nil {
		b.Fatal(err)
	}
	// As the command opens it: the embedded store or Aerospike, records
	// over record.split.bytes split.
	var base interface {
		connector.Store
		Close() error
	}
	var err2 error
	if c.Sink.Kind == "aerospike" {
		base, err2 = aerospike.Open(ctx, aerospike.Options{Hosts: c.Sink.Aerospike.Hosts, Namespace: c.Sink.Aerospike.Namespace})
	} else {
		base, err2 = embedded.Open(c.Sink.EmbeddedPath, embedded.Options{})
	}
	if err2 != nil {
		b.Fatal(err2)
	}
	var inner connector.Store = base
	if wrap != nil {
		inner = wrap(base)
	}
	st := split.New(inner, split.Options{Bytes: c.Sink.SplitBytes, CacheBytes: c.HTTP.ReadCacheBytes})
	var store connector.Store = st
	log := slog.New(slog.NewTextHandler(benchWriter{b}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m := connector.NewMetrics(prometheus.NewRegistry())
	cp, _, _, err := connector.LoadCheckpoint(ctx, st, c.Name)
	if err != nil {
		b.Fatal(err)
	}
	src := postgres.New(c.Postgres, postgres.Options{LagInterval: 5 * time.Second, HeartbeatInterval: c.Postgres.HeartbeatInterval,
		Store: store, Connector: c.Name}, log, m)
	if err := src.Setup(ctx, engine, cp.Resume); err != nil {
		b.Fatal(err)
	}
	rt := connector.New(c.Name, src, store, engine, log, m, connector.Options{
		BatchMax: c.Runtime.BatchMax, SnapshotBatchMax: c.Runtime.SnapshotBatchMax, QueueMax: c.Runtime.QueueMax, CacheEntities: c.Runtime.CacheEntities, CacheBytes: c.Runtime.CacheBytes,
		IdleCheckpoint: c.Postgres.HeartbeatInterval})
	r := &benchRun{rt: rt, reader: &serve.Reader{Engine: engine, Store: st, Cache: serve.NewCache(c.HTTP.ReadCacheBytes)}, store: st, cancel: cancel, done: make(chan error, 1),
		before: cp.Changes}
	go func() { r.done <- rt.Run(ctx) }()
	return r
}

func (r *benchRun) stop(b *testing.B) {
	b.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			b.Errorf("runtime stopped with %v", err)
		}
	case <-time.After(60 * time.Second):
		b.Fatal("runtime did not stop within 60s")
	}
	r.store.Close()
}

type benchWriter struct{ b *testing.B }

func (w benchWriter) Write(p []byte) (int, error) {
	w.b.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func insertSync(b *testing.B, conn *pgx.Conn, id int) {
	b.Helper()
	if _, err := conn.Exec(context.Background(), "INSERT INTO sync VALUES ($1)", id); err != nil {
		b.Fatal(err)
	}
}

// waitFound waits until the sentinel row id is readable (waitSync without
// the insert, with a longer deadline).
func waitFound(b *testing.B, r *benchRun, id int, timeout time.Duration) {
	b.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ents, err := r.reader.Read(context.Background(), "sync", [][]string{{strconv.Itoa(id)}}, time.Now())
		if err == nil && ents[0].Found {
			return
		}
		select {
		case err := <-r.done:
			b.Fatalf("runtime stopped before sentinel %d arrived: %v", id, err)
		default:
		}
	}
	b.Fatalf("sentinel %d did not arrive within %s", id, timeout)
}

// loadBacklog commits the backlog in large transactions and returns how
// many row changes the slot holds for the feature tables.
func loadBacklog(b *testing.B, conn *pgx.Conn, cards int) int64 {
	b.Helper()
	ctx := context.Background()
	// Event times as in the workload: 30% within 15 minutes, 30% within
	// 48 hours, the rest within 40 days. Hashes of g spread the values.
	const insert = `INSERT INTO transactions (card_id, merchant, amount, status, created_at)
		SELECT g % $3, 'merchant-' || lpad(((g * 7919) % 500)::text, 4, '0'),
			((g * 104729) % 50000)::numeric / 100,
			CASE WHEN (g * 31) % 6 = 0 THEN 'declined' ELSE 'approved' END,
			now() - CASE WHEN (g * 13) % 10 < 3 THEN interval '1 second' * ((g * 7907) % 900)
				WHEN (g * 13) % 10 < 6 THEN interval '1 second' * ((g * 7907) % 172800)
				ELSE interval '1 second' * ((g * 7907) % 3456000) END
		FROM generate_series($1::bigint, $2::bigint) g`
	var n int64
	exec := func(sql string, args ...any) {
		tag, err := conn.Exec(ctx, sql, args...)
		if err != nil {
			b.Fatalf("%s: %v", sql, err)
		}
		n += tag.RowsAffected()
	}
	for round := int64(0); round < backlogRounds; round++ {
		lo, hi := round*backlogRows+1, (round+1)*backlogRows
		exec(insert, lo, hi, cards)
		exec("UPDATE transactions SET amount = amount + 1 WHERE id BETWEEN $1 AND $2 AND id % 10 = 0", lo, hi)
		exec("DELETE FROM transactions WHERE id BETWEEN $1 AND $2 AND id % 20 = 1", lo, hi)
	}
	return n
}

// latencyTxn is one transaction of the steady workload.
type latencyTxn struct {
	committed time.Time // when COMMIT returned
	// lsn is pg_current_wal_insert_lsn() read right after COMMIT returned:
	// at or past the end of the transaction's commit record. A checkpoint
	// whose resume position reaches it covers the transaction. (The insert
	// position read before COMMIT would not do: an idle heartbeat's resume
	// position, the walsender's sent position, can pass it while the
	// transaction is still open.)
	lsn uint64
}

// drive commits rate transactions per second of 1–5 inserted rows for d,
// on a fixed schedule (a late transaction does not delay the next, and
// one connection sends them: txn/s reports the rate reached).
func drive(b *testing.B, conn *pgx.Conn, rng *rand.Rand, d time.Duration, rate int) []latencyTxn {
	b.Helper()
	ctx := context.Background()
	n := int(d.Seconds() * float64(rate))
	out := make([]latencyTxn, 0, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
		sql := fmt.Sprintf(`BEGIN;
			INSERT INTO transactions (card_id, merchant, amount, status, created_at)
			SELECT %d + g, 'merchant-%04d', %d.%02d, '%s', now() - interval '%d seconds' FROM generate_series(0, %d) g;
			COMMIT`,
			rng.IntN(backlogCards-5), rng.IntN(500), rng.IntN(500), rng.IntN(100),
			[]string{"approved", "approved", "approved", "approved", "approved", "declined"}[rng.IntN(6)],
			rng.IntN(900), rng.IntN(5))
		// Without arguments pgx sends one simple query: one round trip,
		// returning when COMMIT has. The clock starts when it is sent: the
		// commit happens within the round trip, and a time taken after it
		// returns can fall after the checkpoint that covers it (this
		// process shares two cores with tilefeed), giving negative
		// latencies.
		committed := time.Now()
		if _, err := conn.Exec(ctx, sql); err != nil {
			b.Fatal(err)
		}
		var text string
		if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&text); err != nil {
			b.Fatal(err)
		}
		lsn, err := pglogrepl.ParseLSN(text)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, latencyTxn{committed: committed, lsn: uint64(lsn)})
	}
	return out
}

// checkpointLog records when each checkpoint became durable.
type checkpointLog struct {
	mu  sync.Mutex
	at  []time.Time
	pos []uint64 // resume positions, never decreasing
}

func (l *checkpointLog) add(at time.Time, resume uint64) {
	l.mu.Lock()
	l.at = append(l.at, at)
	l.pos = append(l.pos, resume)
	l.mu.Unlock()
}

func (l *checkpointLog) covered() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pos) == 0 {
		return 0
	}
	return l.pos[len(l.pos)-1]
}

// latencies returns, per transaction, the time from its commit to the
// first checkpoint that covers it.
func (l *checkpointLog) latencies(txs []latencyTxn) ([]time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !slices.IsSorted(l.pos) {
		return nil, errors.New("checkpoint resume positions went backwards")
	}
	out := make([]time.Duration, 0, len(txs))
	for _, tx := range txs {
		i, _ := slices.BinarySearch(l.pos, tx.lsn)
		if i == len(l.pos) {
			return nil, fmt.Errorf("no checkpoint covers the transaction committed at %s", lsnText(tx.lsn))
		}
		out = append(out, l.at[i].Sub(tx.committed))
	}
	return out, nil
}

// timedStore decorates the runtime's store: it adds up the time spent in
// each kind of call and, given a checkpointLog, records every checkpoint
// written with the time its Put returned.
type timedStore struct {
	connector.Store
	busy        *storeBusy
	checkpoints *checkpointLog
}

func (s *timedStore) Get(ctx context.Context, keys []sink.Key) ([]sink.Record, error) {
	start := time.Now()
	recs, err := s.Store.Get(ctx, keys)
	s.busy.add(&s.busy.get, time.Since(start), len(keys))
	return recs, err
}

// Atomic passes on the wrapped store's Atomic, so the runtime writes as
// it does in production (checkpoint and records in one Put on the embedded
// store).
func (s *timedStore) Atomic() bool {
	a, ok := s.Store.(interface{ Atomic() bool })
	return ok && a.Atomic()
}

func (s *timedStore) Put(ctx context.Context, recs []sink.Record) error {
	start := time.Now()
	err := s.Store.Put(ctx, recs)
	done := time.Now()
	if last := len(recs) - 1; last > 0 && recs[last].Key.Set == sink.CheckpointSet {
		// Records and checkpoint in one Put: one batch.
		s.busy.add(&s.busy.put, done.Sub(start), last)
		s.busy.batch()
		if err == nil && s.checkpoints != nil {
			resume, _ := recs[last].Bins["resume"].(int64)
			s.checkpoints.add(done, uint64(resume))
		}
		return err
	}
	if len(recs) == 1 && recs[0].Key.Set == sink.CheckpointSet {
		s.busy.add(&s.busy.checkpoint, done.Sub(start), 1)
		s.busy.batch()
		if err == nil && s.checkpoints != nil {
			resume, _ := recs[0].Bins["resume"].(int64)
			s.checkpoints.add(done, uint64(resume))
		}
		return err
	}
	s.busy.add(&s.busy.put, done.Sub(start), len(recs))
	return err
}

// storeBusy adds up the store calls of the runtime.
type storeBusy struct {
	mu                   sync.Mutex
	get, put, checkpoint callStats
	batches              int // durable checkpoints, alone or with the records
}

func (s *storeBusy) batch() {
	s.mu.Lock()
	s.batches++
	s.mu.Unlock()
}

type callStats struct {
	calls, records int
	time           time.Duration
}

func (s *storeBusy) add(c *callStats, d time.Duration, records int) {
	s.mu.Lock()
	c.calls++
	c.records += records
	c.time += d
	s.mu.Unlock()
}

func (s *storeBusy) reset() {
	s.mu.Lock()
	s.get, s.put, s.checkpoint, s.batches = callStats{}, callStats{}, callStats{}, 0
	s.mu.Unlock()
}

// report adds, per iteration, the batches written, the mean records per
// batch, the mean time of a records Put and (on a store that writes the
// checkpoint apart, Aerospike) of a checkpoint Put, and the total time
// spent in the store.
func (s *storeBusy) report(b *testing.B, n float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mean := func(c callStats) float64 {
		if c.calls == 0 {
			return 0
		}
		return float64(c.time) / float64(c.calls) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(s.batches)/n, "batches")
	if s.put.calls > 0 {
		b.ReportMetric(float64(s.put.records)/float64(s.put.calls), "records/batch")
	}
	b.ReportMetric(mean(s.put), "put_ms")
	if s.checkpoint.calls > 0 {
		b.ReportMetric(mean(s.checkpoint), "ckpt_put_ms")
	}
	b.ReportMetric((s.get.time+s.put.time+s.checkpoint.time).Seconds()/n, "store_s")
}

// dropSlot drops the benchmark's slot so its WAL is not kept.
// dropSlot drops slot, waiting for the walsender of a connection just
// closed to let go of it (55006: the slot is still active).
func dropSlot(b *testing.B, conn *pgx.Conn, slot string) {
	b.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, err = conn.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", slot)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55006" || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		b.Errorf("drop slot %s: %v", slot, err)
	}
}

// statusKB reads a field of /proc/self/status in kB (0 if unknown).
func statusKB(field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// resetPeakRSS resets VmHWM to the current RSS (Linux 4.0+); false when
// it cannot, and then only sampling measures the peak.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// sampleRSS samples VmRSS and RssAnon every 50ms until the returned
// function is called; that returns the largest samples in kB. RssAnon
// leaves out file pages, such as the embedded store's memory map.
func sampleRSS() func() (rss, anon int64) {
	stop := make(chan struct{})
	peak := make(chan [2]int64)
	go func() {
		var p [2]int64
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			p[0] = max(p[0], statusKB("VmRSS"))
			p[1] = max(p[1], statusKB("RssAnon"))
			select {
			case <-stop:
				peak <- p
				return
			case <-t.C:
			}
		}
	}()
	return func() (int64, int64) { close(stop); p := <-peak; return p[0], p[1] }
}

// processCPU is the user and system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// slotCPU is the CPU time the walsender serving slot has used (0 if it
// cannot be read): PostgreSQL's decoding, on the same cores as tilefeed.
func slotCPU(b *testing.B, conn *pgx.Conn, slot string) time.Duration {
	b.Helper()
	var pid *int32
	if err := conn.QueryRow(context.Background(), "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&pid); err != nil || pid == nil {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", *pid))
	if err != nil {
		return 0
	}
	// Fields after the command name: state is 3, utime 14, stime 15.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// BenchmarkSnapshot measures the initial snapshot (snapshot.mode=initial)
// of 1,000,000 existing rows into the embedded store, end to end: from the
// start until the sentinel inserted right after is readable, which needs
// the snapshot applied and the stream caught up. It runs with
// snapshot.max.threads 1 and 2 (chunks of snapshot.fetch.size 10240 rows,
// written ahead to the store). Beside it: the same table read with COPY TO
// STDOUT (what psql's \copy does), x_copy the ratio, and peak RSS.
func BenchmarkSnapshot(b *testing.B) {
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) { benchSnapshot(b, threads, config.DefaultSnapshotBatchMax) })
	}
	// The default snapshot batch beside the ordinary batch size, in the
	// same run: what snapshot.batch.max.changes buys, and what it costs.
	b.Run(fmt.Sprintf("threads=1/snapshot.batch=%d", config.DefaultBatchMax), func(b *testing.B) {
		benchSnapshot(b, 1, config.DefaultBatchMax)
	})
}

func benchSnapshot(b *testing.B, threads, batch int) {
	const rows = 1_000_000
	var elapsed, copyElapsed time.Duration
	var peakKB int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		conn, db := benchDB(b)
		fillTransactions(b, conn, rows, 8)
		// The reference: the same table copied out (COPY TO STDOUT, as
		// psql's \copy does), discarded.
		copyStart := time.Now()
		if _, err := conn.PgConn().CopyTo(context.Background(), io.Discard, "COPY transactions TO STDOUT"); err != nil {
			b.Fatal(err)
		}
		copyElapsed += time.Since(copyStart)
		c := benchConnector(b, db)
		c.Postgres.SnapshotMode = "initial"
		c.Postgres.SnapshotThreads = threads
		c.Postgres.SnapshotFetch = 10240
		c.Runtime.SnapshotBatchMax = batch
		debug.FreeOSMemory()
		hwm := resetPeakRSS()
		sampler := sampleRSS()
		b.StartTimer()
		start := time.Now()
		r := startBench(b, c, nil)
		insertSync(b, conn, 1)
		waitFound(b, r, 1, 45*time.Minute)
		// The sync table is snapshot before transactions: wait for all rows.
		for deadline := time.Now().Add(45 * time.Minute); r.rt.Status().ChangesTotal < rows && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		elapsed += time.Since(start)
		b.StopTimer()
		peak, _ := sampler()
		if hwm {
			peak = max(peak, statusKB("VmHWM"))
		}
		peakKB = max(peakKB, peak)
		if n := r.rt.Status().ChangesTotal; n < rows {
			b.Fatalf("only %d rows applied", n)
		}
		r.stop(b)
		dropSlot(b, conn, c.Postgres.SlotName)
	}
	rate, ref := float64(rows*b.N)/elapsed.Seconds(), float64(rows*b.N)/copyElapsed.Seconds()
	b.ReportMetric(rate, "snapshot_rows/s")
	b.ReportMetric(ref, "copy_rows/s")
	b.ReportMetric(rate/ref, "x_copy")
	b.ReportMetric(loadAverage(), "loadavg_1m")
	b.ReportMetric(elapsed.Seconds()/float64(b.N), "snapshot_s")
	b.ReportMetric(float64(peakKB)/1024, "peak_rss_MB")
}

// fillTransactions inserts rows transactions over 10k cards and merchants
// merchants, spread over the last 40 days, one in six declined.
func fillTransactions(b *testing.B, conn *pgx.Conn, rows, merchants int) {
	b.Helper()
	if _, err := conn.Exec(context.Background(), `INSERT INTO transactions (card_id, merchant, amount, status, created_at)
		SELECT g % 10000, 'm' || (g % $2), (g % 50000) / 100.0, CASE WHEN g % 6 = 0 THEN 'declined' ELSE 'approved' END,
		       now() - make_interval(secs => g % 3456000)
		FROM generate_series(1, $1) g`, rows, merchants); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), "ANALYZE transactions"); err != nil {
		b.Fatal(err)
	}
}
