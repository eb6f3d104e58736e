package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/serve"
)

// BenchmarkReadBusy reads the busy card of TestBusyEntity (100k
// transactions in 30 days; exact 30-day count, max and distinct, lifetime
// min; its record split in parts) over HTTP with a keep-alive client, as
// the command serves it: quiet (no writes) and while the card takes 50
// transactions a second. It prints the latency percentiles of each, on
// the embedded store and, with AEROSPIKE_HOSTS, on Aerospike.
func BenchmarkReadBusy(b *testing.B) {
	b.Run("store=embedded", func(b *testing.B) { benchReadBusy(b, false) })
	b.Run("store=aerospike", func(b *testing.B) { benchReadBusy(b, true) })
}

func benchReadBusy(b *testing.B, onAerospike bool) {
	conn, db := benchDB(b)
	c, err := config.Parse(busyConnector(db, filepath.Join(b.TempDir(), "store.db")), func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	if onAerospike {
		withAerospike(b, c)
	}
	ctx := context.Background()
	r := startBench(b, c, nil)
	defer r.stop(b)
	for i := 0; i < busyEvents; i += 5000 {
		if _, err := conn.Exec(ctx, `INSERT INTO transactions (card_id, merchant, amount, status, created_at)
			SELECT 7, 'merchant-' || i, (i * 7919 % 1000003) / 100.0, 'ok', now() - (i * interval '25 seconds')
			FROM generate_series($1::int, $2::int) i`, i+1, i+5000); err != nil {
			b.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Minute); r.rt.Status().ChangesTotal < busyEvents; {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d changes applied", r.rt.Status().ChangesTotal, busyEvents)
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv := httptest.NewServer(serve.NewHandler(r.reader, prometheus.NewRegistry(), func() any { return nil }, func() error { return nil }))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	get := func() time.Duration {
		start := time.Now()
		resp, err := client.Get(srv.URL + "/v1/features/busy?card_id=7")
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"n_30d"`) {
			b.Fatalf("GET: %d %s", resp.StatusCode, body)
		}
		return time.Since(start)
	}
	const reads = 2000
	measure := func() []time.Duration {
		lat := make([]time.Duration, reads)
		for i := range lat {
			lat[i] = get()
		}
		slices.Sort(lat)
		return lat
	}
	get() // the first read decodes the record
	// Let the drain's garbage go and its last checkpoints land: quiet
	// means nothing else is going on.
	time.Sleep(2 * time.Second)
	goruntime.GC()
	b.ResetTimer()
	quiet := measure()
	var writes atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := conn.Exec(ctx, `INSERT INTO transactions (card_id, merchant, amount, status, created_at)
				VALUES (7, 'merchant-new-' || $1::text, 1.00, 'ok', now())`, fmt.Sprint(i)); err != nil {
				return
			}
			writes.Add(1)
		}
	}()
	busy := measure()
	close(stop)
	<-done
	b.StopTimer()
	pct := func(lat []time.Duration, p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(quiet, 0.5), "quiet_p50_ms")
	b.ReportMetric(pct(quiet, 0.99), "quiet_p99_ms")
	b.ReportMetric(pct(busy, 0.5), "writing_p50_ms")
	b.ReportMetric(pct(busy, 0.99), "writing_p99_ms")
	b.ReportMetric(float64(writes.Load()), "writes")
	b.ReportMetric(loadAverage(), "loadavg_1m")
}
