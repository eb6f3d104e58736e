package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"

	"github.com/tilefeed/tilefeed/connector/postgres"
	"github.com/tilefeed/tilefeed/export"
	"github.com/tilefeed/tilefeed/transform"
)

// BenchmarkExport: a training set over a 5M-row table of 10k cards (40
// days) for spines of 100k and 1M rows (random cards and instants in the
// last 30 days), printed beside a COPY of the table in the same run, with
// peak RSS and the load average.
func BenchmarkExport(b *testing.B) {
	conn, db := benchDB(b)
	const rows = 5_000_000 // #10: "a 5M-row source table"
	fillTransactions(b, conn, rows, 97)
	c := benchConnector(b, db)
	engine, err := transform.Compile(c.Features)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		n   int
		out string
	}{{100_000, "csv"}, {1_000_000, "csv"}, {1_000_000, "parquet"}} {
		n := tc.n
		b.Run(fmt.Sprintf("spine=%d/out=%s", n, tc.out), func(b *testing.B) {
			dir := b.TempDir()
			spine := filepath.Join(dir, "spine.csv")
			f, err := os.Create(spine)
			if err != nil {
				b.Fatal(err)
			}
			w := bufio.NewWriter(f)
			fmt.Fprintln(w, "card_id,ts,label")
			now := time.Now()
			for i := 0; i < n; i++ {
				at := now.Add(-time.Duration((uint64(i)*2654435761)%(30*24*3600)) * time.Second)
				fmt.Fprintf(w, "%d,%s,%d\n", (i*7919)%10000, at.UTC().Format(time.RFC3339), i%2)
			}
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			f.Close()
			var elapsed, copyElapsed time.Duration
			var peakKB int64
			for i := 0; i < b.N; i++ {
				copyStart := time.Now()
				if _, err := conn.PgConn().CopyTo(context.Background(), io.Discard, "COPY transactions TO STDOUT"); err != nil {
					b.Fatal(err)
				}
				copyElapsed += time.Since(copyStart)
				debug.FreeOSMemory()
				hwm := resetPeakRSS()
				sampler := sampleRSS()
				start := time.Now()
				tr, err := postgres.OpenTableReader(context.Background(), c.Postgres)
				if err != nil {
					b.Fatal(err)
				}
				err = export.Run(context.Background(), engine, tr, export.Options{Spine: spine, Out: filepath.Join(dir, "out."+tc.out), Groups: []string{"card_activity"}})
				tr.Close()
				if err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(start)
				peak, _ := sampler()
				if hwm {
					peak = max(peak, statusKB("VmHWM"))
				}
				peakKB = max(peakKB, peak)
			}
			b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "spine_rows/s")
			b.ReportMetric(float64(rows*b.N)/elapsed.Seconds(), "table_rows/s")
			b.ReportMetric(float64(rows*b.N)/copyElapsed.Seconds(), "copy_rows/s")
			b.ReportMetric(float64(peakKB)/1024, "peak_rss_MB")
			b.ReportMetric(loadAverage(), "loadavg_1m")
		})
	}
}
