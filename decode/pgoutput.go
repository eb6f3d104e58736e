package decode

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tilefeed/tilefeed/change"
)

// PgOutput decodes the messages of the pgoutput plugin (protocol version
// 1) into change events. It keeps the relations the stream has described
// and the transaction being decoded; it is not safe for concurrent use.
type PgOutput struct {
	types     *pgtype.Map
	relations map[uint32]*relation
	keep      func(table, column string) bool
	resolve   TypeResolver

	inTx       bool
	xid        uint32
	commitLSN  uint64
	commitTime time.Time
	ordinal    uint32
}

type relation struct {
	table string
	cols  []column
}

type column struct {
	name string
	oid  uint32
	mod  int32 // atttypmod
	key  bool  // part of the replica identity
	keep bool
}

// NewPgOutput returns a decoder. keep decides which columns (by
// "schema.table" and column name) enter row images; nil keeps all.
func NewPgOutput(keep func(table, column string) bool) *PgOutput {
	if keep == nil {
		keep = func(string, string) bool { return true }
	}
	return &PgOutput{types: pgtype.NewMap(), relations: map[uint32]*relation{}, keep: keep}
}

// TypeResolver maps the type OID and modifier a RELATION message gives a
// column to those whose decoding the column takes: a domain's base type
// and the domain's modifier (recursively), an array of a domain the array
// of that base type, any other type itself.
// PostgreSQL's row descriptions, and so the snapshot, report a domain
// column by its base type; resolving the stream's OIDs the same way makes
// both paths decode a value alike (Debezium does the same). It is called
// once per RELATION message column, never per row.
type TypeResolver func(oid uint32, mod int32) (uint32, int32, error)

// ResolveTypes makes d resolve the type of every column of the RELATION
// messages it decodes from now on through r. Without it a domain column
// decodes as text.
func (d *PgOutput) ResolveTypes(r TypeResolver) { d.resolve = r }

// ErrProtocol marks input that breaks the pgoutput protocol (a change
// outside a transaction, an unknown relation): the stream cannot be
// trusted past it.
var ErrProtocol = errors.New("pgoutput protocol violation")

// Decode decodes one pgoutput message (the WAL data of an XLogData) and
// appends the events it implies to dst: a row change, one truncate per
// table, a Commit marker, or nothing (BEGIN, RELATION, TYPE, ORIGIN).
func (d *PgOutput) Decode(dst []change.Event, data []byte) ([]change.Event, error) {
	msg, err := parse(data)
	if err != nil {
		// The same bytes would come again after a reconnect: not retryable.
		return dst, fmt.Errorf("%w: parse pgoutput %s: %w", ErrProtocol, messageName(data), err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		rel := &relation{table: m.Namespace + "." + m.RelationName, cols: make([]column, len(m.Columns))}
		for i, c := range m.Columns {
			oid, mod := c.DataType, c.TypeModifier
			if d.resolve != nil {
				if oid, mod, err = d.resolve(oid, mod); err != nil {
					return dst, fmt.Errorf("resolve the type of %s.%s (OID %d): %w", rel.table, c.Name, c.DataType, err)
				}
			}
			rel.cols[i] = column{name: c.Name, oid: oid, mod: mod, key: c.Flags&1 != 0, keep: d.keep(rel.table, c.Name)}
		}
		d.relations[m.RelationID] = rel
	case *pglogrepl.BeginMessage:
		if d.inTx {
			return dst, fmt.Errorf("%w: BEGIN of %s inside a transaction", ErrProtocol, change.FormatLSN(uint64(m.FinalLSN)))
		}
		d.inTx, d.xid, d.commitLSN, d.commitTime, d.ordinal = true, m.Xid, uint64(m.FinalLSN), m.CommitTime.UTC(), 0
	case *pglogrepl.CommitMessage:
		if !d.inTx || uint64(m.CommitLSN) != d.commitLSN {
			return dst, fmt.Errorf("%w: COMMIT %s does not close the open transaction", ErrProtocol, change.FormatLSN(uint64(m.CommitLSN)))
		}
		d.inTx = false
		return append(dst, change.Event{Op: change.Commit, Pos: d.next(), CommitTime: d.commitTime,
			Resume: uint64(m.TransactionEndLSN)}), nil
	case *pglogrepl.InsertMessage:
		rel, err := d.relation(m.RelationID)
		if err != nil {
			return dst, err
		}
		after, err := d.tuple(rel, m.Tuple, false)
		if err != nil {
			return dst, err
		}
		return append(dst, d.event(change.Insert, rel, nil, after)), nil
	case *pglogrepl.UpdateMessage:
		rel, err := d.relation(m.RelationID)
		if err != nil {
			return dst, err
		}
		var before change.Row
		if m.OldTuple != nil {
			if before, err = d.tuple(rel, m.OldTuple, m.OldTupleType == pglogrepl.UpdateMessageTupleTypeKey); err != nil {
				return dst, err
			}
		}
		after, err := d.tuple(rel, m.NewTuple, false)
		if err != nil {
			return dst, err
		}
		return append(dst, d.event(change.Update, rel, before, after)), nil
	case *pglogrepl.DeleteMessage:
		rel, err := d.relation(m.RelationID)
		if err != nil {
			return dst, err
		}
		before, err := d.tuple(rel, m.OldTuple, m.OldTupleType == pglogrepl.DeleteMessageTupleTypeKey)
		if err != nil {
			return dst, err
		}
		return append(dst, d.event(change.Delete, rel, before, nil)), nil
	case *pglogrepl.TruncateMessage:
		// All relations first, so an error appends nothing.
		rels := make([]*relation, len(m.RelationIDs))
		for i, id := range m.RelationIDs {
			if rels[i], err = d.relation(id); err != nil {
				return dst, err
			}
		}
		for _, rel := range rels {
			dst = append(dst, d.event(change.Truncate, rel, nil, nil))
		}
	}
	return dst, nil
}

// Column describes a column of a relation as the stream's last RELATION
// message did.
type Column struct {
	Name    string
	OID     uint32 // the type's OID, resolved (a domain's base type: see TypeResolver)
	TypeMod int32  // atttypmod (resolved as OID): -1 when the type has none
	// Key marks the replica identity: the primary key under REPLICA
	// IDENTITY DEFAULT, every column under FULL.
	Key bool
}

// Columns returns the columns of table ("schema.table") that enter row
// images, in table order, as the last RELATION message described them; nil
// when no RELATION message described the table.
func (d *PgOutput) Columns(table string) []Column {
	for _, rel := range d.relations {
		if rel.table != table {
			continue
		}
		out := make([]Column, 0, len(rel.cols))
		for _, c := range rel.cols {
			if c.keep {
				out = append(out, Column{Name: c.name, OID: c.oid, TypeMod: c.mod, Key: c.key})
			}
		}
		return out
	}
	return nil
}

// XID returns the transaction id of the transaction being decoded, or of
// the last one when none is open.
func (d *PgOutput) XID() uint32 { return d.xid }

func (d *PgOutput) next() change.Position {
	d.ordinal++
	return change.Position{LSN: d.commitLSN, Ordinal: d.ordinal}
}

func (d *PgOutput) event(op change.Op, rel *relation, before, after change.Row) change.Event {
	return change.Event{Op: op, Table: rel.table, Before: before, After: after, Pos: d.next(), CommitTime: d.commitTime}
}

func (d *PgOutput) relation(id uint32) (*relation, error) {
	if !d.inTx {
		return nil, fmt.Errorf("%w: row change outside a transaction", ErrProtocol)
	}
	rel := d.relations[id]
	if rel == nil {
		return nil, fmt.Errorf("%w: change to relation %d, which no RELATION message described", ErrProtocol, id)
	}
	return rel, nil
}

// tuple decodes a row image. keyOnly marks the old-key image of REPLICA
// IDENTITY DEFAULT/INDEX, where non-key columns are absent, not NULL.
func (d *PgOutput) tuple(rel *relation, t *pglogrepl.TupleData, keyOnly bool) (change.Row, error) {
	if t == nil {
		return nil, nil
	}
	if len(t.Columns) != len(rel.cols) {
		return nil, fmt.Errorf("%w: %s row has %d columns, its relation %d", ErrProtocol, rel.table, len(t.Columns), len(rel.cols))
	}
	row := make(change.Row, len(t.Columns))
	for i, c := range t.Columns {
		col := rel.cols[i]
		if !col.keep || (keyOnly && !col.key) {
			continue
		}
		switch c.DataType {
		case pglogrepl.TupleDataTypeNull:
			row[col.name] = nil
		case pglogrepl.TupleDataTypeToast:
			row[col.name] = change.Unchanged
		case pglogrepl.TupleDataTypeText:
			v, err := DecodeText(d.types, col.oid, c.Data)
			if err != nil {
				return nil, fmt.Errorf("%s.%s: %w", rel.table, col.name, err)
			}
			row[col.name] = v
		case pglogrepl.TupleDataTypeBinary:
			return nil, fmt.Errorf("%s.%s: binary tuple data is not requested and not supported", rel.table, col.name)
		default:
			return nil, fmt.Errorf("%w: %s.%s has tuple data type %q", ErrProtocol, rel.table, col.name, c.DataType)
		}
	}
	return row, nil
}

// parse is pglogrepl.Parse made safe for malformed input. Parse indexes
// its input without bounds checks, so a short message panics inside it:
// checkLengths first rejects the lengths it would allocate gigabytes by,
// and recover turns the remaining panics into errors.
func parse(data []byte) (msg pglogrepl.Message, err error) {
	if err := checkLengths(data); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("malformed: %v", r)
		}
	}()
	return pglogrepl.Parse(data)
}

// messageName names a pgoutput message by its type byte, for errors.
func messageName(data []byte) string {
	if len(data) == 0 {
		return "empty message"
	}
	return pglogrepl.MessageType(data[0]).String() + " message"
}

var errShort = errors.New("message ends early")

// checkLengths checks the lengths that pglogrepl.Parse allocates by before
// it reads the bytes: a TRUNCATE's relation count and a tuple column's
// length. A corrupt length would otherwise allocate up to 16 GiB.
func checkLengths(data []byte) error {
	if len(data) == 0 {
		return errShort
	}
	b := data[1:]
	switch data[0] {
	case 'T':
		if len(b) < 5 {
			return errShort
		}
		if n := uint64(binary.BigEndian.Uint32(b)); n*4 > uint64(len(b)-5) {
			return fmt.Errorf("%d relations in %d bytes", n, len(b)-5)
		}
	case 'I':
		if len(b) < 5 {
			return errShort
		}
		_, err := checkTuple(b[5:])
		return err
	case 'U':
		if len(b) < 5 {
			return errShort
		}
		kind := b[4]
		b = b[5:]
		if kind == 'K' || kind == 'O' {
			n, err := checkTuple(b)
			if err != nil {
				return err
			}
			if n >= len(b) {
				return errShort
			}
			b = b[n+1:] // the 'N' of the new tuple
		}
		_, err := checkTuple(b)
		return err
	case 'D':
		if len(b) < 5 {
			return errShort
		}
		_, err := checkTuple(b[5:])
		return err
	}
	return nil
}

// checkTuple checks the column lengths of TupleData and returns its size.
func checkTuple(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, errShort
	}
	n, off := int(binary.BigEndian.Uint16(b)), 2
	for range n {
		if off >= len(b) {
			return 0, errShort
		}
		kind := b[off]
		off++
		if kind != 't' && kind != 'b' {
			continue
		}
		if len(b)-off < 4 {
			return 0, errShort
		}
		l := uint64(binary.BigEndian.Uint32(b[off:]))
		off += 4
		if l > uint64(len(b)-off) {
			return 0, fmt.Errorf("column of %d bytes in %d", l, len(b)-off)
		}
		off += int(l)
	}
	return off, nil
}

// DecodeText decodes a value in PostgreSQL's text format into the value
// types of change.Row. Types pgx does not know come back as text.
func DecodeText(types *pgtype.Map, oid uint32, data []byte) (any, error) {
	switch oid {
	case pgtype.JSONOID, pgtype.JSONBOID:
		return json.RawMessage(append([]byte{}, data...)), nil
	case pgtype.QCharOID: // pgx would make "char" a rune, a number
		return string(data), nil
	case pgtype.XMLOID: // pgx would make xml []byte, which is bytea's type
		return string(data), nil
	case pgtype.NumericOID:
		// Straight from the text, so the value keeps the scale PostgreSQL
		// sent: pgx would turn 100 into 1E+2.
		v, _, err := apd.NewFromString(string(data))
		if err != nil {
			return nil, fmt.Errorf("decode numeric value %q: %w", truncate(data), err)
		}
		return v, nil
	}
	typ, ok := types.TypeForOID(oid)
	if !ok {
		return string(data), nil
	}
	if ac, ok := typ.Codec.(*pgtype.ArrayCodec); ok {
		return decodeArray(types, oid, ac.ElementType.OID, data)
	}
	v, err := typ.Codec.DecodeValue(types, oid, pgtype.TextFormatCode, data)
	if err != nil {
		return nil, fmt.Errorf("decode %s value %q: %w", typ.Name, truncate(data), err)
	}
	return normalize(v, oid, data)
}

func normalize(v any, oid uint32, text []byte) (any, error) {
	switch x := v.(type) {
	case nil, bool, string, int64, float64, []byte, time.Duration, json.RawMessage:
		return x, nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case float32:
		// Through the text PostgreSQL sent, so 0.1::real stays 0.1
		// rather than 0.10000000149011612.
		return parseFloatText(text, float64(x)), nil
	case time.Time:
		return x.UTC(), nil
	case [16]byte:
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16]), nil
	case pgtype.InfinityModifier:
		if x > 0 {
			return change.PosInfinity, nil
		}
		return change.NegInfinity, nil
	case pgtype.Interval:
		if x.Months == 0 {
			return time.Duration(x.Days)*24*time.Hour + time.Duration(x.Microseconds)*time.Microsecond, nil
		}
		return string(text), nil
	case netip.Prefix:
		return string(text), nil
	}
	return string(text), nil
}

// decodeArray decodes an array element by element through DecodeText, so
// an element comes out as the same value would alone: 0.1 in a real[]
// stays 0.1, and intervals with months, inet, time and json keep their
// text. A multi-dimensional array nests: {{1,2},{3,4}} is [[1 2] [3 4]],
// not the [1 2 3 4] of a different value.
func decodeArray(types *pgtype.Map, oid, elem uint32, data []byte) (any, error) {
	var arr pgtype.Array[*string]
	if err := types.Scan(oid, pgtype.TextFormatCode, data, &arr); err != nil {
		return nil, fmt.Errorf("decode array %q: %w", truncate(data), err)
	}
	flat := make([]any, len(arr.Elements))
	for i, s := range arr.Elements {
		if s == nil {
			continue
		}
		v, err := DecodeText(types, elem, []byte(*s))
		if err != nil {
			return nil, fmt.Errorf("array element %d: %w", i+1, err)
		}
		flat[i] = v
	}
	if len(arr.Dims) <= 1 {
		return flat, nil
	}
	return nest(flat, arr.Dims), nil
}

// nest cuts row-major elements into nested lists of the given dimensions.
func nest(flat []any, dims []pgtype.ArrayDimension) []any {
	if len(dims) == 1 {
		return flat
	}
	n := int(dims[0].Length)
	out := make([]any, n)
	size := len(flat) / max(n, 1)
	for i := range n {
		out[i] = nest(flat[i*size:(i+1)*size], dims[1:])
	}
	return out
}

func parseFloatText(text []byte, fallback float64) float64 {
	// ParseFloat reads PostgreSQL's Infinity, -Infinity and NaN too.
	if f, err := strconv.ParseFloat(string(text), 64); err == nil {
		return f
	}
	return fallback
}

func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "…"
	}
	return string(b)
}
