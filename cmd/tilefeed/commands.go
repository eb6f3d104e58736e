package main

import (
	"context"
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
	"strings"
	"time"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/cmd/internal/app"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/connector/debezium"
	"github.com/tilefeed/tilefeed/connector/postgres"
	"github.com/tilefeed/tilefeed/export"
	"github.com/tilefeed/tilefeed/serve"
	"github.com/tilefeed/tilefeed/transform"
)

// command is a parsed command line: the connector file (-c, -name) and
// the arguments that are not flags, in order.
type command struct {
	file, name string
	args       []string
}

// load reads the command's connector file; only the properties needs
// names must resolve their ${env:…} and ${file:…} references.
func (c command) load(needs config.Needs) (*config.Connector, error) {
	return config.LoadFor(c.file, c.name, needs)
}

// parseFlags parses args, whose flags may stand before, between or after
// the other arguments (`get GROUP k=v -at T`).
func parseFlags(name string, args []string, extra func(*flag.FlagSet)) (command, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c command
	fs.StringVar(&c.file, "c", "", "connector file")
	fs.StringVar(&c.name, "name", "", "connector name, for a file without one")
	if extra != nil {
		extra(fs)
	}
	for {
		if err := fs.Parse(args); err != nil {
			return command{}, usageError{name + ": " + err.Error()}
		}
		if args = fs.Args(); len(args) == 0 {
			break
		}
		c.args, args = append(c.args, args[0]), args[1:]
	}
	if c.file == "" {
		return command{}, usageError{name + ": -c FILE is required"}
	}
	return c, nil
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	cmd, err := parseFlags("run", args, nil)
	if err != nil {
		return err
	}
	if len(cmd.args) > 0 {
		return usageError{fmt.Sprintf("run: unexpected argument %q", cmd.args[0])}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := cmd.load(config.Every)
	if err != nil {
		return err
	}
	return app.Run(ctx, c, log, nil)
}

func cmdValidate(ctx context.Context, args []string, stdout io.Writer) error {
	var live bool
	cmd, err := parseFlags("validate", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&live, "live", false, "also check the tables in the database")
	})
	if err != nil {
		return err
	}
	if len(cmd.args) > 0 {
		return usageError{fmt.Sprintf("validate: unexpected argument %q", cmd.args[0])}
	}
	needs := config.Nothing // references are checked for syntax; unset ones are warnings
	if live {
		needs = config.DatabaseProperties
	}
	c, err := cmd.load(needs)
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
	if live && c.Source.Kind != "postgres" {
		fmt.Fprintf(stdout, "warning: -live checks the database of tilefeed.source=postgres only; this connector reads %s\n", c.Source.Kind)
	}
	if live && c.Source.Kind == "postgres" {
		wouldSet, err := postgres.New(c.Postgres, postgres.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil).Check(ctx, engine)
		if err != nil {
			return err
		}
		for _, w := range wouldSet {
			fmt.Fprintln(stdout, "run", w)
		}
	}
	fmt.Fprintf(stdout, "%s: %d feature groups, OK\n", cmd.file, len(c.Features))
	return nil
}

func cmdGet(ctx context.Context, args []string, stdout io.Writer) error {
	var at, features string
	cmd, err := parseFlags("get", args, func(fs *flag.FlagSet) {
		fs.StringVar(&at, "at", "", "read as of this instant, RFC 3339: exact, or an error naming what can be read (default: now, every change applied)")
		fs.StringVar(&features, "features", "", "comma-separated features to read (default all)")
	})
	if err != nil {
		return err
	}
	rest := cmd.args
	if len(rest) < 2 {
		return usageError{"get: want GROUP COLUMN=VALUE…"}
	}
	c, err := cmd.load(config.SinkProperties)
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
	// A running tilefeed holds the embedded store open: ask it first, if
	// it is this connector's (another connector may listen there).
	out, err := getOverHTTP(ctx, c, group, g.Entity, key, at, features)
	var final finalError
	switch {
	case err == nil:
		_, err = stdout.Write(out)
		return err
	case errors.As(err, &final):
		return final.error
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
	q := serve.Query{At: readAt, AsOf: at != "", Now: time.Now()}
	if features != "" {
		q.Features = strings.Split(features, ",")
	}
	ents, err := (&serve.Reader{Engine: engine, Store: st}).ReadQuery(ctx, group, [][]string{key}, q)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(ents[0].JSON())
}

func openStoreForRead(ctx context.Context, c *config.Connector) (app.Store, error) {
	if c.Sink.Kind == "embedded" {
		if _, err := os.Stat(c.Sink.EmbeddedPath); err != nil {
			return nil, fmt.Errorf("embedded store %s: %w (has tilefeed run?)", c.Sink.EmbeddedPath, err)
		}
	}
	return app.OpenStore(ctx, c)
}

func getOverHTTP(ctx context.Context, c *config.Connector, group string, cols, key []string, at, features string) ([]byte, error) {
	host, port, err := net.SplitHostPort(c.HTTP.Listen)
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
	if features != "" {
		q.Set("features", features)
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
	if name, store := resp.Header.Get(app.HeaderConnector), resp.Header.Get(app.HeaderStore); name != c.Name || store != app.StoreIdentity(c) {
		return nil, fmt.Errorf("%s serves connector %q on %q, not %q on %q", u, name, store, c.Name, app.StoreIdentity(c))
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		// The connector's own answer to a bad request: final.
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		return nil, finalError{errors.New(e.Error)}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	return body, nil
}

// finalError is an answer of the connector itself that reading the store
// would not change (a bad key).
type finalError struct{ error }

func (e finalError) Unwrap() error { return e.error }

func cmdExport(ctx context.Context, args []string, stderr io.Writer) error {
	var o export.Options
	var groups, source string
	cmd, err := parseFlags("export", args, func(fs *flag.FlagSet) {
		fs.StringVar(&o.Spine, "spine", "", "the labelled examples, with the entity columns and a timestamp column: Parquet (.parquet) or CSV with a header")
		fs.StringVar(&o.Out, "o", "", "the training set to write: Parquet when it ends in .parquet, CSV otherwise")
		fs.StringVar(&o.TimeColumn, "time", "ts", "the spine's timestamp column")
		fs.StringVar(&groups, "groups", "", "comma-separated feature groups (default: every group with a time column; with -source replay, every group)")
		fs.StringVar(&source, "source", "table", "table: the feature tables as they are now (PostgreSQL); replay: the archive of the changes tilefeed applied, for what it served")
		fs.StringVar(&o.Archive, "archive", "", "with -source replay: tilefeed's archive directory, or Debezium NDJSON files (comma-separated); default: the connector's archive.dir, else a file source's file.path")
	})
	if err != nil {
		return err
	}
	if len(cmd.args) > 0 {
		return usageError{fmt.Sprintf("export: unexpected argument %q", cmd.args[0])}
	}
	if o.Spine == "" || o.Out == "" {
		return usageError{"export: -spine FILE and -o FILE are required"}
	}
	if groups != "" {
		o.Groups = strings.Split(groups, ",")
	}
	if source != "table" && source != "replay" {
		return usageError{fmt.Sprintf("export: -source is table or replay, not %q", source)}
	}
	if o.Archive != "" && source != "replay" {
		return usageError{"export: -archive goes with -source replay"}
	}
	c, err := cmd.load(config.DatabaseProperties)
	if err != nil {
		return err
	}
	o.Progress = stderr
	if source == "replay" {
		if files := replayFiles(c, o.Archive); files != nil {
			dec, err := app.Decoder(c)
			if err != nil {
				return err
			}
			o.Archive = ""
			o.Changes = func(ctx context.Context, fn func(*change.Event) error) error {
				return debezium.ReadFiles(ctx, files, dec, fn)
			}
		}
		return export.FromArchive(ctx, c, o)
	}
	if c.Source.Kind != "postgres" && c.Postgres.Host == "" {
		return fmt.Errorf("export reads the feature tables from PostgreSQL (database.hostname and the other database.* properties); tilefeed.source is %s and names no database: replay the changes tilefeed archived instead (-source replay, archive.dir)", c.Source.Kind)
	}
	return export.FromPostgres(ctx, c, o)
}

// replayFiles returns the Debezium NDJSON files a replay reads: -archive
// when it names files rather than an archive directory, else a file
// source's own files when the connector keeps no archive; nil for an
// archive.
func replayFiles(c *config.Connector, archive string) []string {
	if archive != "" {
		if st, err := os.Stat(archive); err == nil && st.IsDir() {
			return nil
		}
		return strings.Split(archive, ",")
	}
	if c.Runtime.Archive.Dir == "" && c.Source.Kind == "file" {
		return c.Source.Files
	}
	return nil
}

func cmdReference(stdout io.Writer) error {
	_, err := fmt.Fprint(stdout, config.Reference())
	return err
}
