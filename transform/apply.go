package transform

import (
	"fmt"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
)

// Stats counts what Apply did that a person may want to know about.
type Stats struct {
	// Unmatched counts retractions that found nothing to retract: the row
	// was added before tilefeed started (snapshot.mode no_data) or its
	// tile had already left every window.
	Unmatched int
}

// decimalCtx adds and subtracts exactly, whatever the digits (precision 0:
// apd's exact mode): 1e-300 + -2.5 has 301 significant digits, and a
// rounded sum would not come back to its value when the row is deleted.
var decimalCtx = apd.BaseContext.WithPrecision(0)

// Apply applies u to st. The caller has checked that u.Pos is after the
// position st was read at.
func (g *Group) Apply(st *State, u *Update, stats *Stats) error {
	h := max(st.Updated, u.Commit)
	st.Updated = h
	if len(g.scales) > 0 {
		if u.Old != nil {
			if err := g.contribute(st, u, u.Old, u.OldAt, -1, h, stats); err != nil {
				return err
			}
		}
		if u.New != nil {
			if err := g.contribute(st, u, u.New, u.NewAt, +1, h, stats); err != nil {
				return err
			}
		}
		g.trim(st, h)
	}
	if len(g.Project) > 0 {
		if err := g.project(st, u); err != nil {
			return err
		}
	}
	st.setPos(u.Stream, u.Pos)
	st.Key = u.Entity
	return nil
}

func (g *Group) project(st *State, u *Update) error {
	if u.New == nil {
		st.Row = nil
		return nil
	}
	row := make(map[string]any, len(g.Project))
	for _, col := range g.Project {
		v, ok := u.New[col]
		if !ok || v == change.Unchanged {
			// Not sent (unchanged TOAST): keep what is stored.
			if old, ok := st.Row[col]; ok {
				row[col] = old
			}
			continue
		}
		s, err := storable(v)
		if err != nil {
			return &DataError{Group: g.Name, Table: g.Table, Pos: u.Pos, Column: col, Reason: err.Error()}
		}
		if s != nil {
			row[col] = s
		}
	}
	// A row whose projected columns are all NULL has no bins but is
	// there: Bins marks it (binRow), so the entity is found.
	st.Row = row
	return nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// cutoff is the start of the oldest tile of size sc a read at or after h
// can still include.
func (sc *scale) cutoff(h int64) int64 {
	hs := floorDiv(h, int64(time.Second/time.Microsecond))
	return floorDiv(hs, sc.size)*sc.size - sc.horizon
}

func (g *Group) contribute(st *State, u *Update, row change.Row, at int64, sign int64, h int64, stats *Stats) error {
	atSec := floorDiv(at, int64(time.Second/time.Microsecond))
	for _, sc := range g.scales {
		var start int64
		if sc.size > 0 {
			start = floorDiv(atSec, sc.size) * sc.size
			if start < sc.cutoff(h) {
				continue // outside every window already: neither added nor retracted
			}
		}
		if st.Scales == nil {
			st.Scales = map[int64]map[int64]*Tile{}
		}
		tiles := st.Scales[sc.size]
		if tiles == nil {
			tiles = map[int64]*Tile{}
			st.Scales[sc.size] = tiles
		}
		t := tiles[start]
		if t == nil {
			if sign < 0 {
				stats.Unmatched++
				continue
			}
			t = &Tile{}
			tiles[start] = t
		}
		if sign < 0 && t.Rows <= 0 {
			stats.Unmatched++
			continue
		}
		if err := g.addRow(t, sc, u, row, at, sign, stats); err != nil {
			return err
		}
		if t.empty() {
			delete(tiles, start)
			if len(tiles) == 0 {
				delete(st.Scales, sc.size)
			}
		}
	}
	return nil
}

func (g *Group) addRow(t *Tile, sc *scale, u *Update, row change.Row, at int64, sign int64, stats *Stats) error {
	bad := func(col string, v any, reason string) error {
		return &DataError{Group: g.Name, Table: g.Table, Pos: u.Pos, Column: col, Value: v, Reason: reason}
	}
	usable := func(col string) (any, error) {
		v := row[col]
		if v == change.Unchanged {
			return nil, bad(col, nil, "is an unchanged TOAST value the source did not send; set REPLICA IDENTITY FULL so the old value is known")
		}
		return v, nil
	}
	t.Rows += sign
	for _, col := range sc.counts {
		v, err := usable(col)
		if err != nil {
			return err
		}
		if v != nil {
			bump(&t.Counts, col, sign)
		}
	}
	for _, col := range sc.sums {
		v, err := usable(col)
		if err != nil {
			return err
		}
		if v == nil {
			continue
		}
		if i, ok := nonFiniteIndex(v); ok {
			// PostgreSQL sums NaN and the infinities too (docs/types.md):
			// counted apart, so they retract exactly.
			n := t.nonFinite(col)
			n[i] += sign
			if *n == ([3]int64{}) {
				delete(t.NonFinite, col)
				if len(t.NonFinite) == 0 {
					t.NonFinite = nil
				}
			}
			continue
		}
		d, ok := toDecimal(v)
		if !ok {
			return bad(col, v, "is not a number, so it cannot be summed")
		}
		if t.Sums == nil {
			t.Sums = map[string]*apd.Decimal{}
		}
		cur := t.Sums[col]
		next := new(apd.Decimal)
		var err2 error
		if cur == nil {
			cur = apd.New(0, 0)
		}
		if sign > 0 {
			_, err2 = decimalCtx.Add(next, cur, d)
		} else {
			_, err2 = decimalCtx.Sub(next, cur, d)
		}
		if err2 != nil {
			return bad(col, v, "overflows the sum: "+err2.Error())
		}
		if t.Counts[col] == 0 && next.IsZero() {
			delete(t.Sums, col)
			if len(t.Sums) == 0 {
				t.Sums = nil
			}
		} else {
			t.Sums[col] = next
		}
	}
	// Multisets: values (min, max, distinct) and (time, value) pairs
	// (first, last).
	for _, ms := range []struct {
		cols   []string
		set    *map[string]map[string]int64
		prefix string
		timed  bool
	}{{sc.vals, &t.Values, accVals, false}, {sc.timed, &t.Timed, accTimed, true}} {
		for _, col := range ms.cols {
			v, err := usable(col)
			if err != nil {
				return err
			}
			if v == nil {
				continue
			}
			k, err := encodeValue(v)
			if err != nil {
				return bad(col, v, err.Error())
			}
			if ms.timed {
				k = timedKey(at, k)
			}
			if bumpSet(t, ms.set, ms.prefix, col, k, sign) {
				continue
			}
			if sign < 0 && retractNumber(t, ms.set, ms.prefix, col, v, at, ms.timed) {
				continue
			}
			stats.Unmatched++
		}
	}
	if t.Rows == 0 {
		t.Counts, t.Sums, t.NonFinite, t.Values, t.Timed, t.enc = nil, nil, nil, nil, nil, nil
	}
	return nil
}

// retractNumber retracts a number that was added under another numeric
// type's key (numberKeys): the column's type changed in between.
func retractNumber(t *Tile, m *map[string]map[string]int64, prefix, col string, v any, at int64, timed bool) bool {
	for _, k := range numberKeys(v) {
		if timed {
			k = timedKey(at, k)
		}
		if (*m)[col][k] > 0 && bumpSet(t, m, prefix, col, k, -1) {
			return true
		}
	}
	return false
}

// timedKey sorts by event time, then by value: 20 digits of microseconds
// offset to be non-negative, "|", the tagged value.
func timedKey(at int64, tagged string) string {
	return fmt.Sprintf("%020d|%s", uint64(at)+1<<63, tagged)
}

func bump(m *map[string]int64, k string, by int64) {
	if *m == nil {
		*m = map[string]int64{}
	}
	if n := (*m)[k] + by; n != 0 {
		(*m)[k] = n
	} else {
		delete(*m, k)
		if len(*m) == 0 {
			*m = nil
		}
	}
}

// bumpSet changes a multiset entry (and its stored form); it refuses
// (false) to take a multiplicity below zero.
func bumpSet(t *Tile, m *map[string]map[string]int64, prefix, col, k string, by int64) bool {
	if *m == nil {
		*m = map[string]map[string]int64{}
	}
	set := (*m)[col]
	if set == nil {
		if by < 0 {
			if len(*m) == 0 {
				*m = nil
			}
			return false
		}
		set = map[string]int64{}
		(*m)[col] = set
	}
	n := set[k] + by
	switch {
	case n < 0:
		return false
	case n == 0:
		delete(set, k)
		if len(set) == 0 {
			delete(*m, col)
			if len(*m) == 0 {
				*m = nil
			}
		}
	default:
		set[k] = n
	}
	t.setEncoded(prefix+col, k, n)
	return true
}

func (g *Group) trim(st *State, h int64) {
	for _, sc := range g.scales {
		if sc.size == 0 {
			continue
		}
		cut := sc.cutoff(h)
		tiles := st.Scales[sc.size]
		for start := range tiles {
			if start < cut {
				delete(tiles, start)
			}
		}
		if len(tiles) == 0 {
			delete(st.Scales, sc.size)
		}
	}
}
