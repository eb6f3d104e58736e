package debezium_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/connector/debezium"
)

// benchOrders scripts a snapshot of rows and then txns transactions of
// inserts, updates and deletes over 1,000 customers.
func benchOrders(rows, txns int) *orders {
	o := newOrders()
	o.snapshot(rows)
	rng := rand.New(rand.NewPCG(1, 2))
	next := rows + 1
	for i := 0; i < txns; i++ {
		switch p := rng.IntN(10); {
		case p < 5:
			o.txn(ins(next, rng.IntN(1000), "12.34"), ins(next+1, rng.IntN(1000), "5.00"))
			next += 2
		case p < 8:
			id := 1 + rng.IntN(next-1)
			if o.rows[id] != nil {
				o.txn(upd(id, rng.IntN(1000), "7.77"))
			}
		default:
			id := 1 + rng.IntN(next-1)
			if o.rows[id] != nil {
				o.txn(del(id))
			}
		}
	}
	return o
}

// BenchmarkDebeziumFileReplay replays an NDJSON file of schemaless
// Debezium events (a 50,000-row snapshot, then ~60,000 streamed changes)
// into the embedded store and reports changes per second.
func BenchmarkDebeziumFileReplay(b *testing.B) {
	o := benchOrders(50000, 40000)
	e, dec := ordersEngine(b)
	path := writeLines(b, o.lines)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := 0; i < b.N; i++ {
		st := openOrdersStore(b)
		rt := newRuntime(b, debezium.NewFile([]string{path}, dec, log), st, e, connector.Options{})
		start := time.Now()
		if err := rt.Run(context.Background()); !errors.Is(err, io.EOF) {
			b.Fatal(err)
		}
		n := rt.Status().ChangesTotal
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "changes/s")
		b.ReportMetric(float64(n), "changes")
	}
}

// BenchmarkDebeziumHTTP posts the same events as Debezium Server does with
// batching on (500 per request, one request at a time, each answered once
// durable) and reports changes per second.
func BenchmarkDebeziumHTTP(b *testing.B) {
	o := benchOrders(50000, 40000)
	e, dec := ordersEngine(b)
	var bodies [][]byte
	for i := 0; i < len(o.lines); i += 500 {
		bodies = append(bodies, []byte("["+strings.Join(o.lines[i:min(i+500, len(o.lines))], ",")+"]"))
	}
	for i := 0; i < b.N; i++ {
		st := openOrdersStore(b)
		src := debezium.NewHTTP(dec, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Minute)
		srv := httptest.NewServer(src)
		rt := newRuntime(b, src, st, e, connector.Options{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- rt.Run(ctx) }()
		start := time.Now()
		for j := 0; j < len(bodies); {
			resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(bodies[j]))
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				j++
			} else {
				time.Sleep(5 * time.Millisecond)
			}
		}
		elapsed := time.Since(start)
		n := rt.Status().ChangesTotal
		cancel()
		<-done
		srv.Close()
		b.ReportMetric(float64(n)/elapsed.Seconds(), "changes/s")
	}
}
