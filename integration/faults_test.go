package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	bolt "go.etcd.io/bbolt"

	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/sink/embedded"
	"github.com/tilefeed/tilefeed/sink/split"
)

// TestSinkOutage makes the store unavailable for 60 s (TILEFEED_OUTAGE
// shortens it) under a workload: tilefeed stops acknowledging, reports not
// ready naming the sink, keeps memory bounded (it stops reading, it does
// not buffer), and catches up by itself when the store returns.
func TestSinkOutage(t *testing.T) {
	outage := 60 * time.Second
	if s := os.Getenv("TILEFEED_OUTAGE"); s != "" {
		outage, _ = time.ParseDuration(s)
	}
	conn, db := newDB(t)
	c := loadConnector(t, connectorJSON(db, storePath(t), "127.0.0.1:0"))
	r := startRuntime(t, c)
	defer r.stop(t)
	w := newWorkload(conn, 6)
	w.run(t, 30)
	waitSync(t, conn, r.read, 1)

	store := r.store.(*split.Split).Inner().(*embedded.Store)
	cp, _, _, err := connector.LoadCheckpoint(context.Background(), store, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	store.InjectFault(func(string, []sink.Record) error {
		return fmt.Errorf("%w: injected outage", sink.ErrUnavailable)
	})
	start := time.Now()
	var peakHeap uint64
	readySeen := false
	for time.Since(start) < outage {
		w.run(t, 10) // about 50 row changes
		time.Sleep(50 * time.Millisecond)
		if slot := lsnOf(t, confirmedFlush(t, conn, c.Postgres.SlotName)); slot > cp.Resume {
			t.Fatalf("the slot was acknowledged to %X during the outage, past the checkpoint %X", slot, cp.Resume)
		}
		var ms goruntime.MemStats
		goruntime.ReadMemStats(&ms)
		peakHeap = max(peakHeap, ms.HeapInuse)
		if err := r.rt.Ready(); err != nil && strings.Contains(err.Error(), "sink") {
			readySeen = true
		}
	}
	if !readySeen {
		t.Error("Ready() never named the sink during the outage")
	}
	store.InjectFault(nil)
	back := time.Now()
	waitSync(t, conn, r.read, 2)
	catchUp := time.Since(back)
	if err := r.rt.Ready(); err != nil {
		t.Errorf("not ready after the outage: %v", err)
	}
	verify(t, conn, r.read, time.Now(), w.cards)
	const heapBound = 512 << 20
	if peakHeap > heapBound {
		t.Errorf("heap reached %d MiB during the outage (bound %d MiB)", peakHeap>>20, heapBound>>20)
	}
	t.Logf("outage %s: %d changes written meanwhile; caught up %s after the store returned; peak heap in use %d MiB",
		outage, w.changes, catchUp.Round(time.Millisecond), peakHeap>>20)
}

func lsnOf(t *testing.T, s string) uint64 {
	l, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(l)
}

func confirmedFlush(t *testing.T, conn *pgx.Conn, slot string) string {
	t.Helper()
	var lsn string
	if err := conn.QueryRow(context.Background(), "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}

// TestDeadLetters: with errors.tolerance=all a change a group cannot use
// goes to the dead-letter set with its reason and tilefeed continues; with
// none it stops naming table, position, column and value.
func TestDeadLetters(t *testing.T) {
	conn, db := newDB(t)
	ctx := context.Background()
	for _, stmt := range []string{
		`CREATE TABLE readings (id serial PRIMARY KEY, k int, v numeric, at timestamptz)`,
		`ALTER TABLE readings REPLICA IDENTITY FULL`,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	raw := strings.Replace(string(connectorJSON(db, storePath(t), "127.0.0.1:0")), `"features": [`, `"features": [
    {"name": "readings", "table": "public.readings", "entity": ["k"], "time": "at",
     "aggregations": [{"name": "total", "function": "sum", "column": "v"}, {"name": "n", "function": "count"}]},`, 1)
	all := strings.Replace(raw, `"snapshot.mode"`, `"errors.tolerance": "all", "snapshot.mode"`, 1)
	c := loadConnector(t, []byte(all))
	r := startRuntime(t, c)
	rows := []string{
		`(1, 10.5, now())`, `(NULL, 1, now())`, `(1, 2, 'infinity')`, `(2, 3, NULL)`, `(2, 4.25, now())`,
	}
	for _, row := range rows {
		if _, err := conn.Exec(ctx, "INSERT INTO readings (k, v, at) VALUES "+row); err != nil {
			t.Fatal(err)
		}
	}
	waitSync(t, conn, r.read, 1)
	for k, want := range map[string]string{"1": "10.5", "2": "4.25"} {
		_, got, err := r.read("readings", k, time.Now())
		if err != nil || fmt.Sprint(got["total"]) != want {
			t.Errorf("readings %s: total %v (%v), want %s", k, got["total"], err, want)
		}
	}
	// The status follows the store by at most a batch.
	for deadline := time.Now().Add(10 * time.Second); r.rt.Status().DeadLetters != 3 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if st := r.rt.Status(); st.DeadLetters != 3 {
		t.Errorf("status counts %d dead letters, want 3: %+v", st.DeadLetters, st)
	}
	r.stop(t)
	reasons := deadLetterReasons(t, c.Sink.EmbeddedPath, c.Runtime.DeadLetterSet)
	for _, want := range []string{"entity key is NULL", "event time is infinity", "event time is NULL"} {
		if !strings.Contains(strings.Join(reasons, "\n"), want) {
			t.Errorf("dead letters lack %q: %v", want, reasons)
		}
	}
	if len(reasons) != 3 {
		t.Errorf("%d dead letters stored, want 3: %v", len(reasons), reasons)
	}

	// errors.tolerance=none (the default): the first bad change stops it.
	conn2, db2 := newDB(t)
	for _, stmt := range []string{
		`CREATE TABLE readings (id serial PRIMARY KEY, k int, v numeric, at timestamptz)`,
		`ALTER TABLE readings REPLICA IDENTITY FULL`,
	} {
		if _, err := conn2.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	raw2 := strings.ReplaceAll(raw, db, db2)
	c2 := loadConnector(t, []byte(raw2))
	r2 := startRuntime(t, c2)
	if _, err := conn2.Exec(ctx, "INSERT INTO readings (k, v, at) VALUES (7, 1, '-infinity')"); err != nil {
		t.Fatal(err)
	}
	done, err := r2.waitExit(30 * time.Second)
	if !done {
		t.Fatal("tilefeed kept running after a bad change with errors.tolerance=none")
	}
	if !errors.Is(err, connector.ErrFatal) || !strings.Contains(err.Error(), "public.readings") ||
		!strings.Contains(err.Error(), "column at event time is -infinity") {
		t.Errorf("want a fatal error naming table, column and value, got %v", err)
	}
	r2.store.Close()
}

// deadLetterReasons reads the dead-letter set of a closed embedded store.
func deadLetterReasons(t *testing.T, path, set string) []string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var keys []sink.Key
	_ = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(set))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error { keys = append(keys, sink.Key{Set: set, ID: string(k)}); return nil })
	})
	db.Close()
	st, err := embedded.Open(path, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.Get(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, fmt.Sprint(r.Bins["table"], " ", r.Bins["column"], ": ", r.Bins["reason"]))
	}
	return out
}
