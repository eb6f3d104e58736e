// Package app wires a connector file into a running tilefeed: store,
// source, runtime and HTTP listener. The tilefeed command and the demo
// share it.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tilefeed/tilefeed/archive"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/serve"
	"github.com/tilefeed/tilefeed/sink/aerospike"
	"github.com/tilefeed/tilefeed/sink/embedded"
	"github.com/tilefeed/tilefeed/sink/split"
	"github.com/tilefeed/tilefeed/transform"
)

// Store is what tilefeed needs from a sink store.
type Store interface {
	connector.Store
	serve.Getter
	Close() error
}

// OpenStore opens the store the connector names, records over
// record.split.bytes split (sink/split).
func OpenStore(ctx context.Context, c *config.Connector) (Store, error) {
	st, err := openBase(ctx, c)
	if err != nil {
		return nil, err
	}
	return split.New(st, splitOptions(c)), nil
}

// splitOptions: the part cache has the read cache's bound.
func splitOptions(c *config.Connector) split.Options {
	cache := c.HTTP.ReadCacheBytes
	if cache == 0 {
		cache = -1
	}
	return split.Options{Bytes: c.Sink.SplitBytes, CacheBytes: cache}
}

// openBase opens the store the connector names.
func openBase(ctx context.Context, c *config.Connector) (Store, error) {
	if c.Sink.Kind == "aerospike" {
		a := c.Sink.Aerospike
		opts := aerospike.Options{Hosts: a.Hosts, Namespace: a.Namespace, User: a.User, Password: string(a.Password),
			TLSName: a.TLSName, Timeout: a.Timeout}
		if a.TLS {
			opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
			if a.TLSCAFile != "" {
				pem, err := os.ReadFile(a.TLSCAFile)
				if err != nil {
					return nil, fmt.Errorf("aerospike.tls.ca.file: %w", err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return nil, fmt.Errorf("aerospike.tls.ca.file %s holds no PEM certificate", a.TLSCAFile)
				}
				opts.TLS.RootCAs = pool
			}
		}
		return aerospike.Open(ctx, opts)
	}
	if err := os.MkdirAll(filepath.Dir(c.Sink.EmbeddedPath), 0o755); err != nil {
		return nil, fmt.Errorf("embedded.path: %w", err)
	}
	return embedded.Open(c.Sink.EmbeddedPath, embedded.Options{MaxRecordBytes: c.Sink.EmbeddedMaxRecordBytes})
}

// Where describes the store for a log line (no secrets).
func Where(c *config.Connector) string {
	if c.Sink.Kind == "aerospike" {
		return strings.Join(c.Sink.Aerospike.Hosts, ",") + " namespace " + c.Sink.Aerospike.Namespace
	}
	return c.Sink.EmbeddedPath
}

// Identity headers name the connector and store behind every answer, so
// that `tilefeed get` uses an answer only from its own connector.
const (
	HeaderConnector = "Tilefeed-Connector"
	HeaderStore     = "Tilefeed-Store"
)

// StoreIdentity names the store without secrets: kind and where.
func StoreIdentity(c *config.Connector) string { return c.Sink.Kind + " " + Where(c) }

func identify(h http.Handler, c *config.Connector) http.Handler {
	store := StoreIdentity(c)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderConnector, c.Name)
		w.Header().Set(HeaderStore, store)
		h.ServeHTTP(w, r)
	})
}

// Running is a started tilefeed.
type Running struct {
	Addr    string // the HTTP listener's address
	Runtime *connector.Runtime
}

// Run runs the connector until ctx ends (nil after a clean stop) or a
// fatal error. started, when not nil, is called once the HTTP listener is
// up.
func Run(ctx context.Context, c *config.Connector, log *slog.Logger, started func(Running)) error {
	for _, w := range c.Warnings {
		log.Warn(w)
	}
	engine, err := transform.Compile(c.Features)
	if err != nil {
		return err
	}
	flt, err := parseFault()
	if err != nil {
		return err
	}
	st, err := openBase(ctx, c)
	if err != nil {
		return err
	}
	defer st.Close()
	if flt != nil {
		log.Warn("fault injection is on", "fault", os.Getenv(faultEnv))
		st = faultStore{Store: st, f: flt}
	}
	// Faults hit the store under the split records, so a crash can fall
	// between a record's parts and its head.
	st = split.New(st, splitOptions(c))
	log.Info("store open", "sink", c.Sink.Kind, "where", Where(c))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := connector.NewMetrics(reg)

	src, err := openSource(ctx, c, st, engine, log, metrics, flt)
	if err != nil {
		return err
	}
	idle := c.Postgres.HeartbeatInterval
	if c.Source.Kind != "postgres" {
		// Progress without changes (a request of duplicates, records that
		// carry no change) is made durable at once: an HTTP request waits
		// for it, and nothing else makes such writes.
		idle = time.Nanosecond
	}
	opts := connector.Options{
		BatchMax: c.Runtime.BatchMax, SnapshotBatchMax: c.Runtime.SnapshotBatchMax, QueueMax: c.Runtime.QueueMax, CacheEntities: c.Runtime.CacheEntities, CacheBytes: c.Runtime.CacheBytes,
		IdleCheckpoint: idle, DeadLetterSet: deadLetterSet(c), LogDeadLetters: c.Runtime.ErrorsLog,
	}
	if a := c.Runtime.Archive; a.Dir != "" {
		w, err := archive.OpenWriter(a.Dir, int64(a.RotateBytes), a.Gzip)
		if err != nil {
			return err
		}
		defer w.Close()
		opts.Archive = w
		log.Info("archiving applied changes", "dir", a.Dir)
	}
	rt := connector.New(c.Name, src, st, engine, log, metrics, opts)
	handler := serve.NewHandler(&serve.Reader{Engine: engine, Store: st, Cache: serve.NewCache(c.HTTP.ReadCacheBytes)}, reg,
		func() any {
			return map[string]any{"runtime": rt.Status(), "source": src.Describe(),
				"sink": map[string]any{"kind": c.Sink.Kind, "where": Where(c)}}
		},
		func() error {
			// Every reason at once: a down sink and a lost source both show.
			var sinkErr error
			if err := rt.Ready(); err != nil {
				sinkErr = fmt.Errorf("%s (%s)", err, c.Sink.Kind)
			}
			return errors.Join(sinkErr, src.Ready())
		})
	if h, ok := src.Source.(http.Handler); ok {
		handler.Handle("POST "+c.Source.HTTPPath, h)
		log.Info("taking Debezium change events", "path", c.Source.HTTPPath)
	}
	ln, err := net.Listen("tcp", c.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", c.HTTP.Listen, err)
	}
	srv := &http.Server{Handler: identify(handler, c), ReadHeaderTimeout: 10 * time.Second}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ln) }()
	log.Info("http listening", "addr", ln.Addr().String())
	if c.HTTP.PprofListen != "" {
		stop, err := servePprof(c.HTTP.PprofListen, log)
		if err != nil {
			_ = srv.Close()
			return err
		}
		defer stop()
	}
	if started != nil {
		started(Running{Addr: ln.Addr().String(), Runtime: rt})
	}

	runErr := rt.Run(ctx)
	if errors.Is(runErr, io.EOF) {
		runErr = nil // the input was read to its end and is durable
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	<-srvDone
	if errors.Is(runErr, context.Canceled) {
		return nil
	}
	return runErr
}

// servePprof serves Go's profiler on addr (debug.pprof.listen), apart
// from the API so that it is never exposed with it; stop ends it.
func servePprof(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug.pprof.listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	log.Info("profiler listening", "addr", ln.Addr().String())
	return func() {
		_ = srv.Close()
		<-done
	}, nil
}

func deadLetterSet(c *config.Connector) string {
	if c.Runtime.ErrorsTolerance == "all" {
		return c.Runtime.DeadLetterSet
	}
	return ""
}

// statusInterval is how often standby status goes to the server:
// TILEFEED_STATUS_INTERVAL (a Go duration) for tests, else the default.
func statusInterval() time.Duration {
	d, _ := time.ParseDuration(os.Getenv("TILEFEED_STATUS_INTERVAL"))
	return d
}

// terminal returns f when it is a terminal (the snapshot draws a progress
// bar on it), else nil.
func terminal(f *os.File) io.Writer {
	if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return f
	}
	return nil
}
