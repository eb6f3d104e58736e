package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/connector/postgres"
	"github.com/tilefeed/tilefeed/serve"
	"github.com/tilefeed/tilefeed/sink/aerospike"
	"github.com/tilefeed/tilefeed/sink/embedded"
	"github.com/tilefeed/tilefeed/transform"
)

func parseFlags(name string, args []string, extra func(*flag.FlagSet)) (*flag.FlagSet, string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	file := fs.String("c", "", "connector file")
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, "", usageError{err.Error()}
	}
	if *file == "" {
		return nil, "", usageError{name + ": -c FILE is required"}
	}
	return fs, *file, nil
}

// store is what the command needs from a sink store.
type store interface {
	connector.Store
	serve.Getter
	Close() error
}

func openStore(ctx context.Context, c *config.Connector) (store, error) {
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
	return embedded.Open(c.Sink.EmbeddedPath, embedded.Options{})
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	_, file, err := parseFlags("run", args, nil)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := config.Load(file)
	if err != nil {
		return err
	}
	for _, w := range c.Warnings {
		log.Warn(w)
	}
	engine, err := transform.Compile(c.Features)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, c)
	if err != nil {
		return err
	}
	defer st.Close()
	log.Info("store open", "sink", c.Sink.Kind, "where", storeWhere(c))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := connector.NewMetrics(reg)

	cp, _, _, err := connector.LoadCheckpoint(ctx, st, c.Name)
	if err != nil {
		return err
	}
	src := postgres.New(c.Postgres, postgres.Options{LagInterval: 5 * time.Second}, log, metrics)
	if err := src.Setup(ctx, engine, cp.Resume); err != nil {
		return err
	}
	rt := connector.New(c.Name, src, st, engine, log, metrics, connector.Options{
		BatchMax: c.Runtime.BatchMax, QueueMax: c.Runtime.QueueMax, CacheEntities: c.Runtime.CacheEntities,
		IdleCheckpoint: c.Postgres.HeartbeatInterval,
	})

	handler := serve.NewHandler(&serve.Reader{Engine: engine, Store: st}, reg,
		func() any {
			return map[string]any{"runtime": rt.Status(), "source": map[string]any{
				"kind": "postgres", "topic_prefix": c.Postgres.TopicPrefix, "host": c.Postgres.Host,
				"database": c.Postgres.DBName, "slot": c.Postgres.SlotName, "publication": c.Postgres.PublicationName,
				"connected": src.Connected()}, "sink": c.Sink.Kind}
		},
		func() error {
			s := rt.Status()
			switch {
			case !src.Connected():
				return fmt.Errorf("source: not connected to replication slot %q", c.Postgres.SlotName)
			case !s.SinkOK:
				return fmt.Errorf("sink (%s): %s", c.Sink.Kind, s.LastError)
			}
			return nil
		})
	ln, err := net.Listen("tcp", c.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", c.HTTP.Listen, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ln) }()
	log.Info("http listening", "addr", ln.Addr().String())

	runErr := rt.Run(ctx)
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	<-srvDone
	if errors.Is(runErr, context.Canceled) {
		return nil
	}
	return runErr
}

func storeWhere(c *config.Connector) string {
	if c.Sink.Kind == "aerospike" {
		return strings.Join(c.Sink.Aerospike.Hosts, ",") + " namespace " + c.Sink.Aerospike.Namespace
	}
	return c.Sink.EmbeddedPath
}

func cmdValidate(ctx context.Context, args []string, stdout io.Writer) error {
	var live bool
	_, file, err := parseFlags("validate", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&live, "live", false, "also check the tables in the database")
	})
	if err != nil {
		return err
	}
	c, err := config.Load(file)
	if err != nil {
		return err
	}
	for _, w := range c.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	engine, err := transform.Compile(c.Features)
	if err != nil {
		return err
	}
	if live {
		if err := postgres.New(c.Postgres, postgres.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil).Check(ctx, engine); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%s: %d feature groups, OK\n", file, len(c.Features))
	return nil
}

func cmdGet(ctx context.Context, args []string, stdout io.Writer) error {
	var at string
	fs, file, err := parseFlags("get", args, func(fs *flag.FlagSet) {
		fs.StringVar(&at, "at", "", "read time, RFC 3339 (default now)")
	})
	if err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) < 2 {
		return usageError{"get: want GROUP COLUMN=VALUE…"}
	}
	c, err := config.Load(file)
	if err != nil {
		return err
	}
	engine, err := transform.Compile(c.Features)
	if err != nil {
		return err
	}
	group := rest[0]
	g := engine.Group(group)
	if g == nil {
		return serve.ErrUnknownGroup{Group: group}
	}
	given := map[string]string{}
	for _, kv := range rest[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return usageError{fmt.Sprintf("get: %q is not COLUMN=VALUE", kv)}
		}
		given[k] = v
	}
	key := make([]string, len(g.Entity))
	for i, col := range g.Entity {
		v, ok := given[col]
		if !ok {
			return fmt.Errorf("get: group %s is keyed by %s; %s is missing", group, strings.Join(g.Entity, ", "), col)
		}
		key[i] = v
	}
	// A running tilefeed holds the embedded store open: ask it first.
	if out, err := getOverHTTP(ctx, c.HTTP.Listen, group, g.Entity, key, at); err == nil {
		_, err = stdout.Write(out)
		return err
	}
	readAt := time.Now()
	if at != "" {
		if readAt, err = time.Parse(time.RFC3339Nano, at); err != nil {
			return fmt.Errorf("-at %q is not an RFC 3339 time", at)
		}
	}
	st, err := openStoreForRead(ctx, c)
	if err != nil {
		return err
	}
	defer st.Close()
	ents, err := (&serve.Reader{Engine: engine, Store: st}).Read(ctx, group, [][]string{key}, readAt)
	if err != nil {
		return err
	}
	e := ents[0]
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"group": e.Group, "entity": e.Key, "found": e.Found, "as_of": e.At,
		"updated_at": e.UpdatedAt, "position": e.Position, "features": e.FeatureMap()})
}

func openStoreForRead(ctx context.Context, c *config.Connector) (store, error) {
	if c.Sink.Kind == "embedded" {
		if _, err := os.Stat(c.Sink.EmbeddedPath); err != nil {
			return nil, fmt.Errorf("embedded store %s: %w (has tilefeed run?)", c.Sink.EmbeddedPath, err)
		}
	}
	return openStore(ctx, c)
}

func getOverHTTP(ctx context.Context, listen, group string, cols, key []string, at string) ([]byte, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, err
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	q := url.Values{}
	for i, col := range cols {
		q.Set(col, key[i])
	}
	if at != "" {
		q.Set("at", at)
	}
	u := "http://" + net.JoinHostPort(host, port) + "/v1/features/" + url.PathEscape(group) + "?" + q.Encode()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	return body, nil
}

func cmdReference(stdout io.Writer) error {
	_, err := fmt.Fprint(stdout, config.Reference())
	return err
}
