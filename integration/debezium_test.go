package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/connector/debezium"
	"github.com/tilefeed/tilefeed/decode"
	"github.com/tilefeed/tilefeed/decode/debeziumtest"
	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/sink/embedded"
	"github.com/tilefeed/tilefeed/transform"
)

// capturedEvent is a change as pgoutput gave it, with what Debezium's
// source block is made of.
type capturedEvent struct {
	ev   change.Event
	src  debeziumtest.Source
	cols []decode.Column
}

// dbzKeys are the primary keys of the test tables (REPLICA IDENTITY FULL
// marks every column as key in pgoutput).
var dbzKeys = map[string][]string{"public.transactions": {"id"}, "public.customers": {"id"}, "public.sync": {"id"},
	"public.typed": {"id"}, "public.typed_l": {"id"}, "public.typed_x": {"id"}}

// captureAsDebezium does what Debezium's PostgreSQL connector does: it
// creates a slot with an exported snapshot, reads tables in that snapshot
// (op r rows), then streams the slot until the sentinel row sync=until is
// committed.
func captureAsDebezium(t *testing.T, db string, tables []string, ready func(), until int) []capturedEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	repl, err := pgconn.Connect(ctx, cluster.ConnString(db)+" replication=database")
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close(context.Background())
	slot := "dbz_" + db
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		t.Fatalf("create slot: %v", err)
	}
	cp, _ := pglogrepl.ParseLSN(res.ConsistentPoint)
	var out []capturedEvent

	conn, err := pgx.Connect(ctx, cluster.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+res.SnapshotName+"'"); err != nil {
		t.Fatal(err)
	}
	var at time.Time
	var xid uint32
	if err := tx.QueryRow(ctx, "SELECT now(), txid_current()::bigint::int4").Scan(&at, &xid); err != nil {
		// A read-only transaction has no xid to give: Debezium sends the
		// snapshot's xmin; any number serves.
		xid = 1
		_ = tx.Rollback(ctx)
		tx, _ = conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+res.SnapshotName+"'"); err != nil {
			t.Fatal(err)
		}
		if err := tx.QueryRow(ctx, "SELECT now()").Scan(&at); err != nil {
			t.Fatal(err)
		}
	}
	types := pgtype.NewMap()
	for _, table := range tables {
		rows, err := tx.Query(ctx, "SELECT * FROM "+table+" ORDER BY id", pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		var cols []decode.Column
		for _, f := range rows.FieldDescriptions() {
			cols = append(cols, decode.Column{Name: f.Name, OID: f.DataTypeOID, TypeMod: f.TypeModifier, Key: f.Name == "id"})
		}
		for rows.Next() {
			row := change.Row{}
			for i, raw := range rows.RawValues() {
				if raw == nil {
					row[cols[i].Name] = nil
					continue
				}
				v, err := decode.DecodeText(types, cols[i].OID, raw)
				if err != nil {
					t.Fatal(err)
				}
				row[cols[i].Name] = v
			}
			out = append(out, capturedEvent{ev: change.Event{Op: change.Read, Table: table, After: row, CommitTime: at.UTC()},
				src: debeziumtest.Source{LSN: uint64(cp), TxID: int64(xid), Snapshot: "true"}, cols: cols})
		}
		rows.Close()
	}
	_ = tx.Rollback(ctx)
	conn.Close(ctx)
	if len(out) > 0 {
		out[0].src.Snapshot = "first"
		out[len(out)-1].src.Snapshot = "last"
	}
	ready()

	if err := pglogrepl.StartReplication(ctx, repl, slot, cp, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'tilefeed'"}}); err != nil {
		t.Fatalf("start replication: %v", err)
	}
	d := decode.NewPgOutput(nil)
	d.ResolveTypes(domainResolver(t, db)) // as Debezium's TypeRegistry does
	var seq debeziumtest.Sequencer
	var events []change.Event
	sawSentinel := false
	for {
		msg, err := repl.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok {
			continue
		}
		switch cd.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(cd.Data[1:])
			if err == nil && ka.ReplyRequested {
				_ = pglogrepl.SendStandbyStatusUpdate(ctx, repl, pglogrepl.StandbyStatusUpdate{})
			}
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
			if err != nil {
				t.Fatal(err)
			}
			if events, err = d.Decode(events[:0], xld.WALData); err != nil {
				t.Fatal(err)
			}
			for _, ev := range events {
				src := seq.Source(ev, uint64(xld.WALStart), d.XID())
				if ev.Op.IsMarker() {
					if ev.Op == change.Commit && sawSentinel {
						return out
					}
					continue
				}
				out = append(out, capturedEvent{ev: ev, src: src, cols: d.Columns(ev.Table)})
				if ev.Table == "public.sync" && ev.After["id"] == int64(until) {
					sawSentinel = true
				}
			}
		}
	}
}

// encodeAll turns the captured changes into Debezium records.
func encodeAll(t *testing.T, enc *debeziumtest.Encoder, f debeziumtest.Format, evs []capturedEvent) []debeziumtest.Record {
	t.Helper()
	var out []debeziumtest.Record
	for _, c := range evs {
		recs, err := enc.Encode(f, debeziumtest.TableOf(c.ev.Table, c.cols, dbzKeys[c.ev.Table]...), c.ev, c.src)
		if err != nil {
			t.Fatalf("encode %s %s: %v", c.ev.Op, c.ev.Table, err)
		}
		out = append(out, recs...)
	}
	return out
}

// dbzRun runs a Debezium-path source into a fresh embedded store until
// done says everything arrived.
type dbzRun struct {
	store  *embedded.Store
	rt     *connector.Runtime
	cancel context.CancelFunc
	done   chan error
}

func startDebezium(t *testing.T, c *config.Connector, src connector.Source) *dbzRun {
	t.Helper()
	engine, err := transform.Compile(c.Features)
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(filepath.Join(t.TempDir(), "dbz.db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rt := connector.New(c.Name, src, st, engine, log, connector.NewMetrics(prometheus.NewRegistry()),
		connector.Options{BatchMax: 300, IdleCheckpoint: time.Nanosecond})
	ctx, cancel := context.WithCancel(context.Background())
	r := &dbzRun{store: st, rt: rt, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- rt.Run(ctx) }()
	t.Cleanup(func() { st.Close() })
	return r
}

func (r *dbzRun) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, io.EOF) {
		t.Fatalf("runtime: %v", err)
	}
}

// sameRecords compares every entity record of two stores bin by bin,
// leaving out what says where a change came from (positions) and when the
// record was last written (the two snapshots were taken moments apart),
// then the features a client reads, byte for byte.
func sameRecords(t *testing.T, what string, c *config.Connector, want, got connector.Store, cards int) {
	t.Helper()
	var keys []sink.Key
	for i := 0; i < cards; i++ {
		keys = append(keys, sink.Key{Set: "card_activity", ID: fmt.Sprint(i)})
	}
	for i := 0; i < 15; i++ {
		keys = append(keys, sink.Key{Set: "customer", ID: fmt.Sprint(i)})
	}
	sameStored(t, what, c, want, got, keys)
}

// recordMeta are the bins that say where a change came from and when the
// record was written: they differ between paths that agree on the data.
var recordMeta = map[string]bool{"_lsn": true, "_ord": true, "_seq": true, "_src": true, "_ts": true}

// sameStored compares the records of keys in two stores bin by bin,
// leaving out recordMeta, then the features a client reads, byte for byte.
func sameStored(t *testing.T, what string, c *config.Connector, want, got connector.Store, keys []sink.Key) {
	t.Helper()
	engine, err := transform.Compile(c.Features)
	if err != nil {
		t.Fatal(err)
	}
	sameView(t, what, viewStore(t, engine, want, keys), viewStore(t, engine, got, keys))
}

// stopAndCompare stops the binary with SIGTERM, compares its store with the
// direct path's and returns its checkpoint.
func stopAndCompare(t *testing.T, p *process, what string, c *config.Connector, want connector.Store, path string, cards int) (connector.Checkpoint, error) {
	t.Helper()
	if code := p.term(); code != 0 {
		t.Fatalf("exit code %d; log:\n%s", code, p.log())
	}
	st, err := embedded.Open(path, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sameRecords(t, what, c, want, st, cards)
	cp, _, _, err := connector.LoadCheckpoint(context.Background(), st, c.Name)
	return cp, err
}

// TestDebeziumEquivalence runs one PostgreSQL workload (a snapshot of
// existing rows, then inserts, multi-row inserts, updates of amounts,
// keys, event times and the filtered column, deletes, rollbacks) through
// the direct pgoutput path and, encoded as Debezium would have written it,
// through the Debezium path: JSON with schemas from an NDJSON file,
// schemaless JSON batches and Avro records posted to the HTTP endpoint.
// Every feature record must come out the same.
func TestDebeziumEquivalence(t *testing.T) {
	conn, db := newDB(t)
	w := newWorkload(conn, 4242)
	w.run(t, 60) // rows the snapshots read
	dir := t.TempDir()
	raw := bytes.Replace(connectorJSON(db, filepath.Join(dir, "direct.db"), "127.0.0.1:0"), []byte(`"no_data"`), []byte(`"initial"`), 1)
	c := loadConnector(t, raw)

	captured := make(chan []capturedEvent, 1)
	slotReady := make(chan struct{})
	go func() {
		captured <- captureAsDebezium(t, db, []string{"public.transactions", "public.customers", "public.sync"}, func() { close(slotReady) }, 1)
	}()
	<-slotReady
	direct := startRuntime(t, c)
	waitSnapshot(t, direct) // before the sentinel: it must not land in the snapshot ahead of other tables
	w.run(t, 300)
	waitSync(t, conn, direct.read, 1)
	verify(t, conn, direct.read, time.Now(), w.cards) // the direct path equals SQL; the others must equal it
	var evs []capturedEvent
	select {
	case evs = <-captured:
	case <-time.After(3 * time.Minute):
		t.Fatal("capture did not see the sentinel")
	}
	direct.stop(t)
	directStore := openStore(t, c)
	defer directStore.Close()
	t.Logf("captured %d changes: snapshot rows, then streamed changes", len(evs))

	enc, err := debeziumtest.New(debeziumtest.Options{TopicPrefix: db, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var changes int64 // applied by the file run, each once

	t.Run("json-with-schema-file", func(t *testing.T) {
		var lines []string
		for _, r := range encodeAll(t, enc, debeziumtest.JSON, evs) {
			value := "null"
			if r.Value != nil {
				value = string(r.Value)
			}
			lines = append(lines, `{"key":`+string(r.Key)+`,"value":`+value+`}`)
		}
		path := filepath.Join(dir, "events.ndjson")
		if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		run := startDebezium(t, c, debezium.NewFile([]string{path}, &decode.Debezium{}, log))
		if err := <-run.done; !errors.Is(err, io.EOF) {
			t.Fatalf("file source: %v", err)
		}
		sameRecords(t, "JSON with schemas", c, directStore, run.store, w.cards)
		changes = run.rt.Status().ChangesTotal
	})

	// The real binary behind the HTTP endpoint, killed with SIGKILL three
	// times while a client that retries as Debezium Server does posts
	// batches: the features and the count of changes applied come out as
	// from one clean run.
	t.Run("http-binary-killed", func(t *testing.T) {
		if changes == 0 {
			t.Skip("the file run gave no change count")
		}
		var cfg map[string]any
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		listen := freeAddr(t)
		props := cfg["config"].(map[string]any)
		props["tilefeed.source"] = "http"
		props["http.listen"] = listen
		props["embedded.path"] = filepath.Join(dir, "http.db")
		file, _ := json.Marshal(cfg)
		p := newProcess(t, file, listen)
		var bodies [][]byte
		var values []string
		for _, r := range encodeAll(t, enc, debeziumtest.JSON, evs) {
			if r.Value == nil {
				continue
			}
			values = append(values, string(r.Value))
			if len(values) == 15 {
				bodies = append(bodies, []byte("["+strings.Join(values, ",")+"]"))
				values = nil
			}
		}
		bodies = append(bodies, []byte("["+strings.Join(values, ",")+"]"))
		posted := make(chan int, 1)
		go func() {
			retries := 0
			for i := 0; i < len(bodies); {
				resp, err := http.Post("http://"+listen+"/debezium", "application/json", bytes.NewReader(bodies[i]))
				if err == nil {
					resp.Body.Close()
				}
				if err == nil && resp.StatusCode == http.StatusOK {
					i++
					continue
				}
				retries++
				time.Sleep(20 * time.Millisecond)
			}
			posted <- retries
		}()
		// SIGKILL at a random moment, and in the narrow windows: the
		// checkpoint written but the request not answered, half a batch's
		// records written, the records written but not the checkpoint.
		// The first process dies with the second request durable and not
		// answered: snapshot rows, which only the request's digest in the
		// checkpoint tells from new ones.
		p.spawn([]string{"TILEFEED_FAULT=after-checkpoint:2"})
		if !p.waitExit(60 * time.Second) {
			t.Fatalf("fault after-checkpoint:2 never hit; log:\n%s", p.log())
		}
		p.start()
		kills := 1
		retries, done := 0, false
		for _, f := range []string{"", "after-checkpoint:3", "", "mid-records:2", "after-records:3", ""} {
			select {
			case retries = <-posted:
				done = true
			default:
			}
			if done {
				break
			}
			if f == "" {
				time.Sleep(time.Duration(100+rand.IntN(300)) * time.Millisecond)
				p.kill()
			} else {
				p.kill()
				p.spawn([]string{"TILEFEED_FAULT=" + f})
				if !p.waitExit(60 * time.Second) {
					t.Fatalf("fault %s never hit; log:\n%s", f, p.log())
				}
			}
			p.start()
			kills++
		}
		if !done {
			select {
			case retries = <-posted:
			case <-time.After(3 * time.Minute):
				t.Fatalf("the client did not get every batch answered 200; log:\n%s", p.log())
			}
		}
		cp, err := stopAndCompare(t, p, "HTTP, binary killed", c, directStore, filepath.Join(dir, "http.db"), w.cards)
		if err != nil || cp.Changes != changes {
			t.Errorf("changes applied %d (%v), want %d as in one clean run", cp.Changes, err, changes)
		}
		t.Logf("%d batches, %d kills, %d retried requests, %d changes applied once each", len(bodies), kills, retries, cp.Changes)
	})

	// Kafka Connect's way: every record in a topic per table, three
	// partitions each (by key), read by the real binary, killed in the
	// narrow windows and at random while it reads; done when the status
	// shows every change applied.
	// kafkaRoute produces recs to a fresh kfake cluster while the real
	// binary reads them with props added to its connector file, killed
	// once for every fault ("" is a SIGKILL at a random instant), then
	// checks the records and that the checkpoint holds every partition's end.
	kafkaRoute := func(t *testing.T, what string, recs []debeziumtest.Record, props map[string]any, faults []string) {
		topics := map[string]bool{}
		for _, r := range recs {
			topics[r.Topic] = true
		}
		var names []string
		for n := range topics {
			names = append(names, n)
		}
		kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, names...))
		if err != nil {
			t.Fatal(err)
		}
		defer kc.Close()
		cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...))
		if err != nil {
			t.Fatal(err)
		}
		var krecs []*kgo.Record
		for _, r := range recs {
			krecs = append(krecs, &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value})
		}
		// Produced while tilefeed reads and is killed, as Debezium would.
		produced := make(chan error, 1)
		go func() {
			defer cl.Close()
			for i := 0; i < len(krecs); i += 150 {
				if err := cl.ProduceSync(context.Background(), krecs[i:min(i+150, len(krecs))]...).FirstErr(); err != nil {
					produced <- err
					return
				}
				time.Sleep(40 * time.Millisecond)
			}
			produced <- nil
		}()

		var cfg map[string]any
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		listen := freeAddr(t)
		path := filepath.Join(t.TempDir(), "kafka.db")
		cprops := cfg["config"].(map[string]any)
		cprops["tilefeed.source"] = "kafka"
		cprops["kafka.bootstrap.servers"] = strings.Join(kc.ListenAddrs(), ",")
		cprops["http.listen"] = listen
		cprops["embedded.path"] = path
		cprops["batch.max.changes"] = 200
		for k, v := range props {
			cprops[k] = v
		}
		file, _ := json.Marshal(cfg)
		p := newProcess(t, file, listen)
		applied := func() int64 {
			resp, err := http.Get("http://" + listen + "/v1/status")
			if err != nil {
				return -1
			}
			defer resp.Body.Close()
			var st struct {
				Runtime connector.Status `json:"runtime"`
			}
			if json.NewDecoder(resp.Body).Decode(&st) != nil {
				return -1
			}
			return st.Runtime.ChangesTotal
		}
		kills := 0
		for _, f := range faults {
			if f == "" {
				p.start()
				time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
				p.kill()
			} else {
				p.spawn([]string{"TILEFEED_FAULT=" + f})
				if !p.waitExit(20 * time.Second) {
					t.Logf("fault %s not hit (the input may be read already)", f)
					continue
				}
			}
			kills++
		}
		if err := <-produced; err != nil {
			t.Fatal(err)
		}
		p.start()
		deadline := time.Now().Add(3 * time.Minute)
		// Kafka Connect wrote every published table's topic; tilefeed reads
		// the feature tables' (topics default to them).
		want := int64(0)
		for _, e := range evs {
			if dbzKeys[e.ev.Table] != nil {
				want++
			}
		}
		for applied() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d changes applied, want %d; log:\n%s", applied(), want, p.log())
			}
			time.Sleep(50 * time.Millisecond)
		}
		cp, err := stopAndCompare(t, p, what, c, directStore, path, w.cards)
		ends := map[string]int64{}
		for _, r := range krecs {
			if dbzKeys[strings.TrimPrefix(r.Topic, db+".")] != nil {
				ends[fmt.Sprintf("%s/%d", r.Topic, r.Partition)] = r.Offset + 1
			}
		}
		got := map[string]int64{}
		for name, sp := range cp.Streams {
			got[name] = sp.Offset
		}
		if err != nil || cp.Changes != want || !reflect.DeepEqual(got, ends) {
			t.Errorf("checkpoint: %d changes, offsets %v (%v); want %d changes, offsets %v (every partition's end)", cp.Changes, got, err, want, ends)
		}
		t.Logf("%d records in %d partitions, %d kills, %d changes applied once each", len(krecs), len(cp.Streams), kills, cp.Changes)
	}

	t.Run("kafka-binary-killed", func(t *testing.T) {
		if changes == 0 {
			t.Skip("the file run gave no change count")
		}
		kafkaRoute(t, "Kafka, binary killed", encodeAll(t, enc, debeziumtest.JSON, evs), nil,
			[]string{"after-checkpoint:2", "", "mid-records:2", "after-records:2", ""})
	})

	// Avro keys and values in the Confluent wire format, as Kafka Connect's
	// AvroConverter writes them, schemas from a registry: the converter
	// properties of the connector file, end to end.
	t.Run("avro-kafka-binary-killed", func(t *testing.T) {
		if changes == 0 {
			t.Skip("the file run gave no change count")
		}
		registry := httptest.NewServer(enc.Registry())
		defer registry.Close()
		const avro = "io.confluent.connect.avro.AvroConverter"
		kafkaRoute(t, "Avro over Kafka, binary killed", encodeAll(t, enc, debeziumtest.Avro, evs), map[string]any{
			"key.converter": avro, "value.converter": avro,
			"key.converter.schema.registry.url": registry.URL, "value.converter.schema.registry.url": registry.URL,
		}, []string{"", "mid-records:3"})
	})

	t.Run("schemaless-json-http-batches", func(t *testing.T) {
		colTypes := map[string]map[string]string{}
		var values []string
		var bodies [][]byte
		for _, e := range evs {
			colTypes[e.ev.Table] = enc.ColumnTypes(debeziumtest.TableOf(e.ev.Table, e.cols, dbzKeys[e.ev.Table]...))
		}
		for _, r := range encodeAll(t, enc, debeziumtest.JSONPayload, evs) {
			if r.Value == nil {
				continue // Debezium Server's http sink does not send tombstones
			}
			values = append(values, string(r.Value))
			if len(values) == 50 {
				bodies = append(bodies, []byte("["+strings.Join(values, ",")+"]"))
				values = nil
			}
		}
		bodies = append(bodies, []byte("["+strings.Join(values, ",")+"]"))
		run := postDebezium(t, c, log, &decode.Debezium{ColumnTypes: colTypes}, "application/json", bodies)
		sameRecords(t, "schemaless JSON over HTTP", c, directStore, run.store, w.cards)
	})

	t.Run("avro-http", func(t *testing.T) {
		var bodies [][]byte
		for _, r := range encodeAll(t, enc, debeziumtest.Avro, evs) {
			if r.Value != nil {
				bodies = append(bodies, r.Value)
			}
		}
		registry := httptest.NewServer(enc.Registry())
		defer registry.Close()
		run := postDebezium(t, c, log, &decode.Debezium{Schemas: decode.NewSchemaRegistry(registry.URL, nil)}, "avro/bytes", bodies)
		sameRecords(t, "Avro over HTTP", c, directStore, run.store, w.cards)
	})
}

// postDebezium posts bodies to a fresh HTTP source running c's features
// into a fresh store, each until it is answered 200, and stops the run.
func postDebezium(t *testing.T, c *config.Connector, log *slog.Logger, dec *decode.Debezium, contentType string, bodies [][]byte) *dbzRun {
	t.Helper()
	src := debezium.NewHTTP(dec, log, 10*time.Second)
	srv := httptest.NewServer(src)
	defer srv.Close()
	run := startDebezium(t, c, src)
	for i := 0; i < len(bodies); {
		resp, err := http.Post(srv.URL, contentType, bytes.NewReader(bodies[i]))
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			i++
		case http.StatusServiceUnavailable:
			// Not streaming yet: as Debezium Server, retry, unless the
			// runtime has stopped (it answers 503 for good then).
			select {
			case err := <-run.done:
				t.Fatalf("request %d: the runtime stopped: %v", i, err)
			case <-time.After(20 * time.Millisecond):
			}
		default:
			t.Fatalf("request %d answered %d: %s", i, resp.StatusCode, msg)
		}
	}
	run.stop(t)
	return run
}

// domainResolver resolves domains to their base types as Debezium's
// TypeRegistry does, from the domains of db as they are now.
func domainResolver(t *testing.T, db string) decode.TypeResolver {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), cluster.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	type base struct {
		oid uint32
		mod int32
	}
	domains, arrays := map[uint32]base{}, map[uint32]uint32{}
	rows, err := conn.Query(context.Background(), `SELECT t.oid::int8, t.typbasetype::int8, t.typtypmod, t.typarray::int8 FROM pg_type t WHERE t.typtype = 'd'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var oid, to, arr int64
		var mod int32
		if err := rows.Scan(&oid, &to, &mod, &arr); err != nil {
			t.Fatal(err)
		}
		domains[uint32(oid)] = base{uint32(to), mod}
		arrays[uint32(arr)] = uint32(oid)
	}
	rows.Close()
	arrayOf := map[uint32]uint32{}
	rows, err = conn.Query(context.Background(), `SELECT oid::int8, typarray::int8 FROM pg_type WHERE typarray <> 0`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var oid, arr int64
		if err := rows.Scan(&oid, &arr); err != nil {
			t.Fatal(err)
		}
		arrayOf[uint32(oid)] = uint32(arr)
	}
	rows.Close()
	var resolve decode.TypeResolver
	resolve = func(oid uint32, mod int32) (uint32, int32, error) {
		if d, ok := arrays[oid]; ok {
			b, _, _ := resolve(d, -1)
			return arrayOf[b], mod, nil
		}
		d, ok := domains[oid]
		if !ok {
			return oid, mod, nil
		}
		if mod == -1 {
			mod = d.mod
		}
		return resolve(d.oid, mod)
	}
	return resolve
}
