package transform

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
)

// Feature is one computed feature value.
type Feature struct {
	Name string
	// Value is nil (no data), int64, float64, *apd.Decimal, string, bool,
	// time.Time, time.Duration, []byte, json.RawMessage or []any.
	Value any
}

// Read computes every feature of the group from st as of now: projected
// columns first, then aggregates in file order.
//
// A window W read at now covers the tiles that start in [c−W, c], where c
// is the start of the tile holding now: every event in (now−W, now] and, at
// most, one tile's worth of older ones.
func (g *Group) Read(st *State, now time.Time) []Feature { return g.ReadMemo(st, now, nil) }

// Memo remembers what reads of one state computed: an aggregate depends on
// the read time only through the tile it falls in, so a read of the same
// unchanged state in the same tile computes nothing again. The state must
// not change while its memo is in use. Safe for concurrent reads.
type Memo struct {
	mu   sync.Mutex
	vals map[memoKey]any
}

type memoKey struct {
	agg   int
	start int64 // the start of the tile the read time falls in
}

// memoMax bounds a memo: past it (reads at many times), it starts over.
const memoMax = 256

func (m *Memo) get(k memoKey) (any, bool) {
	if m == nil {
		return nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vals[k]
	return v, ok
}

func (m *Memo) put(k memoKey, v any) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.vals == nil || len(m.vals) >= memoMax {
		m.vals = make(map[memoKey]any)
	}
	m.vals[k] = v
}

// ReadMemo is Read, remembering in memo (nil: nowhere) what it computes.
func (g *Group) ReadMemo(st *State, now time.Time, memo *Memo) []Feature {
	out := make([]Feature, 0, len(g.Project)+len(g.Aggs))
	for _, col := range g.Project {
		out = append(out, Feature{Name: col, Value: st.Row[col]})
	}
	nowSec := floorDiv(now.UnixMicro(), int64(time.Second/time.Microsecond))
	rt := readTiles{st: st} // each stored tile decoded once, whatever reads it
	for i, a := range g.Aggs {
		size := int64(a.Tile / time.Second)
		k := memoKey{agg: i}
		if size > 0 {
			k.start = floorDiv(nowSec, size) * size
		}
		v, ok := memo.get(k)
		if !ok {
			v = aggregate(a, rt.window(a, nowSec))
			memo.put(k, v)
		}
		out = append(out, Feature{Name: a.Name, Value: finish(a, v, now)})
	}
	return out
}

// readTiles holds, for one read of a state, each scale's tiles sorted by
// start, decoded where they were stored: built once per scale, however
// many aggregates read it.
type readTiles struct {
	st     *State
	scales []scaleTiles
	out    []*Tile
}

type scaleTiles struct {
	size   int64
	starts []int64
	tiles  []*Tile
}

func (r *readTiles) scale(size int64) *scaleTiles {
	for i := range r.scales {
		if r.scales[i].size == size {
			return &r.scales[i]
		}
	}
	all := r.st.Scales[size]
	s := scaleTiles{size: size, starts: make([]int64, 0, len(all)), tiles: make([]*Tile, 0, len(all))}
	for start := range all {
		s.starts = append(s.starts, start)
	}
	slices.Sort(s.starts)
	for _, start := range s.starts {
		s.tiles = append(s.tiles, all[start].view())
	}
	r.scales = append(r.scales, s)
	return &r.scales[len(r.scales)-1]
}

// window returns the tiles an aggregate read at nowSec covers: those that
// start in [c−W, c], c the start of the tile holding nowSec. The slice is
// reused by the next call.
func (r *readTiles) window(a Aggregation, nowSec int64) []*Tile {
	size := int64(a.Tile / time.Second)
	s := r.scale(size)
	if size == 0 {
		return s.tiles // the lifetime tile, when there is one
	}
	c := floorDiv(nowSec, size) * size
	lo := c - int64(a.Window/time.Second)
	i, _ := slices.BinarySearch(s.starts, lo)
	j, _ := slices.BinarySearch(s.starts, c+1)
	r.out = append(r.out[:0], s.tiles[i:max(i, j)]...)
	return r.out
}

// finish turns what aggregate computed into the feature as of now: only
// days_since_last depends on now beyond the tile.
func finish(a Aggregation, v any, now time.Time) any {
	if a.Function != "days_since_last" {
		return v
	}
	last, ok := v.(time.Time)
	if !ok {
		return nil
	}
	// Never negative: an event time past the read time (a clock ahead of
	// the reader's) is as recent as it gets.
	return max(now.Sub(last), 0).Hours() / 24
}

// aggregate computes an aggregate over the tiles of its window
// (days_since_last: the latest time, which finish turns into days).
func aggregate(a Aggregation, tiles []*Tile) any {
	switch a.Function {
	case "count":
		var n int64
		for _, t := range tiles {
			if a.Column == "" {
				n += t.Rows
			} else {
				n += t.count(a.Column)
			}
		}
		return n
	case "sum", "avg":
		sum := apd.New(0, 0)
		var n int64
		var nonFinite [3]int64
		for _, t := range tiles {
			c := t.colAt(a.Column)
			if c == nil {
				continue
			}
			if c.sum != nil {
				decimalCtx.Add(sum, sum, c.sum)
			}
			n += c.count
			for i, k := range c.nonFinite {
				nonFinite[i] += k
			}
		}
		if a.Function == "avg" && n == 0 {
			return nil
		}
		// As PostgreSQL: NaN wins, and so does Infinity + -Infinity.
		switch {
		case nonFinite[0] > 0 || (nonFinite[1] > 0 && nonFinite[2] > 0):
			return &apd.Decimal{Form: apd.NaN}
		case nonFinite[1] > 0:
			return &apd.Decimal{Form: apd.Infinite}
		case nonFinite[2] > 0:
			return &apd.Decimal{Form: apd.Infinite, Negative: true}
		}
		if a.Function == "sum" {
			return sum
		}
		avg := new(apd.Decimal)
		avgCtx.Quo(avg, sum, apd.New(n, 0))
		avg.Reduce(avg)
		return avg
	case "min", "max", "days_since_last":
		min := a.Function == "min"
		var x extreme
		for _, t := range tiles {
			c := t.colAt(a.Column)
			if c == nil {
				continue
			}
			if c.extOK {
				// The tile's own extreme, kept by Apply.
				if k := c.ext[extIndex(min)]; k != "" {
					x.offer(k, min)
				}
				continue
			}
			for _, e := range c.vals {
				x.offer(e.key, min)
			}
		}
		if x.key == "" {
			return nil
		}
		v, err := decodeValue(x.key)
		if err != nil {
			return nil
		}
		return v
	case "distinct":
		n := 0
		for _, t := range tiles {
			n += len(t.values(a.Column))
		}
		seen := make(map[string]bool, n)
		for _, t := range tiles {
			for _, e := range t.values(a.Column) {
				seen[distinctKey(e.key)] = true
			}
		}
		return int64(len(seen))
	case "first", "last":
		var best string
		for _, t := range tiles {
			ms := t.timedValues(a.Column)
			if len(ms) == 0 {
				continue
			}
			k := ms[0].key // sorted: the first and the last are at the ends
			if a.Function == "last" {
				k = ms[len(ms)-1].key
			}
			if best == "" || (a.Function == "last" && k > best) || (a.Function == "first" && k < best) {
				best = k
			}
		}
		if best == "" {
			return nil
		}
		_, tagged, _ := strings.Cut(best, "|")
		v, err := decodeValue(tagged)
		if err != nil {
			return nil
		}
		return v
	}
	return nil
}

// avgCtx rounds averages to 20 significant digits.
var avgCtx = apd.BaseContext.WithPrecision(20)

// JSONValue renders a feature value for JSON (docs/types.md): decimals as
// exact numbers, NaN and the infinities as the strings PostgreSQL writes
// ("NaN", "Infinity", "-Infinity"; JSON has no such numbers), times in
// RFC 3339 ("infinity", "-infinity"), durations as strings, arrays
// element by element.
func JSONValue(v any) any {
	switch x := v.(type) {
	case *apd.Decimal:
		if x.Form != apd.Finite {
			return nonFiniteText(x.Form == apd.Infinite, x.Negative)
		}
		return json.Number(x.Text('f'))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nonFiniteText(math.IsInf(x, 0), x < 0)
		}
		return x
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case change.Infinity:
		return x.String()
	case time.Duration:
		return x.String()
	case []byte:
		return x
	case json.RawMessage:
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = JSONValue(e)
		}
		return out
	}
	return v
}

func nonFiniteText(inf, negative bool) string {
	switch {
	case !inf:
		return "NaN"
	case negative:
		return "-Infinity"
	}
	return "Infinity"
}
