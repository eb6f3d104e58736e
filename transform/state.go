package transform

import (
	"fmt"
	"slices"
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
	// size is MemSize as of the last Bins; 0 once a change was applied.
	size int
	// trimmed: every tile before the cutoffs at trimmedAt (a commit time)
	// was dropped, so trim has nothing to do until a cutoff moves.
	trimmed   bool
	trimmedAt int64
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
		bins[scaleBin(size)] = encodeScale(tiles)
	}
	s.size = 0
	s.size = s.MemSize()
	return bins
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
	if s.Scales == nil {
		s.Scales = map[int64]map[int64]*Tile{}
	}
	if blob, ok := v.([]byte); ok {
		tiles, err := decodeScale(blob)
		if err != nil {
			return err
		}
		s.Scales[size] = tiles
		return nil
	}
	// The layout before scale blobs (a map of tile maps), still read.
	m, ok := v.(map[any]any)
	if !ok {
		return fmt.Errorf("neither a scale blob nor a map of tiles")
	}
	tiles := make(map[int64]*Tile, len(m))
	for k, tv := range m {
		start, ok := k.(int64)
		tm, ok2 := tv.(map[any]any)
		if !ok || !ok2 {
			return fmt.Errorf("tile %v is malformed", k)
		}
		t, err := decodeTileMap(tm)
		if err != nil {
			return fmt.Errorf("tile %d %w", start, err)
		}
		tiles[start] = t
	}
	s.Scales[size] = tiles
	return nil
}

// nonFinitePrefixes are the entry prefixes of a tile map's counts of NaN,
// Infinity and -Infinity, in tileCol.nonFinite's order.
var nonFinitePrefixes = [3]string{accNaN, accPosInf, accNegInf}

// decodeTileMap reads a tile of the layout before tile blobs (a map of
// entries), open.
func decodeTileMap(tm map[any]any) (*Tile, error) {
	t := &Tile{open: true, whenLost: true}
	for ak, av := range tm {
		name, _ := ak.(string)
		var err error
		switch {
		case name == accRows:
			t.Rows, err = asInt(av)
		case strings.HasPrefix(name, accCount):
			t.col(name[len(accCount):]).count, err = asInt(av)
		case strings.HasPrefix(name, accSum):
			str, _ := av.(string)
			var d *apd.Decimal
			if d, _, err = apd.NewFromString(str); err == nil {
				t.col(name[len(accSum):]).sum = d
			}
		case strings.HasPrefix(name, accNaN), strings.HasPrefix(name, accPosInf), strings.HasPrefix(name, accNegInf):
			var n int64
			n, err = asInt(av)
			for i, pre := range nonFinitePrefixes {
				if col, ok := strings.CutPrefix(name, pre); ok {
					t.col(col).nonFinite[i] = n
				}
			}
		case strings.HasPrefix(name, accVals):
			var ms multiset
			if ms, err = decodeMultisetMap(av); err == nil {
				t.col(name[len(accVals):]).vals = ms
			}
		case strings.HasPrefix(name, accTimed):
			var ms multiset
			if ms, err = decodeMultisetMap(av); err == nil {
				t.col(name[len(accTimed):]).timed = ms
			}
		}
		if err != nil {
			return nil, fmt.Errorf("entry %s: %w", name, err)
		}
	}
	t.prune()
	return t, nil
}

func decodeMultisetMap(v any) (multiset, error) {
	m, ok := v.(map[any]any)
	if !ok {
		return nil, fmt.Errorf("not a map")
	}
	ms := make(multiset, 0, len(m))
	for k, n := range m {
		ks, ok := k.(string)
		c, err := asInt(n)
		if !ok || err != nil || c <= 0 {
			return nil, fmt.Errorf("multiset entry %v is malformed", k)
		}
		ms = append(ms, msEntry{ks, c})
	}
	slices.SortFunc(ms, func(a, b msEntry) int { return strings.Compare(a.key, b.key) })
	return ms, nil
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

// MemSize is about how many bytes the state holds in memory: its tiles
// (stored form, or more while open), projected row and key. The runtime's
// cache is bounded by it (cache.max.bytes).
func (s *State) MemSize() int {
	if s.size > 0 {
		return s.size
	}
	n := 200 + 16*len(s.Streams)
	for _, k := range s.Key {
		n += 16 + len(k)
	}
	for _, v := range s.Row {
		n += 48 + valueSize(v)
	}
	for _, tiles := range s.Scales {
		n += 64
		for _, t := range tiles {
			n += t.memSize()
		}
	}
	return n
}

func valueSize(v any) int {
	switch x := v.(type) {
	case string:
		return len(x)
	case []byte:
		return len(x)
	case []any:
		n := 24
		for _, e := range x {
			n += 16 + valueSize(e)
		}
		return n
	}
	return 8
}
