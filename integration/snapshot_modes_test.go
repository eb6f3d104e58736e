package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tilefeed/tilefeed/serve"
	"github.com/tilefeed/tilefeed/sink/embedded"
	"github.com/tilefeed/tilefeed/transform"
)

// storeReader reads features straight from an embedded store file.
func storeReader(t *testing.T, raw []byte) featureReader {
	t.Helper()
	c := loadConnector(t, raw)
	engine, err := transform.Compile(c.Features)
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(c.Sink.EmbeddedPath, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &runtime{reader: &serve.Reader{Engine: engine, Store: st}}
	return r.read
}

func slotExists(t *testing.T, conn *pgx.Conn, slot string) bool {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// TestSnapshotInitialOnly: snapshot.mode=initial_only takes the snapshot,
// exits 0 once it is durable and drops the slot; the features equal SQL
// as of the snapshot; a second run has nothing to do and exits 0.
func TestSnapshotInitialOnly(t *testing.T) {
	conn, db, _ := snapshotDB(t)
	listen := freeAddr(t)
	raw := snapshotConnector(db, storePath(t), listen, "initial_only", 500, 2)
	p := newProcess(t, raw, listen)
	for run := 1; run <= 2; run++ {
		start := time.Now()
		p.spawn(nil)
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			p.kill()
			t.Fatalf("run %d: initial_only did not exit; log:\n%s", run, lastLines(p.log(), 20))
		}
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("run %d: exit %d; log:\n%s", run, code, lastLines(p.log(), 20))
		}
		t.Logf("run %d took %s", run, time.Since(start))
	}
	if !strings.Contains(p.log(), "the snapshot was taken already") {
		t.Errorf("the second run did not see the snapshot taken; log:\n%s", lastLines(p.log(), 10))
	}
	if slotExists(t, conn, db) {
		t.Error("initial_only left the slot behind")
	}
	read := storeReader(t, raw)
	verify(t, conn, read, time.Now(), 40)
	verifyReadings(t, conn, read)
}

// TestSnapshotAlways: snapshot.mode=always rebuilds the features from a
// new snapshot on every start; nothing is counted twice.
func TestSnapshotAlways(t *testing.T) {
	conn, db, w := snapshotDB(t)
	c := loadConnector(t, snapshotConnector(db, storePath(t), "127.0.0.1:0", "always", 500, 1))
	r := startRuntime(t, c)
	waitSnapshot(t, r)
	w.run(t, 50)
	waitSync(t, conn, r.read, 1)
	r.stop(t)
	w.run(t, 50) // while it is down
	r = startRuntime(t, c)
	defer r.stop(t)
	waitSnapshot(t, r)
	w.run(t, 20)
	waitSync(t, conn, r.read, 2)
	verify(t, conn, r.read, time.Now(), w.cards)
	verifyReadings(t, conn, r.read)
	if st := r.rt.Status(); st.Groups["card_activity"].Unmatched != 0 {
		t.Errorf("%d unmatched retractions after the rebuild", st.Groups["card_activity"].Unmatched)
	}
}

// TestSnapshotWhenNeeded: snapshot.mode=when_needed takes a snapshot on
// the first start, streams on after a plain restart, and rebuilds from a
// new snapshot when the slot is gone.
func TestSnapshotWhenNeeded(t *testing.T) {
	conn, db, w := snapshotDB(t)
	c := loadConnector(t, snapshotConnector(db, storePath(t), "127.0.0.1:0", "when_needed", 500, 2))
	r := startRuntime(t, c)
	waitSnapshot(t, r)
	w.run(t, 30)
	waitSync(t, conn, r.read, 1)
	r.stop(t)

	r = startRuntime(t, c) // the slot serves the checkpoint: stream on
	w.run(t, 30)
	waitSync(t, conn, r.read, 2)
	if st := r.rt.Status(); st.ChangesTotal < 20000 {
		t.Errorf("a plain restart rebuilt the features (%d changes applied)", st.ChangesTotal)
	}
	r.stop(t)

	if _, err := conn.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", c.Postgres.SlotName); err != nil {
		t.Fatal(err)
	}
	w.run(t, 30) // lost to the slot
	r = startRuntime(t, c)
	defer r.stop(t)
	waitSnapshot(t, r)
	waitSync(t, conn, r.read, 3)
	verify(t, conn, r.read, time.Now(), w.cards)
	verifyReadings(t, conn, r.read)
}
