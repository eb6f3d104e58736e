package postgres

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/decode"
	"github.com/tilefeed/tilefeed/sink"
)

// The snapshot's durable state lives in the sink, in the checkpoint set:
//
//	<connector>/snapshot             the progress record (JSON, bin "json")
//	<connector>/snapshot/<id>/<part> a staged chunk: its rows as PostgreSQL
//	                                 sent them (text), bin "rows"
//
// A chunk is staged before its rows go to the runtime, so a chunk whose
// rows are partly durable when the process dies is replayed byte for byte
// with the same positions; see docs/exactly-once.md.
const (
	// stagingPart bounds one staging record (Aerospike's record limit is
	// 1 MiB by default); a bigger chunk takes several. It stays under the
	// split store's default threshold (record.split.bytes, 512 KiB), so a
	// staging record is written and read in one piece.
	stagingPart = 256 << 10
	// goneTTL is how a record that is no longer needed is removed: it is
	// overwritten to expire, not deleted, because a delete in Aerospike
	// Community Edition is not durable (a cold restart can bring the old
	// record back), while an expired newer version keeps the old one out.
	goneTTL = time.Second
	// stagingTTL lets staging records orphaned by a crash (written, then
	// the progress record that names them was not) disappear by themselves.
	stagingTTL = 7 * 24 * time.Hour
)

func progressKey(connectorName string) sink.Key {
	return sink.Key{Set: sink.CheckpointSet, ID: connectorName + "/snapshot"}
}

// progress is the snapshot's durable progress.
type progress struct {
	// Slot is the slot's consistent point P1: snapshot rows take positions
	// (Slot − 1, n) and streaming starts at Slot.
	Slot uint64 `json:"slot"`
	// At is the time the snapshot started: the clock of the window
	// backfill for every chunk, across restarts.
	At time.Time `json:"at"`
	// Next is the next ordinal to give out; ordinals are never reused.
	Next   uint32           `json:"next"`
	Tables []*tableProgress `json:"tables"`
	// Staged are the chunks handed to the runtime that may not be durable
	// yet (and, for tables chunked by ctid, every chunk until the table is
	// read to its end), in ordinal order.
	Staged []*stagedChunk `json:"-"` // stored compact: see MarshalJSON
	// Points are the consistent points of later reads (restarts), in order.
	Points []uint64 `json:"points,omitempty"`

	// gen is the progress record's generation as last read or written;
	// replace says it is not known yet (a fresh snapshot): the first write
	// replaces whatever an earlier snapshot left under the key.
	gen     uint32
	replace bool
}

// tableProgress is one table's part of the snapshot.
type tableProgress struct {
	Name string `json:"name"`
	// Key is the primary key when the table is read in key order; empty
	// when it is read in ranges of ctid.
	Key      []keyCol `json:"key,omitempty"`
	Estimate int64    `json:"estimate"`
	// Rows counts the rows staged (this table's done count).
	Rows     int64      `json:"rows"`
	Segments []*segment `json:"segments"`
	// Reads are key ranges read at a later consistent point than Slot: a
	// change committed before that point to a key in the range is in the
	// read already, so the stream drops it.
	Reads []keyRange `json:"reads,omitempty"`
	// ReadAt, for a table read by ctid, is the consistent point of its
	// (whole) read when it is not Slot.
	ReadAt uint64 `json:"read_at,omitempty"`
	// BlocksPerChunk is the ctid chunk size.
	BlocksPerChunk int64 `json:"blocks_per_chunk,omitempty"`
}

type keyCol struct {
	Name string `json:"name"`
	OID  uint32 `json:"oid"`
}

// segment is a part of a table one worker reads in order: keys in
// (Lo, Hi], or blocks [Block, To) (to the end when Open).
type segment struct {
	Lo    []string `json:"lo,omitempty"`
	Hi    []string `json:"hi,omitempty"`
	Last  []string `json:"last,omitempty"` // the last key staged
	Block int64    `json:"block,omitempty"`
	To    int64    `json:"to,omitempty"`
	Open  bool     `json:"open,omitempty"`
	Done  bool     `json:"done,omitempty"`
}

// keyRange is keys in (Lo, Hi] (nil: unbounded) read at Point.
type keyRange struct {
	Lo    []string `json:"lo,omitempty"`
	Hi    []string `json:"hi,omitempty"`
	Point uint64   `json:"point"`
}

// stagedChunk is a chunk handed to the runtime: rows First … First+Rows−1.
type stagedChunk struct {
	Table string
	First uint32
	Rows  uint32
	Parts int
	At    time.Time
	// Of, when set, makes this a retraction: Delete events for the rows of
	// staged chunk Of (whose staging it reads).
	Of string
	// Keep: the chunk's rows may have to be retracted (a table read by
	// ctid, until that table is read to its end).
	Keep      bool
	Retracted bool
}

func (c *stagedChunk) last() uint32 { return c.First + c.Rows - 1 }

// ID names the chunk in its staging records' keys and in a retraction's Of.
func (c *stagedChunk) ID() string { return chunkID(c.First, c.Of != "") }

// chunkID names a staged chunk by its first ordinal; a retraction's ends
// in "r".
func chunkID(first uint32, retraction bool) string {
	id := strconv.FormatUint(uint64(first), 10)
	if retraction {
		id += "r"
	}
	return id
}

// finished reports whether every segment of the table is read.
func (t *tableProgress) finished() bool {
	for _, s := range t.Segments {
		if !s.Done {
			return false
		}
	}
	return true
}

// A table read by ctid keeps all its staged chunks in the progress record
// until it is read to its end, and a cut read keeps them twice more
// (retractions, then the new read's). maxKeptChunks bounds one table's
// chunks, so that the record stays far below a sink record's 1 MiB (about
// 50 bytes a chunk): a bigger table gets bigger chunks.
const maxKeptChunks = 4096

// progressLimit is the size past which the progress record is refused
// with a clear error instead of the sink's.
const progressLimit = 900 << 10

// The staged chunks are stored as arrays of numbers, not objects: the
// record holds every chunk of a table read by ctid until it is read to
// its end.
const (
	chunkKeep = 1 << iota
	chunkRetracted
)

type progressJSON progress // progress without its methods

func (p *progress) MarshalJSON() ([]byte, error) {
	table := make(map[string]int64, len(p.Tables))
	for i, t := range p.Tables {
		table[t.Name] = int64(i)
	}
	chunks := make([][7]int64, len(p.Staged))
	for i, c := range p.Staged {
		ti, ok := table[c.Table]
		if !ok {
			return nil, fmt.Errorf("staged chunk %s of %s: not a chunk of this snapshot", c.ID(), c.Table)
		}
		of := int64(-1)
		if c.Of != "" {
			n, err := strconv.ParseUint(c.Of, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("staged chunk %s retracts %q: not a chunk", c.ID(), c.Of)
			}
			of = int64(n)
		}
		var flags int64
		if c.Keep {
			flags |= chunkKeep
		}
		if c.Retracted {
			flags |= chunkRetracted
		}
		chunks[i] = [7]int64{int64(c.First), int64(c.Rows), int64(c.Parts), ti, c.At.UnixNano(), flags, of}
	}
	return json.Marshal(struct {
		*progressJSON
		Staged [][7]int64 `json:"staged,omitempty"` // first, rows, parts, table index, at (ns), flags, retracted chunk (-1: none)
	}{(*progressJSON)(p), chunks})
}

func (p *progress) UnmarshalJSON(b []byte) error {
	var v struct {
		*progressJSON
		Staged [][7]int64 `json:"staged,omitempty"`
	}
	v.progressJSON = (*progressJSON)(p)
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	p.Staged = make([]*stagedChunk, len(v.Staged))
	for i, a := range v.Staged {
		first, rows, parts, ti, at, flags, of := a[0], a[1], a[2], a[3], a[4], a[5], a[6]
		if first < 0 || first > math.MaxUint32 || rows < 1 || rows > math.MaxUint32 || parts < 1 || ti < 0 || ti >= int64(len(p.Tables)) || of < -1 || of > math.MaxUint32 {
			return fmt.Errorf("staged chunk %d: %v is not a chunk", i, a)
		}
		c := &stagedChunk{First: uint32(first), Rows: uint32(rows), Parts: int(parts), Table: p.Tables[ti].Name,
			At: time.Unix(0, at).UTC(), Keep: flags&chunkKeep != 0, Retracted: flags&chunkRetracted != 0}
		if of >= 0 {
			c.Of = chunkID(uint32(of), false)
		}
		p.Staged[i] = c
	}
	return nil
}

func stagingKey(connectorName, id string, part int) sink.Key {
	return sink.Key{Set: sink.CheckpointSet, ID: fmt.Sprintf("%s/snapshot/%s/%d", connectorName, id, part)}
}

// maxPoint is the last consistent point any part was read at.
func (p *progress) maxPoint() uint64 {
	if len(p.Points) > 0 {
		return p.Points[len(p.Points)-1]
	}
	return p.Slot
}

// durable returns how many snapshot ordinals cp covers.
func (p *progress) durable(cp change.Position) uint32 {
	switch {
	case cp.LSN >= p.Slot:
		return ^uint32(0)
	case cp.LSN == p.Slot-1:
		return cp.Ordinal
	}
	return 0
}

func loadProgress(ctx context.Context, store connector.Store, name string) (*progress, error) {
	recs, err := store.Get(ctx, []sink.Key{progressKey(name)})
	if err != nil {
		return nil, fmt.Errorf("read snapshot progress of connector %q: %w", name, err)
	}
	if recs[0].Gen == 0 {
		return nil, nil
	}
	raw, _ := recs[0].Bins["json"].(string)
	if raw == "" {
		return nil, nil // expired: the snapshot and its handover are over
	}
	p := &progress{}
	if err := json.Unmarshal([]byte(raw), p); err != nil {
		return nil, fmt.Errorf("%w: snapshot progress of connector %q: %w", connector.ErrFatal, name, err)
	}
	p.gen = recs[0].Gen
	return p, nil
}

func (p *progress) record(name string) (sink.Record, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return sink.Record{}, err
	}
	if len(b) > progressLimit {
		return sink.Record{}, fmt.Errorf("%w: the snapshot progress record would be %d bytes (%d staged chunks), too big for one sink record: raise snapshot.fetch.size",
			connector.ErrFatal, len(b), len(p.Staged))
	}
	return sink.Record{Key: progressKey(name), Gen: p.gen, Bins: map[string]any{"json": string(b)}}, nil
}

// expireRecords removes records only the snapshot writes, whatever their
// generation and without reading them: staging chunks, and the progress
// record once the stream has passed the last read point.
func expireRecords(ctx context.Context, store connector.Store, keys []sink.Key) error {
	for len(keys) > 0 {
		n := min(len(keys), 500)
		recs := make([]sink.Record, n)
		for i, k := range keys[:n] {
			recs[i] = sink.Record{Key: k, Gen: sink.AnyGen, TTL: goneTTL, Bins: map[string]any{"gone": int64(1)}}
		}
		if err := store.Put(ctx, recs); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// Staged rows: the column names and type OIDs, then each row's values
// as PostgreSQL sent them in text format (length+1, 0 for NULL). Replay
// decodes them with decode.DecodeText, exactly as the first time.
type rawRows struct {
	buf []byte
}

func newRawRows(cols []string, oids []uint32) *rawRows {
	r := &rawRows{}
	r.buf = binary.AppendUvarint(r.buf, uint64(len(cols)))
	for i, c := range cols {
		r.buf = binary.AppendUvarint(r.buf, uint64(len(c)))
		r.buf = append(r.buf, c...)
		r.buf = binary.AppendUvarint(r.buf, uint64(oids[i]))
	}
	return r
}

func (r *rawRows) add(vals [][]byte) {
	for _, v := range vals {
		if v == nil {
			r.buf = append(r.buf, 0)
			continue
		}
		r.buf = binary.AppendUvarint(r.buf, uint64(len(v))+1)
		r.buf = append(r.buf, v...)
	}
}

var errStaging = errors.New("staged snapshot chunk is corrupt")

// decodeRawRows turns staged bytes back into rows.
func decodeRawRows(types *pgtype.Map, b []byte) ([]change.Row, error) {
	uv := func() (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, errStaging
		}
		b = b[n:]
		return v, nil
	}
	bytesN := func(n uint64) ([]byte, error) {
		if uint64(len(b)) < n {
			return nil, errStaging
		}
		v := b[:n]
		b = b[n:]
		return v, nil
	}
	ncols, err := uv()
	if err != nil || ncols > 1<<16 {
		return nil, errStaging
	}
	cols := make([]string, ncols)
	oids := make([]uint32, ncols)
	for i := range cols {
		l, err := uv()
		if err != nil {
			return nil, err
		}
		name, err := bytesN(l)
		if err != nil {
			return nil, err
		}
		cols[i] = string(name)
		oid, err := uv()
		if err != nil {
			return nil, err
		}
		oids[i] = uint32(oid)
	}
	var rows []change.Row
	for len(b) > 0 {
		row := make(change.Row, ncols)
		for i, c := range cols {
			l, err := uv()
			if err != nil {
				return nil, err
			}
			if l == 0 {
				row[c] = nil
				continue
			}
			raw, err := bytesN(l - 1)
			if err != nil {
				return nil, err
			}
			v, err := decode.DecodeText(types, oids[i], raw)
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", c, err)
			}
			row[c] = v
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// readStaged reads a staged chunk's rows back from the store.
func readStaged(ctx context.Context, store connector.Store, name string, c *stagedChunk, types *pgtype.Map) ([]change.Row, error) {
	keys := make([]sink.Key, c.Parts)
	for i := range keys {
		keys[i] = stagingKey(name, c.ID(), i)
	}
	recs, err := store.Get(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read staged snapshot chunk %s: %w", c.ID(), err)
	}
	var b []byte
	for _, r := range recs {
		part, _ := r.Bins["rows"].([]byte)
		if r.Gen == 0 || part == nil {
			return nil, fmt.Errorf("%w: staged snapshot chunk %s (%s) is missing from the sink", connector.ErrFatal, c.ID(), r.Key)
		}
		b = append(b, part...)
	}
	rows, err := decodeRawRows(types, b)
	if err != nil {
		return nil, fmt.Errorf("%w: staged snapshot chunk %s: %w", connector.ErrFatal, c.ID(), err)
	}
	if len(rows) != int(c.Rows) {
		return nil, fmt.Errorf("%w: staged snapshot chunk %s holds %d rows, the progress record says %d", connector.ErrFatal, c.ID(), len(rows), c.Rows)
	}
	return rows, nil
}

// snapFilter drops, while the stream is before the last consistent point
// a part of the snapshot was read at, the row images that read already
// holds: an image of a change committed before point P whose key lies in
// a range read at P.
type snapFilter struct {
	max    uint64
	tables map[string]*tableFilter
}

type tableFilter struct {
	whole  uint64 // a table read by ctid: every row read at this point
	key    []string
	ranges []valueRange
}

type valueRange struct {
	lo, hi []any
	point  uint64
}

// newSnapFilter builds the stream filter from p; nil when the whole
// snapshot was read at the slot's consistent point.
func newSnapFilter(p *progress) (*snapFilter, error) {
	if p == nil || p.maxPoint() <= p.Slot {
		return nil, nil
	}
	types := pgtype.NewMap()
	f := &snapFilter{max: p.maxPoint(), tables: map[string]*tableFilter{}}
	for _, t := range p.Tables {
		tf := &tableFilter{whole: t.ReadAt}
		for _, k := range t.Key {
			tf.key = append(tf.key, k.Name)
		}
		for _, r := range t.Reads {
			lo, err := keyValues(types, t.Key, r.Lo)
			if err != nil {
				return nil, err
			}
			hi, err := keyValues(types, t.Key, r.Hi)
			if err != nil {
				return nil, err
			}
			tf.ranges = append(tf.ranges, valueRange{lo: lo, hi: hi, point: r.Point})
		}
		if tf.whole != 0 || len(tf.ranges) > 0 {
			f.tables[t.Name] = tf
		}
	}
	return f, nil
}

func keyValues(types *pgtype.Map, key []keyCol, text []string) ([]any, error) {
	if text == nil {
		return nil, nil
	}
	out := make([]any, len(key))
	for i, k := range key {
		v, err := decode.DecodeText(types, k.OID, []byte(text[i]))
		if err != nil {
			return nil, fmt.Errorf("%w: snapshot progress: key %s %q: %w", connector.ErrFatal, k.Name, text[i], err)
		}
		out[i] = v
	}
	return out, nil
}

// readPoint returns the consistent point the snapshot read row's key at
// (0: the slot's, or unknown).
func (tf *tableFilter) readPoint(row change.Row) uint64 {
	if tf.whole != 0 {
		return tf.whole
	}
	key := make([]any, len(tf.key))
	for i, c := range tf.key {
		v, ok := row[c]
		if !ok || v == nil || v == change.Unchanged {
			return 0
		}
		key[i] = v
	}
	var p uint64
	for _, r := range tf.ranges {
		if (r.lo == nil || compareKeys(key, r.lo) > 0) && (r.hi == nil || compareKeys(key, r.hi) <= 0) {
			p = max(p, r.point)
		}
	}
	return p
}

// apply returns ev without the images the snapshot already holds, and
// false when nothing of it is left.
func (f *snapFilter) apply(ev change.Event) (change.Event, bool) {
	if ev.Op.IsMarker() || ev.Pos.LSN >= f.max {
		return ev, true
	}
	tf := f.tables[ev.Table]
	if tf == nil {
		return ev, true
	}
	drop := func(row change.Row) bool { return row != nil && ev.Pos.LSN < tf.readPoint(row) }
	switch ev.Op {
	case change.Insert:
		return ev, !drop(ev.After)
	case change.Delete:
		return ev, !drop(ev.Before)
	case change.Update:
		dropAfter := drop(ev.After)
		dropBefore := dropAfter // no old image: the key did not change
		if ev.Before != nil {
			dropBefore = drop(ev.Before)
		}
		switch {
		case dropAfter && dropBefore:
			return ev, false
		case dropAfter:
			ev.Op, ev.After = change.Delete, nil
		case dropBefore:
			ev.Op, ev.Before = change.Insert, nil
		}
	}
	return ev, true
}

// compareKeys compares primary keys the way PostgreSQL orders them, for
// the types the snapshot reads in key order (integers, uuid, date and
// timestamps, whose infinities decode as text).
func compareKeys(a, b []any) int {
	for i := range a {
		if c := compareValue(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

func compareValue(a, b any) int {
	rank := func(v any) int {
		switch v {
		case "-infinity":
			return -1
		case "infinity":
			return 1
		}
		return 0
	}
	if ra, rb := rank(a), rank(b); ra != 0 || rb != 0 {
		return ra - rb
	}
	switch x := a.(type) {
	case int64:
		y, _ := b.(int64)
		return cmpOrdered(x, y)
	case string:
		y, _ := b.(string)
		return cmpOrdered(x, y)
	case time.Time:
		y, _ := b.(time.Time)
		return x.Compare(y)
	}
	return 0
}

func cmpOrdered[T int64 | string](x, y T) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// orderableKey lists the key types whose order compareKeys reproduces.
var orderableKey = []uint32{pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.UUIDOID, pgtype.DateOID,
	pgtype.TimestampOID, pgtype.TimestamptzOID}

func isOrderable(oid uint32) bool { return slices.Contains(orderableKey, oid) }
