package decode

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tilefeed/tilefeed/change"
)

// DefaultUnavailablePlaceholder is the default of the Debezium PostgreSQL
// connector's unavailable.value.placeholder: the value it writes for an
// unchanged TOASTed column it did not receive.
const DefaultUnavailablePlaceholder = "__debezium_unavailable_value"

// Debezium decodes the change-event records of the Debezium PostgreSQL
// connector into the same change.Event the pgoutput decoder produces, so
// one set of transforms serves both paths. It is pure: bytes in, values
// out, no I/O (DecodeAvro asks Schemas for schemas; only SchemaRegistry
// does I/O). A Debezium is safe for concurrent use once configured; it
// keeps the schemas it has parsed (a bounded number), since every record
// of a topic repeats the same one. Do not copy it after first use.
//
// # Records
//
// DecodeJSON takes a record's key and value as JsonConverter wrote them:
// {"schema": …, "payload": …} (schemas.enable=true; the schema may be
// null) or the bare payload (schemas.enable=false). A value that is empty,
// JSON null or a wrapper with a null payload is a tombstone
// (KindTombstone): the marker Kafka compaction needs after a delete, not a
// second delete. A payload with "op" is a change (c, u, d, r, t:
// KindChange) or a logical decoding message (m: KindMessage, which callers
// skip unless they want messages). A payload with "status" BEGIN or END is
// transaction metadata (KindTxBegin, KindTxEnd). Field order never matters
// (3.x moved "transaction" before "op"), keys that are absent read as null
// (sinks such as Gson drop null keys), and unknown keys are ignored. A row
// image with a schema holds every field the schema declares (NULL when its
// key is absent); a schemaless one is change.Event.Sparse, so that
// transforms read a column it lacks as NULL, not as dropped.
//
// # Values with a schema
//
// The Connect schema decides, by its semantic name first and its type
// second:
//
//   - org.apache.kafka.connect.data.Decimal: base64 of the big-endian two's
//     complement unscaled value, parameters.scale S → *apd.Decimal with
//     exponent −S, so the scale is kept (39.00, not 39). A JSON number
//     (JsonConverter decimal.format=NUMERIC) is read exactly from its text.
//   - io.debezium.data.VariableScaleDecimal {scale, value} → *apd.Decimal.
//   - io.debezium.time.Date and Connect Date (days) → time.Time, midnight UTC.
//   - io.debezium.time.Timestamp and Connect Timestamp (ms), MicroTimestamp
//     (µs), NanoTimestamp (ns): wall-clock values with no zone → time.Time
//     in UTC holding that wall clock, never shifted by a zone. Debezium's
//     ±infinity sentinels become change.PosInfinity and
//     change.NegInfinity, as pgoutput decodes them.
//   - io.debezium.time.Time and Connect Time (ms), MicroTime (µs), NanoTime
//     (ns): the time of day as PostgreSQL prints it ("11:12:51.219026",
//     "24:00:00"), which is what the pgoutput decoder yields for time.
//   - io.debezium.time.ZonedTimestamp and IsoTimestamp: ISO-8601 text with
//     an offset (Z, ±hh:mm), 0–9 fraction digits and possibly a signed or
//     five-digit year → the UTC instant; "infinity"/"-infinity" become
//     change.PosInfinity/NegInfinity. IsoDate → midnight UTC. ZonedTime,
//     IsoTime and Interval stay strings.
//   - io.debezium.time.MicroDuration (µs; months counted as 30.4375 days by
//     Debezium) → time.Duration; an interval beyond ±292 years is an error.
//   - io.debezium.data.Json → json.RawMessage (checked to be JSON).
//   - Everything else by type: int8…int64 → int64; float and double →
//     float64 (a float written as an integer, 4, is accepted, and the
//     strings NaN, Infinity and -Infinity too); boolean → bool (BIT(1) is a
//     boolean in Debezium); string → string (Uuid, Enum, EnumSet, Xml,
//     Ltree, decimals in decimal.handling.mode=string, …); bytes (bytea,
//     io.debezium.data.Bits) → []byte; array → []any of decoded elements;
//     struct (geometry Point, …) and map → json.RawMessage of the decoded
//     fields, keys sorted.
//
// A field the schema declares but the payload lacks is left out of the
// row (not sent, as pgoutput's unchanged columns), not set to NULL. A
// payload field the schema does not declare is decoded as without a schema.
//
// # Values without a schema
//
// ColumnTypes, when it names the column's declared PostgreSQL type
// ("numeric(10,2)", "timestamptz", "int4[]"…), decides as Debezium's
// default settings would have: numeric(p,s) and money (scale 2) read a
// base64 string with that scale, a {scale, value} object, or a JSON number
// exactly from its text; numeric without a declared scale cannot read a
// base64 string and fails naming the column; timestamp and time read an
// integer in µs, or in ms when the declared precision is 0–3 (Debezium's
// adaptive mode); timestamptz reads ISO text; date reads days; interval
// reads µs; json, jsonb and hstore read text into json.RawMessage; bytea
// and bit(n>1) read base64; integers and floats read numbers. Otherwise a
// value stays as the JSON has it: string, bool, a json.Number becomes int64
// when its text is an integer that fits and an exact *apd.Decimal
// otherwise, an array becomes []any, an object json.RawMessage.
//
// # Unchanged TOAST values
//
// The placeholder never becomes a value: the column decodes to
// change.Unchanged. The forms Debezium writes (UnchangedToastedPlaceholder
// and PostgresValueConverter) are recognized: the string itself (text,
// varchar, json, jsonb, xml, bytea in hex mode, decimals in string mode);
// its UTF-8 bytes, base64 in JSON, for bytes fields (bytea; also a Decimal
// or VariableScaleDecimal holding exactly those bytes, though Debezium
// itself fails such events today); ["placeholder"] for text, varchar, char,
// json and jsonb arrays; [base64 of the bytes] for bytea[]; the bytes as
// numbers for int[], bigint[] and date[]; [UUID.nameUUIDFromBytes] for
// uuid[]; {"placeholder":"placeholder"} for hstore, as JSON text or a map.
// With a schema a form counts only in fields of its type; without one,
// any value of that shape does.
type Debezium struct {
	// UnavailablePlaceholder is the connector's
	// unavailable.value.placeholder; empty means
	// DefaultUnavailablePlaceholder.
	UnavailablePlaceholder string
	// ColumnTypes gives declared PostgreSQL column types by "schema.table"
	// and column, for values that come without a schema. Optional.
	ColumnTypes map[string]map[string]string
	// DecimalHandlingMode is the connector's decimal.handling.mode, which
	// decides how a schemaless string in a numeric column reads: "precise"
	// (the default: base64 of the unscaled value) or "string" (decimal
	// text). "double" reads as "precise"; its values are JSON numbers.
	DecimalHandlingMode string
	// Schemas resolves the schema ids of Confluent-framed Avro records.
	// Only DecodeAvro needs it.
	Schemas SchemaSource

	cache schemaCache
}

// Kind tells what a Debezium record is.
type Kind uint8

const (
	// KindChange is a row change (op c, u, d, r) or a truncate (op t).
	KindChange Kind = iota + 1
	// KindTombstone is a null value that follows a delete so that Kafka
	// compaction can drop the key. It is not an event.
	KindTombstone
	// KindMessage is a logical decoding message (pg_logical_emit_message,
	// op m). Callers skip it unless they consume messages.
	KindMessage
	// KindTxBegin and KindTxEnd are transaction metadata records
	// (provide.transaction.metadata=true).
	KindTxBegin
	KindTxEnd
)

func (k Kind) String() string {
	switch k {
	case KindChange:
		return "change"
	case KindTombstone:
		return "tombstone"
	case KindMessage:
		return "message"
	case KindTxBegin:
		return "tx-begin"
	case KindTxEnd:
		return "tx-end"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Envelope is one decoded Debezium record.
type Envelope struct {
	Kind Kind
	// Event is the change for KindChange: Op, Table (source.schema +
	// "." + source.table), Before, After and CommitTime. For KindTxEnd its
	// Op is change.Commit and CommitTime the transaction's; for KindTxBegin
	// only CommitTime is set. Pos and Resume are never set: the caller
	// derives positions from Source (see SourceInfo).
	Event change.Event
	// Source is the source block of a change or a message.
	Source SourceInfo
	// TxOrder is the data event's transaction block, present when the
	// connector provides transaction metadata.
	TxOrder *TxOrder
	// Tx describes a BEGIN or END record.
	Tx *TxInfo
	// Message is the logical decoding message of KindMessage.
	Message *Message
	// Key is the record key, decoded as a row; nil when the key is absent
	// or null (truncate).
	Key change.Row
}

// SourceInfo is the source block of a Debezium PostgreSQL event.
//
// Ordering. pgoutput streams whole transactions in commit order, and
// Debezium keeps that order, but LSN is the change's own WAL position,
// not its transaction's commit LSN: a transaction that commits later can
// hold smaller LSNs than one that committed before it. Do not order by LSN
// alone. Sequence[0] (lastCommitLsn) is where the commit record of the
// transaction streamed before this one ends (what the pgoutput decoder
// reports as that transaction's Resume): the same for every change of a
// transaction and increasing from one transaction to the next; within a
// transaction LSN increases (a multi-table TRUNCATE gives several events
// one LSN). So
// (Sequence[0], Sequence[1]) ordered lexicographically is the stream
// order, and a caller that needs change.Position can take Sequence[0] as
// its LSN and count the ordinal within it itself (or take
// TxOrder.TotalOrder when the connector provides transaction metadata).
// Sequence[0] is null for the first transaction after a connector starts
// without stored offsets, and snapshot events (op r) share one Sequence and
// LSN and carry no order: order those by Kafka offset and treat them as
// idempotent upserts.
type SourceInfo struct {
	Version   string
	Connector string
	Name      string // topic.prefix (logical server name)
	DB        string
	Schema    string
	Table     string
	// TsMs, TsUs and TsNs are the commit time (the read time in a
	// snapshot); TsUs and TsNs exist since Debezium 2.x. Zero when absent.
	TsMs, TsUs, TsNs int64
	// Snapshot is "" outside a snapshot, else the lowercase value Debezium
	// sent: "true", "false", "first", "first_in_data_collection", "last",
	// "last_in_data_collection", "incremental", …; a JSON boolean (docs,
	// old versions) becomes "true" or "false". Values outside the schema's
	// Enum are kept.
	Snapshot string
	TxID     int64 // 0 when absent (a non-transactional message)
	// LSN is the change's own WAL position (source.lsn).
	LSN uint64
	// Sequence is source.sequence: [lastCommitLsn, lsn]; an element is nil
	// when Debezium sent null, or the whole array when it was absent (1.x).
	Sequence [2]*uint64

	hasTxID bool
}

// IsSnapshot reports whether the event was read by a snapshot.
func (s SourceInfo) IsSnapshot() bool { return s.Snapshot != "" && s.Snapshot != "false" }

// commitTime returns the most precise of ts_ns, ts_us and ts_ms.
func (s SourceInfo) commitTime() time.Time {
	switch {
	case s.TsNs != 0:
		return time.Unix(0, s.TsNs).UTC()
	case s.TsUs != 0:
		return time.UnixMicro(s.TsUs).UTC()
	case s.TsMs != 0:
		return time.UnixMilli(s.TsMs).UTC()
	}
	return time.Time{}
}

// TxInfo is a transaction metadata record.
type TxInfo struct {
	// ID is the id as sent, "txId:lsn". BEGIN and END of one transaction
	// differ in the lsn part: match them on TxID.
	ID   string
	TxID int64 // the txId part; equals SourceInfo.TxID of the transaction's changes
	// LSN is the lsn part (0 when the id has none): for BEGIN the
	// transaction's first WAL record, for END the end of its commit record.
	LSN uint64
	// EventCount and DataCollections are set on END: the number of data
	// events of the transaction, in total and per "schema.table".
	EventCount      int64
	DataCollections []DataCollection
	TsMs            int64
}

// DataCollection counts the events of one table in a transaction.
type DataCollection struct {
	Name       string // "schema.table"
	EventCount int64
}

// TxOrder is the transaction block of a data event.
type TxOrder struct {
	ID   string // "txId:lsn", the lsn being this event's
	TxID int64
	// TotalOrder is the 1-based position of the event in its transaction,
	// DataCollectionOrder its position among the transaction's events for
	// the same table.
	TotalOrder          int64
	DataCollectionOrder int64
}

// Message is a logical decoding message.
type Message struct {
	Prefix  string
	Content []byte
	// Transactional reports whether the message was emitted inside a
	// transaction (source.txId is set); a non-transactional one has no
	// BEGIN and END around it.
	Transactional bool
}

// FieldError reports a record that cannot be decoded: where (Path, such as
// "value.after.price" or "key.id"), the offending value as it appeared,
// shortened, and why.
type FieldError struct {
	Path   string
	Value  string
	Reason string
	Err    error
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString("debezium ")
	b.WriteString(e.Path)
	if e.Value != "" {
		b.WriteString(" = ")
		b.WriteString(e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	if e.Err != nil {
		if e.Reason != "" {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(path, value, format string, args ...any) error {
	return &FieldError{Path: path, Value: value, Reason: fmt.Sprintf(format, args...)}
}

func wrapErr(path, value string, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return err
	}
	return &FieldError{Path: path, Value: value, Err: err}
}

// DecodeJSON decodes a record written by JsonConverter. key may be nil.
func (d *Debezium) DecodeJSON(key, value []byte) (Envelope, error) {
	c, err := d.conv()
	if err != nil {
		return Envelope{}, err
	}
	schema, payload, err := d.splitJSON("value", value)
	if err != nil {
		return Envelope{}, err
	}
	env := Envelope{Kind: KindTombstone}
	if payload != nil {
		if env, err = c.payload("value", schema, payload); err != nil {
			return Envelope{}, err
		}
	}
	schema, payload, err = d.splitJSON("key", key)
	if err != nil {
		return Envelope{}, err
	}
	if payload != nil {
		if env.Key, err = c.row("key", schema, payload, env.Event.Table); err != nil {
			return Envelope{}, err
		}
	}
	return env, nil
}

// splitJSON parses a JsonConverter record: the schema (nil without one)
// and the payload object, nil for a null or absent record. The top level
// is split first, so a schema seen before is not decoded again.
func (d *Debezium) splitJSON(path string, data []byte) (*connectSchema, map[string]any, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, nil, nil
	}
	if data[0] != '{' {
		v, err := decodeJSONValue(data)
		if err != nil {
			return nil, nil, wrapErr(path, shortBytes(data), err)
		}
		if v == nil {
			return nil, nil, nil
		}
		return nil, nil, fieldErr(path, show(v), "want a JSON object")
	}
	if schema, raw, ok := d.knownWrapper(data); ok {
		if isNull(raw) {
			return schema, nil, nil
		}
		// Anything unusual takes the general path below, which reports it.
		if v, err := decodeJSONValue(raw); err == nil {
			if m, ok := v.(map[string]any); ok {
				return schema, m, nil
			}
		}
	}
	v, err := decodeJSONValue(data)
	if err != nil {
		return nil, nil, wrapErr(path, shortBytes(data), err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, nil, fieldErr(path, show(v), "want a JSON object")
	}
	if !isWrapper(m) {
		return nil, m, nil
	}
	var schema *connectSchema
	if m["schema"] != nil {
		// The schema's text is the cache key; this split happens once per
		// schema, later records take knownWrapper.
		var top map[string]json.RawMessage
		if err := json.Unmarshal(data, &top); err != nil {
			return nil, nil, wrapErr(path, shortBytes(data), err)
		}
		if schema, err = d.jsonSchema(path+".schema", top["schema"], m["schema"]); err != nil {
			return nil, nil, err
		}
	}
	payload, _ := m["payload"].(map[string]any) // isWrapper saw an object or null
	return schema, payload, nil
}

// decodeJSONValue decodes one JSON value, numbers as json.Number so that
// no digit is lost.
func decodeJSONValue(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

// isWrapper reports whether m is JsonConverter's {"schema", "payload"}
// wrapper rather than a bare payload: a "payload" object (or null) beside,
// at most, a "schema" object (or null). No Debezium envelope has such keys;
// a schemaless key whose only column is named payload holds no object.
func isWrapper(m map[string]any) bool {
	p, ok := m["payload"]
	if !ok || !objectOrNull(p) {
		return false
	}
	s, hasSchema := m["schema"]
	return len(m) == 1 || (len(m) == 2 && hasSchema && objectOrNull(s))
}

func objectOrNull(v any) bool {
	_, ok := v.(map[string]any)
	return ok || v == nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func shortBytes(b []byte) string {
	if len(b) > 80 {
		return strconv.Quote(string(b[:80])) + "…"
	}
	return strconv.Quote(string(b))
}

// conv holds what decoding one record needs.
type conv struct {
	placeholder   string
	placeholder64 string // base64 of the placeholder's bytes
	stringDecimal bool
	columnTypes   map[string]map[string]string
}

func (d *Debezium) conv() (*conv, error) {
	c := &conv{placeholder: d.UnavailablePlaceholder, columnTypes: d.ColumnTypes}
	if c.placeholder == "" {
		c.placeholder = DefaultUnavailablePlaceholder
	}
	c.placeholder64 = base64.StdEncoding.EncodeToString([]byte(c.placeholder))
	switch d.DecimalHandlingMode {
	case "", "precise", "double":
	case "string":
		c.stringDecimal = true
	default:
		return nil, fmt.Errorf("decode: Debezium.DecimalHandlingMode %q: want precise, double or string", d.DecimalHandlingMode)
	}
	return c, nil
}

// payload decodes an envelope payload (JSON or Avro, as generic values)
// with its schema, nil when there is none.
func (c *conv) payload(path string, schema *connectSchema, m map[string]any) (Envelope, error) {
	if op, ok := m["op"]; ok && op != nil {
		return c.change(path, schema, m)
	}
	if st, ok := m["status"]; ok && st != nil {
		return c.tx(path, m)
	}
	return Envelope{}, fieldErr(path, "", "neither op (a change event) nor status (transaction metadata)")
}

var ops = map[string]change.Op{"c": change.Insert, "u": change.Update, "d": change.Delete, "r": change.Read, "t": change.Truncate}

func (c *conv) change(path string, schema *connectSchema, m map[string]any) (Envelope, error) {
	op, ok := m["op"].(string)
	if !ok {
		return Envelope{}, fieldErr(path+".op", show(m["op"]), "want a string")
	}
	src, err := c.source(path+".source", m["source"])
	if err != nil {
		return Envelope{}, err
	}
	env := Envelope{Source: src}
	env.Event.CommitTime = src.commitTime()
	if op == "m" {
		msg, err := c.message(path+".message", schema.field("message"), m["message"])
		if err != nil {
			return Envelope{}, err
		}
		msg.Transactional = src.hasTxID
		env.Kind, env.Message = KindMessage, msg
		return env, nil
	}
	env.Kind = KindChange
	if env.Event.Op, ok = ops[op]; !ok {
		return Envelope{}, fieldErr(path+".op", strconv.Quote(op), "want c, u, d, r, t or m")
	}
	if src.Schema == "" || src.Table == "" {
		return Envelope{}, fieldErr(path+".source", "", "a change needs source.schema and source.table")
	}
	env.Event.Table = src.Schema + "." + src.Table
	// Without a schema, nothing says which columns the table has: an
	// absent key is NULL, not a dropped column.
	env.Event.Sparse = schema.field("before") == nil && schema.field("after") == nil
	if env.Event.Op != change.Truncate {
		if env.Event.Before, err = c.row(path+".before", schema.field("before"), m["before"], env.Event.Table); err != nil {
			return Envelope{}, err
		}
		if env.Event.After, err = c.row(path+".after", schema.field("after"), m["after"], env.Event.Table); err != nil {
			return Envelope{}, err
		}
		if env.Event.After == nil && env.Event.Op != change.Delete {
			return Envelope{}, fieldErr(path+".after", "null", "op %q needs the new row", op)
		}
	}
	if env.TxOrder, err = c.txOrder(path+".transaction", m["transaction"]); err != nil {
		return Envelope{}, err
	}
	return env, nil
}

func (c *conv) source(path string, v any) (SourceInfo, error) {
	var s SourceInfo
	m, ok := v.(map[string]any)
	if !ok {
		return s, fieldErr(path, show(v), "want the source object")
	}
	var err error
	for _, f := range []struct {
		name string
		dst  *string
	}{{"version", &s.Version}, {"connector", &s.Connector}, {"name", &s.Name}, {"db", &s.DB}, {"schema", &s.Schema}, {"table", &s.Table}} {
		if *f.dst, _, err = optString(path+"."+f.name, m[f.name]); err != nil {
			return s, err
		}
	}
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"ts_ms", &s.TsMs}, {"ts_us", &s.TsUs}, {"ts_ns", &s.TsNs}} {
		if *f.dst, _, err = optInt(path+"."+f.name, m[f.name]); err != nil {
			return s, err
		}
	}
	if s.TxID, s.hasTxID, err = optInt(path+".txId", m["txId"]); err != nil {
		return s, err
	}
	lsn, _, err := optInt(path+".lsn", m["lsn"])
	if err != nil {
		return s, err
	}
	if lsn < 0 {
		return s, fieldErr(path+".lsn", strconv.FormatInt(lsn, 10), "an LSN is not negative")
	}
	s.LSN = uint64(lsn)
	switch x := m["snapshot"].(type) {
	case nil:
	case bool:
		s.Snapshot = strconv.FormatBool(x)
	case string:
		s.Snapshot = strings.ToLower(x)
	default:
		return s, fieldErr(path+".snapshot", show(x), "want a string or a boolean")
	}
	seq, ok, err := optString(path+".sequence", m["sequence"])
	if err != nil || !ok {
		return s, err
	}
	s.Sequence, err = parseSequence(path+".sequence", seq)
	return s, err
}

// parseSequence reads source.sequence, a JSON array in a string:
// "[\"34442256\",\"34466480\"]", elements strings (or numbers) or null.
func parseSequence(path, text string) ([2]*uint64, error) {
	var out [2]*uint64
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var elems []any
	if err := dec.Decode(&elems); err != nil {
		return out, wrapErr(path, strconv.Quote(text), err)
	}
	if len(elems) != 2 {
		return out, fieldErr(path, strconv.Quote(text), "want [lastCommitLsn, lsn]")
	}
	for i, e := range elems {
		var s string
		switch x := e.(type) {
		case nil:
			continue
		case string:
			s = x
		case json.Number:
			s = x.String()
		default:
			return out, fieldErr(path, strconv.Quote(text), "element %d is neither an LSN nor null", i)
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return out, fieldErr(path, strconv.Quote(text), "element %d is not an LSN", i)
		}
		out[i] = &n
	}
	return out, nil
}

func (c *conv) message(path string, s *connectSchema, v any) (*Message, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fieldErr(path, show(v), "want the message object")
	}
	prefix, _, err := optString(path+".prefix", m["prefix"])
	if err != nil {
		return nil, err
	}
	msg := &Message{Prefix: prefix}
	switch x := m["content"].(type) {
	case nil:
	case []byte:
		msg.Content = x
	case string:
		// With a string schema (binary.handling.mode=hex or base64) the
		// text is the content as Debezium sent it; otherwise it is base64.
		if cs := s.field("content"); cs != nil && cs.Type == "string" {
			msg.Content = []byte(x)
		} else if msg.Content, err = base64.StdEncoding.DecodeString(x); err != nil {
			return nil, wrapErr(path+".content", show(x), err)
		}
	default:
		return nil, fieldErr(path+".content", show(x), "want base64 text")
	}
	return msg, nil
}

func (c *conv) txOrder(path string, v any) (*TxOrder, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fieldErr(path, show(v), "want the transaction object")
	}
	id, _, err := optString(path+".id", m["id"])
	if err != nil {
		return nil, err
	}
	t := &TxOrder{ID: id}
	if t.TxID, _, err = parseTxID(path+".id", id); err != nil {
		return nil, err
	}
	if t.TotalOrder, _, err = optInt(path+".total_order", m["total_order"]); err != nil {
		return nil, err
	}
	if t.DataCollectionOrder, _, err = optInt(path+".data_collection_order", m["data_collection_order"]); err != nil {
		return nil, err
	}
	return t, nil
}

// parseTxID splits a transaction id, "txId:lsn" or "txId".
func parseTxID(path, id string) (int64, uint64, error) {
	txs, lsns, hasLSN := strings.Cut(id, ":")
	tx, err := strconv.ParseInt(txs, 10, 64)
	if err != nil {
		return 0, 0, fieldErr(path, strconv.Quote(id), "want txId:lsn")
	}
	if !hasLSN {
		return tx, 0, nil
	}
	lsn, err := strconv.ParseUint(lsns, 10, 64)
	if err != nil {
		return 0, 0, fieldErr(path, strconv.Quote(id), "want txId:lsn")
	}
	return tx, lsn, nil
}

func (c *conv) tx(path string, m map[string]any) (Envelope, error) {
	status, ok := m["status"].(string)
	var env Envelope
	switch {
	case ok && status == "BEGIN":
		env.Kind = KindTxBegin
	case ok && status == "END":
		env.Kind = KindTxEnd
		env.Event.Op = change.Commit
	default:
		return env, fieldErr(path+".status", show(m["status"]), "want BEGIN or END")
	}
	id, _, err := optString(path+".id", m["id"])
	if err != nil {
		return env, err
	}
	t := &TxInfo{ID: id}
	if t.TxID, t.LSN, err = parseTxID(path+".id", id); err != nil {
		return env, err
	}
	if t.TsMs, _, err = optInt(path+".ts_ms", m["ts_ms"]); err != nil {
		return env, err
	}
	if t.EventCount, _, err = optInt(path+".event_count", m["event_count"]); err != nil {
		return env, err
	}
	if dcs := m["data_collections"]; dcs != nil {
		list, ok := dcs.([]any)
		if !ok {
			return env, fieldErr(path+".data_collections", show(dcs), "want an array")
		}
		for i, e := range list {
			ep := path + ".data_collections[" + strconv.Itoa(i) + "]"
			em, ok := e.(map[string]any)
			if !ok {
				return env, fieldErr(ep, show(e), "want an object")
			}
			var dc DataCollection
			if dc.Name, _, err = optString(ep+".data_collection", em["data_collection"]); err != nil {
				return env, err
			}
			if dc.EventCount, _, err = optInt(ep+".event_count", em["event_count"]); err != nil {
				return env, err
			}
			t.DataCollections = append(t.DataCollections, dc)
		}
	}
	env.Tx = t
	if t.TsMs != 0 {
		env.Event.CommitTime = time.UnixMilli(t.TsMs).UTC()
	}
	return env, nil
}

func optString(path string, v any) (string, bool, error) {
	switch x := v.(type) {
	case nil:
		return "", false, nil
	case string:
		return x, true, nil
	}
	return "", false, fieldErr(path, show(v), "want a string")
}

func optInt(path string, v any) (int64, bool, error) {
	if v == nil {
		return 0, false, nil
	}
	n, err := intOf(path, v)
	return n, err == nil, err
}
