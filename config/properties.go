package config

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Property documents one property tilefeed reads.
type Property struct {
	Name    string
	Default string
	Doc     string
	// Debezium is true for the Debezium PostgreSQL connector's own
	// properties, which keep Debezium's meaning.
	Debezium bool
	set      func(c *Connector, val string) error
}

// Properties lists every property tilefeed reads, in reference order.
// docs/config.md is generated from it (tilefeed config-reference).
var Properties = []Property{
	{Name: "tilefeed.source", Default: "postgres", Doc: "Where changes come from. `postgres`: the database's logical replication (pgoutput), the direct path. `kafka`: Debezium change events in Kafka topics. `http`: Debezium change events posted by Debezium Server's http sink to `http.source.path`. `file`: NDJSON files of Debezium change events (`file.path`), for replay and backfill; tilefeed stops when they are read.",
		set: func(c *Connector, v string) error {
			c.Source.Kind = v
			return oneOf(v, "postgres", "kafka", "http", "file")
		}},
	{Name: "connector.class", Debezium: true, Doc: "Accepted for Kafka Connect compatibility: `io.debezium.connector.postgresql.PostgresConnector` (or absent).",
		set: func(c *Connector, v string) error {
			if v != "" && v != "io.debezium.connector.postgresql.PostgresConnector" {
				return fmt.Errorf("%q: tilefeed reads PostgreSQL only (io.debezium.connector.postgresql.PostgresConnector)", v)
			}
			return nil
		}},
	{Name: "plugin.name", Default: DefaultPluginName, Debezium: true, Doc: "Logical decoding plugin. Only `pgoutput` is supported; Debezium's default `decoderbufs` is rejected, so set it.",
		set: func(c *Connector, v string) error {
			if v != "pgoutput" && c.Source.Kind == "postgres" { // tilefeed.source is set first
				if v == DefaultPluginName {
					return fmt.Errorf("%q (Debezium's default when absent) is not supported: set plugin.name to pgoutput", v)
				}
				return fmt.Errorf("%q is not supported: only pgoutput", v)
			}
			return nil
		}},
	{Name: "database.hostname", Debezium: true, Doc: "PostgreSQL host. Required when `tilefeed.source` is `postgres`.",
		set: func(c *Connector, v string) error { c.Postgres.Host = v; return nil }},
	{Name: "database.port", Default: strconv.Itoa(DefaultPort), Debezium: true, Doc: "PostgreSQL port.",
		set: func(c *Connector, v string) error { return setInt(&c.Postgres.Port, v, 1, 65535) }},
	{Name: "database.user", Debezium: true, Doc: "User with the REPLICATION attribute (and CREATE on the database when tilefeed creates the publication). Required when `tilefeed.source` is `postgres`.",
		set: func(c *Connector, v string) error { c.Postgres.User = v; return nil }},
	{Name: "database.password", Debezium: true, Doc: "Password; use `${env:NAME}` or `${file:/path}`. Never logged.",
		set: func(c *Connector, v string) error { c.Postgres.Password = Secret(v); return nil }},
	{Name: "database.dbname", Debezium: true, Doc: "Database to stream from. Required when `tilefeed.source` is `postgres`.",
		set: func(c *Connector, v string) error { c.Postgres.DBName = v; return nil }},
	{Name: "database.sslmode", Default: DefaultSSLMode, Debezium: true, Doc: "libpq sslmode: disable, allow, prefer, require, verify-ca, verify-full.",
		set: func(c *Connector, v string) error {
			c.Postgres.SSLMode = v
			return oneOf(v, "disable", "allow", "prefer", "require", "verify-ca", "verify-full")
		}},
	{Name: "topic.prefix", Debezium: true, Doc: "Logical name of the source (Debezium's topic prefix). Defaults to the connector name; used in logs and status only.",
		set: func(c *Connector, v string) error { c.Postgres.TopicPrefix = v; return nil }},
	{Name: "slot.name", Default: DefaultSlotName, Debezium: true, Doc: "Replication slot; created (pgoutput) when missing.",
		set: func(c *Connector, v string) error {
			c.Postgres.SlotName = v
			if !slotNameRE.MatchString(v) {
				return fmt.Errorf("%q: slot names are 1-63 lower-case letters, digits and underscores", v)
			}
			return nil
		}},
	{Name: "publication.name", Default: DefaultPublicationName, Debezium: true, Doc: "Publication streamed through pgoutput.",
		set: func(c *Connector, v string) error { c.Postgres.PublicationName = v; return required(v) }},
	{Name: "publication.autocreate.mode", Default: DefaultPublicationAutocreate, Debezium: true, Doc: "`all_tables`: create the publication FOR ALL TABLES when missing; `filtered`: create it for the feature tables that pass the table lists; `disabled`: it must exist.",
		set: func(c *Connector, v string) error {
			c.Postgres.PublicationAutocreate = v
			return oneOf(v, "all_tables", "filtered", "disabled")
		}},
	{Name: "table.include.list", Debezium: true, Doc: "Comma-separated anchored regexes of `schema.table` to capture; when set, other tables are ignored.",
		set: func(c *Connector, v string) (err error) { c.Postgres.TableInclude, err = regexList(v); return }},
	{Name: "table.exclude.list", Debezium: true, Doc: "Comma-separated anchored regexes of `schema.table` never to capture.",
		set: func(c *Connector, v string) (err error) { c.Postgres.TableExclude, err = regexList(v); return }},
	{Name: "column.include.list", Debezium: true, Doc: "Comma-separated anchored regexes of `schema.table.column`; other columns are dropped from row images.",
		set: func(c *Connector, v string) (err error) { c.Postgres.ColumnInclude, err = regexList(v); return }},
	{Name: "column.exclude.list", Debezium: true, Doc: "Comma-separated anchored regexes of `schema.table.column` dropped from row images.",
		set: func(c *Connector, v string) (err error) { c.Postgres.ColumnExclude, err = regexList(v); return }},
	{Name: "snapshot.mode", Default: DefaultSnapshotMode, Debezium: true, Doc: "`initial` (Debezium's default): on the first start (no checkpoint), create the slot with an exported snapshot, read the feature tables as of its consistent point, then stream from exactly there; an interrupted snapshot resumes where it stopped. `initial_only`: the same snapshot, then stop (exit 0) once it is durable, and drop the slot. `no_data` (alias `never`): stream changes from the slot's position only. `always`: on every start, drop the slot, empty the feature groups' sets and take a new snapshot (features rebuilt from scratch, so nothing is counted twice). `when_needed`: snapshot on the first start, and rebuild like `always` when the slot is missing, invalidated or already past the checkpoint, instead of stopping. See README, Snapshots.",
		set: func(c *Connector, v string) error {
			switch v {
			case "no_data", "never":
				c.Postgres.SnapshotMode = "no_data"
				return nil
			case "initial", "initial_only", "always", "when_needed":
				c.Postgres.SnapshotMode = v
				return nil
			case "configuration_based", "custom":
				return fmt.Errorf("%q is not supported: use initial, initial_only, no_data, always or when_needed", v)
			}
			return fmt.Errorf("%q is not a snapshot mode", v)
		}},
	{Name: "snapshot.fetch.size", Default: strconv.Itoa(DefaultSnapshotFetch), Debezium: true, Doc: "Rows per snapshot chunk: a table with a primary key of integers, uuid, date or timestamps is read in key order, this many rows per query; other tables in ranges of heap blocks holding about this many rows, at most 4,096 / `snapshot.max.threads` ranges per table (a bigger table gets bigger ranges: the progress record lists each until the table is read). Chunks are the unit of progress: a restart never reads a finished chunk of a keyed table again (a table read by heap blocks that a crash cut is retracted and read again whole). The snapshot holds at most `snapshot.max.threads` chunks in memory, besides the runtime's queue (`queue.max.changes`).",
		set: func(c *Connector, v string) error { return setInt(&c.Postgres.SnapshotFetch, v, 1, 1<<20) }},
	{Name: "snapshot.max.threads", Default: "1", Debezium: true, Doc: "Connections that read snapshot chunks in parallel (different tables; key ranges of one table whose key is a single int2/int4/int8 column and that holds more than twice `snapshot.fetch.size` rows; block ranges of a table without such a key), all in the same exported snapshot.",
		set: func(c *Connector, v string) error { return setInt(&c.Postgres.SnapshotThreads, v, 1, 64) }},
	{Name: "heartbeat.interval.ms", Default: "0", Debezium: true, Doc: "How often progress on an idle stream is made durable and acknowledged to the slot, so WAL does not pile up. 0 means every 10 s.",
		set: func(c *Connector, v string) error {
			var ms int
			if err := setInt(&ms, v, 0, 1<<31-1); err != nil {
				return err
			}
			c.Postgres.HeartbeatInterval = time.Duration(ms) * time.Millisecond
			if ms == 0 {
				c.Postgres.HeartbeatInterval = DefaultIdleCheckpoint
			}
			return nil
		}},
	{Name: "heartbeat.action.query", Debezium: true, Doc: "SQL run on the source database at every heartbeat (for example an INSERT into a heartbeat table), so a database whose captured tables are idle while others write still sends changes and the slot advances.",
		set: func(c *Connector, v string) error { c.Postgres.HeartbeatActionQuery = v; return nil }},
	{Name: "errors.tolerance", Default: "none", Doc: "`none`: a change a feature cannot use (NULL entity key or event time, a non-number to sum, a TRUNCATE) stops tilefeed with an error naming the table, position, column and value. `all`: the change goes to the dead-letter set with the reason, is counted in `tilefeed_dead_letters_total`, and tilefeed continues.",
		set: func(c *Connector, v string) error { c.Runtime.ErrorsTolerance = v; return oneOf(v, "none", "all") }},
	{Name: "errors.deadletter.set", Default: DefaultDeadLetterSet, Doc: "Set (in the sink) that receives dead-lettered changes under `errors.tolerance=all`, one record per change keyed `<connector>/<position>`.",
		set: func(c *Connector, v string) error { c.Runtime.DeadLetterSet = v; return required(v) }},
	{Name: "errors.log.enable", Default: "true", Doc: "Log every dead-lettered change (table, position, reason; never row values) at WARN.",
		set: func(c *Connector, v string) error { return setBool(&c.Runtime.ErrorsLog, v) }},
	{Name: "replica.identity.autoset.values", Debezium: true, Doc: "`schema.table:FULL,…`: REPLICA IDENTITY tilefeed sets at startup (FULL, DEFAULT or INDEX name). Aggregated tables need FULL.",
		set: func(c *Connector, v string) error {
			c.Postgres.ReplicaIdentityAutoset = map[string]string{}
			for _, item := range splitList(v) {
				t, ident, ok := strings.Cut(item, ":")
				if !ok || t == "" || ident == "" {
					return fmt.Errorf("%q: want schema.table:IDENTITY", item)
				}
				c.Postgres.ReplicaIdentityAutoset[qualify(t)] = strings.ToUpper(ident)
			}
			return nil
		}},

	{Name: "kafka.bootstrap.servers", Doc: "Comma-separated `host:port` Kafka brokers. Required when `tilefeed.source` is `kafka`.",
		set: func(c *Connector, v string) error { c.Source.Kafka.Brokers = splitList(v); return nil }},
	{Name: "topics", Doc: "Comma-separated Kafka topics of Debezium change events (Kafka Connect's sink property). Default: `<topic.prefix>.<schema>.<table>` of every feature table, Debezium's default topic names.",
		set: func(c *Connector, v string) error { c.Source.Kafka.Topics = splitList(v); return nil }},
	{Name: "topics.regex", Doc: "Anchored regex of the Kafka topics to read, instead of `topics` (Kafka Connect's sink property). Topics are listed at startup.",
		set: func(c *Connector, v string) (err error) {
			if v != "" {
				c.Source.Kafka.TopicsRegex, err = regexp.Compile("^(?:" + v + ")$")
			}
			return err
		}},
	{Name: "kafka.security.protocol", Default: "PLAINTEXT", Doc: "`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`, as Kafka's `security.protocol`.",
		set: func(c *Connector, v string) error {
			c.Source.Kafka.SecurityProtocol = v
			return oneOf(v, "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
		}},
	{Name: "kafka.sasl.mechanism", Default: "PLAIN", Doc: "`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` for the SASL protocols.",
		set: func(c *Connector, v string) error {
			c.Source.Kafka.SASLMechanism = v
			return oneOf(v, "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
		}},
	{Name: "kafka.group.id", Doc: "Consumer group that tilefeed commits the offsets it has made durable to, every few seconds, so that Kafka's own tools (kafka-consumer-groups.sh, Burrow, Cruise Control) see its lag. For monitoring only: tilefeed never joins the group and resumes from the offsets stored in the sink. A failed commit is logged and counted (`tilefeed_errors_total{kind=\"kafka_commit\"}`), never fatal. Empty: nothing is committed.",
		set: func(c *Connector, v string) error { c.Source.Kafka.GroupID = v; return nil }},
	{Name: "kafka.sasl.username", Doc: "SASL user.",
		set: func(c *Connector, v string) error { c.Source.Kafka.SASLUser = v; return nil }},
	{Name: "kafka.sasl.password", Doc: "SASL password; use `${env:NAME}` or `${file:/path}`. Never logged.",
		set: func(c *Connector, v string) error { c.Source.Kafka.SASLPassword = Secret(v); return nil }},
	{Name: "kafka.tls.ca.file", Doc: "PEM file of the CA that signed the brokers' certificates (`SSL`, `SASL_SSL`); the system's roots when empty. Kafka's JKS trust stores are not read: export the CA as PEM.",
		set: func(c *Connector, v string) error { c.Source.Kafka.TLSCAFile = v; return nil }},
	{Name: "kafka.tls.cert.file", Doc: "PEM client certificate, for brokers that require one (mutual TLS); with `kafka.tls.key.file`.",
		set: func(c *Connector, v string) error { c.Source.Kafka.TLSCertFile = v; return nil }},
	{Name: "kafka.tls.key.file", Doc: "PEM private key of `kafka.tls.cert.file`.",
		set: func(c *Connector, v string) error { c.Source.Kafka.TLSKeyFile = v; return nil }},
	{Name: "http.source.path", Default: DefaultHTTPSourcePath, Doc: "Path, on `http.listen`, where Debezium Server's http sink posts change events (`debezium.sink.http.url=http://<tilefeed>:8083/debezium`). A request is answered 200 only once its changes are durable in the sink, and 503 otherwise, so Debezium Server retries.",
		set: func(c *Connector, v string) error {
			c.Source.HTTPPath = v
			if !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "/v1/") || v == "/metrics" || v == "/healthz" || v == "/readyz" {
				return fmt.Errorf("%q: want a path starting with / that is not one of tilefeed's own", v)
			}
			return nil
		}},
	{Name: "file.path", Doc: "Comma-separated NDJSON files of Debezium change events (one record value per line, or `{\"key\":…,\"value\":…}` objects), read in order; `-` reads standard input. Required when `tilefeed.source` is `file`.",
		set: func(c *Connector, v string) error { c.Source.Files = splitList(v); return nil }},
	{Name: "key.converter", Debezium: true, Doc: "Kafka Connect converter of record keys (Kafka): `org.apache.kafka.connect.json.JsonConverter` or `io.confluent.connect.avro.AvroConverter`. Default: as `value.converter`.",
		set: func(c *Connector, v string) error { c.Source.KeyConverter = v; return converter(v) }},
	{Name: "value.converter", Default: "org.apache.kafka.connect.json.JsonConverter", Debezium: true, Doc: "Kafka Connect converter of record values (Kafka): `org.apache.kafka.connect.json.JsonConverter` (with or without schemas; both are read) or `io.confluent.connect.avro.AvroConverter` (Confluent wire format). The HTTP source takes the format from each request's Content-Type instead; files are JSON.",
		set: func(c *Connector, v string) error { c.Source.ValueConverter = v; return converter(v) }},
	{Name: "key.converter.schemas.enable", Debezium: true, Doc: "Accepted: tilefeed reads JSON keys with and without the schema wrapper.",
		set: func(c *Connector, v string) error { return nil }},
	{Name: "value.converter.schemas.enable", Debezium: true, Doc: "Accepted: tilefeed reads JSON values with and without the schema wrapper. Without schemas, values are read by the column types of the features' `columns` (docs/debezium-decoding.md).",
		set: func(c *Connector, v string) error { return nil }},
	{Name: "value.converter.schema.registry.url", Debezium: true, Doc: "Confluent Schema Registry of Avro records (`GET /schemas/ids/{id}`, cached).",
		set: func(c *Connector, v string) error { c.Source.SchemaRegistryURL = v; return nil }},
	{Name: "key.converter.schema.registry.url", Debezium: true, Doc: "Must be absent or equal `value.converter.schema.registry.url`: one registry serves both.",
		set: func(c *Connector, v string) error {
			if v != "" && c.Source.SchemaRegistryURL != "" && v != c.Source.SchemaRegistryURL {
				return fmt.Errorf("%q differs from value.converter.schema.registry.url: one registry serves both", v)
			}
			if c.Source.SchemaRegistryURL == "" {
				c.Source.SchemaRegistryURL = v
			}
			return nil
		}},
	{Name: "tilefeed.avro.schemas.dir", Doc: "Directory of `<id>.avsc` files that resolve Avro schema ids without a registry (tests, air-gapped replays).",
		set: func(c *Connector, v string) error { c.Source.AvroSchemasDir = v; return nil }},
	{Name: "unavailable.value.placeholder", Default: "__debezium_unavailable_value", Debezium: true, Doc: "The Debezium connector's placeholder for an unchanged TOASTed value: read as unchanged (a projection keeps the stored value; an aggregate takes the old row image), never as a value.",
		set: func(c *Connector, v string) error { c.Source.UnavailablePlaceholder = v; return nil }},
	{Name: "decimal.handling.mode", Default: "precise", Debezium: true, Doc: "The Debezium connector's setting, for values without a schema: `precise` reads a numeric column's string as base64 of the unscaled value, `string` as decimal text; `double` values are JSON numbers. With a schema, the schema decides.",
		set: func(c *Connector, v string) error {
			c.Source.DecimalHandlingMode = v
			return oneOf(v, "precise", "string", "double")
		}},

	{Name: "tilefeed.sink", Doc: "`embedded` or `aerospike`. Default: `aerospike` when `aerospike.hosts` is set, else `embedded`.",
		set: func(c *Connector, v string) error { c.Sink.Kind = v; return oneOf(v, "", "embedded", "aerospike") }},
	{Name: "embedded.path", Doc: "File of the embedded store. Default: `data/<name>.db`.",
		set: func(c *Connector, v string) error { c.Sink.EmbeddedPath = v; return nil }},
	{Name: "embedded.max.record.bytes", Default: "1048576", Doc: "Largest record the embedded store writes, encoded. The default is Aerospike's default `max-record-size` (1 MiB), so a connector that runs on the embedded store runs on Aerospike; a record over it stops tilefeed with an error naming the feature group, the entity and the aggregates that grow.",
		set: func(c *Connector, v string) error { return setInt(&c.Sink.EmbeddedMaxRecordBytes, v, 1024, 1<<30) }},
	{Name: "record.split.bytes", Default: "524288", Doc: "A feature record bigger than this (encoded, about) is stored split: a head record with the small bins, and its tile blobs in parts of at most 256 KiB, each a record of its own named by its content, written before the head that names them. A busy entity is never too big for the store, and a write sends only the parts that changed. Keep it below the store's record limit (`embedded.max.record.bytes`; Aerospike: `max-record-size`).",
		set: func(c *Connector, v string) error { return setInt(&c.Sink.SplitBytes, v, 4096, 1<<30) }},
	{Name: "aerospike.hosts", Doc: "Comma-separated `host:port` seeds (port 3000 when omitted).",
		set: func(c *Connector, v string) error {
			c.Sink.Aerospike.Hosts = nil
			for _, h := range splitList(v) {
				if !strings.Contains(h, ":") {
					h += ":3000"
				}
				c.Sink.Aerospike.Hosts = append(c.Sink.Aerospike.Hosts, h)
			}
			return nil
		}},
	{Name: "aerospike.namespace", Default: DefaultNamespace, Doc: "Namespace of the feature records and the checkpoint.",
		set: func(c *Connector, v string) error { c.Sink.Aerospike.Namespace = v; return required(v) }},
	{Name: "aerospike.user", Doc: "User (security-enabled servers).",
		set: func(c *Connector, v string) error { c.Sink.Aerospike.User = v; return nil }},
	{Name: "aerospike.password", Doc: "Password; use `${env:NAME}` or `${file:/path}`. Never logged.",
		set: func(c *Connector, v string) error { c.Sink.Aerospike.Password = Secret(v); return nil }},
	{Name: "aerospike.tls.enabled", Default: "false", Doc: "Connect with TLS.",
		set: func(c *Connector, v string) error { return setBool(&c.Sink.Aerospike.TLS, v) }},
	{Name: "aerospike.tls.ca.file", Doc: "PEM file of the CA that signed the server certificates (system roots when empty).",
		set: func(c *Connector, v string) error { c.Sink.Aerospike.TLSCAFile = v; return nil }},
	{Name: "aerospike.tls.name", Doc: "TLS name of the servers (certificate name) when it differs from the host.",
		set: func(c *Connector, v string) error { c.Sink.Aerospike.TLSName = v; return nil }},
	{Name: "aerospike.timeout.ms", Default: strconv.Itoa(int(DefaultAerospikeTimeout / time.Millisecond)), Doc: "Total timeout of one Aerospike call.",
		set: func(c *Connector, v string) error {
			var ms int
			err := setInt(&ms, v, 1, 600000)
			c.Sink.Aerospike.Timeout = time.Duration(ms) * time.Millisecond
			return err
		}},
	{Name: "http.listen", Default: DefaultListen, Doc: "Address of the HTTP listener (health, metrics, status, features).",
		set: func(c *Connector, v string) error { c.HTTP.Listen = v; return nil }},
	{Name: "read.cache.max.bytes", Default: "33554432", Doc: "Most bytes of decoded records the read API keeps, with what it computed from them (0: none). A read still asks the store for the record, but one that has not changed since an earlier read is not decoded again, and its aggregates are not computed again until the read time moves to another tile; the parts of a split record, which never change, are kept up to the same bound beside it.",
		set: func(c *Connector, v string) error { return setInt(&c.HTTP.ReadCacheBytes, v, 0, 1<<40) }},
	{Name: "debug.pprof.listen", Default: "", Doc: "Address of a second listener serving Go's profiler (`/debug/pprof/`: CPU and heap profiles, goroutines) for diagnosing throughput and memory; off when empty. It exposes internals: bind it to localhost (`127.0.0.1:6060`).",
		set: func(c *Connector, v string) error {
			if v != "" {
				if _, _, err := net.SplitHostPort(v); err != nil {
					return fmt.Errorf("%q is not host:port: %v", v, err)
				}
			}
			c.HTTP.PprofListen = v
			return nil
		}},
	{Name: "batch.max.changes", Default: strconv.Itoa(DefaultBatchMax), Doc: "Most changes applied in one sink write. Batches are cut early when the source has nothing more to give, so latency stays low at low rates.",
		set: func(c *Connector, v string) error { return setInt(&c.Runtime.BatchMax, v, 1, 1000000) }},
	{Name: "snapshot.batch.max.changes", Default: strconv.Itoa(DefaultSnapshotBatchMax), Doc: "Most changes applied in one sink write while the batch holds snapshot rows (PostgreSQL's initial snapshot, Debezium `op: r` events). Snapshot rows spread over many entities, so a larger batch writes each entity's record fewer times, for the memory of the rows and records it holds: on a 1M-row table over 10k entities with a 30-day group (`make bench`, one run), 5,000 → 20,000 took the snapshot from 12.4k to 25.3k rows/s and its peak RSS from 593 to 866 MB.",
		set: func(c *Connector, v string) error { return setInt(&c.Runtime.SnapshotBatchMax, v, 1, 1000000) }},
	{Name: "archive.dir", Default: "", Doc: "A directory where tilefeed keeps every change it applies, in the order it applied them (rotated NDJSON files, `changes-00000001.ndjson.gz`, …), so that `tilefeed export -source replay` builds training sets from exactly what was served, later updates and deletes included only from when they happened. Each batch's changes are synced to the archive before the batch is written to the sink; a crash leaves at most changes that the restart sends again, which a replay reads once (docs/point-in-time.md). Empty: no archive.",
		set: func(c *Connector, v string) error { c.Runtime.Archive.Dir = v; return nil }},
	{Name: "archive.rotate.bytes", Default: strconv.Itoa(DefaultArchiveRotateBytes), Doc: "Bytes of changes (before compression) after which the archive starts a new file.",
		set: func(c *Connector, v string) error { return setInt(&c.Runtime.Archive.RotateBytes, v, 1<<10, 1<<40) }},
	{Name: "archive.compression", Default: "gzip", Doc: "`gzip` or `none`: how archive files are written.",
		set: func(c *Connector, v string) error {
			switch v {
			case "gzip":
				c.Runtime.Archive.Gzip = true
			case "none":
				c.Runtime.Archive.Gzip = false
			default:
				return fmt.Errorf("%q is neither gzip nor none", v)
			}
			return nil
		}},
	{Name: "queue.max.changes", Default: strconv.Itoa(DefaultQueueMax), Doc: "Most changes read ahead of the sink; reading blocks beyond it (backpressure).",
		set: func(c *Connector, v string) error { return setInt(&c.Runtime.QueueMax, v, 1, 10000000) }},
	{Name: "cache.max.bytes", Default: strconv.Itoa(DefaultCacheBytes), Doc: "Most bytes of entity records kept in memory (about their stored size, plus a small overhead per tile); the least recently used others are read from the sink when touched. The default, 64 MiB, suits a sidecar; a larger cache saves sink reads when the entities touched often do not fit.",
		set: func(c *Connector, v string) error { return setInt(&c.Runtime.CacheBytes, v, 1<<20, 1<<40) }},
	{Name: "cache.max.entities", Default: strconv.Itoa(DefaultCacheEntities), Doc: "Most entity records kept in memory, whatever their size (`cache.max.bytes` bounds their bytes).",
		set: func(c *Connector, v string) error { return setInt(&c.Runtime.CacheEntities, v, 1, 100000000) }},
}

// slotNameRE is what PostgreSQL accepts as a replication slot name.
var slotNameRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// debeziumPathOnly lists the properties only the Debezium input path reads.
var debeziumPathOnly = map[string]bool{
	"kafka.bootstrap.servers": true, "topics": true, "topics.regex": true, "kafka.security.protocol": true,
	"kafka.sasl.mechanism": true, "kafka.sasl.username": true, "kafka.sasl.password": true, "kafka.group.id": true,
	"kafka.tls.ca.file": true, "kafka.tls.cert.file": true, "kafka.tls.key.file": true,
	"http.source.path": true, "file.path": true, "key.converter": true, "value.converter": true,
	"key.converter.schemas.enable": true, "value.converter.schemas.enable": true,
	"value.converter.schema.registry.url": true, "key.converter.schema.registry.url": true,
	"tilefeed.avro.schemas.dir": true, "unavailable.value.placeholder": true, "decimal.handling.mode": true,
}

// debeziumIgnored lists Debezium PostgreSQL connector properties tilefeed
// accepts and ignores: they shape Kafka topics or envelopes tilefeed does
// not produce. They are reported as warnings, not errors.
var debeziumIgnored = map[string]bool{
	"tasks.max": true, "transforms": true, "predicates": true, "notification.enabled.channels": true, "tombstones.on.delete": true, "time.precision.mode": true, "binary.handling.mode": true, "hstore.handling.mode": true,
	"interval.handling.mode": true, "include.unknown.datatypes": true, "database.server.name": true,
	"schema.include.list": true, "schema.exclude.list": true, "message.key.columns": true,
	"slot.drop.on.stop": true, "slot.stream.params": true, "slot.max.retries": true,
	"slot.retry.delay.ms": true, "status.update.interval.ms": true, "max.batch.size": true,
	"max.queue.size": true, "max.queue.size.in.bytes": true, "poll.interval.ms": true,
	"provide.transaction.metadata": true,
	"snapshot.lock.timeout.ms":     true, "snapshot.select.statement.overrides": true,
	"event.processing.failure.handling.mode": true, "schema.name.adjustment.mode": true,
	"field.name.adjustment.mode": true, "money.fraction.digits": true, "errors.max.retries": true,
	"database.initial.statements": true, "database.tcpKeepAlive": true, "skipped.operations": true,
	"signal.data.collection": true, "flush.lsn.source": true,
	"topic.heartbeat.prefix": true, "topic.transaction": true, "topic.naming.strategy": true,
	"column.propagate.source.type": true, "datatype.propagate.source.type": true,
	"include.schema.comments": true, "lsn.flush.timeout.ms": true,
}

// debeziumFamilies are prefixes of Debezium and Kafka Connect property
// families that shape what tilefeed does not do: signals and
// notifications, incremental snapshots, the schema history, Kafka
// Connect's converters' own settings, SMTs, predicates, producer and
// topic settings. Warnings, not errors, so a published connector file
// loads as it is.
var debeziumFamilies = []string{
	"signal.", "notification.", "schema.history.internal.", "incremental.snapshot.", "transforms.", "predicates.",
	"database.", "snapshot.", "slot.", "publication.", "heartbeat.", "topic.", "topic.creation.", "producer.override.",
	"consumer.override.", "key.converter.", "value.converter.", "header.converter", "errors.", "offsets.",
	"column.", "table.", "message.", "custom.metric.", "post.processors", "converters", "guardrail.",
	"streaming.", "extended.headers.", "read.only", "retriable.restart.", "xmin.", "lsn.", "sanitize.field.names",
	"internal.", "config.action.reload",
}

func debeziumFamily(k string) bool {
	for _, p := range debeziumFamilies {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// applyProperties sets the properties; those in unresolved (references
// the command does not need) stay unset and unchecked.
func applyProperties(c *Connector, strs map[string]string, unresolved map[string]bool, prefix string, v *validator) {
	known := map[string]bool{"name": true}
	for _, p := range Properties {
		known[p.Name] = true
		if unresolved[p.Name] {
			continue
		}
		val, ok := strs[p.Name]
		if !ok {
			val = p.Default
		}
		if err := p.set(c, val); err != nil {
			if !ok && val == "" {
				v.addf(prefix+p.Name, "is required")
			} else {
				v.addf(prefix+p.Name, "%v", err)
			}
		}
	}
	for _, k := range sortedKeys(strs) {
		switch {
		case known[k] && c.Source.Kind == "postgres" && debeziumPathOnly[k]:
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s%s: has no effect when tilefeed.source is postgres", prefix, k))
		case known[k]:
		case debeziumIgnored[k] || debeziumFamily(k):
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s%s: Debezium property has no effect in tilefeed", prefix, k))
		default:
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s%s: unknown property, ignored", prefix, k))
		}
	}
	if c.Postgres.TopicPrefix == "" {
		c.Postgres.TopicPrefix = c.Name
	}
	switch c.Source.Kind {
	case "postgres":
		for _, p := range [][2]string{{"database.hostname", c.Postgres.Host}, {"database.user", c.Postgres.User}, {"database.dbname", c.Postgres.DBName}} {
			if p[1] == "" && !unresolved[p[0]] {
				v.addf(prefix+p[0], "is required when tilefeed.source is postgres")
			}
		}
	case "kafka":
		if len(c.Source.Kafka.Brokers) == 0 && !unresolved["kafka.bootstrap.servers"] {
			v.addf(prefix+"kafka.bootstrap.servers", "is required when tilefeed.source is kafka")
		}
		if len(c.Source.Kafka.Topics) > 0 && c.Source.Kafka.TopicsRegex != nil {
			v.addf(prefix+"topics.regex", "set topics or topics.regex, not both")
		}
	case "file":
		if len(c.Source.Files) == 0 && !unresolved["file.path"] {
			v.addf(prefix+"file.path", "is required when tilefeed.source is file")
		}
	}
	if c.Sink.Kind == "" {
		c.Sink.Kind = "embedded"
		if len(c.Sink.Aerospike.Hosts) > 0 {
			c.Sink.Kind = "aerospike"
		}
	}
	if c.Sink.Kind == "aerospike" && len(c.Sink.Aerospike.Hosts) == 0 {
		v.addf(prefix+"aerospike.hosts", "is required when tilefeed.sink is aerospike")
	}
	if c.Sink.Kind == "embedded" && c.Sink.SplitBytes >= c.Sink.EmbeddedMaxRecordBytes {
		v.addf(prefix+"record.split.bytes", "%d is not below embedded.max.record.bytes (%d): a split record's head would not fit", c.Sink.SplitBytes, c.Sink.EmbeddedMaxRecordBytes)
	}
	if c.Sink.EmbeddedPath == "" && c.Name != "" {
		c.Sink.EmbeddedPath = DefaultEmbeddedDir + "/" + c.Name + ".db"
	}
}

func converter(v string) error {
	return oneOf(v, "", "org.apache.kafka.connect.json.JsonConverter", "io.confluent.connect.avro.AvroConverter")
}

func required(v string) error {
	if v == "" {
		return fmt.Errorf("is required")
	}
	return nil
}

func oneOf(v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
}

func setInt(dst *int, v string, lo, hi int) error {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("%q is not a whole number", v)
	}
	if n < lo || n > hi {
		return fmt.Errorf("%d is out of range [%d, %d]", n, lo, hi)
	}
	*dst = n
	return nil
}

func setBool(dst *bool, v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("%q is not true or false", v)
	}
	*dst = b
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// regexList compiles Debezium's comma-separated list of regexes, each
// anchored to match the whole identifier.
func regexList(v string) ([]*regexp.Regexp, error) {
	var out []*regexp.Regexp
	for _, s := range splitList(v) {
		re, err := regexp.Compile("^(?:" + s + ")$")
		if err != nil {
			return nil, fmt.Errorf("%q is not a regular expression: %v", s, err)
		}
		out = append(out, re)
	}
	return out, nil
}

// qualify adds the default schema to an unqualified table name.
func qualify(t string) string {
	if strings.Contains(t, ".") {
		return t
	}
	return "public." + t
}

// Reference renders the property table as Markdown (docs/config.md).
func Reference() string {
	var b strings.Builder
	b.WriteString("| property | default | description |\n|---|---|---|\n")
	for _, p := range Properties {
		def := p.Default
		if def == "" {
			def = "—"
		} else {
			def = "`" + def + "`"
		}
		name := "`" + p.Name + "`"
		if p.Debezium {
			name += " (Debezium)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, def, p.Doc)
	}
	b.WriteString("\n## Other properties\n\n")
	b.WriteString("With `tilefeed.source=postgres`, the Debezium-path properties above (" + list(debeziumPathOnly) + ") are accepted with a warning that they have no effect.\n\n")
	b.WriteString("These Debezium and Kafka Connect properties are accepted with a warning that they have no effect: they shape Kafka topics, envelopes or connector internals that tilefeed does not produce or need (on the Debezium path the envelopes tell tilefeed what it needs, whatever these were set to): " + list(debeziumIgnored) + ", and every property not listed above whose name starts with one of " + prefixes(debeziumFamilies) + ".\n\n")
	b.WriteString("Any other property is reported as unknown, with a warning; none stops tilefeed.\n")
	return b.String()
}

func prefixes(ps []string) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = "`" + p + "`"
	}
	return strings.Join(out, ", ")
}

func list(m map[string]bool) string {
	names := sortedKeys(m)
	for i, n := range names {
		names[i] = "`" + n + "`"
	}
	return strings.Join(names, ", ")
}
