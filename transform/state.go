package transform

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
)

// State is one entity's record of one feature group, decoded.
type State struct {
	// Pos is the position of the last change applied to this record. A
	// change at or before it is already in the state and must be skipped.
	// Streams holds the same for the named streams of a source that has
	// several (Kafka partitions); Pos is the unnamed stream's.
	Pos     change.Position
	Streams map[string]change.Position
	// Updated is the latest commit time applied (Unix microseconds): the
	// freshness of the record, and the clock that trims old tiles.
	Updated int64
	// Key holds the entity's key values as text.
	Key []string
	// Scales maps a tile size in seconds (0: lifetime) to its tiles by
	// start time in Unix seconds.
	Scales map[int64]map[int64]*Tile
	// Row holds the projected columns; nil when the entity has no row.
	Row map[string]any
}

// Tile holds the partial aggregates of the rows whose event time falls in
// [start, start+size).
type Tile struct {
	Rows   int64                   // rows (count)
	Counts map[string]int64        // column → non-NULL values
	Sums   map[string]*apd.Decimal // column → exact sum of the finite values
	// NonFinite counts a summed column's NaN, Infinity and -Infinity
	// values, which a decimal sum cannot hold and a retraction must be
	// able to take back.
	NonFinite map[string]*[3]int64        // column → [NaN, Infinity, -Infinity]
	Values    map[string]map[string]int64 // column → tagged value → multiplicity
	Timed     map[string]map[string]int64 // column → timedKey → multiplicity
	// enc holds each multiset's stored form ("v:col", "l:col" → map),
	// kept in step with Values and Timed, so a large multiset is not
	// rebuilt on every write of its record.
	enc map[string]map[any]any
}

// PosIn returns the position of the last change of stream applied.
func (s *State) PosIn(stream string) change.Position {
	if stream == "" {
		return s.Pos
	}
	return s.Streams[stream]
}

func (s *State) setPos(stream string, p change.Position) {
	if stream == "" {
		s.Pos = p
		return
	}
	if s.Streams == nil {
		s.Streams = map[string]change.Position{}
	}
	s.Streams[stream] = p
}

func (t *Tile) empty() bool {
	return t.Rows == 0 && len(t.Counts) == 0 && len(t.Sums) == 0 && len(t.NonFinite) == 0 && len(t.Values) == 0 && len(t.Timed) == 0
}

// IsEmpty reports whether the state holds no row and no tile.
func (s *State) IsEmpty() bool { return s.Row == nil && len(s.Scales) == 0 }

// Bin names. Tile bins are "_t<seconds>", "_tlife" for lifetime.
const (
	binLSN     = "_lsn"
	binOrdinal = "_ord"
	binSeq     = "_seq"
	binStreams = "_src"
	binUpdated = "_ts"
	binKey     = "_key"
	binTilePre = "_t"
	binLife    = "_tlife"
	// binRow marks a record that has a projected row, so a row whose
	// projected columns are all NULL (stored as no bins) is still found.
	binRow = "_row"
)

func scaleBin(size int64) string {
	if size == 0 {
		return binLife
	}
	return binTilePre + strconv.FormatInt(size, 10)
}

// Tile entry names inside a tile map.
const (
	accRows  = "n"
	accCount = "c:"
	accSum   = "s:"
	// Counts of a summed column's NaN, Infinity and -Infinity values.
	accNaN    = "nan:"
	accPosInf = "inf:"
	accNegInf = "-inf:"
	accVals   = "v:"
	accTimed  = "l:"
)

// Bins encodes the state as sink bins (docs/record-layout.md).
func (s *State) Bins() map[string]any {
	bins := make(map[string]any, 4+len(s.Scales)+len(s.Row))
	for k, v := range s.Row {
		bins[k] = v
	}
	if s.Row != nil {
		bins[binRow] = int64(1)
	}
	bins[binLSN] = int64(s.Pos.LSN)
	bins[binOrdinal] = int64(s.Pos.Ordinal)
	if s.Pos.Seq != 0 {
		bins[binSeq] = int64(s.Pos.Seq)
	}
	if len(s.Streams) > 0 {
		bins[binStreams] = EncodePositions(s.Streams)
	}
	bins[binUpdated] = s.Updated
	key := make([]any, len(s.Key))
	for i, k := range s.Key {
		key[i] = k
	}
	bins[binKey] = key
	for size, tiles := range s.Scales {
		m := make(map[any]any, len(tiles))
		for start, t := range tiles {
			m[start] = t.encode()
		}
		bins[scaleBin(size)] = m
	}
	return bins
}

func (t *Tile) encode() map[any]any {
	m := map[any]any{}
	if t.Rows != 0 {
		m[accRows] = t.Rows
	}
	for c, n := range t.Counts {
		m[accCount+c] = n
	}
	for c, d := range t.Sums {
		m[accSum+c] = d.Text('f')
	}
	for c, n := range t.NonFinite {
		for i, pre := range nonFinitePrefixes {
			if n[i] != 0 {
				m[pre+c] = n[i]
			}
		}
	}
	for c, vals := range t.Values {
		m[accVals+c] = t.encoded(accVals+c, vals)
	}
	for c, vals := range t.Timed {
		m[accTimed+c] = t.encoded(accTimed+c, vals)
	}
	return m
}

// encoded returns the stored form of a multiset, building it once.
func (t *Tile) encoded(name string, vals map[string]int64) map[any]any {
	if e, ok := t.enc[name]; ok {
		return e
	}
	e := make(map[any]any, len(vals))
	for k, n := range vals {
		e[k] = n
	}
	if t.enc == nil {
		t.enc = map[string]map[any]any{}
	}
	t.enc[name] = e
	return e
}

// setEncoded mirrors one multiset entry change into the stored form, when
// it has been built.
func (t *Tile) setEncoded(name, k string, n int64) {
	e, ok := t.enc[name]
	if !ok {
		return
	}
	if n == 0 {
		delete(e, k)
		if len(e) == 0 {
			delete(t.enc, name)
		}
		return
	}
	e[k] = n
}

// DecodeState decodes the bins of a stored record. Bins not named like
// tilefeed's own ("_…") are projected columns.
func DecodeState(bins map[string]any) (*State, error) {
	s := &State{}
	if bins == nil {
		return s, nil
	}
	for name, v := range bins {
		var err error
		switch {
		case name == binLSN:
			var n int64
			n, err = asInt(v)
			s.Pos.LSN = uint64(n)
		case name == binOrdinal:
			var n int64
			n, err = asInt(v)
			s.Pos.Ordinal = uint32(n)
		case name == binSeq:
			var n int64
			n, err = asInt(v)
			s.Pos.Seq = uint64(n)
		case name == binStreams:
			s.Streams, err = DecodePositions(v)
		case name == binUpdated:
			s.Updated, err = asInt(v)
		case name == binKey:
			list, ok := v.([]any)
			if !ok {
				err = fmt.Errorf("not a list")
			}
			for _, e := range list {
				str, _ := e.(string)
				s.Key = append(s.Key, str)
			}
		case strings.HasPrefix(name, binTilePre):
			var size int64
			if name != binLife {
				if size, err = strconv.ParseInt(name[len(binTilePre):], 10, 64); err != nil {
					break
				}
			}
			err = s.decodeScale(size, v)
		case name == binRow:
			if s.Row == nil {
				s.Row = map[string]any{}
			}
		case strings.HasPrefix(name, "_"):
			// a bin of a newer layout; ignore
		default:
			if s.Row == nil {
				s.Row = map[string]any{}
			}
			s.Row[name] = v
		}
		if err != nil {
			return nil, fmt.Errorf("bin %s: %w", name, err)
		}
	}
	return s, nil
}

func (s *State) decodeScale(size int64, v any) error {
	m, ok := v.(map[any]any)
	if !ok {
		return fmt.Errorf("not a map")
	}
	tiles := make(map[int64]*Tile, len(m))
	for k, tv := range m {
		start, ok := k.(int64)
		tm, ok2 := tv.(map[any]any)
		if !ok || !ok2 {
			return fmt.Errorf("tile %v is malformed", k)
		}
		t := &Tile{}
		for ak, av := range tm {
			name, _ := ak.(string)
			var err error
			switch {
			case name == accRows:
				t.Rows, err = asInt(av)
			case strings.HasPrefix(name, accCount):
				var n int64
				n, err = asInt(av)
				setCount(&t.Counts, name[len(accCount):], n)
			case strings.HasPrefix(name, accSum):
				str, _ := av.(string)
				var d *apd.Decimal
				d, _, err = apd.NewFromString(str)
				if err == nil {
					if t.Sums == nil {
						t.Sums = map[string]*apd.Decimal{}
					}
					t.Sums[name[len(accSum):]] = d
				}
			case strings.HasPrefix(name, accNaN), strings.HasPrefix(name, accPosInf), strings.HasPrefix(name, accNegInf):
				var n int64
				n, err = asInt(av)
				for i, pre := range nonFinitePrefixes {
					if col, ok := strings.CutPrefix(name, pre); ok {
						t.nonFinite(col)[i] = n
					}
				}
			case strings.HasPrefix(name, accVals):
				err = t.decodeMultiset(&t.Values, name, name[len(accVals):], av)
			case strings.HasPrefix(name, accTimed):
				err = t.decodeMultiset(&t.Timed, name, name[len(accTimed):], av)
			}
			if err != nil {
				return fmt.Errorf("tile %d entry %s: %w", start, name, err)
			}
		}
		tiles[start] = t
	}
	if s.Scales == nil {
		s.Scales = map[int64]map[int64]*Tile{}
	}
	s.Scales[size] = tiles
	return nil
}

// nonFinitePrefixes are the entry prefixes of Tile.NonFinite's counts, in
// its order.
var nonFinitePrefixes = [3]string{accNaN, accPosInf, accNegInf}

// nonFinite returns the counts of col's non-finite values, creating them.
func (t *Tile) nonFinite(col string) *[3]int64 {
	if t.NonFinite == nil {
		t.NonFinite = map[string]*[3]int64{}
	}
	n := t.NonFinite[col]
	if n == nil {
		n = &[3]int64{}
		t.NonFinite[col] = n
	}
	return n
}

func setCount(m *map[string]int64, k string, n int64) {
	if *m == nil {
		*m = map[string]int64{}
	}
	(*m)[k] = n
}

func (t *Tile) decodeMultiset(dst *map[string]map[string]int64, name, col string, v any) error {
	m, ok := v.(map[any]any)
	if !ok {
		return fmt.Errorf("not a map")
	}
	if len(m) > 0 {
		// The stored form as read is the stored form to write back.
		if t.enc == nil {
			t.enc = map[string]map[any]any{}
		}
		t.enc[name] = m
	}
	vals := make(map[string]int64, len(m))
	for k, n := range m {
		ks, ok := k.(string)
		c, err := asInt(n)
		if !ok || err != nil {
			return fmt.Errorf("multiset entry %v is malformed", k)
		}
		vals[ks] = c
	}
	if *dst == nil {
		*dst = map[string]map[string]int64{}
	}
	(*dst)[col] = vals
	return nil
}

func asInt(v any) (int64, error) {
	if n, ok := v.(int64); ok {
		return n, nil
	}
	return 0, fmt.Errorf("%v is not an integer", v)
}

// EncodePositions renders per-stream positions as a bin value: stream →
// [lsn, seq, ordinal].
func EncodePositions(ps map[string]change.Position) map[any]any {
	m := make(map[any]any, len(ps))
	for name, p := range ps {
		m[name] = []any{int64(p.LSN), int64(p.Seq), int64(p.Ordinal)}
	}
	return m
}

// DecodePositions reads what EncodePositions wrote.
func DecodePositions(v any) (map[string]change.Position, error) {
	m, ok := v.(map[any]any)
	if !ok {
		return nil, fmt.Errorf("not a map of stream positions")
	}
	out := make(map[string]change.Position, len(m))
	for k, e := range m {
		name, ok := k.(string)
		list, lok := e.([]any)
		if !ok || !lok || len(list) != 3 {
			return nil, fmt.Errorf("stream %v: want [lsn, seq, ordinal]", k)
		}
		var n [3]int64
		for i := range list {
			var err error
			if n[i], err = asInt(list[i]); err != nil {
				return nil, fmt.Errorf("stream %s: %w", name, err)
			}
		}
		out[name] = change.Position{LSN: uint64(n[0]), Seq: uint64(n[1]), Ordinal: uint32(n[2])}
	}
	return out, nil
}
