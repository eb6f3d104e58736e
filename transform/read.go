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
			return []*Tile{t}
		}
		return nil
	}
	c := floorDiv(nowSec, size) * size
	lo := c - int64(a.Window/time.Second)
	var out []*Tile
	for start, t := range all {
		if start >= lo && start <= c {
			out = append(out, t)
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
				n += t.Counts[a.Column]
			}
		}
		return n
	case "sum", "avg":
		sum := apd.New(0, 0)
		var n int64
		var nonFinite [3]int64
		for _, t := range tiles {
			if s := t.Sums[a.Column]; s != nil {
				decimalCtx.Add(sum, sum, s)
			}
			n += t.Counts[a.Column]
			if nf := t.NonFinite[a.Column]; nf != nil {
				for i := range nf {
					nonFinite[i] += nf[i]
				}
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
			for k := range t.Values[a.Column] {
				v, err := decodeValue(k)
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
			for k := range t.Values[a.Column] {
				seen[distinctKey(k)] = true
			}
		}
		return int64(len(seen))
	case "first", "last":
		var best string
		for _, t := range tiles {
			for k := range t.Timed[a.Column] {
				if best == "" || (a.Function == "last" && k > best) || (a.Function == "first" && k < best) {
					best = k
				}
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
