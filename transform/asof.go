package transform

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// AsOfError says why a read as of At cannot be answered exactly from the
// stored state (docs/point-in-time.md). Nothing is served for such a read.
type AsOfError struct {
	Group   string
	Feature string // the aggregate, or the first projected column
	At      time.Time
	Reason  string
	// From is the earliest instant after At the feature can be read as
	// of, when one is known; zero otherwise.
	From time.Time
	// Before, when not zero, is an instant before which the feature can be
	// read as of (back to the retained history).
	Before time.Time
}

func (e *AsOfError) Error() string {
	msg := fmt.Sprintf("group %s, feature %s: cannot be read as of %s: %s", e.Group, e.Feature, e.At.UTC().Format(time.RFC3339Nano), e.Reason)
	switch {
	case !e.From.IsZero() && !e.Before.IsZero():
		msg += fmt.Sprintf("; it can be read as of %s or later, or before %s", fmtTime(e.From), fmtTime(e.Before))
	case !e.From.IsZero():
		msg += fmt.Sprintf("; the earliest instant it can be read as of is %s", fmtTime(e.From))
	}
	return msg
}

// fmtDuration writes d as the connector file would: whole days as "2d".
func fmtDuration(d time.Duration) string {
	if d != 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// ReadAsOf computes the named features of the group (every feature when
// names is empty) from st as of at, from the changes whose event time is
// at or before at only. A named feature the state cannot answer exactly
// for at fails the read with an *AsOfError; an unknown name is an error.
//
// A window W read as of T covers the tiles that start in [c−W, c], c the
// start of the tile holding T, as Read at T does. That is exact when
// every row in tile c has an event time <= T (each tile counts its rows
// by the sixteenth of the tile their time falls in) and when no tile the
// window covers was trimmed: tiles are kept back to the longest window
// plus the group's history before the latest commit. A lifetime
// aggregate keeps no time: it answers when the group's windowed tiles
// show no row later than T. Projected columns hold the row as of its last
// change: they answer from that change's commit time on.
func (g *Group) ReadAsOf(st *State, at time.Time, memo *Memo, names []string) ([]Feature, error) {
	if len(names) == 0 {
		names = g.FeatureNames()
	}
	for _, name := range names {
		if err := g.CheckAsOf(st, at, name); err != nil {
			return nil, err
		}
	}
	all := g.ReadMemo(st, at, memo)
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := all[:0]
	for _, f := range all {
		if want[f.Name] {
			out = append(out, f)
		}
	}
	return out, nil
}

// FeatureNames lists the group's features as Read returns them.
func (g *Group) FeatureNames() []string {
	out := make([]string, 0, len(g.Project)+len(g.Aggs))
	out = append(out, g.Project...)
	for _, a := range g.Aggs {
		out = append(out, a.Name)
	}
	return out
}

// CheckAsOf says whether st answers the feature name exactly as of at
// (nil), or why not (*AsOfError).
func (g *Group) CheckAsOf(st *State, at time.Time, name string) error {
	T := at.UnixMicro()
	fail := func(reason string, from, before time.Time) error {
		return &AsOfError{Group: g.Name, Feature: name, At: at, Reason: reason, From: from, Before: before}
	}
	if slices.Contains(g.Project, name) {
		if st.Updated > T {
			last := time.UnixMicro(st.Updated)
			return fail(fmt.Sprintf("projected columns hold the row as of its last change, committed at %s", fmtTime(last)), last, time.Time{})
		}
		return nil
	}
	i := slices.IndexFunc(g.Aggs, func(a Aggregation) bool { return a.Name == name })
	if i < 0 {
		return fmt.Errorf("group %s has no feature %q", g.Name, name)
	}
	a := g.Aggs[i]
	size := int64(a.Tile / time.Second)
	if size == 0 {
		return g.checkLifetimeAsOf(st, T, fail)
	}
	c := floorDiv(floorDiv(T, int64(time.Second/time.Microsecond)), size) * size
	w := int64(a.Window / time.Second)
	cut := int64(math.MinInt64)
	if st.Updated != 0 {
		if cut = g.scaleOf(size).cutoff(st.Updated); c-w < cut {
			from := -floorDiv(-(cut+w), size) * size // the first tile start at or after cut+w
			return fail(fmt.Sprintf("its window reaches back to %s, and tiles before %s are no longer kept (the group's history, %s beyond its longest window, says how far back they are kept)",
				fmtTime(time.Unix(c-w, 0)), fmtTime(time.Unix(cut, 0)), fmtDuration(g.History)), time.Unix(from, 0), time.Time{})
		}
	}
	if t := st.Scales[size][c]; t != nil {
		if from, later := laterIn(t.view(), c, size, T); later {
			var before time.Time
			if c-size-w >= cut { // the tile before is kept, with its window
				before = time.Unix(c, 0)
			}
			return fail(fmt.Sprintf("the tile [%s, %s) it ends in holds a row with a later event time",
				fmtTime(time.Unix(c, 0)), fmtTime(time.Unix(c+size, 0))), from, before)
		}
	}
	return nil
}

// laterIn says whether the tile [start, start+size) may hold a row with an
// event time after T (µs), and if so from when none is later: the end of
// the last part of the tile that holds one (zero when not known).
func laterIn(t *Tile, start, size, T int64) (from time.Time, later bool) {
	b, ok := t.lastBucket()
	if !ok {
		return time.Time{}, true
	}
	if b < 0 {
		return time.Time{}, false
	}
	if end := bucketEnd(b, start, size); end-1 > T {
		return time.UnixMicro(end - 1), true
	}
	return time.Time{}, false
}

// checkLifetimeAsOf answers for a lifetime aggregate, whose tile keeps no
// time: it answers as of T when no row of the group is later than T. The
// group's windowed tiles, which hold the same rows by time, tell; without
// a time column, the event time is the commit time.
func (g *Group) checkLifetimeAsOf(st *State, T int64, fail func(string, time.Time, time.Time) error) error {
	if g.TimeCol == "" {
		if st.Updated > T {
			return fail("the group's event time is the commit time, and a change committed after that instant", time.UnixMicro(st.Updated), time.Time{})
		}
		return nil
	}
	Tsec := floorDiv(T, int64(time.Second/time.Microsecond))
	var from time.Time
	windowed := false
	for _, sc := range g.scales {
		if sc.size == 0 {
			continue
		}
		windowed = true
		c := floorDiv(Tsec, sc.size) * sc.size
		if st.Updated != 0 && c < sc.cutoff(st.Updated) {
			continue // rows between T and the kept tiles are not known
		}
		later, known := false, true
		newest := int64(math.MinInt64)
		for start := range st.Scales[sc.size] {
			if start > c {
				later = true
			}
			newest = max(newest, start)
		}
		if newest == c {
			f, l := laterIn(st.Scales[sc.size][c].view(), c, sc.size, T)
			later, from = l, f
			known = !l || !f.IsZero()
		} else if later {
			f, _ := laterIn(st.Scales[sc.size][newest].view(), newest, sc.size, math.MinInt64)
			from, known = f, !f.IsZero()
		}
		if !later {
			return nil
		}
		if known {
			break // the finest tiles say from when
		}
	}
	if !windowed {
		return fail("a lifetime aggregate keeps no time, and the group has no windowed aggregate whose tiles would tell when its rows are", time.Time{}, time.Time{})
	}
	return fail("a lifetime aggregate keeps no time, and the group's windowed tiles hold a row with a later event time (or cannot show that none is)", from, time.Time{})
}

// CheckMissingAsOf says whether a record that is not in the store can be
// read as of at, the reader's clock at now: a record idle for the group's
// TTL expired, and whatever its windows held as of an instant within
// their reach of its expiry is gone. Event times are taken to be no later
// than their commit times.
func (g *Group) CheckMissingAsOf(at, now time.Time) error {
	if g.TTL == 0 {
		return nil
	}
	var reach time.Duration
	for _, a := range g.Aggs {
		reach = max(reach, a.Window+a.Tile)
	}
	from := now.Add(-g.TTL + reach)
	if at.Before(from) {
		name := ""
		if len(g.Aggs) > 0 {
			name = g.Aggs[0].Name
		} else if len(g.Project) > 0 {
			name = g.Project[0]
		}
		return &AsOfError{Group: g.Name, Feature: name, At: at, From: from,
			Reason: fmt.Sprintf("the entity has no record, and a record idle for the group's ttl (%s) expires: what it held then is not known", g.TTL)}
	}
	return nil
}

func (g *Group) scaleOf(size int64) *scale {
	for _, sc := range g.scales {
		if sc.size == size {
			return sc
		}
	}
	return &scale{size: size}
}
