package transform

import (
	"fmt"
	"slices"
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
	st.size = 0
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

// sameCutoffs reports whether every scale has the same cutoff at a and b.
func (g *Group) sameCutoffs(a, b int64) bool {
	for _, sc := range g.scales {
		if sc.size > 0 && sc.cutoff(a) != sc.cutoff(b) {
			return false
		}
	}
	return true
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
		if t != nil {
			if err := t.load(); err != nil {
				return fmt.Errorf("group %s: tile %d of entity %v: %w", g.Name, start, u.Entity, err)
			}
		}
		if t == nil {
			if sign < 0 {
				stats.Unmatched++
				continue
			}
			t = &Tile{open: true}
			tiles[start] = t
		}
		if sign < 0 && t.Rows <= 0 {
			stats.Unmatched++
			continue
		}
		if sc.size > 0 {
			t.countWhen(at, start, sc.size, sign)
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
			t.col(col).count += sign
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
			t.col(col).nonFinite[i] += sign
			continue
		}
		d, ok := toDecimal(v)
		if !ok {
			return bad(col, v, "is not a number, so it cannot be summed")
		}
		c := t.col(col)
		cur := c.sum
		if cur == nil {
			cur = apd.New(0, 0)
		}
		next := new(apd.Decimal)
		var err2 error
		if sign > 0 {
			_, err2 = decimalCtx.Add(next, cur, d)
		} else {
			_, err2 = decimalCtx.Sub(next, cur, d)
		}
		if err2 != nil {
			return bad(col, v, "overflows the sum: "+err2.Error())
		}
		if c.count == 0 && next.IsZero() {
			c.sum = nil
		} else {
			c.sum = next
		}
	}
	// Multisets: values (min, max, distinct) and (time, value) pairs
	// (first, last).
	for _, timed := range [...]bool{false, true} {
		cols := sc.vals
		if timed {
			cols = sc.timed
		}
		for _, col := range cols {
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
			c := t.col(col)
			ms := &c.vals
			if timed {
				ms = &c.timed
				k = timedKey(at, k)
			}
			exact := ms.bump(k, sign)
			if exact || (sign < 0 && retractNumber(ms, v, at, timed)) {
				if !timed && slices.Contains(sc.extremes, col) {
					c.noteValue(k, sign, exact)
				}
				continue
			}
			stats.Unmatched++
		}
	}
	if t.Rows == 0 {
		t.cols = nil
	} else {
		t.prune()
	}
	return nil
}

// retractNumber retracts a number that was added under another numeric
// type's key (numberKeys): the column's type changed in between.
func retractNumber(ms *multiset, v any, at int64, timed bool) bool {
	for _, k := range numberKeys(v) {
		if timed {
			k = timedKey(at, k)
		}
		if ms.bump(k, -1) {
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

func (g *Group) trim(st *State, h int64) {
	if st.trimmed && g.sameCutoffs(st.trimmedAt, h) {
		// Nothing new to drop: contribute adds no tile before the cutoffs.
		return
	}
	st.trimmed, st.trimmedAt = true, h
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
