package transform

import (
	"encoding/json"
	"math"
	"strings"
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
func (g *Group) Read(st *State, now time.Time) []Feature {
	out := make([]Feature, 0, len(g.Project)+len(g.Aggs))
	for _, col := range g.Project {
		out = append(out, Feature{Name: col, Value: st.Row[col]})
	}
	nowSec := floorDiv(now.UnixMicro(), int64(time.Second/time.Microsecond))
	for _, a := range g.Aggs {
		tiles := g.window(st, a, nowSec)
		out = append(out, Feature{Name: a.Name, Value: evaluate(a, tiles, now)})
	}
	return out
}

func (g *Group) window(st *State, a Aggregation, nowSec int64) []*Tile {
	size := int64(a.Tile / time.Second)
	all := st.Scales[size]
	if size == 0 {
		if t := all[0]; t != nil {
			return []*Tile{t.view()}
		}
		return nil
	}
	c := floorDiv(nowSec, size) * size
	lo := c - int64(a.Window/time.Second)
	var out []*Tile
	for start, t := range all {
		if start >= lo && start <= c {
			out = append(out, t.view())
		}
	}
	return out
}

func evaluate(a Aggregation, tiles []*Tile, now time.Time) any {
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
		var best any
		for _, t := range tiles {
			for _, e := range t.values(a.Column) {
				v, err := decodeValue(e.key)
				if err != nil {
					continue
				}
				if best == nil {
					best = v
					continue
				}
				c := compareValues(v, best)
				if (a.Function == "min" && c < 0) || (a.Function != "min" && c > 0) {
					best = v
				}
			}
		}
		if a.Function != "days_since_last" {
			return best
		}
		last, ok := best.(time.Time)
		if !ok {
			return nil
		}
		return now.Sub(last).Hours() / 24
	case "distinct":
		seen := map[string]bool{}
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
