package integration

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// readingsFeature is a group on a table without a primary key, which the
// snapshot reads in ctid ranges.
const readingsFeature = `{"name": "readings", "table": "public.readings", "entity": ["k"],
     "aggregations": [{"name": "n", "function": "count"}, {"name": "total", "function": "sum", "column": "v"}]},`

// snapshotDB fills a database for the snapshot tests: 6,000 transactions
// and their workload history, and 20,000 readings (no primary key).
func snapshotDB(t *testing.T) (*pgx.Conn, string, *workload) {
	t.Helper()
	conn, db := newDB(t)
	ctx := context.Background()
	for _, stmt := range []string{
		`CREATE TABLE readings (k int NOT NULL, v int NOT NULL)`,
		`ALTER TABLE readings REPLICA IDENTITY FULL`,
		`INSERT INTO readings SELECT g % 10, g % 97 FROM generate_series(1, 20000) g`,
		`INSERT INTO transactions (card_id, merchant, amount, status, created_at)
			SELECT g % 40, 'm' || (g % 7), (g % 50000) / 100.0, CASE WHEN g % 6 = 0 THEN 'declined' ELSE 'approved' END,
			       now() - make_interval(secs => g * 500)
			FROM generate_series(1, 6000) g`,
		`ANALYZE readings`, `ANALYZE transactions`,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	w := newWorkload(conn, 21)
	w.run(t, 200)
	return conn, db, w
}

// snapshotConnector is the tests' connector with a snapshot mode, small
// chunks and threads.
func snapshotConnector(db, store, listen, mode string, fetch, threads int) []byte {
	raw := strings.Replace(string(connectorJSON(db, store, listen)), `"snapshot.mode": "no_data"`,
		fmt.Sprintf(`"snapshot.mode": %q, "snapshot.fetch.size": %d, "snapshot.max.threads": %d`, mode, fetch, threads), 1)
	return []byte(strings.Replace(raw, `"features": [`, `"features": [
    `+readingsFeature, 1))
}

// readingsWriter changes readings at random until stop is called.
func readingsWriter(t *testing.T, db string, seed uint64) (stop func()) {
	t.Helper()
	conn, err := reconnect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	_, stopWriting := untilStopped(func() error {
		var stmt string
		switch rng.IntN(4) {
		case 0:
			stmt = fmt.Sprintf("INSERT INTO readings VALUES (%d, %d)", rng.IntN(10), rng.IntN(1000))
		case 1:
			stmt = fmt.Sprintf("UPDATE readings SET v = v + 1 WHERE k = %d AND v = %d", rng.IntN(10), rng.IntN(97))
		case 2:
			stmt = fmt.Sprintf("UPDATE readings SET k = %d WHERE k = %d AND v = %d", rng.IntN(10), rng.IntN(10), rng.IntN(97))
		default:
			stmt = fmt.Sprintf("DELETE FROM readings WHERE k = %d AND v = %d", rng.IntN(10), rng.IntN(97))
		}
		if _, err := conn.Exec(context.Background(), stmt); err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond)
		return nil
	})
	return func() {
		err := stopWriting()
		conn.Close(context.Background())
		if err != nil {
			t.Errorf("readings writer: %v", err)
		}
	}
}

// settle stops the writers that ran during a snapshot, lets the main
// workload go on where they left the rows, then checks every feature
// against SQL once tilefeed has caught up.
func settle(t *testing.T, conn *pgx.Conn, read featureReader, w, concurrent *workload, stopWorkload func() error, stopReadings func()) {
	t.Helper()
	time.Sleep(500 * time.Millisecond)
	stopReadings()
	if err := stopWorkload(); err != nil {
		t.Fatal(err)
	}
	w.live = concurrent.live
	w.run(t, 50)
	waitSync(t, conn, read, 1)
	verify(t, conn, read, soon(), w.cards)
	verifyReadings(t, conn, read)
}

// verifyReadings compares the readings features with SQL.
func verifyReadings(t *testing.T, conn *pgx.Conn, read featureReader) {
	t.Helper()
	for k := 0; k < 10; k++ {
		var n int64
		var total string
		if err := conn.QueryRow(context.Background(), "SELECT count(*), coalesce(sum(v), 0)::text FROM readings WHERE k = $1", k).Scan(&n, &total); err != nil {
			t.Fatal(err)
		}
		_, got, err := read("readings", strconv.Itoa(k), soon())
		if err != nil || !sameValue(got["n"], n) || !sameValue(got["total"], total) {
			t.Errorf("readings %d: n %v total %v (%v), SQL %d %s", k, got["n"], got["total"], err, n, total)
		}
	}
}

// TestSnapshotChunked: small chunks, two threads (the transactions table
// cut into two key ranges, the readings table, without a primary key, into
// block ranges), concurrent writes to both during the snapshot; afterwards
// every feature equals SQL.
func TestSnapshotChunked(t *testing.T) {
	conn, db, w := snapshotDB(t)
	c := loadConnector(t, snapshotConnector(db, storePath(t), "127.0.0.1:0", "initial", 97, 2))
	concurrent := ownWorkload(t, db, 22)
	concurrent.live = append([]int64{}, w.live...)
	_, stopWorkload := concurrent.background(2, 0)
	stopReadings := readingsWriter(t, db, 1)
	r := startRuntime(t, c)
	defer r.stop(t)
	waitSnapshot(t, r)
	settle(t, conn, r.read, w, concurrent, stopWorkload, stopReadings)
}

var chunkLine = regexp.MustCompile(`msg="snapshot: chunk" table=(\S+) chunk=\d+ rows=(\d+)`)

// rowsRead sums the rows of the "snapshot: chunk" log lines per table.
func rowsRead(log string) map[string]int {
	out := map[string]int{}
	for _, m := range chunkLine.FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(m[2])
		out[m[1]] += n
	}
	return out
}

// TestSnapshotCrashResume kills the real binary in the middle of a
// snapshot (two threads, small chunks) while the database is written to,
// and restarts it: the snapshot resumes (chunks durable before the crash
// are not read again, staged ones are replayed from the sink, the rest is
// read at a new consistent point, the table without a key again whole
// after its rows are retracted), and every feature equals SQL.
func TestSnapshotCrashResume(t *testing.T) {
	conn, db, w := snapshotDB(t)
	listen := freeAddr(t)
	raw := snapshotConnector(db, storePath(t), listen, "initial", 211, 2)
	raw = []byte(strings.Replace(string(raw), `"batch.max.changes": 700`, `"batch.max.changes": 150`, 1))
	p := newProcess(t, raw, listen)
	concurrent := ownWorkload(t, db, 23)
	concurrent.live = append([]int64{}, w.live...)
	_, stopWorkload := concurrent.background(1, 5*time.Millisecond)
	stopReadings := readingsWriter(t, db, 2)
	// The 40th write to the checkpoint set (checkpoints and snapshot
	// progress alike) is in the middle of the snapshot.
	p.spawn([]string{"TILEFEED_FAULT=after-checkpoint:40"})
	if !p.waitExit(90 * time.Second) {
		t.Fatalf("the fault did not fire; log:\n%s", p.log())
	}
	first := p.log()
	if strings.Contains(first, "snapshot complete") {
		t.Fatalf("the snapshot completed before the fault; log:\n%s", lastLines(first, 20))
	}
	p.start()
	defer p.term()
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if st := p.status(); st.Runtime.ResumeLSN != "" && st.Runtime.ResumeLSN != "0/0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the resumed snapshot did not complete; log:\n%s", lastLines(p.log(), 30))
		}
	}
	settle(t, conn, p.read, w, concurrent, stopWorkload, stopReadings)

	second := strings.TrimPrefix(p.log(), first)
	if !strings.Contains(second, "resuming the snapshot") {
		t.Errorf("the restart did not resume the snapshot; log:\n%s", lastLines(second, 30))
	}
	before, after := rowsRead(first), rowsRead(second)
	t.Logf("rows read before the crash %v, after %v", before, after)
	// Finished chunks are not read again: the two runs together read the
	// keyed table about once (it grows a little meanwhile).
	var total int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM transactions").Scan(&total); err != nil {
		t.Fatal(err)
	}
	tx := "public.transactions"
	if before[tx] == 0 || after[tx] == 0 || before[tx]+after[tx] > total+2000 {
		t.Errorf("transactions: %d rows read before the crash, %d after, %d in the table: finished chunks read again?", before[tx], after[tx], total)
	}
	if !strings.Contains(second, "reading again a table without a usable key") || !strings.Contains(second, "retraction=true") {
		t.Errorf("the table without a key was not retracted and read again; log:\n%s", lastLines(second, 40))
	}
	metrics := httpGet(t, "http://"+listen+"/metrics")
	for _, want := range []string{`tilefeed_snapshot_rows_done{table="public.transactions"}`, `tilefeed_snapshot_rows_estimated{table="public.readings"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
