package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	as "github.com/aerospike/aerospike-client-go/v7"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tilefeed/tilefeed/archive"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/connector/postgres"
	"github.com/tilefeed/tilefeed/integration/pgcluster"
	"github.com/tilefeed/tilefeed/serve"
	"github.com/tilefeed/tilefeed/sink/aerospike"
	"github.com/tilefeed/tilefeed/sink/embedded"
	"github.com/tilefeed/tilefeed/sink/split"
	"github.com/tilefeed/tilefeed/transform"
)

var cluster *pgcluster.Cluster

func TestMain(m *testing.M) {
	code := func() int {
		if _, err := pgcluster.BinDir(); err != nil {
			fmt.Fprintf(os.Stderr, "SKIPPING integration tests: %v\n", err)
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "tilefeed-it")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cluster, err = pgcluster.Start(ctx, dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cluster.Stop()
		if os.Getenv("AEROSPIKE_HOSTS") == "" {
			fmt.Fprintln(os.Stderr, "NOTE: AEROSPIKE_HOSTS is not set: the Aerospike end-to-end tests are SKIPPED (set AEROSPIKE_HOSTS=127.0.0.1:3000 to run them)")
		}
		return m.Run()
	}()
	os.Exit(code)
}

var dbSeq atomic.Int64

// newDB creates a fresh database with the test schema.
func newDB(t *testing.T) (*pgx.Conn, string) {
	t.Helper()
	if cluster == nil {
		t.Skip("no PostgreSQL server: install postgresql-15")
	}
	ctx := context.Background()
	name := fmt.Sprintf("it_%d_%d", os.Getpid(), dbSeq.Add(1))
	conn, err := cluster.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Slots hold WAL and count against max_replication_slots: drop
		// this test's once nothing streams from them (cleanups run after
		// the test's deferred stops).
		_, _ = conn.Exec(context.Background(), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE database = $1 AND NOT active`, name)
		conn.Close(context.Background())
	})
	for _, stmt := range schema {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	return conn, name
}

var schema = []string{
	`CREATE TABLE transactions (id bigserial PRIMARY KEY, card_id int NOT NULL, merchant text NOT NULL,
		amount numeric(12,2) NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL)`,
	`ALTER TABLE transactions REPLICA IDENTITY FULL`,
	`CREATE TABLE customers (id int PRIMARY KEY, name text, country text, age int)`,
	`CREATE TABLE sync (id int PRIMARY KEY)`,
	`CREATE TABLE unrelated (id serial PRIMARY KEY, v text)`,
}

// connectorJSON is the connector file of the tests.
func connectorJSON(db, storePath, listen string) []byte {
	return []byte(fmt.Sprintf(`{
  "name": "%[1]s",
  "config": {
    "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
    "plugin.name": "pgoutput",
    "database.hostname": "127.0.0.1",
    "database.port": %[2]d,
    "database.user": "postgres",
    "database.dbname": "%[1]s",
    "database.sslmode": "disable",
    "slot.name": "%[1]s",
    "publication.name": "tilefeed",
    "snapshot.mode": "no_data",
    "heartbeat.interval.ms": 200,
    "batch.max.changes": 700,
    "embedded.path": "%[3]s",
    "http.listen": "%[4]s"
  },
  "features": [
    {"name": "card_activity", "table": "public.transactions", "entity": ["card_id"],
     "time": "created_at", "where": "status != 'declined'",
     "aggregations": [
       {"name": "txn_count_10m", "function": "count", "window": "10m"},
       {"name": "amount_sum_1h", "function": "sum", "column": "amount", "window": "1h"},
       {"name": "amount_avg_30d", "function": "avg", "column": "amount", "window": "30d"},
       {"name": "amount_max_24h", "function": "max", "column": "amount", "window": "24h"},
       {"name": "merchants_24h", "function": "distinct", "column": "merchant", "window": "24h"},
       {"name": "amount_min", "function": "min", "column": "amount"},
       {"name": "txn_count", "function": "count"},
       {"name": "last_amount", "function": "last", "column": "amount"},
       {"name": "last_txn_at", "function": "max", "column": "created_at"}]},
    {"name": "customer", "table": "public.customers", "entity": ["id"], "project": ["name", "country", "age"]},
    {"name": "sync", "table": "public.sync", "entity": ["id"], "project": ["id"]}
  ]
}`, db, cluster.Port, storePath, listen))
}

func loadConnector(t *testing.T, raw []byte) *config.Connector {
	t.Helper()
	c, err := config.Parse(raw, func(string) string { return "" })
	if err != nil {
		t.Fatalf("connector file: %v", err)
	}
	return c
}

// runtime is tilefeed running in this process.
type runtime struct {
	rt     *connector.Runtime
	reader *serve.Reader
	store  testStore
	cancel context.CancelFunc
	done   chan error

	mu      sync.Mutex
	hasExit bool  // Run has returned
	exitErr error // with this
}

// errStopped is what a read of a runtime that has stopped returns: a wait
// for a sentinel or a snapshot ends at once instead of at its deadline.
var errStopped = errors.New("the connector stopped")

// exited reports whether Run has returned, and what it returned.
func (r *runtime) exited() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.hasExit {
		select {
		case err := <-r.done:
			r.hasExit, r.exitErr = true, err
		default:
		}
	}
	return r.hasExit, r.exitErr
}

// waitExit waits up to limit for Run to return.
func (r *runtime) waitExit(limit time.Duration) (bool, error) {
	for deadline := time.Now().Add(limit); ; time.Sleep(10 * time.Millisecond) {
		if done, err := r.exited(); done || time.Now().After(deadline) {
			return done, err
		}
	}
}

func startRuntime(t *testing.T, c *config.Connector) *runtime {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	engine, err := transform.Compile(c.Features)
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t, c)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: logLevel()}))
	m := connector.NewMetrics(prometheus.NewRegistry())
	cp, _, _, err := connector.LoadCheckpoint(ctx, st, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	src := postgres.New(c.Postgres, postgres.Options{StatusInterval: 100 * time.Millisecond, HeartbeatInterval: c.Postgres.HeartbeatInterval,
		Store: st, Connector: c.Name}, log, m)
	if err := src.Setup(ctx, engine, cp.Resume); err != nil {
		t.Fatal(err)
	}
	opts := connector.Options{
		BatchMax: c.Runtime.BatchMax, QueueMax: c.Runtime.QueueMax, CacheEntities: 50,
		IdleCheckpoint: c.Postgres.HeartbeatInterval, DeadLetterSet: deadLetterSet(c), LogDeadLetters: true}
	if a := c.Runtime.Archive; a.Dir != "" {
		w, err := archive.OpenWriter(a.Dir, int64(a.RotateBytes), a.Gzip)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		opts.Archive = w
	}
	rt := connector.New(c.Name, src, st, engine, log, m, opts)
	r := &runtime{rt: rt, reader: &serve.Reader{Engine: engine, Store: st}, store: st, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- rt.Run(ctx) }()
	return r
}

// stop stops the runtime cleanly and closes its store.
func (r *runtime) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	done, err := r.waitExit(60 * time.Second)
	if !done {
		t.Fatal("runtime did not stop within 60s")
	}
	if err != nil && err != context.Canceled {
		t.Errorf("runtime stopped with %v", err)
	}
	r.store.Close()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var _ io.Writer = testWriter{}

// featureReader returns an entity's features as JSON-decoded values.
type featureReader func(group string, key string, at time.Time) (found bool, features map[string]any, err error)

func (r *runtime) read(group, key string, at time.Time) (bool, map[string]any, error) {
	if done, err := r.exited(); done {
		return false, nil, fmt.Errorf("%w: %v", errStopped, err)
	}
	ents, err := r.reader.Read(context.Background(), group, [][]string{{key}}, at)
	if err != nil {
		return false, nil, err
	}
	// Through JSON, as a client sees them.
	b, err := json.Marshal(ents[0].FeatureMap())
	if err != nil {
		return false, nil, err
	}
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return false, nil, err
	}
	return ents[0].Found, m, nil
}

// waitSync inserts a sentinel row and waits until its record is readable:
// then every change committed before it is durable in the store.
func waitSync(t *testing.T, conn *pgx.Conn, read featureReader, id int) {
	t.Helper()
	waitSyncFor(t, conn, read, id, 3*time.Minute)
}

func waitSyncFor(t *testing.T, conn *pgx.Conn, read featureReader, id int, limit time.Duration) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), "INSERT INTO sync VALUES ($1)", id); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		found, _, err := read("sync", fmt.Sprint(id), time.Now())
		if err == nil && found {
			return
		}
		if errors.Is(err, errStopped) {
			t.Fatalf("waiting for sentinel %d: %v", id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("sentinel %d did not arrive within %s", id, limit)
}

// testStore is what the tests need from a store.
type testStore interface {
	connector.Store
	Close() error
}

// openStore opens the store the connector names: the embedded one, or
// Aerospike (sink.Kind aerospike, see withAerospike).
func openStore(t *testing.T, c *config.Connector) testStore {
	t.Helper()
	if c.Sink.Kind == "aerospike" {
		st, err := aerospike.Open(context.Background(), aerospike.Options{Hosts: c.Sink.Aerospike.Hosts, Namespace: c.Sink.Aerospike.Namespace})
		if err != nil {
			t.Fatal(err)
		}
		return split.New(st, split.Options{Bytes: c.Sink.SplitBytes})
	}
	st, err := embedded.Open(c.Sink.EmbeddedPath, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return split.New(st, split.Options{Bytes: c.Sink.SplitBytes})
}

// withAerospike points c at the Aerospike in AEROSPIKE_HOSTS and empties
// the sets of its feature groups, or skips the test loudly.
func withAerospike(t testing.TB, c *config.Connector) {
	t.Helper()
	hosts := os.Getenv("AEROSPIKE_HOSTS")
	if hosts == "" {
		t.Skip("AEROSPIKE_HOSTS is not set: this Aerospike end-to-end test did NOT run; set AEROSPIKE_HOSTS=127.0.0.1:3000 to run it")
	}
	ns := os.Getenv("AEROSPIKE_NAMESPACE")
	if ns == "" {
		ns = "test"
	}
	c.Sink.Kind = "aerospike"
	c.Sink.Aerospike.Hosts = strings.Split(hosts, ",")
	c.Sink.Aerospike.Namespace = ns
	host, portText, _ := strings.Cut(c.Sink.Aerospike.Hosts[0], ":")
	port, _ := strconv.Atoi(portText)
	client, err := as.NewClient(host, port)
	if err != nil {
		t.Fatalf("connect to Aerospike %s: %v", hosts, err)
	}
	defer client.Close()
	for _, f := range c.Features {
		if err := client.Truncate(nil, ns, f.Name, nil); err != nil {
			t.Fatalf("truncate set %s: %v", f.Name, err)
		}
	}
}

func storePath(t *testing.T) string { return filepath.Join(t.TempDir(), "store.db") }

// reconnect opens a new connection to db, waiting for the server.
func reconnect(ctx context.Context, db string) (*pgx.Conn, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, cluster.ConnString(db))
		if err == nil || time.Now().After(deadline) {
			return conn, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func deadLetterSet(c *config.Connector) string {
	if c.Runtime.ErrorsTolerance == "all" {
		return c.Runtime.DeadLetterSet
	}
	return ""
}

// logLevel is WARN, or INFO with TILEFEED_TEST_LOG=info.
func logLevel() slog.Level {
	if os.Getenv("TILEFEED_TEST_LOG") == "info" {
		return slog.LevelInfo
	}
	return slog.LevelWarn
}
