package debeziumtest

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/decode"
)

// Options are the connector settings the encoder follows. The zero value
// is Debezium's defaults.
type Options struct {
	// TopicPrefix is topic.prefix, the logical server name: source.name
	// and the first part of topic and schema names. Default "tilefeed".
	TopicPrefix string
	// Database is source.db. Default "postgres".
	Database string
	// Version is source.version. Default "3.1.0.Final".
	Version string
	// DecimalHandlingMode is decimal.handling.mode: "precise" (default),
	// "string" or "double".
	DecimalHandlingMode string
	// TimePrecisionMode is time.precision.mode: "adaptive" (default),
	// "adaptive_time_microseconds" or "connect".
	TimePrecisionMode string
	// UnavailablePlaceholder is unavailable.value.placeholder. Default
	// decode.DefaultUnavailablePlaceholder.
	UnavailablePlaceholder string
	// NoTombstones is tombstones.on.delete=false: no null-valued record
	// after a delete.
	NoTombstones bool
	// Clock gives the processing time of the payload's ts_ms, ts_us and
	// ts_ns. Default time.Now.
	Clock func() time.Time
}

// Encoder turns pgoutput change events into the records Debezium's
// PostgreSQL connector writes. It is safe for concurrent use.
type Encoder struct {
	opts Options
	reg  *Registry
}

// New returns an Encoder with opts, defaults filled in.
func New(opts Options) (*Encoder, error) {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&opts.TopicPrefix, "tilefeed")
	def(&opts.Database, "postgres")
	def(&opts.Version, "3.1.0.Final")
	def(&opts.DecimalHandlingMode, "precise")
	def(&opts.TimePrecisionMode, "adaptive")
	def(&opts.UnavailablePlaceholder, decode.DefaultUnavailablePlaceholder)
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	switch opts.DecimalHandlingMode {
	case "precise", "string", "double":
	default:
		return nil, fmt.Errorf("debeziumtest: DecimalHandlingMode %q: want precise, string or double", opts.DecimalHandlingMode)
	}
	switch opts.TimePrecisionMode {
	case "adaptive", "adaptive_time_microseconds", "connect":
	default:
		return nil, fmt.Errorf("debeziumtest: TimePrecisionMode %q: want adaptive, adaptive_time_microseconds or connect", opts.TimePrecisionMode)
	}
	return &Encoder{opts: opts, reg: NewRegistry()}, nil
}

// Registry returns the registry the Avro records' schema ids refer to.
func (e *Encoder) Registry() *Registry { return e.reg }

// Format is a record serialization.
type Format int

const (
	// JSON is JsonConverter with schemas.enable=true: {"schema", "payload"}.
	JSON Format = iota + 1
	// JSONPayload is JsonConverter with schemas.enable=false: the payload.
	JSONPayload
	// Avro is Confluent's AvroConverter: magic byte 0, the 4-byte schema
	// id (in Registry) and the Avro binary datum.
	Avro
)

// Record is one Kafka record.
type Record struct {
	Topic string // <prefix>.<schema>.<table>
	Key   []byte // nil: a null key (truncate)
	Value []byte // nil: a tombstone
}

// Source is what the source block says about a change beyond the event.
type Source struct {
	// LSN is the change's own WAL position: the WALStart of the XLogData
	// that carried its message.
	LSN uint64
	// LastCommitLSN is where the commit record of the transaction streamed
	// before this one ends: that transaction's change.Commit Resume. 0
	// writes null, as after a start without offsets.
	LastCommitLSN uint64
	// TxID is the transaction id (decode.PgOutput.XID).
	TxID int64
	// Snapshot is source.snapshot: "" is "false", or "true" for op r.
	Snapshot string
}

// Sequencer follows a pgoutput stream to fill Source: it remembers the
// Resume of the last Commit marker as the next transactions'
// LastCommitLSN. The zero value starts with null.
type Sequencer struct{ lastCommit uint64 }

// Source returns the Source of ev, decoded from the XLogData starting at
// walStart in transaction xid. A Commit marker only moves LastCommitLSN on.
func (s *Sequencer) Source(ev change.Event, walStart uint64, xid uint32) Source {
	src := Source{LSN: walStart, LastCommitLSN: s.lastCommit, TxID: int64(xid)}
	if ev.Op == change.Commit {
		s.lastCommit = ev.Resume
	}
	return src
}

// Encode returns the records Debezium writes for ev, a change to table t:
// none for Commit and Heartbeat markers; a delete and, unless NoTombstones,
// its tombstone; for an update that changes the key, the delete of the
// old key, its tombstone and the create of the new one; else one record.
func (e *Encoder) Encode(f Format, t Table, ev change.Event, src Source) ([]Record, error) {
	if ev.Op.IsMarker() {
		return nil, nil
	}
	if ev.Table != t.qualified() {
		return nil, fmt.Errorf("debeziumtest: event of %s encoded as %s", ev.Table, t.qualified())
	}
	value, err := e.rowSchema(t, false)
	if err != nil {
		return nil, err
	}
	key, err := e.rowSchema(t, true)
	if err != nil {
		return nil, err
	}
	enc := &recordEncoder{e: e, f: f, t: t, key: key, value: value, env: envelopeSchema(e.opts.TopicPrefix, t, value), src: src, ev: ev}
	switch ev.Op {
	case change.Insert, change.Read:
		return enc.records(ev.Op, nil, ev.After)
	case change.Update:
		if ev.Before != nil && !sameKey(t, ev.Before, ev.After) {
			// RelationalChangeRecordEmitter.handlePrimaryKeyUpdate.
			del, err := enc.records(change.Delete, ev.Before, nil)
			if err != nil {
				return nil, err
			}
			ins, err := enc.records(change.Insert, nil, ev.After)
			return append(del, ins...), err
		}
		return enc.records(change.Update, ev.Before, ev.After)
	case change.Delete:
		return enc.records(change.Delete, ev.Before, nil)
	case change.Truncate:
		return enc.records(change.Truncate, nil, nil)
	}
	return nil, fmt.Errorf("debeziumtest: op %s", ev.Op)
}

type recordEncoder struct {
	e               *Encoder
	f               Format
	t               Table
	key, value, env *schema
	src             Source
	ev              change.Event
}

func (r *recordEncoder) records(op change.Op, before, after change.Row) ([]Record, error) {
	topic := r.e.opts.TopicPrefix + "." + r.t.qualified()
	var key []byte
	if op != change.Truncate {
		img := after
		if img == nil {
			img = before
		}
		kv, err := r.e.row(r.t, r.key, img, true)
		if err != nil {
			return nil, fmt.Errorf("debeziumtest: %s key: %w", r.t.qualified(), err)
		}
		if key, err = r.e.serialize(r.f, r.key, kv); err != nil {
			return nil, err
		}
	}
	env := map[string]any{"source": r.e.source(r.t, r.ev, r.src), "op": string(op)}
	var err error
	if before != nil {
		if env["before"], err = r.e.row(r.t, r.value, before, false); err != nil {
			return nil, fmt.Errorf("debeziumtest: %s before: %w", r.t.qualified(), err)
		}
	}
	if after != nil {
		if env["after"], err = r.e.row(r.t, r.value, after, false); err != nil {
			return nil, fmt.Errorf("debeziumtest: %s after: %w", r.t.qualified(), err)
		}
	}
	now := r.e.opts.Clock()
	env["ts_ms"], env["ts_us"], env["ts_ns"] = now.UnixMilli(), now.UnixMicro(), now.UnixMicro()*1000
	value, err := r.e.serialize(r.f, r.env, env)
	if err != nil {
		return nil, err
	}
	out := []Record{{Topic: topic, Key: key, Value: value}}
	if op == change.Delete && !r.e.opts.NoTombstones {
		out = append(out, Record{Topic: topic, Key: key})
	}
	return out, nil
}

// row is the struct value of a row image. Columns the image lacks (the
// old-key image of REPLICA IDENTITY DEFAULT) are null, or, when not
// optional, the type's zero value: Debezium's fallback.
func (e *Encoder) row(t Table, s *schema, img change.Row, key bool) (map[string]any, error) {
	out := make(map[string]any, len(s.fields))
	for i, f := range s.fields {
		c := columnNamed(t, f.name)
		v, ok := img[c.Name]
		if !ok || v == nil {
			if f.s.optional {
				out[f.name] = nil
			} else {
				out[f.name] = zero(f.s)
			}
			if ok && !f.s.optional {
				return nil, fmt.Errorf("column %s (field %d) is NULL but not optional", c.Name, i)
			}
			continue
		}
		if key && v == change.Unchanged {
			return nil, fmt.Errorf("key column %s is an unchanged TOAST value", c.Name)
		}
		ti, _ := c.typeInfo() // rowSchema checked it
		cv, err := e.value(ti, v)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", c.Name, err)
		}
		out[f.name] = cv
	}
	return out, nil
}

func columnNamed(t Table, name string) Column {
	for _, c := range t.Columns {
		if c.Name == name {
			return c
		}
	}
	return Column{Name: name}
}

// zero is JdbcValueConverters' fallback for a value that is absent from a
// non-optional column.
func zero(s *schema) any {
	switch s.typ {
	case "boolean":
		return false
	case "int8", "int16", "int32", "int64":
		return int64(0)
	case "float":
		return float32(0)
	case "double":
		return float64(0)
	case "string":
		return ""
	case "bytes":
		if s.name == nameDecimal {
			return []byte{0}
		}
		return []byte{}
	case "array":
		return []any{}
	case "struct":
		m := map[string]any{}
		for _, f := range s.fields {
			m[f.name] = zero(f.s)
		}
		return m
	}
	return nil
}

func sameKey(t Table, a, b change.Row) bool {
	for _, c := range t.Columns {
		if !c.Key {
			continue
		}
		x, y := a[c.Name], b[c.Name]
		if dx, ok := x.(*apd.Decimal); ok {
			if dy, ok := y.(*apd.Decimal); !ok || dx.Cmp(dy) != 0 {
				return false
			}
			continue
		}
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

// source is the source block (PostgresSourceInfoStructMaker).
func (e *Encoder) source(t Table, ev change.Event, src Source) map[string]any {
	snapshot := src.Snapshot
	if snapshot == "" {
		snapshot = "false"
		if ev.Op == change.Read {
			snapshot = "true"
		}
	}
	last := "null"
	if src.LastCommitLSN != 0 {
		last = strconv.Quote(strconv.FormatUint(src.LastCommitLSN, 10))
	}
	us := ev.CommitTime.UnixMicro()
	return map[string]any{
		"version": e.opts.Version, "connector": "postgresql", "name": e.opts.TopicPrefix,
		"ts_ms": ev.CommitTime.UnixMilli(), "snapshot": snapshot, "db": e.opts.Database,
		"sequence": "[" + last + "," + strconv.Quote(strconv.FormatUint(src.LSN, 10)) + "]",
		"ts_us":    us, "ts_ns": us * 1000, "schema": t.Schema, "table": t.Name,
		"txId": src.TxID, "lsn": int64(src.LSN), "xmin": nil,
	}
}

// serialize writes one record key or value in format f.
func (e *Encoder) serialize(f Format, s *schema, v map[string]any) ([]byte, error) {
	switch f {
	case JSON:
		b := []byte(`{"schema":`)
		b = appendJSONSchema(b, s, "")
		b = append(b, `,"payload":`...)
		b, err := appendJSONValue(b, s, v)
		if err != nil {
			return nil, err
		}
		return append(b, '}'), nil
	case JSONPayload:
		return appendJSONValue(nil, s, v)
	case Avro:
		id, err := e.reg.register(avroSchemaText(s))
		if err != nil {
			return nil, err
		}
		if id > math.MaxInt32 {
			return nil, fmt.Errorf("debeziumtest: schema id %d", id)
		}
		out := []byte{0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(out[1:], uint32(id))
		return appendAvro(out, s, v)
	}
	return nil, fmt.Errorf("debeziumtest: format %d", f)
}
