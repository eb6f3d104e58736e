package integration

import (
	"context"
	"fmt"
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

// TestSnapshotWindowBackfill: for a table whose groups only have windowed
// aggregates, the snapshot reads the rows the longest window can still
// see, not the table's whole history, and the features are exact.
func TestSnapshotWindowBackfill(t *testing.T) {
	conn, db := newDB(t)
	ctx := context.Background()
	for _, stmt := range []string{
		`CREATE TABLE visits (id serial PRIMARY KEY, k int NOT NULL, at timestamptz NOT NULL)`,
		`ALTER TABLE visits REPLICA IDENTITY FULL`,
		// 1,000 rows, one every 2.4 hours over 100 days.
		`INSERT INTO visits (k, at) SELECT g % 5, now() - make_interval(secs => g * 8640) FROM generate_series(0, 999) g`,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	raw := strings.Replace(string(connectorJSON(db, storePath(t), "127.0.0.1:0")), `"snapshot.mode": "no_data"`, `"snapshot.mode": "initial"`, 1)
	raw = strings.Replace(raw, `"features": [`, `"features": [
    {"name": "visits", "table": "public.visits", "entity": ["k"], "time": "at",
     "aggregations": [{"name": "n_7d", "function": "count", "window": "7d"}, {"name": "n_1d", "function": "count", "window": "1d"}]},`, 1)
	c := loadConnector(t, []byte(raw))
	r := startRuntime(t, c)
	defer r.stop(t)
	waitSnapshot(t, r)
	waitSync(t, conn, r.read, 1)
	// Read changes: the visits within 7 days (+ a tile, + a day of margin)
	// and the rows of the other, empty tables; not 1,000.
	if n := r.rt.Status().ChangesTotal; n > 120 {
		t.Errorf("the snapshot read %d rows; the 7-day window needs about 80", n)
	}
	tile := 2 * time.Hour // config.TileOf for 7d
	now := time.Now()
	c0 := now.Truncate(tile)
	for k := 0; k < 5; k++ {
		var want int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM visits WHERE k = $1 AND at >= $2 AND at < $3", k, c0.Add(-7*24*time.Hour), c0.Add(tile)).Scan(&want); err != nil {
			t.Fatal(err)
		}
		_, got, err := r.read("visits", fmt.Sprint(k), now)
		if err != nil || fmt.Sprint(got["n_7d"]) != fmt.Sprint(want) {
			t.Errorf("visits %d: n_7d %v (%v), SQL %d", k, got["n_7d"], err, want)
		}
	}
}

// waitSnapshot waits until the snapshot's end is durable (the checkpoint
// has a resume position): a sentinel inserted before the slot exists is
// read by the snapshot, maybe before the other tables.
func waitSnapshot(t *testing.T, r *runtime) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if st := r.rt.Status(); st.ResumeLSN != "" && st.ResumeLSN != "0/0" {
			return
		}
		if done, err := r.exited(); done {
			t.Fatalf("waiting for the snapshot: the connector stopped: %v", err)
		}
	}
	t.Fatalf("the snapshot did not complete within 3 minutes: %+v", r.rt.Status())
}
