package transform

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cockroachdb/apd/v3"
)

// Tile holds the partial aggregates of the rows whose event time falls in
// [start, start+size).
//
// A tile has a stored form (raw: its bytes in the record,
// docs/record-layout.md "Scale and tile blobs") and an open form (Rows and
// cols), or both. The records in the cache keep their tiles stored, a few
// bytes per value and one allocation per tile size; Apply opens the tiles
// a change touches (load), which drops their stored form, and Bins
// encodes those again, so a write re-encodes only the tiles its batch
// changed. A tile a write changed stays open as well until a write of its
// record leaves it alone: a hot tile (the lifetime one, the newest) is not
// decoded again at every batch. The open form is slices sorted by column
// and by key, not maps: tiles are small, and sorted slices encode without
// sorting.
type Tile struct {
	Rows int64     // rows (count)
	cols []tileCol // by column name
	// when counts the tile's rows by the sixteenth of the tile their event
	// time falls in (timeBuckets), so that an as-of read inside the tile
	// knows whether a row is later than its instant; nil when it counts
	// none (and in the lifetime tile). The counts, like Rows, depend only
	// on the rows the tile holds, not on the order they came in. whenLost:
	// not known (a tile stored before tiles counted them, or a retraction
	// from an empty bucket).
	when     []int64
	whenLost bool
	// raw is the stored form, nil when the open form has changed since
	// it was encoded.
	raw  []byte
	open bool // Rows and cols are loaded
}

// tileCol is what a tile holds for one column.
type tileCol struct {
	name  string
	count int64        // non-NULL values
	sum   *apd.Decimal // exact sum of the finite values; nil: none
	// nonFinite counts a summed column's NaN, Infinity and -Infinity
	// values, which a decimal sum cannot hold and a retraction must be
	// able to take back.
	nonFinite [3]int64
	vals      multiset // tagged value → multiplicity (min, max, distinct)
	timed     multiset // timedKey → multiplicity (first, last)
	// ext holds the least and the greatest key of vals in value order
	// (extIndex), when extOK: kept by Apply so that a read of min or max
	// does not go through every value again. Not stored: a decoded tile
	// starts without it, and its first change computes it.
	ext   [2]string
	extOK bool
}

// noteValue keeps ext up to date after key k was added to vals (sign > 0)
// or taken away (exact: k itself; else another key of the same number).
// It never goes through the values: a tile it cannot follow (one decoded
// from its stored form, or whose extreme was retracted) just has no ext,
// and a read goes through its values as before.
func (c *tileCol) noteValue(k string, sign int64, exact bool) {
	switch {
	case sign > 0 && c.extOK:
		o := orderOf(k)
		for i := range c.ext {
			x := extreme{key: c.ext[i]}
			if x.key != "" {
				x.ord = orderOf(x.key)
			}
			x.offerOrdered(k, o, i == 0)
			c.ext[i] = x.key
		}
	case sign > 0 && len(c.vals) == 1 && c.vals[0].n == 1:
		c.ext, c.extOK = [2]string{k, k}, true // the column's first value
	case sign < 0 && c.extOK && (!exact || k == c.ext[0] || k == c.ext[1]):
		c.extOK = false // an extreme may be gone
	}
}

func (c *tileCol) zero() bool {
	return c.count == 0 && c.sum == nil && c.nonFinite == [3]int64{} && len(c.vals) == 0 && len(c.timed) == 0
}

// multiset is a sorted list of keys with their multiplicities (> 0).
type multiset []msEntry

type msEntry struct {
	key string
	n   int64
}

func (m multiset) find(k string) (int, bool) {
	return slices.BinarySearchFunc(m, k, func(e msEntry, k string) int { return strings.Compare(e.key, k) })
}

// get returns k's multiplicity.
func (m multiset) get(k string) int64 {
	if i, ok := m.find(k); ok {
		return m[i].n
	}
	return 0
}

// bump changes k's multiplicity by by; it refuses (false) to take it below
// zero.
func (m *multiset) bump(k string, by int64) bool {
	i, ok := m.find(k)
	if !ok {
		if by < 0 {
			return false
		}
		*m = slices.Insert(*m, i, msEntry{k, by})
		return true
	}
	n := (*m)[i].n + by
	switch {
	case n < 0:
		return false
	case n == 0:
		*m = slices.Delete(*m, i, i+1)
	default:
		(*m)[i].n = n
	}
	return true
}

// colAt returns the column's entry, or nil.
func (t *Tile) colAt(name string) *tileCol {
	if i, ok := t.colIndex(name); ok {
		return &t.cols[i]
	}
	return nil
}

func (t *Tile) colIndex(name string) (int, bool) {
	return slices.BinarySearchFunc(t.cols, name, func(c tileCol, n string) int { return strings.Compare(c.name, n) })
}

// col returns the column's entry, adding it. The pointer is good until the
// next col call that adds one.
func (t *Tile) col(name string) *tileCol {
	i, ok := t.colIndex(name)
	if !ok {
		t.cols = slices.Insert(t.cols, i, tileCol{name: name})
	}
	return &t.cols[i]
}

// prune drops the columns left with nothing.
func (t *Tile) prune() {
	t.cols = slices.DeleteFunc(t.cols, func(c tileCol) bool { return c.zero() })
	if len(t.cols) == 0 {
		t.cols = nil
	}
}

func (t *Tile) empty() bool { return t.Rows == 0 && len(t.cols) == 0 }

// Accessors of an open tile.

func (t *Tile) count(col string) int64 {
	if c := t.colAt(col); c != nil {
		return c.count
	}
	return 0
}

func (t *Tile) sum(col string) *apd.Decimal {
	if c := t.colAt(col); c != nil {
		return c.sum
	}
	return nil
}

func (t *Tile) nonFinite(col string) [3]int64 {
	if c := t.colAt(col); c != nil {
		return c.nonFinite
	}
	return [3]int64{}
}

func (t *Tile) values(col string) multiset {
	if c := t.colAt(col); c != nil {
		return c.vals
	}
	return nil
}

func (t *Tile) timedValues(col string) multiset {
	if c := t.colAt(col); c != nil {
		return c.timed
	}
	return nil
}

// load opens the tile to change it; its stored form is then out of date.
func (t *Tile) load() error {
	if !t.open {
		if err := walkTile(t.raw, t); err != nil {
			return err
		}
		t.open = true
	}
	t.raw = nil
	return nil
}

// close returns the tile's stored form for a write of its record: a tile
// changed since the last write is encoded and stays open too; one left
// alone keeps only its stored form.
func (t *Tile) close() []byte {
	if t.raw == nil {
		t.raw = encodeTile(t)
		return t.raw
	}
	if t.open {
		t.Rows, t.cols, t.open = 0, nil, false
	}
	return t.raw
}

// view returns the tile open, leaving t as it is: t itself when it is
// open, else a decoded copy (checkTile accepted every stored tile).
func (t *Tile) view() *Tile {
	if t.open || t.raw == nil {
		return t
	}
	v := &Tile{open: true}
	if err := walkTile(t.raw, v); err != nil {
		return &Tile{whenLost: true}
	}
	return v
}

// tileOverhead is about what a tile costs in memory besides its bytes:
// the Tile, its pointer and its map entry.
const tileOverhead = 80

// memSize is about what the tile costs in memory.
func (t *Tile) memSize() int {
	n := tileOverhead + len(t.raw)
	if !t.open {
		return n
	}
	n += 8 * len(t.when)
	for i := range t.cols {
		c := &t.cols[i]
		n += 96 + len(c.name) + 24*(len(c.vals)+len(c.timed))
		for _, ms := range [...]multiset{c.vals, c.timed} {
			for _, e := range ms {
				n += len(e.key)
			}
		}
	}
	return n
}

// The stored forms (docs/record-layout.md).
//
// A scale blob holds the tiles of one size by increasing start:
//
//	scaleFormat  uvarint(tiles)  (varint(start − previous start)  uvarint(len)  tile blob)...
//
// A tile blob holds its latest event time and its columns by name:
//
//	tileFormat  varint(rows)  when  uvarint(columns)  column...
//	when:  uvarint(k)  k−1 × (byte(bucket)  varint(rows))   (k = 0: not known)
//	column:  str(name)  flags  [varint(count)] [str(sum)] [varint×3 (NaN, Infinity, -Infinity)] [values] [timed]
//	values, timed:  uvarint(n)  n × (uvarint(prefix shared with the previous key)  str(rest of key)  varint(multiplicity))
//
// str is uvarint(len) and the bytes; flags says which parts follow. Keys
// are sorted, so the shared prefixes (the 20-digit times of timed keys,
// the tags of values) are written once. Format 1 tiles have no when: they
// read as whenLost.
const (
	scaleFormat = 1
	tileFormat  = 2
)

// timeBuckets is how many parts of a tile Tile.when counts rows in.
const timeBuckets = 16

// bucketOf returns the part of the tile [start, start+size) (seconds) that
// the event time at (µs) falls in.
func bucketOf(at, start, size int64) int {
	return int((at - start*1e6) * timeBuckets / (size * 1e6))
}

// bucketEnd returns the end (µs) of bucket b of the tile [start,
// start+size) (seconds).
func bucketEnd(b int, start, size int64) int64 {
	return start*1e6 + int64(b+1)*size*1e6/timeBuckets
}

// countWhen counts a row added (sign 1) or taken back (-1) at event time
// at in the tile [start, start+size).
func (t *Tile) countWhen(at, start, size, sign int64) {
	if t.whenLost {
		return
	}
	if t.when == nil {
		t.when = make([]int64, timeBuckets)
	}
	b := bucketOf(at, start, size)
	if t.when[b]+sign < 0 {
		t.when, t.whenLost = nil, true
		return
	}
	t.when[b] += sign
}

// lastBucket returns the last bucket holding a row, -1 when none does;
// ok is false when the counts are not known.
func (t *Tile) lastBucket() (b int, ok bool) {
	if t.whenLost {
		return 0, false
	}
	for b = len(t.when) - 1; b >= 0; b-- {
		if t.when[b] > 0 {
			return b, true
		}
	}
	return -1, true
}

const (
	hasCount = 1 << iota
	hasSum
	hasNonFinite
	hasValues
	hasTimed
	knownFlags = hasCount | hasSum | hasNonFinite | hasValues | hasTimed
)

// encodeScale renders tiles as a scale blob, closing the open ones. Each
// tile's stored form then points into the blob, so a record in memory
// holds one allocation per tile size, not one per tile.
func encodeScale(tiles map[int64]*Tile) []byte {
	starts := make([]int64, 0, len(tiles))
	size := 4
	for start, t := range tiles {
		starts = append(starts, start)
		size += 12 + len(t.close())
	}
	slices.Sort(starts)
	b := make([]byte, 0, size)
	b = append(b, scaleFormat)
	b = binary.AppendUvarint(b, uint64(len(starts)))
	offsets := make([]int, len(starts))
	prev := int64(0)
	for i, start := range starts {
		raw := tiles[start].raw
		b = binary.AppendVarint(b, start-prev)
		b = binary.AppendUvarint(b, uint64(len(raw)))
		offsets[i] = len(b)
		b = append(b, raw...)
		prev = start
	}
	for i, start := range starts {
		t := tiles[start]
		end := offsets[i] + len(t.raw)
		t.raw = b[offsets[i]:end:end]
	}
	return b
}

// decodeScale reads a scale blob; its tiles stay stored, checked.
func decodeScale(blob []byte) (map[int64]*Tile, error) {
	r := &tileReader{b: blob}
	if f := r.byte(); r.err == nil && f != scaleFormat {
		return nil, fmt.Errorf("scale blob of format %d (this version reads %d)", f, scaleFormat)
	}
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		return nil, errTileShort // each tile takes a byte at least
	}
	tiles := make(map[int64]*Tile, n)
	start := int64(0)
	for i := uint64(0); i < n && r.err == nil; i++ {
		start += r.varint()
		raw := r.bytes()
		if r.err != nil {
			break
		}
		if _, dup := tiles[start]; dup {
			return nil, fmt.Errorf("tile %d appears twice", start)
		}
		if err := walkTile(raw, nil); err != nil {
			return nil, fmt.Errorf("tile %d: %w", start, err)
		}
		tiles[start] = &Tile{raw: raw[:len(raw):len(raw)]}
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("scale blob has %d bytes after its tiles", len(r.b))
	}
	return tiles, nil
}

func encodeTile(t *Tile) []byte {
	size := 12
	for i := range t.cols {
		c := &t.cols[i]
		size += 16 + len(c.name)
		for _, ms := range [...]multiset{c.vals, c.timed} {
			for _, e := range ms {
				size += 4 + len(e.key) // an upper bound with short keys
			}
		}
	}
	b := make([]byte, 0, size)
	b = append(b, tileFormat)
	b = binary.AppendVarint(b, t.Rows)
	b = appendWhen(b, t)
	b = binary.AppendUvarint(b, uint64(len(t.cols)))
	for i := range t.cols {
		c := &t.cols[i]
		b = appendString(b, c.name)
		var flags byte
		if c.count != 0 {
			flags |= hasCount
		}
		if c.sum != nil {
			flags |= hasSum
		}
		if c.nonFinite != ([3]int64{}) {
			flags |= hasNonFinite
		}
		if len(c.vals) > 0 {
			flags |= hasValues
		}
		if len(c.timed) > 0 {
			flags |= hasTimed
		}
		b = append(b, flags)
		if flags&hasCount != 0 {
			b = binary.AppendVarint(b, c.count)
		}
		if flags&hasSum != 0 {
			b = appendString(b, c.sum.Text('f'))
		}
		if flags&hasNonFinite != 0 {
			for _, n := range c.nonFinite {
				b = binary.AppendVarint(b, n)
			}
		}
		for _, ms := range [...]multiset{c.vals, c.timed} {
			if len(ms) == 0 {
				continue
			}
			b = binary.AppendUvarint(b, uint64(len(ms)))
			prev := ""
			for _, e := range ms {
				shared := commonPrefix(prev, e.key)
				b = binary.AppendUvarint(b, uint64(shared))
				b = appendString(b, e.key[shared:])
				b = binary.AppendVarint(b, e.n)
				prev = e.key
			}
		}
	}
	return b
}

func appendWhen(b []byte, t *Tile) []byte {
	if t.whenLost {
		return append(b, 0)
	}
	k := 1
	for _, n := range t.when {
		if n > 0 {
			k++
		}
	}
	b = binary.AppendUvarint(b, uint64(k))
	for i, n := range t.when {
		if n > 0 {
			b = append(b, byte(i))
			b = binary.AppendVarint(b, n)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// tileReader reads a blob; the first error sticks.
type tileReader struct {
	b   []byte
	err error
}

var errTileShort = errors.New("blob ends early")

func (r *tileReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errTileShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *tileReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errTileShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *tileReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errTileShort
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

func (r *tileReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = errTileShort
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// walkTile reads a tile blob into t, or only checks it when t is nil: a
// blob it accepts has its columns and keys strictly increasing, so the
// open tile's searches hold.
func walkTile(raw []byte, t *Tile) error {
	r := &tileReader{b: raw}
	f := r.byte()
	if r.err == nil && f != tileFormat && f != 1 {
		return fmt.Errorf("tile blob of format %d (this version reads 1 and %d)", f, tileFormat)
	}
	rows := r.varint()
	var when []int64
	whenLost := f != tileFormat
	if f == tileFormat {
		k := r.uvarint()
		if k == 0 {
			whenLost = true
		}
		if k > timeBuckets+1 {
			return fmt.Errorf("tile counts rows in %d parts of %d", k-1, timeBuckets)
		}
		for i, prev := uint64(1), -1; i < k && r.err == nil; i++ {
			bucket := int(r.byte())
			rows := r.varint()
			if r.err != nil {
				break
			}
			if bucket <= prev || bucket >= timeBuckets || rows <= 0 {
				return fmt.Errorf("tile counts %d rows in part %d after part %d", rows, bucket, prev)
			}
			prev = bucket
			if t != nil {
				if when == nil {
					when = make([]int64, timeBuckets)
				}
				when[bucket] = rows
			}
		}
	}
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		return errTileShort // each column takes two bytes at least
	}
	if t != nil {
		t.Rows, t.when, t.whenLost = rows, when, whenLost
		t.cols = make([]tileCol, 0, n)
	}
	var key, prev, prevCol []byte
	for i := uint64(0); i < n && r.err == nil; i++ {
		name := r.bytes()
		flags := r.byte()
		if r.err != nil {
			break
		}
		if i > 0 && string(name) <= string(prevCol) {
			return fmt.Errorf("tile columns out of order at %q", name)
		}
		prevCol = name
		if flags&^knownFlags != 0 || flags == 0 {
			return fmt.Errorf("column %q has flags %#x", name, flags)
		}
		var c tileCol
		if flags&hasCount != 0 {
			if c.count = r.varint(); c.count == 0 && r.err == nil {
				return fmt.Errorf("column %q: a count part of 0", name) // written only when not 0
			}
		}
		if flags&hasSum != 0 {
			text := r.bytes()
			if r.err != nil {
				break
			}
			d, _, err := apd.NewFromString(string(text))
			if err != nil {
				return fmt.Errorf("sum of %q: %w", name, err)
			}
			c.sum = d
		}
		if flags&hasNonFinite != 0 {
			for j := range c.nonFinite {
				c.nonFinite[j] = r.varint()
			}
			if c.nonFinite == ([3]int64{}) && r.err == nil {
				return fmt.Errorf("column %q: a part of no NaN or infinite values", name)
			}
		}
		for _, part := range [...]struct {
			flag byte
			dst  *multiset
		}{{hasValues, &c.vals}, {hasTimed, &c.timed}} {
			if flags&part.flag == 0 || r.err != nil {
				continue
			}
			m := r.uvarint()
			if m > uint64(len(r.b)) {
				return errTileShort // each entry takes three bytes at least
			}
			if m == 0 && r.err == nil {
				return fmt.Errorf("column %q: an empty multiset part", name) // written only when not empty
			}
			var ms multiset
			var keys []byte // every key, one after the other
			var ends []int
			if t != nil {
				ms = make(multiset, m)
				ends = make([]int, m)
			}
			prev = prev[:0]
			for j := uint64(0); j < m && r.err == nil; j++ {
				shared := r.uvarint()
				suffix := r.bytes()
				mult := r.varint()
				if r.err != nil {
					break
				}
				if shared > uint64(len(prev)) {
					return fmt.Errorf("multiset of %q: a key shares %d bytes of a %d-byte key", name, shared, len(prev))
				}
				key = append(append(key[:0], prev[:shared]...), suffix...)
				if j > 0 && bytes.Compare(key, prev) <= 0 {
					return fmt.Errorf("multiset of %q: keys out of order at %q", name, key)
				}
				prev, key = key, prev
				if mult <= 0 {
					return fmt.Errorf("multiset of %q: key %q has multiplicity %d", name, key, mult)
				}
				if t != nil {
					keys = append(keys, prev...)
					ends[j] = len(keys)
					ms[j].n = mult
				}
			}
			if t != nil && r.err == nil {
				all := string(keys) // one allocation for the multiset's keys
				from := 0
				for j := range ms {
					ms[j].key = all[from:ends[j]]
					from = ends[j]
				}
				*part.dst = ms
			}
		}
		if t != nil && r.err == nil {
			c.name = string(name)
			t.cols = append(t.cols, c)
		}
	}
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("tile blob has %d bytes after its columns", len(r.b))
	}
	return nil
}
