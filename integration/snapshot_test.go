package integration

import (
	"strings"
	"testing"
	"time"
)

// TestInitialSnapshot: rows that exist before tilefeed first starts are
// read by the initial snapshot (snapshot.mode=initial, Debezium's default)
// while the workload keeps writing; afterwards UPDATEs and DELETEs of those
// old rows retract exactly, and every feature equals SQL: nothing missed or
// counted twice at the snapshot/stream handover.
func TestInitialSnapshot(t *testing.T) {
	conn, db := newDB(t)
	w := newWorkload(conn, 12)
	w.run(t, 300) // history before tilefeed exists
	raw := strings.Replace(string(connectorJSON(db, storePath(t), "127.0.0.1:0")), `"snapshot.mode": "no_data"`, `"snapshot.mode": "initial"`, 1)
	c := loadConnector(t, []byte(raw))

	concurrent := ownWorkload(t, db, 13)
	concurrent.live = append([]int64{}, w.live...) // it updates and deletes old rows too
	_, stopWorkload := concurrent.background(2, 0)
	r := startRuntime(t, c) // snapshot while the workload writes
	defer r.stop(t)
	time.Sleep(2 * time.Second)
	if err := stopWorkload(); err != nil {
		t.Fatal(err)
	}
	w.live = concurrent.live
	w.run(t, 100) // and more changes to old and new rows after it
	waitSync(t, conn, r.read, 1)
	verify(t, conn, r.read, time.Now(), w.cards)
	if st := r.rt.Status(); st.Groups["card_activity"].Unmatched != 0 {
		t.Errorf("%d retractions found nothing to retract: the snapshot missed rows", st.Groups["card_activity"].Unmatched)
	}
}

// TestSnapshotInterrupted: a crash in the middle of the initial snapshot
// cannot be resumed (the exported snapshot died with the process), so the
// restart stops with a message that says how to start again, instead of
// streaming on with half a snapshot.
func TestSnapshotInterrupted(t *testing.T) {
	conn, db := newDB(t)
	w := newWorkload(conn, 14)
	w.run(t, 200)
	listen := freeAddr(t)
	raw := strings.Replace(string(connectorJSON(db, storePath(t), listen)), `"snapshot.mode": "no_data"`, `"snapshot.mode": "initial"`, 1)
	raw = strings.Replace(raw, `"batch.max.changes": 700`, `"batch.max.changes": 50`, 1)
	p := newProcess(t, []byte(raw), listen)
	p.spawn([]string{"TILEFEED_FAULT=after-checkpoint:2"})
	if !p.waitExit(60 * time.Second) {
		t.Fatalf("the fault did not fire; log:\n%s", p.log())
	}
	p.spawn(nil)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		p.kill()
		t.Fatal("restart after an interrupted snapshot kept running")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(p.log(), "initial snapshot of connector") ||
		!strings.Contains(p.log(), "pg_drop_replication_slot") {
		t.Errorf("exit %d; log:\n%s", code, lastLines(p.log(), 10))
	}
}
