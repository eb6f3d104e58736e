package debezium_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/connector/debezium"
	"github.com/tilefeed/tilefeed/decode"
	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/sink/embedded"
	"github.com/tilefeed/tilefeed/transform"
)

// orders is a scripted Debezium stream of public.orders and its truth.
type orders struct {
	lines []string
	rows  map[int]map[string]any // id → row, the table after the script
	seq0  uint64                 // end of the last commit
	lsn   uint64
	tx    int64
	// copyLSN, when set, is the WAL position of every change, as for the
	// rows of one COPY.
	copyLSN uint64
}

func newOrders() *orders { return &orders{rows: map[int]map[string]any{}, seq0: 0, lsn: 1000, tx: 500} }

func orderRow(id, customer int, amount string) map[string]any {
	return map[string]any{"id": id, "customer_id": customer, "amount": json.Number(amount),
		"created_at": fmt.Sprintf("2026-11-%02dT10:00:00Z", 1+id%20)}
}

// value renders one change event as the JsonConverter writes it without
// schemas. seq0 nil gives sequence [null, lsn].
func (o *orders) value(op string, before, after map[string]any, snapshot string) string {
	o.lsn += 40
	if o.copyLSN != 0 {
		o.lsn = o.copyLSN
	}
	seq := fmt.Sprintf(`[\"%d\",\"%d\"]`, o.seq0, o.lsn)
	if snapshot != "false" {
		seq = fmt.Sprintf(`[null,\"%d\"]`, 900)
	}
	b, _ := json.Marshal(before)
	a, _ := json.Marshal(after)
	return fmt.Sprintf(`{"before":%s,"after":%s,"source":{"version":"2.7.3.Final","connector":"postgresql","name":"shop","ts_ms":1763800000000,"snapshot":%q,"db":"shop","sequence":"%s","schema":"public","table":"orders","txId":%d,"lsn":%d,"xmin":null},"op":%q,"ts_ms":1763800000100}`,
		b, a, snapshot, seq, o.tx, o.lsn, op)
}

func (o *orders) snapshot(n int) {
	for id := 1; id <= n; id++ {
		r := orderRow(id, id%3, fmt.Sprintf("%d.25", id))
		o.rows[id] = r
		mark := "true"
		switch id {
		case 1:
			mark = "first"
		case n:
			mark = "last"
		}
		o.lines = append(o.lines, o.value("r", nil, r, mark))
	}
}

// txn runs one transaction of inserts, updates and deletes of ids.
func (o *orders) txn(ops ...func(o *orders) string) []string {
	o.tx++
	var lines []string
	for _, op := range ops {
		lines = append(lines, op(o))
	}
	o.seq0 = o.lsn + 16 // the commit record ends after the last change
	o.lines = append(o.lines, lines...)
	return lines
}

func ins(id, customer int, amount string) func(o *orders) string {
	return func(o *orders) string {
		r := orderRow(id, customer, amount)
		o.rows[id] = r
		return o.value("c", nil, r, "false")
	}
}

func upd(id, customer int, amount string) func(o *orders) string {
	return func(o *orders) string {
		old := o.rows[id]
		r := orderRow(id, customer, amount)
		o.rows[id] = r
		return o.value("u", old, r, "false")
	}
}

func del(id int) func(o *orders) string {
	return func(o *orders) string {
		old := o.rows[id]
		delete(o.rows, id)
		return o.value("d", old, nil, "false")
	}
}

// truth returns count and sum of amount per customer.
func (o *orders) truth() map[string][2]string {
	type acc struct {
		n   int
		sum float64
	}
	m := map[int]*acc{}
	for _, r := range o.rows {
		c := r["customer_id"].(int)
		if m[c] == nil {
			m[c] = &acc{}
		}
		var f float64
		fmt.Sscan(string(r["amount"].(json.Number)), &f)
		m[c].n++
		m[c].sum += f
	}
	out := map[string][2]string{}
	for c, a := range m {
		out[fmt.Sprint(c)] = [2]string{fmt.Sprint(a.n), fmt.Sprintf("%.2f", a.sum)}
	}
	return out
}

func ordersEngine(t testing.TB) (*transform.Engine, *decode.Debezium) {
	t.Helper()
	e, err := transform.Compile([]config.Feature{{Name: "cust", Table: "public.orders", Entity: []string{"customer_id"}, Time: "created_at",
		Aggregations: []config.Aggregation{{Name: "n", Function: "count"}, {Name: "total", Function: "sum", Column: "amount"}}}})
	if err != nil {
		t.Fatal(err)
	}
	dec := &decode.Debezium{ColumnTypes: map[string]map[string]string{"public.orders": {
		"id": "int4", "customer_id": "int4", "amount": "numeric(10,2)", "created_at": "timestamptz"}}}
	return e, dec
}

// features reads count and sum per customer from the store.
func features(t *testing.T, st *embedded.Store, e *transform.Engine, customers int) map[string][2]string {
	t.Helper()
	keys := make([]sink.Key, customers)
	for i := range keys {
		keys[i] = sink.Key{Set: "cust", ID: fmt.Sprint(i)}
	}
	recs, err := st.Get(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]string{}
	for _, r := range recs {
		s, err := transform.DecodeState(r.Bins)
		if err != nil {
			t.Fatal(err)
		}
		f := e.Group("cust").Read(s, time.Now())
		if n := fmt.Sprint(f[0].Value); n != "0" {
			d := transform.JSONValue(f[1].Value)
			var sum float64
			fmt.Sscan(fmt.Sprint(d), &sum)
			out[r.Key.ID] = [2]string{n, fmt.Sprintf("%.2f", sum)}
		}
	}
	return out
}

func openOrdersStore(t testing.TB) *embedded.Store {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "s.db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newRuntime(t testing.TB, src connector.Source, st connector.Store, e *transform.Engine, opts connector.Options) *connector.Runtime {
	t.Helper()
	opts.IdleCheckpoint = time.Nanosecond
	return connector.New("dbz", src, st, e, slog.New(slog.NewTextHandler(io.Discard, nil)), connector.NewMetrics(prometheus.NewRegistry()), opts)
}

func writeLines(t testing.TB, lines []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.ndjson")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func equalFeatures(t *testing.T, what string, got, want map[string][2]string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: features %v, want %v", what, got, want)
	}
}

// TestFileReplayExactlyOnce replays an NDJSON file of a snapshot and
// streamed transactions, with everything Debezium puts between changes
// (tombstones, transaction metadata, a record with its key) and a run of
// events Debezium delivered twice; a second replay of the same file, and
// of a file cut short, change nothing.
func TestFileReplayExactlyOnce(t *testing.T) {
	o := newOrders()
	o.snapshot(30)
	o.txn(ins(31, 1, "10.10"), ins(32, 2, "20.20"))
	o.txn(upd(5, 1, "99.99"), del(6))
	o.lines = append(o.lines, `{"schema":null,"payload":null}`) // tombstone after the delete
	o.lines = append(o.lines, `{"status":"BEGIN","id":"571:1","event_count":null,"data_collections":null,"ts_ms":1}`)
	dup := o.txn(upd(7, 0, "0.01"), ins(33, 0, "3.33"), del(8))
	o.lines = append(o.lines, dup...) // Debezium delivered these twice
	last := o.txn(upd(31, 2, "11.00"))
	o.lines[len(o.lines)-1] = `{"key":{"id":31},"value":` + last[0] + `}`
	want := o.truth()

	e, dec := ordersEngine(t)
	st := openOrdersStore(t)
	cut := writeLines(t, o.lines[:40])
	full := writeLines(t, o.lines)
	var changes []int64
	for _, path := range []string{cut, full, full} {
		rt := newRuntime(t, debezium.NewFile([]string{path}, dec, slog.New(slog.NewTextHandler(io.Discard, nil))), st, e, connector.Options{BatchMax: 7})
		if err := rt.Run(context.Background()); !errors.Is(err, io.EOF) {
			t.Fatalf("Run: %v, want io.EOF", err)
		}
		changes = append(changes, rt.Status().ChangesTotal)
	}
	equalFeatures(t, "after replays", features(t, st, e, 3), want)
	// 30 snapshot rows + 2 + 2 + 3 + 1 changes, each counted once.
	if changes[1] != 38 || changes[2] != 38 || changes[0] >= 38 {
		t.Errorf("changes applied after each run: %v, want <38, 38, 38", changes)
	}
}

// TestFileBadRecord: an undecodable line stops the replay with an error
// naming the file and line, or goes to the dead letters under
// errors.tolerance=all while the rest is applied.
func TestFileBadRecord(t *testing.T) {
	o := newOrders()
	o.txn(ins(1, 1, "1.00"))
	o.lines = append(o.lines, `{"op":"c","after":{"id":2},"source":{"lsn":"not a number"}}`)
	o.txn(ins(3, 1, "3.00"))
	path := writeLines(t, o.lines)
	e, dec := ordersEngine(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	st := openOrdersStore(t)
	err := newRuntime(t, debezium.NewFile([]string{path}, dec, log), st, e, connector.Options{}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "events.ndjson:2") || !strings.Contains(err.Error(), "source.lsn") {
		t.Errorf("tolerance none: %v, want an error naming events.ndjson:2 and source.lsn", err)
	}

	st = openOrdersStore(t)
	err = newRuntime(t, debezium.NewFile([]string{path}, dec, log), st, e, connector.Options{DeadLetterSet: "dlq"}).Run(context.Background())
	if !errors.Is(err, io.EOF) {
		t.Fatalf("tolerance all: %v", err)
	}
	equalFeatures(t, "tolerance all", features(t, st, e, 3), o.truth())
	recs, err := st.Get(context.Background(), []sink.Key{{Set: "dlq", ID: "dbz/" + path + ":2"}})
	if err != nil || recs[0].Gen == 0 || !strings.Contains(fmt.Sprint(recs[0].Bins["error"]), "source.lsn") {
		t.Errorf("dead letter: %+v (%v)", recs[0], err)
	}
}

// TestSnapshotAfterStreamingRefused: snapshot rows after streamed changes
// would count twice; they stop the connector with ErrSnapshotRestarted.
func TestSnapshotAfterStreamingRefused(t *testing.T) {
	o := newOrders()
	o.txn(ins(1, 1, "1.00"))
	o.snapshot(2)
	e, dec := ordersEngine(t)
	err := newRuntime(t, debezium.NewFile([]string{writeLines(t, o.lines)}, dec, slog.New(slog.NewTextHandler(io.Discard, nil))),
		openOrdersStore(t), e, connector.Options{}).Run(context.Background())
	if !errors.Is(err, debezium.ErrSnapshotRestarted) {
		t.Errorf("Run: %v, want ErrSnapshotRestarted", err)
	}
}

// TestHTTPAnswersOnlyWhenDurable posts batches as Debezium Server's http
// sink does. While the sink fails, requests are answered 503 and nothing
// is lost; the retries are answered 200 once durable and count once.
func TestHTTPAnswersOnlyWhenDurable(t *testing.T) {
	o := newOrders()
	o.snapshot(10)
	snap := o.lines
	o.lines = nil
	t1 := o.txn(ins(11, 1, "5.00"), upd(2, 0, "7.50"))
	t2 := o.txn(del(3))
	want := o.truth()

	e, dec := ordersEngine(t)
	st := openOrdersStore(t)
	var down atomic.Bool
	st.InjectFault(func(op string, _ []sink.Record) error {
		if down.Load() && op == "put" {
			return sink.ErrUnavailable
		}
		return nil
	})
	src := debezium.NewHTTP(dec, slog.New(slog.NewTextHandler(io.Discard, nil)), 300*time.Millisecond)
	srv := httptest.NewServer(src)
	defer srv.Close()
	rt := newRuntime(t, src, st, e, connector.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	post := func(ct string, body string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", ct)
		// Debezium Server forwards record headers, base64-encoded.
		req.Header.Set("X-DEBEZIUM-SOURCE", "c2hvcA==")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	batch := func(lines []string) string { return "[" + strings.Join(lines, ",") + "]" }
	waitStreaming := time.Now().Add(5 * time.Second)
	for post("application/json", batch(snap[:5])) != http.StatusOK {
		if time.Now().After(waitStreaming) {
			t.Fatal("the endpoint never answered 200")
		}
		time.Sleep(10 * time.Millisecond)
	}
	down.Store(true)
	if code := post("application/json", batch(snap[5:])); code != http.StatusServiceUnavailable {
		t.Fatalf("sink down: answered %d, want 503", code)
	}
	down.Store(false)
	// Debezium Server retries the same batch.
	retried := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if post("application/json", batch(snap[5:])) == http.StatusOK {
			retried = true
			break
		}
	}
	if !retried {
		t.Fatal("the retried batch was never answered 200")
	}
	for _, body := range []string{batch(t1), t2[0], t2[0]} { // one request per event, the last one twice
		if code := post("application/json; charset=utf-8", body); code != http.StatusOK {
			t.Fatalf("answered %d", code)
		}
	}
	equalFeatures(t, "after the batches", features(t, st, e, 3), want)
	if got := rt.Status().ChangesTotal; got != 13 {
		t.Errorf("changes applied %d, want 13", got)
	}
	if code := post("text/xml", "<x/>"); code != http.StatusUnsupportedMediaType {
		t.Errorf("text/xml answered %d, want 415", code)
	}
}

// TestHTTPRequestDurableInPartResentAfterRestart: a request of snapshot
// rows is made durable in part (the sink fails after its first batch),
// tilefeed stops, and Debezium Server sends the request again to the new
// process: the rows already durable are recognized, none counts twice.
func TestHTTPRequestDurableInPartResentAfterRestart(t *testing.T) {
	o := newOrders()
	o.snapshot(12)
	first := "[" + strings.Join(o.lines[:2], ",") + "]"
	body := "[" + strings.Join(o.lines[2:], ",") + "]"
	e, dec := ordersEngine(t)
	st := openOrdersStore(t)
	// Once the first request is answered, one more put goes through (a batch
	// of the second request) and every later one fails. Counting from the
	// start instead would depend on how the first request was batched.
	var armed atomic.Bool
	var puts atomic.Int32
	st.InjectFault(func(op string, _ []sink.Record) error {
		if op == "put" && armed.Load() && puts.Add(1) > 1 {
			return sink.ErrUnavailable
		}
		return nil
	})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	post := func(url, body string) (int, string) {
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(msg)
	}
	run := func(wait time.Duration, bodies ...string) (codes []int, changes int64) {
		src := debezium.NewHTTP(dec, log, wait)
		srv := httptest.NewServer(src)
		defer srv.Close()
		rt := newRuntime(t, src, st, e, connector.Options{BatchMax: 4, StopTimeout: 200 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- rt.Run(ctx) }()
		for _, b := range bodies {
			code, msg := post(srv.URL, b)
			for strings.Contains(msg, "not streaming yet") { // the runtime has not started the source
				time.Sleep(10 * time.Millisecond)
				code, msg = post(srv.URL, b)
			}
			codes = append(codes, code)
			if len(codes) == 1 && len(bodies) > 1 {
				armed.Store(true)
			}
		}
		cancel()
		<-done
		cp, _, _, err := connector.LoadCheckpoint(context.Background(), st, "dbz")
		if err != nil {
			t.Fatal(err)
		}
		return codes, cp.Changes
	}
	codes, changes := run(300*time.Millisecond, first, body)
	if codes[0] != http.StatusOK || codes[1] != http.StatusServiceUnavailable || changes <= 2 || changes >= 12 {
		t.Fatalf("first run: answers %v, %d changes durable; want 200, 503 and part of the second request", codes, changes)
	}
	st.InjectFault(nil)
	codes, changes = run(10*time.Second, body)
	if codes[0] != http.StatusOK || changes != 12 {
		t.Errorf("after the restart: answer %v, %d changes; want 200 and the 12 rows once each", codes, changes)
	}
	equalFeatures(t, "after the resend", features(t, st, e, 3), o.truth())
}
