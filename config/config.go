package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Connector is a loaded, validated connector file.
type Connector struct {
	// Name is the connector's name; it keys the checkpoint in the sink.
	Name     string
	Source   Source
	Postgres Postgres
	Sink     Sink
	HTTP     HTTP
	Runtime  Runtime
	Features []Feature
	// Warnings lists properties that were accepted but have no effect.
	Warnings []string
}

// Postgres is the source part, under Debezium's property names.
type Postgres struct {
	Host     string // database.hostname
	Port     int    // database.port
	User     string // database.user
	Password Secret // database.password
	DBName   string // database.dbname
	SSLMode  string // database.sslmode
	// TopicPrefix (topic.prefix) names this source; tilefeed writes no
	// topics, but keeps it for logs and the status endpoint.
	TopicPrefix           string
	SlotName              string // slot.name
	PublicationName       string // publication.name
	PublicationAutocreate string // publication.autocreate.mode: all_tables, filtered, disabled
	TableInclude          []*regexp.Regexp
	TableExclude          []*regexp.Regexp
	ColumnInclude         []*regexp.Regexp
	ColumnExclude         []*regexp.Regexp
	SnapshotMode          string // snapshot.mode: initial, initial_only, no_data, always, when_needed
	SnapshotFetch         int    // snapshot.fetch.size: rows per snapshot chunk
	SnapshotThreads       int    // snapshot.max.threads
	// HeartbeatInterval is how often progress on an idle stream is made
	// durable and acknowledged (heartbeat.interval.ms; 0 in Debezium turns
	// heartbeats off, here it means the default of 10s).
	HeartbeatInterval time.Duration
	// HeartbeatActionQuery is run on the source at every heartbeat
	// (heartbeat.action.query).
	HeartbeatActionQuery string
	// ReplicaIdentityAutoset maps a table to the REPLICA IDENTITY tilefeed
	// sets on it at startup (replica.identity.autoset.values).
	ReplicaIdentityAutoset map[string]string
}

// Source chooses where changes come from. Postgres holds the direct
// path's settings; the rest configure the Debezium input path.
type Source struct {
	Kind string // tilefeed.source: postgres, kafka, http, file
	// Kafka is read when Kind is kafka.
	Kafka Kafka
	// HTTPPath is where Debezium Server posts (http.source.path).
	HTTPPath string
	// Files are NDJSON files of change events; "-" is standard input.
	Files []string
	// KeyConverter and ValueConverter are Kafka Connect converter classes.
	KeyConverter, ValueConverter string
	// SchemaRegistryURL and AvroSchemasDir resolve Avro schema ids.
	SchemaRegistryURL string
	AvroSchemasDir    string
	// UnavailablePlaceholder and DecimalHandlingMode are the Debezium
	// connector's settings the decoder must know.
	UnavailablePlaceholder string
	DecimalHandlingMode    string
}

// Kafka configures the Kafka consumer of the Debezium path.
type Kafka struct {
	Brokers          []string
	Topics           []string
	TopicsRegex      *regexp.Regexp
	SecurityProtocol string
	SASLMechanism    string
	SASLUser         string
	SASLPassword     Secret
	// TLSCAFile, TLSCertFile and TLSKeyFile are PEM files: the CA that
	// signed the brokers' certificates (system roots when empty), and a
	// client certificate and key for brokers that ask for one.
	TLSCAFile, TLSCertFile, TLSKeyFile string
	// GroupID, when set, is the consumer group the durable offsets are
	// committed to, for monitoring only: tilefeed resumes from the sink.
	GroupID string
}

// ColumnTypes gathers the features' declared column types by table, as
// decode.Debezium wants them.
func (c *Connector) ColumnTypes() map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, f := range c.Features {
		for col, typ := range f.Columns {
			if out[f.Table] == nil {
				out[f.Table] = map[string]string{}
			}
			out[f.Table][col] = typ
		}
	}
	return out
}

// ConnString renders a libpq connection string. It contains the password:
// never log it.
func (p Postgres) ConnString() string {
	kv := func(k, v string) string {
		return k + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	}
	parts := []string{kv("host", p.Host), kv("port", strconv.Itoa(p.Port)), kv("user", p.User),
		kv("dbname", p.DBName), kv("sslmode", p.SSLMode)}
	if p.Password != "" {
		parts = append(parts, kv("password", string(p.Password)))
	}
	return strings.Join(parts, " ")
}

// Captures reports whether table (schema.name) passes the include and
// exclude lists.
func (p Postgres) Captures(table string) bool {
	if len(p.TableInclude) > 0 && !anyMatch(p.TableInclude, table) {
		return false
	}
	return !anyMatch(p.TableExclude, table)
}

// CapturesColumn reports whether column (schema.table.column) passes the
// column lists.
func (p Postgres) CapturesColumn(column string) bool {
	if len(p.ColumnInclude) > 0 && !anyMatch(p.ColumnInclude, column) {
		return false
	}
	return !anyMatch(p.ColumnExclude, column)
}

func anyMatch(res []*regexp.Regexp, s string) bool {
	for _, re := range res {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

// Sink chooses and configures the store.
type Sink struct {
	Kind         string // "embedded" or "aerospike"
	EmbeddedPath string
	// EmbeddedMaxRecordBytes bounds one record of the embedded store.
	EmbeddedMaxRecordBytes int
	// SplitBytes is the size above which a record is stored split over
	// several records (sink/split).
	SplitBytes int
	Aerospike  Aerospike
}

// Aerospike configures the Aerospike store.
type Aerospike struct {
	Hosts     []string
	Namespace string
	User      string
	Password  Secret
	TLS       bool
	TLSCAFile string
	TLSName   string
	Timeout   time.Duration
}

// HTTP configures the one HTTP listener.
type HTTP struct {
	Listen string
	// PprofListen, when set, is where Go's profiler is served, apart from
	// the API (debug.pprof.listen).
	PprofListen string
	// ReadCacheBytes bounds the decoded records the read API keeps
	// (read.cache.max.bytes); 0 keeps none.
	ReadCacheBytes int
}

// Runtime tunes batching and memory.
type Runtime struct {
	BatchMax int // most changes in one sink write
	QueueMax int // most changes read ahead of the sink
	// SnapshotBatchMax is BatchMax for a batch of snapshot rows.
	SnapshotBatchMax int
	CacheEntities    int // most entity records kept in memory
	CacheBytes       int // most bytes of entity records kept in memory
	// ErrorsTolerance is "none" (stop on a bad change) or "all"
	// (dead-letter it and continue).
	ErrorsTolerance string
	DeadLetterSet   string // set receiving dead-lettered changes
	ErrorsLog       bool   // log each dead-lettered change
	// Archive keeps every applied change in files (archive.*), for
	// training sets that replay what was served.
	Archive Archive
}

// Archive is where applied changes are kept (archive.dir; none when
// empty), how large a file grows before the next (archive.rotate.bytes)
// and whether files are gzip-compressed (archive.compression).
type Archive struct {
	Dir         string
	RotateBytes int
	Gzip        bool
}

// Secret is a string that prints as "******".
type Secret string

func (Secret) String() string { return "******" }

// GoString keeps %#v from printing the secret too.
func (Secret) GoString() string { return `"******"` }

// Format masks the secret under every verb: without it a mistaken verb
// (%d, %t, …) prints the raw string, because fmt's bad-verb path does not
// call String.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' || (verb == 'v' && f.Flag('#')) {
		fmt.Fprint(f, s.GoString())
		return
	}
	fmt.Fprint(f, s.String())
}

// MarshalJSON masks the secret in JSON too (encoding/json, slog's
// JSONHandler).
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// Feature is one feature group: records keyed by Entity, filled from Table.
type Feature struct {
	// Name names the group and the Aerospike set its records live in.
	Name string `json:"name"`
	// Table is the source table, schema-qualified ("public." when omitted).
	Table string `json:"table"`
	// Entity lists the columns whose values key a record.
	Entity []string `json:"entity"`
	// Time is the event-time column; the commit time when empty.
	Time string `json:"time,omitempty"`
	// Where is a filter on the row image, in expr syntax
	// (https://expr-lang.org): status != 'declined' && amount > 0.
	Where string `json:"where,omitempty"`
	// Aggregations are time-window aggregates kept as tiles.
	Aggregations []Aggregation `json:"aggregations,omitempty"`
	// Project lists columns copied into the entity's record as bins.
	Project []string `json:"project,omitempty"`
	// TTL overrides how long an idle entity's record lives ("0" = forever).
	TTL string `json:"ttl,omitempty"`
	// History is how far back before its longest window the group keeps
	// tiles, so that as-of reads can go back that far
	// (docs/point-in-time.md); none by default.
	History string `json:"history,omitempty"`
	// Columns declares the PostgreSQL types of the table's columns
	// ("numeric(10,2)", "timestamptz", "int4[]"), for Debezium records
	// that come without a schema. Optional; unused on the direct path.
	Columns map[string]string `json:"columns,omitempty"`
}

// Aggregation is one windowed aggregate.
type Aggregation struct {
	Name     string `json:"name"`
	Function string `json:"function"`
	Column   string `json:"column,omitempty"`
	// Window is the sliding window ("10m", "24h", "30d"); empty means the
	// entity's whole lifetime.
	Window string `json:"window,omitempty"`
	// Tile overrides the automatic tile size; it must divide Window.
	Tile string `json:"tile,omitempty"`
}

// Functions lists the aggregate functions and whether each needs a column.
var Functions = map[string]bool{
	"count": false, "sum": true, "avg": true, "min": true, "max": true,
	"first": true, "last": true, "distinct": true, "days_since_last": true,
}

// Load reads and validates the connector file at path.
func Load(path string) (*Connector, error) { return LoadAs(path, "") }

// Needs tells which properties a command uses: a ${env:…} or ${file:…}
// reference that does not resolve is an error in those, and a warning in
// the others (whose values stay unset).
type Needs func(property string) bool

// Every property: what `tilefeed run` needs.
func Every(string) bool { return true }

// Nothing: what checking a file offline needs.
func Nothing(string) bool { return false }

// SinkProperties are what reading features from the store needs.
func SinkProperties(p string) bool {
	return strings.HasPrefix(p, "aerospike.") || strings.HasPrefix(p, "embedded.") || p == "tilefeed.sink" || p == "http.listen"
}

// DatabaseProperties are what the live checks of the source database
// need (validate -live).
func DatabaseProperties(p string) bool { return strings.HasPrefix(p, "database.") }

// LoadAs is Load for a file that may lack a name, as a Kafka Connect
// `PUT /connectors/{name}/config` body (a flat property map) does: name
// (the -name flag) is the connector's name then, or else the file's name
// without its extension, with a warning: the name keys the checkpoint, so
// renaming the file would start the connector over. A name in the file
// wins; a different name is an error.
func LoadAs(path, name string) (*Connector, error) { return LoadFor(path, name, Every) }

// LoadFor is LoadAs for a command that uses only the properties needs
// names: references in the others may be unresolvable (`tilefeed get`
// needs no database password).
func LoadFor(path, name string, needs Needs) (*Connector, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read connector file: %w", err)
	}
	fallback, why := name, "-name"
	if name == "" {
		fallback = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		why = "the file name " + filepath.Base(path)
	}
	c, err := parse(b, os.Getenv, fallback, why, needs)
	var se *SyntaxError
	if errors.As(err, &se) {
		return nil, fmt.Errorf("%s:%d:%d: %s", path, se.Line, se.Column, se.Msg)
	}
	if err != nil {
		return nil, fmt.Errorf("connector file %s:\n%w", path, err)
	}
	if name != "" && c.Name != name {
		return nil, fmt.Errorf("connector file %s names the connector %q, -name %q: drop one", path, c.Name, name)
	}
	return c, nil
}

// Parse decodes and validates a connector file. getenv resolves ${env:…}.
// The error joins every problem found, one per line.
func Parse(data []byte, getenv func(string) string) (*Connector, error) {
	return parse(data, getenv, "", "", Every)
}

// parse is Parse; a file without a name takes fallback, which came from
// why (LoadAs), and only the references of the properties needs names
// must resolve.
func parse(data []byte, getenv func(string) string, fallback, why string, needs Needs) (*Connector, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col := position(data, se.Offset)
			return nil, &SyntaxError{Line: line, Column: col, Msg: se.Error()}
		}
		return nil, fmt.Errorf("want a JSON object (the Kafka Connect shape or a flat property map), got %s", jsonKind(data))
	}
	v := &validator{}
	c := &Connector{}
	props := map[string]json.RawMessage{}
	prefix := ""
	if raw, ok := top["config"]; ok {
		prefix = "config."
		if err := json.Unmarshal(raw, &props); err != nil {
			v.addf("config", "must be an object of properties: %v", err)
		}
		for k := range top {
			if k != "name" && k != "config" && k != "features" {
				v.addf(k, "unknown top-level field (want name, config, features)")
			}
		}
	} else {
		for k, raw := range top {
			if k != "features" {
				props[k] = raw
			}
		}
	}
	if raw, ok := top["name"]; ok {
		if err := json.Unmarshal(raw, &c.Name); err != nil {
			v.addf("name", "must be a string")
		}
	}
	strs := map[string]string{}
	unresolved := map[string]bool{} // references that did not resolve, in properties needs does not name
	for k, raw := range props {
		s, err := propString(raw)
		if err != nil {
			v.addf(prefix+k, "%v", err)
			continue
		}
		s, err = resolve(s, getenv)
		if err != nil && !needs(k) {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s%s: %v (unused by this command)", prefix, k, err))
			unresolved[k] = true
			continue
		}
		if err != nil {
			v.addf(prefix+k, "%v", err)
			continue
		}
		strs[k] = s
	}
	if c.Name == "" {
		c.Name = strs["name"]
	}
	fromFallback := c.Name == "" && fallback != ""
	if fromFallback {
		c.Name = fallback
		if !strings.HasPrefix(why, "-") {
			c.Warnings = append(c.Warnings, fmt.Sprintf("name: the file names no connector; using %q from %s. The name keys the checkpoint in the sink: renaming the file would start over. Set \"name\" or -name", fallback, why))
		}
	}
	if c.Name == "" {
		v.addf("name", "is required: it keys the connector's checkpoint in the sink (a flat property map, as Kafka Connect's PUT /connectors/{name}/config takes, has none: add \"name\", or give -name)")
	} else if !nameRE.MatchString(c.Name) {
		from := ""
		if fromFallback {
			from = " (from " + why + ": set \"name\" or -name)"
		}
		v.addf("name", "%q%s: use letters, digits, '.', '_' and '-' only", c.Name, from)
	}
	applyProperties(c, strs, unresolved, prefix, v)
	var broken map[int]bool
	if raw, ok := top["features"]; ok {
		c.Features, broken = decodeFeatures(raw, v)
	} else {
		v.addf("features", "is required: a connector without features writes nothing")
	}
	validateFeatures(c, broken, v)
	if err := v.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// SyntaxError is a connector file that is not JSON, with where.
type SyntaxError struct {
	Line, Column int // 1-based
	Msg          string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// position turns a byte offset (encoding/json's, just past the bad byte)
// into a 1-based line and column.
func position(data []byte, offset int64) (line, col int) {
	offset = max(0, min(offset, int64(len(data))))
	if offset > 0 {
		offset-- // at the offending byte
	}
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// propString accepts the JSON types Kafka Connect accepts for a property.
func propString(raw json.RawMessage) (string, error) {
	var x any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&x); err != nil {
		return "", err
	}
	switch t := x.(type) {
	case string:
		return t, nil
	case json.Number:
		return t.String(), nil
	case bool:
		return strconv.FormatBool(t), nil
	case nil:
		return "", nil
	case []any:
		parts := make([]string, len(t))
		for i, e := range t {
			s, ok := e.(string)
			if !ok {
				return "", errors.New("a list property must hold strings")
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("must be a string, number or boolean, not %T", x)
}

var refRE = regexp.MustCompile(`\$\{(env|file):([^}]*)\}`)

// resolve substitutes ${env:NAME} and ${file:PATH} (or ${file:PATH:KEY} for
// a key of a properties file, as Kafka Connect's FileConfigProvider).
func resolve(s string, getenv func(string) string) (string, error) {
	var firstErr error
	out := refRE.ReplaceAllStringFunc(s, func(m string) string {
		g := refRE.FindStringSubmatch(m)
		switch g[1] {
		case "env":
			val := getenv(g[2])
			if val == "" && firstErr == nil {
				firstErr = fmt.Errorf("${env:%s}: environment variable is not set", g[2])
			}
			return val
		default:
			val, err := readFileRef(g[2])
			if err != nil && firstErr == nil {
				firstErr = err
			}
			return val
		}
	})
	return out, firstErr
}

func readFileRef(ref string) (string, error) {
	if b, err := os.ReadFile(ref); err == nil {
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	i := strings.LastIndex(ref, ":")
	if i < 0 {
		return "", fmt.Errorf("${file:%s}: cannot read the file", ref)
	}
	path, key := ref[:i], ref[i+1:]
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("${file:%s}: cannot read %s", ref, path)
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		k, val, ok := strings.Cut(line, "=")
		if !ok {
			k, val, ok = strings.Cut(line, ":")
		}
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(val), nil
		}
	}
	return "", fmt.Errorf("${file:%s}: no key %q in %s", ref, key, path)
}

// validator collects problems, each under its property path.
type validator struct {
	problems []string
	wrong    map[string]bool // paths whose value had the wrong JSON type
}

func (v *validator) addf(path, format string, args ...any) {
	if v.wrong[path] {
		return // its zero value would only add "is required" and the like
	}
	v.problems = append(v.problems, path+": "+fmt.Sprintf(format, args...))
}

// wrongType reports a value of the wrong JSON type at path; later
// problems of the same path are not reported.
func (v *validator) wrongType(path, format string, args ...any) {
	v.addf(path, format, args...)
	if v.wrong == nil {
		v.wrong = map[string]bool{}
	}
	v.wrong[path] = true
}

func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	errs := make([]error, len(v.problems))
	for i, p := range v.problems {
		errs[i] = errors.New(p)
	}
	return errors.Join(errs...)
}

// ParseDuration reads a window or TTL: a Go duration ("90s", "1h30m") or a
// whole number of days or weeks ("30d", "2w").
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if n := len(s); s[n-1] == 'd' || s[n-1] == 'w' {
		k, err := strconv.Atoi(s[:n-1])
		unit := 24 * time.Hour
		if s[n-1] == 'w' {
			unit *= 7
		}
		// The bound keeps k*unit from overflowing into a negative Duration.
		if err == nil && k >= 0 && int64(k) <= math.MaxInt64/int64(unit) {
			return time.Duration(k) * unit, nil
		}
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	return d, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
