package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tilefeed/tilefeed/connector/postgres"
)

// TestIdleSlotLagBounded: the captured tables stay idle while another
// database on the same server writes a lot of WAL. Heartbeats (keepalive
// replies, made durable and acknowledged) keep the slot advancing, so the
// WAL it holds back stays bounded instead of growing with everything
// written.
func TestIdleSlotLagBounded(t *testing.T) {
	conn, db := newDB(t)
	c := loadConnector(t, connectorJSON(db, storePath(t), "127.0.0.1:0"))
	r := startRuntime(t, c)
	defer r.stop(t)
	ctx := context.Background()
	other, err := cluster.CreateDatabase(ctx, db+"_busy")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, "CREATE TABLE noise (id serial PRIMARY KEY, pad text)"); err != nil {
		t.Fatal(err)
	}
	const bound = 8 << 20
	var written, maxLag int64
	start := time.Now()
	var startLSN string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&startLSN); err != nil {
		t.Fatal(err)
	}
	for time.Since(start) < 12*time.Second {
		if _, err := other.Exec(ctx, "INSERT INTO noise (pad) SELECT repeat('x', 1000) FROM generate_series(1, 50)"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		if time.Since(start) < 3*time.Second {
			continue // warm-up: the first heartbeat
		}
		var lag int64
		if err := conn.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1`,
			c.Postgres.SlotName).Scan(&lag); err != nil {
			t.Fatal(err)
		}
		maxLag = max(maxLag, lag)
	}
	if err := conn.QueryRow(ctx, "SELECT (pg_current_wal_lsn() - $1::pg_lsn)::bigint", startLSN).Scan(&written); err != nil {
		t.Fatal(err)
	}
	t.Logf("WAL written by the other database: %d MiB; largest slot lag after warm-up: %d KiB (bound %d KiB)", written>>20, maxLag>>10, bound>>10)
	if written < 3*bound {
		t.Fatalf("only %d bytes of WAL written: the test proves nothing", written)
	}
	// Without heartbeats the lag would grow to everything written; with
	// them it stays near what a few status intervals write, even when the
	// machine is busy with other tests.
	if maxLag > max(bound, written/3) {
		t.Errorf("slot lag reached %d bytes, over the bound of %d", maxLag, max(bound, written/3))
	}
}

// TestSlotDroppedWhileStreaming: dropping the slot under a running tilefeed
// stops it with a fatal error that names the slot, not a silent restart.
func TestSlotDroppedWhileStreaming(t *testing.T) {
	conn, db := newDB(t)
	c := loadConnector(t, connectorJSON(db, storePath(t), "127.0.0.1:0"))
	r := startRuntime(t, c)
	w := newWorkload(conn, 8)
	w.run(t, 10)
	waitSync(t, conn, r.read, 1)
	ctx := context.Background()
	_, err := conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, c.Postgres.SlotName)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		_, err = conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", c.Postgres.SlotName)
		if err == nil || i > 50 {
			break
		}
		time.Sleep(20 * time.Millisecond) // the walsender is still exiting, or tilefeed reconnected
		conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, c.Postgres.SlotName)
	}
	if err != nil {
		t.Fatalf("drop slot: %v", err)
	}
	done, err := r.waitExit(60 * time.Second)
	if !done {
		t.Fatal("tilefeed kept running after its slot was dropped")
	}
	if !errors.Is(err, postgres.ErrSlotLost) || !strings.Contains(err.Error(), c.Postgres.SlotName) {
		t.Errorf("want ErrSlotLost naming the slot, got %v", err)
	}
	r.store.Close()
}

// TestHugeTransaction streams one transaction of 1,000,000 rows through the
// real binary and reports its peak RSS: memory stays bounded well below the
// size of the transaction (reading blocks on the bounded queue). The rows
// fall on 100 entities, so the feature state itself stays small and the
// figure measures the pipeline.
func TestHugeTransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	conn, db := newDB(t)
	ctx := context.Background()
	listen := freeAddr(t)
	raw := strings.Replace(string(connectorJSON(db, storePath(t), listen)), `"features": [`, `"features": [
    {"name": "bulk", "table": "public.bulk", "entity": ["k"], "time": "at",
     "aggregations": [{"name": "n_1h", "function": "count", "window": "1h"}, {"name": "total", "function": "sum", "column": "v"},
                      {"name": "n", "function": "count"}]},`, 1)
	raw = strings.Replace(raw, `"batch.max.changes": 700`, `"batch.max.changes": 5000`, 1)
	for _, stmt := range []string{
		`CREATE TABLE bulk (id bigserial PRIMARY KEY, k int NOT NULL, v numeric(12,2) NOT NULL, at timestamptz NOT NULL, pad text)`,
		`ALTER TABLE bulk REPLICA IDENTITY FULL`,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	p := newProcess(t, []byte(raw), listen)
	p.start()
	defer p.kill()
	const rows = 1_000_000
	start := time.Now()
	if _, err := conn.Exec(ctx, `INSERT INTO bulk (k, v, at, pad)
		SELECT g % 100, (g % 1000) / 10.0, now() - make_interval(secs => g % 600), repeat('p', 100)
		FROM generate_series(1, $1) g`, rows); err != nil {
		t.Fatal(err)
	}
	var txBytes int64
	if err := conn.QueryRow(ctx, "SELECT pg_total_relation_size('bulk')").Scan(&txBytes); err != nil {
		t.Fatal(err)
	}
	committed := time.Since(start)
	waitSyncFor(t, conn, p.read, 1, 10*time.Minute)
	applied := time.Since(start) - committed
	rss := peakRSS(t, p.cmd.Process.Pid)
	var want int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM bulk WHERE k = 42").Scan(&want); err != nil {
		t.Fatal(err)
	}
	_, got, err := p.read("bulk", "42", soon())
	if err != nil || fmt.Sprint(got["n"]) != fmt.Sprint(want) {
		t.Errorf("entity 42 counts %v (%v), SQL %d", got["n"], err, want)
	}
	t.Logf("1,000,000-row transaction (%d MiB in the table): committed in %s, streamed and applied in %s (%.0f changes/s); tilefeed peak RSS %d MiB",
		txBytes>>20, committed.Round(time.Millisecond), applied.Round(time.Millisecond), rows/applied.Seconds(), rss>>20)
	if rss > txBytes/2 || rss > 512<<20 {
		t.Errorf("peak RSS %d MiB is not well below the transaction's %d MiB", rss>>20, txBytes>>20)
	}
	if code := p.term(); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
}

// peakRSS reads a process's peak resident set size (VmHWM).
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestSigtermUnderLoad: SIGTERM while changes pour in stops tilefeed within
// a bound, exit 0; after a restart nothing is lost or counted twice.
func TestSigtermUnderLoad(t *testing.T) {
	conn, db := newDB(t)
	listen := freeAddr(t)
	raw := connectorJSON(db, storePath(t), listen)
	p := newProcess(t, raw, listen)
	p.start()
	w := ownWorkload(t, db, 9)
	w.big = true
	_, stopWorkload := w.background(5, 0)
	time.Sleep(2 * time.Second)
	begin := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	code := p.term()
	took := time.Since(begin)
	if code != 0 {
		t.Errorf("exit %d after SIGTERM under load; log:\n%s", code, lastLines(p.log(), 30))
	}
	if took > 30*time.Second { // the runtime's StopTimeout
		t.Errorf("stopping took %s", took)
	}
	time.Sleep(500 * time.Millisecond)
	if err := stopWorkload(); err != nil {
		t.Fatal(err)
	}
	p.start()
	defer p.term()
	waitSync(t, conn, p.read, 1)
	verify(t, conn, p.read, soon(), w.cards)
	t.Logf("stopped %s after SIGTERM under load", took.Round(time.Millisecond))
}

// TestHeartbeatActionQuery: heartbeat.action.query runs on the source at
// every heartbeat interval.
func TestHeartbeatActionQuery(t *testing.T) {
	conn, db := newDB(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE TABLE heartbeat (id int PRIMARY KEY, ts timestamptz)"); err != nil {
		t.Fatal(err)
	}
	raw := strings.Replace(string(connectorJSON(db, storePath(t), "127.0.0.1:0")), `"snapshot.mode"`,
		`"heartbeat.action.query": "INSERT INTO heartbeat VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET ts = now()", "snapshot.mode"`, 1)
	c := loadConnector(t, []byte(raw))
	r := startRuntime(t, c)
	defer r.stop(t)
	var first, last time.Time
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var ts *time.Time
		_ = conn.QueryRow(ctx, "SELECT ts FROM heartbeat WHERE id = 1").Scan(&ts)
		if ts != nil {
			if first.IsZero() {
				first = *ts
			}
			last = *ts
			if last.After(first) {
				return // it ran at least twice
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("heartbeat.action.query did not run twice in 10s (first %v, last %v)", first, last)
}
