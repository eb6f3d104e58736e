package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tilefeed/tilefeed/config"
)

// noEnv is a getenv that knows no variable.
func noEnv(string) string { return "" }

// fakeEnv returns a getenv backed by m.
func fakeEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// baseProps is the smallest property set that validates.
func baseProps() map[string]any {
	return map[string]any{
		"plugin.name":       "pgoutput",
		"snapshot.mode":     "no_data",
		"database.hostname": "db.internal",
		"database.user":     "tilefeed",
		"database.dbname":   "shop",
	}
}

// baseFeatures is one valid feature group.
func baseFeatures() []any {
	return []any{
		map[string]any{
			"name":   "tx",
			"table":  "transactions",
			"entity": []any{"customer_id"},
			"time":   "created_at",
			"where":  "status != 'declined'",
			"aggregations": []any{
				map[string]any{"name": "n_10m", "function": "count", "window": "10m"},
				map[string]any{"name": "sum_1h", "function": "sum", "column": "amount", "window": "1h"},
				map[string]any{"name": "max_30d", "function": "max", "column": "amount", "window": "30d"},
			},
			"project": []any{"status"},
		},
	}
}

// kafkaShape renders a Kafka Connect connector file.
func kafkaShape(t *testing.T, name string, props map[string]any, features []any) []byte {
	t.Helper()
	top := map[string]any{"config": props}
	if name != "" {
		top["name"] = name
	}
	if features != nil {
		top["features"] = features
	}
	b, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// flatShape renders the flat shape: properties and features side by side.
func flatShape(t *testing.T, name string, props map[string]any, features []any) []byte {
	t.Helper()
	top := map[string]any{}
	for k, v := range props {
		top[k] = v
	}
	if name != "" {
		top["name"] = name
	}
	if features != nil {
		top["features"] = features
	}
	b, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// problems splits a Parse error into its lines.
func problems(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

const completeKafka = `{
  "name": "payments",
  "config": {
    "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
    "plugin.name": "pgoutput",
    "database.hostname": "db.internal",
    "database.port": 6432,
    "database.user": "tilefeed",
    "database.password": "pg-s3cret",
    "database.dbname": "shop",
    "database.sslmode": "verify-full",
    "topic.prefix": "shop",
    "slot.name": "tilefeed_payments",
    "publication.name": "tilefeed_pub",
    "publication.autocreate.mode": "filtered",
    "table.include.list": "public.transactions,public.customers",
    "table.exclude.list": "public.audit_.*",
    "column.exclude.list": "public.transactions.card_number",
    "snapshot.mode": "never",
    "heartbeat.interval.ms": 2500,
    "replica.identity.autoset.values": "transactions:full,public.customers:DEFAULT",
    "aerospike.hosts": "as1, as2:4000",
    "aerospike.namespace": "features",
    "aerospike.user": "tf",
    "aerospike.password": "as-s3cret",
    "aerospike.tls.enabled": true,
    "aerospike.tls.ca.file": "/etc/ca.pem",
    "aerospike.tls.name": "aerospike.internal",
    "aerospike.timeout.ms": 750,
    "http.listen": "127.0.0.1:9000",
    "batch.max.changes": 100,
    "snapshot.batch.max.changes": 3000,
    "queue.max.changes": "400",
    "cache.max.entities": 1000,
    "cache.max.bytes": "8388608",
    "archive.dir": "/var/lib/tilefeed/archive",
    "archive.rotate.bytes": "1048576",
    "archive.compression": "none",
    "heartbeat.action.query": "INSERT INTO hb VALUES (now())",
    "errors.tolerance": "all",
    "errors.deadletter.set": "dlq",
    "errors.log.enable": "false"
  },
  "features": [
    {
      "name": "tx",
      "table": "transactions",
      "entity": ["customer_id"],
      "time": "created_at",
      "where": "status != 'declined' && amount > 0",
      "aggregations": [
        {"name": "n_10m", "function": "count", "window": "10m"},
        {"name": "sum_1h", "function": "sum", "column": "amount", "window": "1h"},
        {"name": "avg_30d", "function": "avg", "column": "amount", "window": "30d", "tile": "1d"},
        {"name": "max_life", "function": "max", "column": "amount"}
      ],
      "project": ["status", "merchant"],
      "ttl": "90d"
    },
    {
      "name": "customer",
      "table": "public.customers",
      "entity": ["id"],
      "project": ["tier"],
      "ttl": "0"
    }
  ]
}`

func TestParseCompleteKafkaShape(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(completeKafka), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Name != "payments" {
		t.Errorf("Name = %q", c.Name)
	}
	pg := c.Postgres
	checks := []struct {
		name      string
		got, want any
	}{
		{"Host", pg.Host, "db.internal"},
		{"Port", pg.Port, 6432},
		{"User", pg.User, "tilefeed"},
		{"Password", string(pg.Password), "pg-s3cret"},
		{"DBName", pg.DBName, "shop"},
		{"SSLMode", pg.SSLMode, "verify-full"},
		{"TopicPrefix", pg.TopicPrefix, "shop"},
		{"SlotName", pg.SlotName, "tilefeed_payments"},
		{"PublicationName", pg.PublicationName, "tilefeed_pub"},
		{"PublicationAutocreate", pg.PublicationAutocreate, "filtered"},
		{"SnapshotMode", pg.SnapshotMode, "no_data"},
		{"HeartbeatInterval", pg.HeartbeatInterval, 2500 * time.Millisecond},
		{"ReplicaIdentityAutoset", pg.ReplicaIdentityAutoset, map[string]string{"public.transactions": "FULL", "public.customers": "DEFAULT"}},
		{"len(TableInclude)", len(pg.TableInclude), 2},
		{"len(TableExclude)", len(pg.TableExclude), 1},
		{"len(ColumnExclude)", len(pg.ColumnExclude), 1},
		{"Sink.Kind", c.Sink.Kind, "aerospike"},
		{"Aerospike.Hosts", c.Sink.Aerospike.Hosts, []string{"as1:3000", "as2:4000"}},
		{"Aerospike.Namespace", c.Sink.Aerospike.Namespace, "features"},
		{"Aerospike.User", c.Sink.Aerospike.User, "tf"},
		{"Aerospike.Password", string(c.Sink.Aerospike.Password), "as-s3cret"},
		{"Aerospike.TLS", c.Sink.Aerospike.TLS, true},
		{"Aerospike.TLSCAFile", c.Sink.Aerospike.TLSCAFile, "/etc/ca.pem"},
		{"Aerospike.TLSName", c.Sink.Aerospike.TLSName, "aerospike.internal"},
		{"Aerospike.Timeout", c.Sink.Aerospike.Timeout, 750 * time.Millisecond},
		{"HTTP.Listen", c.HTTP.Listen, "127.0.0.1:9000"},
		{"Runtime", c.Runtime, config.Runtime{BatchMax: 100, SnapshotBatchMax: 3000, QueueMax: 400, CacheEntities: 1000, CacheBytes: 8 << 20,
			ErrorsTolerance: "all", DeadLetterSet: "dlq", ErrorsLog: false, Archive: config.Archive{Dir: "/var/lib/tilefeed/archive", RotateBytes: 1 << 20}}},
		{"HeartbeatActionQuery", pg.HeartbeatActionQuery, "INSERT INTO hb VALUES (now())"},
		{"Warnings", len(c.Warnings), 0},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.name, ck.got, ck.want)
		}
	}
	if !pg.Captures("public.transactions") || pg.Captures("public.audit_log") || pg.Captures("public.orders") {
		t.Errorf("table lists not applied")
	}
	if pg.CapturesColumn("public.transactions.card_number") || !pg.CapturesColumn("public.transactions.amount") {
		t.Errorf("column lists not applied")
	}

	wantFeatures := []config.Feature{
		{
			Name: "tx", Table: "public.transactions", Entity: []string{"customer_id"}, Time: "created_at",
			Where: "status != 'declined' && amount > 0",
			Aggregations: []config.Aggregation{
				{Name: "n_10m", Function: "count", Window: "10m"},
				{Name: "sum_1h", Function: "sum", Column: "amount", Window: "1h"},
				{Name: "avg_30d", Function: "avg", Column: "amount", Window: "30d", Tile: "1d"},
				{Name: "max_life", Function: "max", Column: "amount"},
			},
			Project: []string{"status", "merchant"},
			TTL:     "90d",
		},
		{Name: "customer", Table: "public.customers", Entity: []string{"id"}, Project: []string{"tier"}, TTL: "0"},
	}
	if !reflect.DeepEqual(c.Features, wantFeatures) {
		t.Errorf("Features =\n%#v\nwant\n%#v", c.Features, wantFeatures)
	}
}

func TestParseFlatShapeAndDefaults(t *testing.T) {
	t.Parallel()
	data := flatShape(t, "payments", baseProps(), baseFeatures())
	c, err := config.Parse(data, noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := config.Postgres{
		Host: "db.internal", Port: config.DefaultPort, User: "tilefeed", DBName: "shop",
		SSLMode: "prefer", TopicPrefix: "payments", SlotName: "debezium", PublicationName: "dbz_publication",
		PublicationAutocreate: "all_tables", SnapshotMode: "no_data", SnapshotFetch: 10240, SnapshotThreads: 1, HeartbeatInterval: 10 * time.Second,
		ReplicaIdentityAutoset: map[string]string{},
	}
	if !reflect.DeepEqual(c.Postgres, want) {
		t.Errorf("Postgres =\n%#v\nwant\n%#v", c.Postgres, want)
	}
	wantSink := config.Sink{Kind: "embedded", EmbeddedPath: "data/payments.db", EmbeddedMaxRecordBytes: 1 << 20, SplitBytes: 512 << 10,
		Aerospike: config.Aerospike{Namespace: "test", Timeout: 5 * time.Second}}
	if !reflect.DeepEqual(c.Sink, wantSink) {
		t.Errorf("Sink = %#v, want %#v", c.Sink, wantSink)
	}
	if c.HTTP.Listen != ":8083" {
		t.Errorf("HTTP.Listen = %q", c.HTTP.Listen)
	}
	if want := (config.Runtime{BatchMax: 5000, SnapshotBatchMax: config.DefaultSnapshotBatchMax, QueueMax: 20000, CacheEntities: config.DefaultCacheEntities,
		CacheBytes: config.DefaultCacheBytes, ErrorsTolerance: "none", DeadLetterSet: config.DefaultDeadLetterSet, ErrorsLog: true,
		Archive: config.Archive{RotateBytes: config.DefaultArchiveRotateBytes, Gzip: true}}); c.Runtime != want {
		t.Errorf("Runtime = %+v, want %+v", c.Runtime, want)
	}
	if len(c.Features) != 1 || c.Features[0].Table != "public.transactions" {
		t.Errorf("Features = %+v", c.Features)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("Warnings = %q", c.Warnings)
	}
}

// TestParseShapesAgree checks that both shapes of the same file give the
// same connector.
func TestParseShapesAgree(t *testing.T) {
	t.Parallel()
	kafka, err := config.Parse(kafkaShape(t, "payments", baseProps(), baseFeatures()), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	flat, err := config.Parse(flatShape(t, "payments", baseProps(), baseFeatures()), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(kafka, flat) {
		t.Errorf("shapes differ:\nkafka %+v\nflat  %+v", kafka, flat)
	}
	// The Kafka shape may also carry the name inside config.
	props := baseProps()
	props["name"] = "payments"
	inner, err := config.Parse(kafkaShape(t, "", props, baseFeatures()), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if inner.Name != "payments" || len(inner.Warnings) != 0 {
		t.Errorf("name inside config: Name %q, Warnings %q", inner.Name, inner.Warnings)
	}
}

func TestParseValueTypes(t *testing.T) {
	t.Parallel()
	props := baseProps()
	props["database.port"] = 5433                // number
	props["aerospike.tls.enabled"] = true        // boolean
	props["aerospike.hosts"] = []any{"a", "b:1"} // list of strings
	props["table.include.list"] = []any{"public.transactions", "public.x"}
	props["aerospike.user"] = nil // null is the empty string
	c, err := config.Parse(kafkaShape(t, "p", props, baseFeatures()), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Postgres.Port != 5433 || !c.Sink.Aerospike.TLS || c.Sink.Aerospike.User != "" {
		t.Errorf("Port %d TLS %v User %q", c.Postgres.Port, c.Sink.Aerospike.TLS, c.Sink.Aerospike.User)
	}
	if !reflect.DeepEqual(c.Sink.Aerospike.Hosts, []string{"a:3000", "b:1"}) {
		t.Errorf("Hosts = %q", c.Sink.Aerospike.Hosts)
	}
	if len(c.Postgres.TableInclude) != 2 {
		t.Errorf("TableInclude = %v", c.Postgres.TableInclude)
	}
}

// TestParseErrors has one case per class of problem. Each names the
// property path; want is the whole line when the message is ours, a
// prefix and fragments otherwise.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	type mutate func(props map[string]any, features []any) []any
	feature := func(features []any, i int) map[string]any { return features[i].(map[string]any) }
	agg := func(features []any, i, j int) map[string]any {
		return feature(features, i)["aggregations"].([]any)[j].(map[string]any)
	}
	cases := []struct {
		name  string
		shape string // "kafka" (default) or "flat"
		noKey bool   // no top-level name
		edit  mutate
		// path is the property path the line must start with; fragments
		// must all appear in that line.
		path      string
		fragments []string
		// lines is how many problems the file has in all (default 1).
		lines int
		// raw edits the rendered JSON, for what a map cannot express.
		raw func(string) string
	}{
		{name: "archive compression bogus", edit: func(p map[string]any, f []any) []any { p["archive.compression"] = "zstd"; return f },
			path: "config.archive.compression", fragments: []string{`"zstd" is neither gzip nor none`}},
		{name: "archive rotation too small", edit: func(p map[string]any, f []any) []any { p["archive.rotate.bytes"] = "10"; return f },
			path: "config.archive.rotate.bytes", fragments: []string{"10"}},
		{name: "missing hostname", edit: func(p map[string]any, f []any) []any { delete(p, "database.hostname"); return f },
			path: "config.database.hostname", fragments: []string{": is required"}},
		{name: "missing user", edit: func(p map[string]any, f []any) []any { delete(p, "database.user"); return f },
			path: "config.database.user", fragments: []string{"is required"}},
		{name: "missing dbname", edit: func(p map[string]any, f []any) []any { delete(p, "database.dbname"); return f },
			path: "config.database.dbname", fragments: []string{"is required"}},
		{name: "source bogus", edit: func(p map[string]any, f []any) []any { p["tilefeed.source"] = "mysql"; return f },
			path: "config.tilefeed.source", fragments: []string{`"mysql" is not one of postgres, kafka, http, file`}},
		{name: "kafka without brokers", edit: func(p map[string]any, f []any) []any { p["tilefeed.source"] = "kafka"; return f },
			path: "config.kafka.bootstrap.servers", fragments: []string{"is required when tilefeed.source is kafka"}},
		{name: "kafka topics and regex", edit: func(p map[string]any, f []any) []any {
			p["tilefeed.source"], p["kafka.bootstrap.servers"], p["topics"], p["topics.regex"] = "kafka", "k:9092", "a", "a.*"
			return f
		}, path: "config.topics.regex", fragments: []string{"not both"}},
		{name: "file without path", edit: func(p map[string]any, f []any) []any { p["tilefeed.source"] = "file"; return f },
			path: "config.file.path", fragments: []string{"is required when tilefeed.source is file"}},
		{name: "converter unknown", edit: func(p map[string]any, f []any) []any {
			p["tilefeed.source"], p["value.converter"] = "http", "io.confluent.connect.protobuf.ProtobufConverter"
			return f
		}, path: "config.value.converter", fragments: []string{"ProtobufConverter", "is not one of"}},
		{name: "http path not absolute", edit: func(p map[string]any, f []any) []any {
			p["tilefeed.source"], p["http.source.path"] = "http", "debezium"
			return f
		}, path: "config.http.source.path", fragments: []string{`"debezium"`, "starting with /"}},
		{name: "missing name", noKey: true, edit: func(p map[string]any, f []any) []any { return f },
			path: "name", fragments: []string{"is required", "checkpoint"}},
		{name: "name not a string", edit: func(p map[string]any, f []any) []any { return f },
			raw:  func(s string) string { return strings.Replace(s, `"name":"payments"`, `"name":42`, 1) },
			path: "name", fragments: []string{"must be a string"}, lines: 2}, // and "is required"
		{name: "bad name", edit: func(p map[string]any, f []any) []any { return f },
			raw:  func(s string) string { return strings.Replace(s, `"name":"payments"`, `"name":"pay ments"`, 1) },
			path: "name", fragments: []string{`"pay ments"`, "letters, digits"}},
		{name: "plugin absent", edit: func(p map[string]any, f []any) []any { delete(p, "plugin.name"); return f },
			path: "config.plugin.name", fragments: []string{`"decoderbufs" (Debezium's default when absent) is not supported`, "pgoutput"}},
		{name: "plugin wrong", edit: func(p map[string]any, f []any) []any { p["plugin.name"] = "wal2json"; return f },
			path: "config.plugin.name", fragments: []string{`"wal2json" is not supported: only pgoutput`}},
		{name: "connector class wrong", edit: func(p map[string]any, f []any) []any {
			p["connector.class"] = "io.debezium.connector.mysql.MySqlConnector"
			return f
		}, path: "config.connector.class", fragments: []string{"MySqlConnector", "PostgreSQL only"}},
		{name: "snapshot custom", edit: func(p map[string]any, f []any) []any { p["snapshot.mode"] = "custom"; return f },
			path: "config.snapshot.mode", fragments: []string{`"custom" is not supported`}},
		{name: "snapshot threads", edit: func(p map[string]any, f []any) []any { p["snapshot.max.threads"] = 0; return f },
			path: "config.snapshot.max.threads", fragments: []string{"0"}},
		{name: "snapshot bogus", edit: func(p map[string]any, f []any) []any { p["snapshot.mode"] = "sometimes"; return f },
			path: "config.snapshot.mode", fragments: []string{`"sometimes" is not a snapshot mode`}},
		{name: "autocreate enum", edit: func(p map[string]any, f []any) []any { p["publication.autocreate.mode"] = "some"; return f },
			path: "config.publication.autocreate.mode", fragments: []string{`"some" is not one of all_tables, filtered, disabled`}},
		{name: "sslmode enum", edit: func(p map[string]any, f []any) []any { p["database.sslmode"] = "maybe"; return f },
			path: "config.database.sslmode", fragments: []string{`"maybe" is not one of disable, allow, prefer, require, verify-ca, verify-full`}},
		{name: "errors.tolerance enum", edit: func(p map[string]any, f []any) []any { p["errors.tolerance"] = "some"; return f },
			path: "config.errors.tolerance", fragments: []string{`"some" is not one of none, all`}},
		{name: "dead-letter set empty", edit: func(p map[string]any, f []any) []any { p["errors.deadletter.set"] = ""; return f },
			path: "config.errors.deadletter.set", fragments: []string{"is required"}},
		{name: "sink enum", edit: func(p map[string]any, f []any) []any { p["tilefeed.sink"] = "redis"; return f },
			path: "config.tilefeed.sink", fragments: []string{`"redis" is not one of`}},
		{name: "port not a number", edit: func(p map[string]any, f []any) []any { p["database.port"] = "five"; return f },
			path: "config.database.port", fragments: []string{`"five" is not a whole number`}},
		{name: "port out of range", edit: func(p map[string]any, f []any) []any { p["database.port"] = 70000; return f },
			path: "config.database.port", fragments: []string{"70000 is out of range [1, 65535]"}},
		{name: "batch zero", edit: func(p map[string]any, f []any) []any { p["batch.max.changes"] = 0; return f },
			path: "config.batch.max.changes", fragments: []string{"0 is out of range [1, 1000000]"}},
		{name: "heartbeat negative", edit: func(p map[string]any, f []any) []any { p["heartbeat.interval.ms"] = -1; return f },
			path: "config.heartbeat.interval.ms", fragments: []string{"-1 is out of range"}},
		{name: "timeout fraction", edit: func(p map[string]any, f []any) []any { p["aerospike.timeout.ms"] = 1.5; return f },
			path: "config.aerospike.timeout.ms", fragments: []string{`"1.5" is not a whole number`}},
		{name: "bad bool", edit: func(p map[string]any, f []any) []any { p["aerospike.tls.enabled"] = "yes"; return f },
			path: "config.aerospike.tls.enabled", fragments: []string{`"yes" is not true or false`}},
		{name: "bad slot", edit: func(p map[string]any, f []any) []any { p["slot.name"] = "My-Slot"; return f },
			path: "config.slot.name", fragments: []string{`"My-Slot"`, "lower-case"}},
		{name: "bad replica identity", edit: func(p map[string]any, f []any) []any {
			p["replica.identity.autoset.values"] = "public.transactions"
			return f
		}, path: "config.replica.identity.autoset.values", fragments: []string{"want schema.table:IDENTITY"}},
		{name: "bad regex", edit: func(p map[string]any, f []any) []any {
			p["table.include.list"] = "public.transactions,public.(tx"
			return f
		},
			path: "config.table.include.list", fragments: []string{`"public.(tx" is not a regular expression`}},
		{name: "bad column regex", edit: func(p map[string]any, f []any) []any { p["column.exclude.list"] = "a[b"; return f },
			path: "config.column.exclude.list", fragments: []string{`"a[b" is not a regular expression`}},
		{name: "object property", edit: func(p map[string]any, f []any) []any { p["http.listen"] = map[string]any{"port": 1}; return f },
			path: "config.http.listen", fragments: []string{"must be a string, number or boolean"}},
		{name: "list of numbers", edit: func(p map[string]any, f []any) []any { p["aerospike.hosts"] = []any{1, 2}; return f },
			path: "config.aerospike.hosts", fragments: []string{"a list property must hold strings"}},
		{name: "unknown top-level field", edit: func(p map[string]any, f []any) []any { return f },
			raw:  func(s string) string { return strings.Replace(s, `"config":`, `"configs":{},"config":`, 1) },
			path: "configs", fragments: []string{"unknown top-level field (want name, config, features)"}},
		{name: "features missing", edit: func(p map[string]any, f []any) []any { return nil },
			path: "features", fragments: []string{"is required"}},
		{name: "features empty", edit: func(p map[string]any, f []any) []any { return []any{} },
			path: "features", fragments: []string{"is required"}},
		{name: "features null", edit: func(p map[string]any, f []any) []any { return nil },
			raw:  func(s string) string { return strings.Replace(s, `"config":`, `"features":null,"config":`, 1) },
			path: "features", fragments: []string{"is required"}},
		{name: "features not an array", edit: func(p map[string]any, f []any) []any { return nil },
			raw:  func(s string) string { return strings.Replace(s, `"config":`, `"features":{"name":"tx"},"config":`, 1) },
			path: "features", fragments: []string{"must be an array of feature groups"}},
		{name: "unknown feature field", edit: func(p map[string]any, f []any) []any { feature(f, 0)["windw"] = "1h"; return f },
			path: "features[0].windw", fragments: []string{"unknown field"}},
		{name: "unknown aggregation field", edit: func(p map[string]any, f []any) []any { agg(f, 0, 1)["colum"] = "x"; return f },
			path: "features[0].aggregations[1].colum", fragments: []string{"unknown field"}},
		{name: "feature field of the wrong type", edit: func(p map[string]any, f []any) []any { feature(f, 0)["entity"] = "customer_id"; return f },
			path: "features[0].entity", fragments: []string{"want an array of strings, got a string"}},
		{name: "feature name empty", edit: func(p map[string]any, f []any) []any { delete(feature(f, 0), "name"); return f },
			path: "features[0].name", fragments: []string{"is required"}},
		{name: "feature name invalid", edit: func(p map[string]any, f []any) []any { feature(f, 0)["name"] = "1tx"; return f },
			path: "features[0].name", fragments: []string{`"1tx": start with a letter`}},
		{name: "feature name too long", edit: func(p map[string]any, f []any) []any { feature(f, 0)["name"] = "t" + strings.Repeat("x", 63); return f },
			path: "features[0].name", fragments: []string{"at most 63 characters"}},
		{name: "feature name duplicate", edit: func(p map[string]any, f []any) []any { return append(f, baseFeatures()[0]) },
			path: "features[1].name", fragments: []string{`"tx" is used by another feature group`}},
		{name: "declared column types disagree", edit: func(p map[string]any, f []any) []any {
			feature(f, 0)["columns"] = map[string]any{"amount": "numeric(12,2)", "created_at": "timestamptz"}
			g := baseFeatures()[0].(map[string]any)
			g["name"], g["table"] = "tx2", "public.transactions"
			g["columns"] = map[string]any{"amount": "Numeric(12, 2)", "created_at": "timestamp"}
			return append(f, g)
		}, path: "features[1].columns.created_at", fragments: []string{`"timestamp", but features[0].columns.created_at declares "timestamptz": groups of one table must agree`}},
		{name: "declared column type empty", edit: func(p map[string]any, f []any) []any {
			feature(f, 0)["columns"] = map[string]any{"amount": " "}
			return f
		}, path: "features[0].columns.amount", fragments: []string{"empty type"}},
		{name: "table missing", edit: func(p map[string]any, f []any) []any { delete(feature(f, 0), "table"); return f },
			path: "features[0].table", fragments: []string{"is required"}},
		{name: "entity missing", edit: func(p map[string]any, f []any) []any { delete(feature(f, 0), "entity"); return f },
			path: "features[0].entity", fragments: []string{"is required: list the columns that key an entity"}},
		{name: "entity column twice", edit: func(p map[string]any, f []any) []any {
			feature(f, 0)["entity"] = []any{"customer_id", "customer_id"}
			return f
		}, path: "features[0].entity", fragments: []string{`"customer_id" is listed twice`}},
		{name: "table excluded by include list", edit: func(p map[string]any, f []any) []any { p["table.include.list"] = "public.orders"; return f },
			path: "features[0].table", fragments: []string{`"public.transactions" is excluded by table.include.list/table.exclude.list`}},
		{name: "table excluded by exclude list", edit: func(p map[string]any, f []any) []any { p["table.exclude.list"] = "public\\.trans.*"; return f },
			path: "features[0].table", fragments: []string{`"public.transactions" is excluded`}},
		{name: "aggregated column excluded", edit: func(p map[string]any, f []any) []any {
			p["column.exclude.list"] = "public.transactions.amount"
			return f
		},
			path: "features[0].aggregations[1].column", fragments: []string{`"amount" is dropped by column.include.list/column.exclude.list`},
			lines: 2}, // sum_1h and max_30d both read amount
		{name: "projected column not included", edit: func(p map[string]any, f []any) []any {
			p["column.include.list"] = "public.transactions.(customer_id|created_at|amount)"
			return f
		}, path: "features[0].project", fragments: []string{`"status" is dropped`}},
		{name: "time column excluded", edit: func(p map[string]any, f []any) []any { p["column.exclude.list"] = ".*created_at"; return f },
			path: "features[0].time", fragments: []string{`"created_at" is dropped`}},
		{name: "where does not parse", edit: func(p map[string]any, f []any) []any { feature(f, 0)["where"] = "amount >"; return f },
			path: "features[0].where", fragments: []string{`"amount >" does not parse`}},
		{name: "bad window", edit: func(p map[string]any, f []any) []any { agg(f, 0, 2)["window"] = "3x"; return f },
			path: "features[0].aggregations[2].window", fragments: []string{`"3x" is not a duration`}},
		{name: "sub-second window", edit: func(p map[string]any, f []any) []any { agg(f, 0, 0)["window"] = "1500ms"; return f },
			path: "features[0].aggregations[0].window", fragments: []string{"whole number of seconds"}},
		{name: "tile does not divide", edit: func(p map[string]any, f []any) []any { agg(f, 0, 1)["tile"] = "7m"; return f },
			path: "features[0].aggregations[1].tile", fragments: []string{`tile "7m" must be whole seconds and divide the window "1h"`}},
		{name: "tile longer than window", edit: func(p map[string]any, f []any) []any { agg(f, 0, 1)["tile"] = "2h"; return f },
			path: "features[0].aggregations[1].tile", fragments: []string{`tile "2h"`}},
		{name: "bad tile", edit: func(p map[string]any, f []any) []any { agg(f, 0, 1)["tile"] = "soon"; return f },
			path: "features[0].aggregations[1].tile", fragments: []string{`"soon" is not a duration`}},
		{name: "tile without window", edit: func(p map[string]any, f []any) []any {
			delete(agg(f, 0, 1), "window")
			agg(f, 0, 1)["tile"] = "1m"
			return f
		}, path: "features[0].aggregations[1].tile", fragments: []string{"a tile needs a window"}},
		{name: "windowed aggregate without a time column", edit: func(p map[string]any, f []any) []any { delete(feature(f, 0), "time"); return f },
			path: "features[0].time", fragments: []string{"is required for windowed aggregates and first/last"}},
		{name: "unknown function", edit: func(p map[string]any, f []any) []any { agg(f, 0, 1)["function"] = "median"; return f },
			path: "features[0].aggregations[1].function", fragments: []string{`"median" is not a function`}},
		{name: "sum without column", edit: func(p map[string]any, f []any) []any { delete(agg(f, 0, 1), "column"); return f },
			path: "features[0].aggregations[1].column", fragments: []string{"is required for sum"}},
		{name: "aggregation name missing", edit: func(p map[string]any, f []any) []any { delete(agg(f, 0, 1), "name"); return f },
			path: "features[0].aggregations[1].name", fragments: []string{"is required"}},
		{name: "duplicate aggregation name", edit: func(p map[string]any, f []any) []any { agg(f, 0, 2)["name"] = "n_10m"; return f },
			path: "features[0].aggregations[2].name", fragments: []string{`"n_10m" is already a feature name in this group`}},
		{name: "aggregation named like a projected column", edit: func(p map[string]any, f []any) []any { agg(f, 0, 0)["name"] = "status"; return f },
			path: "features[0].aggregations[0].name", fragments: []string{`"status" is already a projected column`}},
		{name: "project too long", edit: func(p map[string]any, f []any) []any { feature(f, 0)["project"] = []any{"merchant_category"}; return f },
			path: "features[0].project[0]", fragments: []string{`"merchant_category" is longer than 15 characters`, "Aerospike"}},
		{name: "project underscore", edit: func(p map[string]any, f []any) []any { feature(f, 0)["project"] = []any{"status", "_lsn"}; return f },
			path: "features[0].project[1]", fragments: []string{`"_lsn"`, "starting with '_'"}},
		{name: "group writes nothing", edit: func(p map[string]any, f []any) []any {
			delete(feature(f, 0), "aggregations")
			delete(feature(f, 0), "project")
			return f
		}, path: "features[0]", fragments: []string{"has neither aggregations nor project"}},
		{name: "bad ttl", edit: func(p map[string]any, f []any) []any { feature(f, 0)["ttl"] = "forever"; return f },
			path: "features[0].ttl", fragments: []string{`"forever" is not a duration`}},
		{name: "bad history", edit: func(p map[string]any, f []any) []any { feature(f, 0)["history"] = "1.5s"; return f },
			path: "features[0].history", fragments: []string{`"1.5s": history is a whole number of seconds`}},
		{name: "history without time", edit: func(p map[string]any, f []any) []any {
			delete(feature(f, 0), "time")
			feature(f, 0)["aggregations"] = []any{map[string]any{"name": "n", "function": "count"}}
			feature(f, 0)["history"] = "7d"
			return f
		}, path: "features[0].history", fragments: []string{"needs a time column"}},
		{name: "aerospike without hosts", edit: func(p map[string]any, f []any) []any { p["tilefeed.sink"] = "aerospike"; return f },
			path: "config.aerospike.hosts", fragments: []string{"is required when tilefeed.sink is aerospike"}},
		{name: "split over the record limit", edit: func(p map[string]any, f []any) []any { p["record.split.bytes"] = "2097152"; return f },
			path: "config.record.split.bytes", fragments: []string{"2097152 is not below embedded.max.record.bytes (1048576)"}},
		{name: "empty namespace", edit: func(p map[string]any, f []any) []any { p["aerospike.namespace"] = ""; return f },
			path: "config.aerospike.namespace", fragments: []string{"is required"}},
		{name: "unset env var", edit: func(p map[string]any, f []any) []any { p["database.password"] = "${env:PG_PASSWORD}"; return f },
			path: "config.database.password", fragments: []string{"${env:PG_PASSWORD}: environment variable is not set"}},
		{name: "missing file", edit: func(p map[string]any, f []any) []any {
			p["database.password"] = "${file:/nonexistent/tilefeed/pw}"
			return f
		},
			path: "config.database.password", fragments: []string{"${file:/nonexistent/tilefeed/pw}", "cannot read"}},
		{name: "flat shape path", shape: "flat", edit: func(p map[string]any, f []any) []any { p["database.port"] = 0; return f },
			path: "database.port", fragments: []string{"0 is out of range"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			props, features := baseProps(), baseFeatures()
			features = tc.edit(props, features)
			name := "payments"
			if tc.noKey {
				name = ""
			}
			data := kafkaShape(t, name, props, features)
			if tc.shape == "flat" {
				data = flatShape(t, name, props, features)
			}
			if tc.raw != nil {
				data = []byte(tc.raw(string(data)))
			}
			c, err := config.Parse(data, noEnv)
			if err == nil {
				t.Fatalf("Parse accepted the file: %+v", c)
			}
			if c != nil {
				t.Errorf("Parse returned a connector with an error")
			}
			lines := problems(err)
			want := tc.lines
			if want == 0 {
				want = 1
			}
			if len(lines) != want {
				t.Errorf("got %d problems, want %d:\n%s", len(lines), want, err)
			}
			var line string
			for _, l := range lines {
				if strings.HasPrefix(l, tc.path+": ") {
					line = l
					break
				}
			}
			if line == "" {
				t.Fatalf("no problem under %q:\n%s", tc.path, err)
			}
			for _, f := range tc.fragments {
				if !strings.Contains(line, f) {
					t.Errorf("problem %q does not mention %q", line, f)
				}
			}
		})
	}
}

func TestParseNotJSON(t *testing.T) {
	t.Parallel()
	for _, in := range []string{``, `[]`, `{"name":`, `"x"`} {
		_, err := config.Parse([]byte(in), noEnv)
		var se *config.SyntaxError
		if err == nil || !strings.Contains(err.Error(), "want a JSON object") && !errors.As(err, &se) {
			t.Errorf("Parse(%q) = %v, want a syntax error or a not-an-object error", in, err)
		}
	}
}

// TestParseDebeziumSources: the Debezium input path needs no database.*.
func TestParseDebeziumSources(t *testing.T) {
	t.Parallel()
	for _, props := range []string{
		`"tilefeed.source": "kafka", "kafka.bootstrap.servers": "k1:9092,k2:9092", "value.converter": "io.confluent.connect.avro.AvroConverter", "value.converter.schema.registry.url": "http://registry:8081"`,
		`"tilefeed.source": "http", "http.source.path": "/cdc"`,
		`"tilefeed.source": "file", "file.path": "a.ndjson, -", "decimal.handling.mode": "string"`,
	} {
		c, err := config.Parse([]byte(`{"name": "x", "config": {`+props+`}, "features": [{"name": "g", "table": "t", "entity": ["k"], "project": ["v"]}]}`), func(string) string { return "" })
		if err != nil {
			t.Errorf("%s: %v", props, err)
			continue
		}
		if len(c.Warnings) != 0 {
			t.Errorf("%s: warnings %v", props, c.Warnings)
		}
		switch c.Source.Kind {
		case "kafka":
			if !reflect.DeepEqual(c.Source.Kafka.Brokers, []string{"k1:9092", "k2:9092"}) || c.Source.SchemaRegistryURL != "http://registry:8081" {
				t.Errorf("kafka source %+v", c.Source)
			}
		case "http":
			if c.Source.HTTPPath != "/cdc" {
				t.Errorf("http source %+v", c.Source)
			}
		case "file":
			if !reflect.DeepEqual(c.Source.Files, []string{"a.ndjson", "-"}) || c.Source.DecimalHandlingMode != "string" {
				t.Errorf("file source %+v", c.Source)
			}
		}
	}
}

func TestParseSnapshotModesAccepted(t *testing.T) {
	t.Parallel()
	for mode, want := range map[string]string{"no_data": "no_data", "never": "no_data", "initial": "initial", "": "initial",
		"initial_only": "initial_only", "always": "always", "when_needed": "when_needed"} {
		props := baseProps()
		props["snapshot.mode"] = mode
		if mode == "" {
			delete(props, "snapshot.mode") // Debezium's default
		}
		c, err := config.Parse(kafkaShape(t, "p", props, baseFeatures()), noEnv)
		if err != nil {
			t.Fatalf("snapshot.mode %q: %v", mode, err)
		}
		if c.Postgres.SnapshotMode != want {
			t.Errorf("snapshot.mode %q gives %q, want %s", mode, c.Postgres.SnapshotMode, want)
		}
	}
}

// TestParseReportsEveryProblem checks that validation does not stop at the
// first problem: a file with n independent problems gives n lines.
func TestParseReportsEveryProblem(t *testing.T) {
	t.Parallel()
	props := baseProps()
	delete(props, "database.hostname")          // 1
	props["plugin.name"] = "wal2json"           // 2
	props["database.sslmode"] = "maybe"         // 3
	props["database.port"] = "x"                // 4
	props["table.exclude.list"] = "("           // 5
	props["tombstones.on.delete"] = false       // warning only
	props["database.password"] = "${env:NOPE}"  // 6
	props["publication.autocreate.mode"] = "no" // 7
	features := baseFeatures()
	f0 := features[0].(map[string]any)
	f0["windw"] = "1h"                              // 8
	f0["project"] = []any{"merchant_category_code"} // 9
	aggs := f0["aggregations"].([]any)
	aggs[0].(map[string]any)["function"] = "median" // 10
	aggs[1].(map[string]any)["tile"] = "7m"         // 11
	aggs[2].(map[string]any)["window"] = "3x"       // 12
	features = append(features, map[string]any{"name": "tx", "entity": []any{"id"}, "ttl": "x",
		"aggregations": []any{map[string]any{"name": "n", "function": "count", "colum": "x"}}})
	// 13 duplicate name, 14 table missing, 15 bad ttl, 16 unknown aggregation field

	_, err := config.Parse(kafkaShape(t, "payments", props, features), noEnv)
	lines := problems(err)
	wantPaths := []string{
		"config.database.hostname",
		"config.plugin.name",
		"config.database.sslmode",
		"config.database.port",
		"config.table.exclude.list",
		"config.database.password",
		"config.publication.autocreate.mode",
		"features[0].windw",
		"features[0].project[0]",
		"features[0].aggregations[0].function",
		"features[0].aggregations[1].tile",
		"features[0].aggregations[2].window",
		"features[1].name",
		"features[1].table",
		"features[1].ttl",
		"features[1].aggregations[0].colum",
	}
	if len(lines) != len(wantPaths) {
		t.Errorf("got %d problems, want %d:\n%s", len(lines), len(wantPaths), err)
	}
	for _, p := range wantPaths {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, p+": ") }) {
			t.Errorf("no problem under %s:\n%s", p, err)
		}
	}
}

// TestParseFeaturePathsAfterBadFeature checks that a feature that does not
// decode does not shift the paths of the features after it.
func TestParseFeaturePathsAfterBadFeature(t *testing.T) {
	t.Parallel()
	features := []any{
		map[string]any{"name": "a", "table": "t", "entity": "id", "project": []any{"x"}}, // entity of the wrong type
		map[string]any{"name": "b", "entity": []any{"id"}, "project": []any{"y"}},        // table missing
	}
	_, err := config.Parse(kafkaShape(t, "p", baseProps(), features), noEnv)
	lines := problems(err)
	if len(lines) != 2 {
		t.Errorf("got %d problems, want 2:\n%s", len(lines), err)
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "features[1].table: is required") }) {
		t.Errorf("the missing table of features[1] is not reported under features[1]:\n%s", err)
	}
}

func TestParseReferences(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pg-password")
	if err := os.WriteFile(pwFile, []byte("file-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	propsFile := filepath.Join(dir, "secrets.properties")
	props := "# secrets\n! also a comment\n\naerospike.password = as-s3cret\nhost: db.from.file\nempty=\n"
	if err := os.WriteFile(propsFile, []byte(props), 0o600); err != nil {
		t.Fatal(err)
	}
	env := fakeEnv(map[string]string{"PG_USER": "alice", "PG_DB": "shop", "REGION": "eu"})

	cases := []struct {
		name, value, want, errPart string
	}{
		{name: "env", value: "${env:PG_USER}", want: "alice"},
		{name: "env embedded twice", value: "${env:PG_DB}-${env:REGION}", want: "shop-eu"},
		{name: "file", value: "${file:" + pwFile + "}", want: "file-s3cret"},
		{name: "file key", value: "${file:" + propsFile + ":aerospike.password}", want: "as-s3cret"},
		{name: "file key with colon separator", value: "${file:" + propsFile + ":host}", want: "db.from.file"},
		{name: "file key empty value", value: "x${file:" + propsFile + ":empty}y", want: "xy"},
		{name: "no reference", value: "$PG_USER {env:X}", want: "$PG_USER {env:X}"},
		{name: "env unset", value: "${env:PG_PASSWORD}", errPart: "${env:PG_PASSWORD}: environment variable is not set"},
		{name: "file key missing", value: "${file:" + propsFile + ":nope}", errPart: `no key "nope"`},
		{name: "file missing", value: "${file:" + filepath.Join(dir, "absent") + "}", errPart: "cannot read"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := baseProps()
			p["http.listen"] = tc.value
			c, err := config.Parse(kafkaShape(t, "p", p, baseFeatures()), env)
			if tc.errPart != "" {
				lines := problems(err)
				if len(lines) != 1 || !strings.HasPrefix(lines[0], "config.http.listen: ") || !strings.Contains(lines[0], tc.errPart) {
					t.Errorf("err = %v, want one problem under config.http.listen mentioning %q", err, tc.errPart)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if c.HTTP.Listen != tc.want {
				t.Errorf("resolved %q to %q, want %q", tc.value, c.HTTP.Listen, tc.want)
			}
		})
	}

	// References resolve in every property, secrets included.
	p := baseProps()
	p["database.user"] = "${env:PG_USER}"
	p["database.password"] = "${file:" + pwFile + "}"
	p["aerospike.password"] = "${file:" + propsFile + ":aerospike.password}"
	c, err := config.Parse(kafkaShape(t, "p", p, baseFeatures()), env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Postgres.User != "alice" || c.Postgres.Password != "file-s3cret" || c.Sink.Aerospike.Password != "as-s3cret" {
		t.Errorf("User %q Password %q Aerospike.Password %q", c.Postgres.User, string(c.Postgres.Password), string(c.Sink.Aerospike.Password))
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "connector.json")
	if err := os.WriteFile(path, []byte(completeKafka), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Name != "payments" {
		t.Errorf("Name = %q", c.Name)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"name":"p","features":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("Load(bad) = %v, want an error naming the file", err)
	}
	if _, err := config.Load(filepath.Join(dir, "absent.json")); err == nil {
		t.Errorf("Load(absent) succeeded")
	}
}

func TestParseWarnings(t *testing.T) {
	t.Parallel()
	props := baseProps()
	props["tombstones.on.delete"] = false
	props["decimal.handling.mode"] = "precise"
	props["transforms.unwrap.type"] = "io.debezium.transforms.ExtractNewRecordState"
	props["database.history.kafka.topic"] = "h"
	props["snapshot.delay.ms"] = 10
	props["my.custom.thing"] = "x"
	for _, shape := range []string{"kafka", "flat"} {
		data := kafkaShape(t, "p", props, baseFeatures())
		prefix := "config."
		if shape == "flat" {
			data = flatShape(t, "p", props, baseFeatures())
			prefix = ""
		}
		c, err := config.Parse(data, noEnv)
		if err != nil {
			t.Fatalf("%s: unknown properties must not be errors: %v", shape, err)
		}
		want := []string{
			prefix + "database.history.kafka.topic: Debezium property has no effect in tilefeed",
			prefix + "decimal.handling.mode: has no effect when tilefeed.source is postgres",
			prefix + "my.custom.thing: unknown property, ignored",
			prefix + "snapshot.delay.ms: Debezium property has no effect in tilefeed",
			prefix + "tombstones.on.delete: Debezium property has no effect in tilefeed",
			prefix + "transforms.unwrap.type: Debezium property has no effect in tilefeed",
		}
		if !reflect.DeepEqual(c.Warnings, want) {
			t.Errorf("%s: Warnings =\n%s\nwant\n%s", shape, strings.Join(c.Warnings, "\n"), strings.Join(want, "\n"))
		}
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(completeKafka), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{"pg-s3cret", "as-s3cret"}
	values := map[string]any{"*Connector": c, "Connector": *c, "Postgres": c.Postgres, "Sink": c.Sink,
		"Aerospike": c.Sink.Aerospike, "Secret": c.Postgres.Password}
	for name, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
			out := fmt.Sprintf(verb, v)
			for _, s := range secrets {
				if strings.Contains(out, s) || strings.Contains(out, fmt.Sprintf("%x", s)) {
					t.Errorf("fmt %s of %s prints a password: %s", verb, name, out)
				}
			}
		}
	}
	if got := fmt.Sprint(c.Postgres.Password); got != "******" {
		t.Errorf("Secret prints %q", got)
	}
	if got := fmt.Sprintf("%#v", c.Postgres.Password); got != `"******"` {
		t.Errorf("Secret prints %q under %%#v", got)
	}

	// Structured logs and JSON dumps must not leak it either.
	var buf bytes.Buffer
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	buf.Write(js)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "connector", c)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "connector", c, "pg", c.Postgres)
	for _, s := range secrets {
		if strings.Contains(buf.String(), s) {
			t.Errorf("JSON or slog output prints a password: %s", buf.String())
		}
	}
	if !strings.Contains(string(js), `"Password":"******"`) {
		t.Errorf("json.Marshal does not mask the password: %s", js)
	}
}

func TestConnString(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		pg   config.Postgres
		want string
	}{
		{"plain", config.Postgres{Host: "db", Port: 5432, User: "u", DBName: "shop", SSLMode: "prefer"},
			`host='db' port='5432' user='u' dbname='shop' sslmode='prefer'`},
		{"password", config.Postgres{Host: "db", Port: 6432, User: "u", Password: "pw", DBName: "shop", SSLMode: "require"},
			`host='db' port='6432' user='u' dbname='shop' sslmode='require' password='pw'`},
		{"quotes and backslashes", config.Postgres{Host: "db", Port: 1, User: "o'brien", Password: `a\'b c`, DBName: "my db", SSLMode: "disable"},
			`host='db' port='1' user='o\'brien' dbname='my db' sslmode='disable' password='a\\\'b c'`},
		{"empty values", config.Postgres{Port: 5432},
			`host='' port='5432' user='' dbname='' sslmode=''`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.pg.ConnString(); got != tc.want {
				t.Errorf("ConnString =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestCaptures(t *testing.T) {
	t.Parallel()
	// parse loads the lists through Parse, which anchors them. The feature
	// reads public.anchor, which every list below lets through.
	parse := func(include, exclude, colInclude, colExclude string) config.Postgres {
		t.Helper()
		p := baseProps()
		if include != "" {
			p["table.include.list"] = include + ",public.anchor"
		}
		p["table.exclude.list"] = exclude
		if colInclude != "" {
			p["column.include.list"] = colInclude + ",public.anchor.id"
		}
		p["column.exclude.list"] = colExclude
		f := []any{map[string]any{"name": "g", "table": "public.anchor", "entity": []any{"id"}, "project": []any{"id"}}}
		c, err := config.Parse(kafkaShape(t, "p", p, f), noEnv)
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		return c.Postgres
	}
	tables := []struct {
		include, exclude, table string
		want                    bool
	}{
		{"", "", "public.anything", true},
		{"public.tx", "", "public.tx", true},
		{"public.tx", "", "public.txn", false},                 // anchored at the end
		{"public.tx", "", "xpublic.tx", false},                 // anchored at the start
		{"public.tx", "", "public_tx", true},                   // '.' is a regex: Debezium's meaning
		{`public\.tx`, "", "public_tx", false},                 // escaped
		{"public.tx|public.orders", "", "public.orders", true}, // alternation stays anchored
		{"public.tx|public.orders", "", "public.tx_old", false},
		{"public.tx|public.orders", "", "old_public.orders", false},
		{"public.tx, public.orders", "", "public.orders", true}, // spaces around commas
		{"public.tx", "", "PUBLIC.TX", false},
		{"public.t.*", "public.tmp", "public.tmp", false},
		{"public.t.*", "public.tmp", "public.tmp2", true}, // exclusion anchored too
		{"", "public.tmp", "public.tmp", false},
		{"", "public.tmp", "public.tmp_old", true},
	}
	for _, tc := range tables {
		pg := parse(tc.include, tc.exclude, "", "")
		if got := pg.Captures(tc.table); got != tc.want {
			t.Errorf("include %q exclude %q: Captures(%q) = %v, want %v", tc.include, tc.exclude, tc.table, got, tc.want)
		}
	}
	columns := []struct {
		include, exclude, column string
		want                     bool
	}{
		{"", "", "public.tx.amount", true},
		{"public.tx.amount", "", "public.tx.amount", true},
		{"public.tx.amount", "", "public.tx.amount_cents", false},
		{"public.tx.amount", "", "public.tx.id", false},
		{"public.tx.id|public.tx.amount", "", "public.tx.id", true},
		{"", "public.tx.card", "public.tx.card", false},
		{"", "public.tx.card", "public.tx.card_type", true},
		{"", `.*\.card`, "public.tx.card", false},
		{"", `.*\.card`, "public.tx.card2", true},
	}
	for _, tc := range columns {
		pg := parse("", "", tc.include, tc.exclude)
		if got := pg.CapturesColumn(tc.column); got != tc.want {
			t.Errorf("include %q exclude %q: CapturesColumn(%q) = %v, want %v", tc.include, tc.exclude, tc.column, got, tc.want)
		}
	}
}

func TestTileOf(t *testing.T) {
	t.Parallel()
	cases := []struct {
		window, tile string
		want         time.Duration
		errPart      string
	}{
		{window: "", want: 0},
		{window: "30s", want: time.Second}, // fewer than 60 tiles: the smallest tile
		{window: "1m", want: time.Second},
		{window: "10m", want: 10 * time.Second},
		{window: "15m", want: 15 * time.Second},
		{window: "1h", want: time.Minute},
		{window: "6h", want: 5 * time.Minute},
		{window: "24h", want: 15 * time.Minute},
		{window: "1d", want: 15 * time.Minute},
		{window: "7d", want: 2 * time.Hour},
		{window: "1w", want: 2 * time.Hour},
		{window: "30d", want: 12 * time.Hour},
		{window: "90d", want: 24 * time.Hour},
		{window: "365d", want: 24 * time.Hour},
		{window: "61s", want: time.Second}, // prime: only 1s divides
		{window: "1h", tile: "5m", want: 5 * time.Minute},
		{window: "30d", tile: "1d", want: 24 * time.Hour},
		{window: "10m", tile: "10m", want: 10 * time.Minute}, // one tile
		{window: "1h", tile: "7m", errPart: `tile "7m" must be whole seconds and divide the window "1h"`},
		{window: "1h", tile: "2h", errPart: "divide the window"},
		{window: "1h", tile: "500ms", errPart: "whole seconds"},
		{window: "1h", tile: "0s", errPart: "whole seconds"},
		{window: "1h", tile: "x", errPart: `"x" is not a duration`},
		{window: "", tile: "1m", errPart: "a tile needs a window"},
		{window: "3x", errPart: `"3x" is not a duration`},
		{window: "500ms", errPart: "a window is a whole number of seconds, at least 1s"},
		{window: "1500ms", errPart: "whole number of seconds"},
		{window: "0s", errPart: "at least 1s"},
	}
	for _, tc := range cases {
		got, err := config.TileOf(config.Aggregation{Name: "a", Function: "count", Window: tc.window, Tile: tc.tile})
		if tc.errPart != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errPart) {
				t.Errorf("TileOf(window %q, tile %q) = %v, %v; want error %q", tc.window, tc.tile, got, err, tc.errPart)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("TileOf(window %q, tile %q) = %v, %v; want %v", tc.window, tc.tile, got, err, tc.want)
		}
		if tc.window != "" {
			w := config.WindowOf(config.Aggregation{Window: tc.window})
			if w%got != 0 {
				t.Errorf("tile %v does not divide window %v", got, w)
			}
			if tc.tile == "" && w/got < config.MinTilesPerWindow && got != time.Second {
				t.Errorf("window %v cut into %d tiles of %v, want at least %d", w, w/got, got, config.MinTilesPerWindow)
			}
		}
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * 24 * time.Hour, true},
		{"1d", 24 * time.Hour, true},
		{"0d", 0, true},
		{"2w", 14 * 24 * time.Hour, true},
		{"90s", 90 * time.Second, true},
		{"1h30m", 90 * time.Minute, true},
		{"10m", 10 * time.Minute, true},
		{"0", 0, true},
		{"1500ms", 1500 * time.Millisecond, true},
		{"106751d", 106751 * 24 * time.Hour, true}, // the largest whole number of days a Duration holds
		{"", 0, false},
		{"d", 0, false},
		{"w", 0, false},
		{"-1d", 0, false},
		{"-5m", 0, false},
		{"1.5d", 0, false},
		{"1d2h", 0, false},
		{"3x", 0, false},
		{"forever", 0, false},
		{" 1d", 0, false},
		{"106752d", 0, false}, // overflows a Duration
		{"200000d", 0, false},
		{"99999999999999w", 0, false},
	}
	for _, tc := range cases {
		got, err := config.ParseDuration(tc.in)
		if tc.ok {
			if err != nil || got != tc.want {
				t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", tc.in, got)
		} else if tc.in != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q is not a duration", tc.in)) {
			t.Errorf("ParseDuration(%q) error %q does not quote the input", tc.in, err)
		}
	}
}

func TestReference(t *testing.T) {
	t.Parallel()
	ref := config.Reference()
	if !strings.HasPrefix(ref, "| property | default | description |\n|---|---|---|\n") {
		t.Errorf("Reference does not start with the table header:\n%s", ref)
	}
	table, rest, _ := strings.Cut(ref, "\n\n## Other properties")
	rows := strings.Count(table, "\n") - 1
	if rows != len(config.Properties) {
		t.Errorf("Reference has %d rows, want %d", rows, len(config.Properties))
	}
	if !strings.Contains(rest, "`tombstones.on.delete`") || !strings.Contains(rest, "`transforms.`") || !strings.Contains(rest, "`schema.history.internal.`") {
		t.Errorf("Reference does not list the properties without effect:\n%s", rest)
	}
	seen := map[string]bool{}
	for _, p := range config.Properties {
		if seen[p.Name] {
			t.Errorf("property %s is listed twice", p.Name)
		}
		seen[p.Name] = true
		if !strings.Contains(ref, "| `"+p.Name+"`") {
			t.Errorf("Reference lacks %s", p.Name)
		}
		if p.Doc == "" {
			t.Errorf("property %s has no doc", p.Name)
		}
		if p.Default != "" && !strings.Contains(ref, "`"+p.Name+"`"+debeziumMark(p)+" | `"+p.Default+"` |") {
			t.Errorf("Reference does not show the default of %s", p.Name)
		}
	}
	// Every property path in the reference is a plain dotted name.
	nameRE := regexp.MustCompile(`^[a-z]+(\.[a-z]+)*$`)
	for name := range seen {
		if !nameRE.MatchString(name) {
			t.Errorf("property name %q is not a dotted lower-case name", name)
		}
	}
}

func debeziumMark(p config.Property) string {
	if p.Debezium {
		return " (Debezium)"
	}
	return ""
}

// TestExamplesParse: every connector file in examples/ loads without an
// error or a warning (secrets come from a fake environment).
func TestExamplesParse(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../examples/*.json")
	if err != nil || len(files) < 4 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c, err := config.Parse(raw, func(string) string { return "x:3000" })
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(c.Warnings) > 0 {
			t.Errorf("%s: warnings %v", f, c.Warnings)
		}
	}
}

// TestPublishedDebeziumConfig: a Debezium PostgreSQL connector's
// properties as Kafka Connect's PUT /connectors/{name}/config takes them
// (a flat map, no name) load as they are: the name comes from -name or
// the file's name, and every Debezium property family tilefeed does not
// use (signals, notifications, the schema history, incremental snapshots,
// topic creation, SMTs, predicates) is "no effect", never "unknown".
func TestPublishedDebeziumConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join("testdata", "inventory-connector.json")
	c, err := config.LoadAs(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "inventory-connector" {
		t.Errorf("name %q, want the file's name", c.Name)
	}
	var named, unknown []string
	noEffect := map[string]bool{}
	for _, w := range c.Warnings {
		switch {
		case strings.HasPrefix(w, "name: "):
			named = append(named, w)
		case strings.Contains(w, "unknown property"):
			unknown = append(unknown, w)
		case strings.Contains(w, "Debezium property has no effect"):
			noEffect[strings.SplitN(w, ":", 2)[0]] = true
		}
	}
	if len(unknown) > 0 {
		t.Errorf("published Debezium properties reported as unknown: %v", unknown)
	}
	if len(named) != 1 || !strings.Contains(named[0], `"inventory-connector" from the file name inventory-connector.json`) {
		t.Errorf("no warning that the name came from the file: %v", c.Warnings)
	}
	for _, k := range []string{"signal.kafka.topic", "notification.enabled.channels", "schema.history.internal.kafka.topic",
		"incremental.snapshot.chunk.size", "topic.creation.default.partitions", "predicates.isOutbox.type", "custom.metric.tags"} {
		if !noEffect[k] {
			t.Errorf("%s is not reported as a Debezium property without effect: %v", k, c.Warnings)
		}
	}

	c, err = config.LoadAs(path, "inventory")
	if err != nil || c.Name != "inventory" {
		t.Fatalf("-name inventory: %v, %v", c, err)
	}
	for _, w := range c.Warnings {
		if strings.HasPrefix(w, "name: ") {
			t.Errorf("a warning about the name although -name gave it: %s", w)
		}
	}
	dir := t.TempDir()
	named2 := filepath.Join(dir, "named.json")
	if err := os.WriteFile(named2, []byte(`{"name": "orders", "config": {"plugin.name": "pgoutput", "database.hostname": "h", "database.user": "u", "database.dbname": "d"},
		"features": [{"name": "g", "table": "t", "entity": ["id"], "project": ["v"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.LoadAs(named2, "other"); err == nil || !strings.Contains(err.Error(), `names the connector "orders", -name "other"`) {
		t.Errorf("a -name that differs from the file's: %v", err)
	}
	spaced := filepath.Join(dir, "my orders.json")
	raw, _ := os.ReadFile(path)
	if err := os.WriteFile(spaced, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.LoadAs(spaced, ""); err == nil || !strings.Contains(err.Error(), `"my orders" (from the file name my orders.json: set "name" or -name)`) {
		t.Errorf("a file name that is no connector name: %v", err)
	}
	if _, err := config.Parse(raw, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "PUT /connectors/{name}/config") {
		t.Errorf("a flat map without a name, parsed: %v", err)
	}
}

// TestSyntaxErrorPosition: a connector file that is not JSON is reported
// as file:line:column, as compilers do.
func TestSyntaxErrorPosition(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "connector.json")
	body := "{\n  \"name\": \"x\",\n  \"config\": {\n    \"plugin.name\": \"pgoutput\",,\n  }\n}\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":4:31: invalid character ','") {
		t.Errorf("syntax error: %v", err)
	}
	if _, err := config.Parse([]byte(`[1]`), noEnv); err == nil || !strings.Contains(err.Error(), "want a JSON object") {
		t.Errorf("an array: %v", err)
	}
}

// TestTypeErrorsDoNotHideOthers: a value of the wrong JSON type is
// reported under its own path, and the rest of that feature and of the
// others is still checked.
func TestTypeErrorsDoNotHideOthers(t *testing.T) {
	t.Parallel()
	features := []any{
		map[string]any{"name": "a", "table": "t", "entity": "id", "time": "at", "aggregations": []any{
			map[string]any{"name": "n", "function": "count", "window": 10},
			map[string]any{"name": "m", "function": "median"},
		}},
		map[string]any{"name": "b", "entity": []any{"id"}, "project": "y"},
	}
	_, err := config.Parse(kafkaShape(t, "p", baseProps(), features), noEnv)
	lines := problems(err)
	for _, want := range []string{
		"features[0].entity: want an array of strings, got a string",
		"features[0].aggregations[0].window: want a string, got a number",
		`features[0].aggregations[1].function: "median" is not a function`,
		"features[1].project: want an array of strings, got a string",
		"features[1].table: is required",
	} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, want) }) {
			t.Errorf("no %q among:\n%s", want, err)
		}
	}
	if len(lines) != 5 {
		t.Errorf("got %d problems, want 5:\n%s", len(lines), err)
	}
}
