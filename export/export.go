package export

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/export/internal/spill"
	"github.com/tilefeed/tilefeed/transform"
)

// Table reads a source table's rows with an event time at or after from
// (all when zero), ordered by the columns of order, then by event time
// (postgres.TableReader).
type Table interface {
	Read(ctx context.Context, table string, order []string, timeCol string, from time.Time, fn func(change.Row) error) error
}

// Estimator is a Table that can estimate a table's rows, for progress.
type Estimator interface {
	Estimate(ctx context.Context, table string) int64
}

// progressEvery is how often a long replay reports its progress.
const progressEvery = 5 * time.Second

// defaultSpillBytes is the memory each sorted buffer (the spine's keys of
// a group, a group's features) holds before it is written to disk.
const defaultSpillBytes = 4 << 20

// Column names a group's feature in the output: <group>__<feature>.
func Column(group, feature string) string { return group + "__" + feature }

// Options are what Run needs besides the connector's groups.
type Options struct {
	Spine, Out string   // file paths: .parquet for Parquet, CSV otherwise
	TimeColumn string   // the spine's timestamp column; "ts" when empty
	Groups     []string // groups to export; every group with a time column when empty
	Progress   io.Writer
	// Archive, when set, is the directory of an archive of applied changes
	// (archive.dir) to replay instead of reading the tables
	// (source=replay): each example gets what tilefeed served at its
	// timestamp.
	Archive string
	// Changes, when set, is another history to replay: it hands fn the
	// changes in the order they were applied (Debezium NDJSON files,
	// debezium.ReadFiles). Positions seen before are skipped.
	Changes func(ctx context.Context, fn func(*change.Event) error) error
	// SpillBytes bounds each in-memory sort buffer; past it, sorted runs
	// go to files beside Out. defaultSpillBytes when 0.
	SpillBytes int
}

// Run reads the spine, computes the features from the tables src reads,
// and writes the training set. Every input is checked before anything is
// written, and the output appears whole or not at all.
func Run(ctx context.Context, engine *transform.Engine, src Table, o Options) error {
	if o.TimeColumn == "" {
		o.TimeColumn = "ts"
	}
	if o.SpillBytes <= 0 {
		o.SpillBytes = defaultSpillBytes
	}
	var hist history = tableHistory{src}
	switch {
	case o.Changes != nil:
		hist = &archiveHistory{read: once(o.Changes), name: "replay", engine: engine, budget: o.SpillBytes}
	case o.Archive != "":
		hist = &archiveHistory{read: readArchive(o.Archive), name: "archive " + o.Archive, engine: engine, budget: o.SpillBytes}
	case src == nil:
		return errors.New("an export needs the feature tables (source=table) or an archive of changes (source=replay)")
	}
	groups, err := selectGroups(engine, o.Groups, hist.needsTime(), o.Progress)
	if err != nil {
		return err
	}
	sp, err := openSpine(o.Spine)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(o.Out), "."+filepath.Base(o.Out)+".spill-")
	if err != nil {
		return fmt.Errorf("a directory for the export's sorted runs: %w", err)
	}
	defer os.RemoveAll(tmp)
	if ah, ok := hist.(*archiveHistory); ok {
		ah.tmp = tmp
	}
	start := time.Now()
	keys, err := readSpine(sp, groups, o.TimeColumn, tmp, o.SpillBytes)
	if err != nil {
		return fmt.Errorf("%s: %w", o.Spine, err)
	}
	defer keys.close()
	results := make([]*groupResult, len(groups))
	defer func() {
		for _, r := range results {
			if r != nil {
				r.feats.Close()
			}
		}
	}()
	for gi, g := range groups {
		gs := time.Now()
		res, err := computeGroup(ctx, engine, g, keys.earliest, keys.byGroup[gi], hist, tmp, o.SpillBytes, o.Progress)
		if err != nil {
			return fmt.Errorf("group %s: %w", g.Name, err)
		}
		results[gi] = res
		if o.Progress != nil {
			el := time.Since(gs)
			fmt.Fprintf(o.Progress, "export: group %s: %d %s of %s replayed, %d spine rows read, %s (%.0f spine rows/s)\n",
				g.Name, res.replayed, hist.what(), g.Table, keys.rows, el.Round(time.Millisecond), float64(keys.rows)/max(el.Seconds(), 1e-9))
		}
	}
	if err := WriteFile(o.Out, func(w io.Writer) error { return writeTable(o.Out, w, sp, groups, results, o.Progress) }); err != nil {
		return err
	}
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "export: %d spine rows × %d groups → %s in %s\n", keys.rows, len(groups), o.Out, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// selectGroups returns the named groups, or every group with a time
// column when none is named.
func selectGroups(engine *transform.Engine, names []string, needTime bool, progress io.Writer) ([]*transform.Group, error) {
	var groups []*transform.Group
	if len(names) == 0 && !needTime {
		return engine.Groups(), nil
	}
	if len(names) == 0 {
		// Every group that has event times to replay by.
		for _, g := range engine.Groups() {
			if g.TimeCol != "" {
				groups = append(groups, g)
			} else if progress != nil {
				fmt.Fprintf(progress, "export: group %s left out: it has no time column\n", g.Name)
			}
		}
		if len(groups) == 0 {
			return nil, errors.New("no feature group has a time column: an export replays rows by event time")
		}
		return groups, nil
	}
	for _, name := range names {
		g := engine.Group(name)
		if g == nil {
			return nil, fmt.Errorf("no feature group %q", name)
		}
		if g.TimeCol == "" && needTime {
			return nil, fmt.Errorf("group %s has no time column: an export from the table replays rows by event time (a replay of the archive, -source replay, needs none)", g.Name)
		}
		groups = append(groups, g)
	}
	return groups, nil
}

// example is one spine row as a group sees it: its entity, its timestamp
// and its place in the spine (0-based).
type example struct {
	id  string
	at  time.Time
	row uint64
}

// examples sort by entity, then time, then spine order.
var examples = spill.Codec[example]{
	Compare: func(a, b example) int {
		if c := strings.Compare(a.id, b.id); c != 0 {
			return c
		}
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.row, b.row)
	},
	Size: func(e example) int { return len(e.id) + 48 },
	Append: func(b []byte, e example) []byte {
		b = appendTime(b, e.at)
		b = binary.AppendUvarint(b, e.row)
		return append(b, e.id...)
	},
	Decode: func(b []byte) (example, error) {
		at, b, err := readTime(b)
		if err != nil {
			return example{}, err
		}
		row, n := binary.Uvarint(b)
		if n <= 0 {
			return example{}, errCorrupt
		}
		return example{at: at, row: row, id: string(b[n:])}, nil
	},
}

func appendTime(b []byte, t time.Time) []byte {
	return binary.AppendUvarint(binary.AppendVarint(b, t.Unix()), uint64(t.Nanosecond()))
}

func readTime(b []byte) (time.Time, []byte, error) {
	sec, n := binary.Varint(b)
	if n <= 0 {
		return time.Time{}, nil, errCorrupt
	}
	ns, m := binary.Uvarint(b[n:])
	if m <= 0 || ns >= 1e9 {
		return time.Time{}, nil, errCorrupt
	}
	return time.Unix(sec, int64(ns)).UTC(), b[n+m:], nil
}

// spineKeys is the first pass's result: per group, the spine's examples
// sorted by entity.
type spineKeys struct {
	rows     int64
	earliest time.Time
	byGroup  []*spill.Sorter[example]
}

func (k *spineKeys) close() {
	for _, s := range k.byGroup {
		s.Close()
	}
}

// readSpine checks every spine row (a timestamp, keys the groups' entity
// columns can hold) and sorts its examples per group.
func readSpine(sp spineFile, groups []*transform.Group, timeCol, tmp string, budget int) (*spineKeys, error) {
	cols := sp.Columns()
	ti := slices.Index(cols, timeCol)
	if ti < 0 {
		return nil, fmt.Errorf("spine has no timestamp column %q (columns: %s; -time names another)", timeCol, strings.Join(cols, ", "))
	}
	keyCols := make([][]int, len(groups))
	keys := &spineKeys{}
	for gi, g := range groups {
		for _, col := range g.Entity {
			i := slices.Index(cols, col)
			if i < 0 {
				return nil, fmt.Errorf("spine has no column %q (group %s is keyed by %s)", col, g.Name, strings.Join(g.Entity, ", "))
			}
			keyCols[gi] = append(keyCols[gi], i)
		}
		keys.byGroup = append(keys.byGroup, spill.New(tmp, budget, examples))
	}
	r, err := sp.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	key := make([]string, 0, 4)
	for {
		vals, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			keys.close()
			return nil, err
		}
		at, err := spineTime(vals[ti])
		if err != nil {
			keys.close()
			return nil, fmt.Errorf("spine %s, column %s: %w", r.Where(), timeCol, err)
		}
		if keys.earliest.IsZero() || at.Before(keys.earliest) {
			keys.earliest = at
		}
		for gi, g := range groups {
			key = key[:0]
			for _, i := range keyCols[gi] {
				s, err := keyText(vals[i])
				if err != nil {
					keys.close()
					return nil, fmt.Errorf("spine %s, column %s: %w", r.Where(), cols[i], err)
				}
				key = append(key, s)
			}
			if err := g.CheckKey(key); err != nil {
				keys.close()
				return nil, fmt.Errorf("spine %s: %w", r.Where(), err)
			}
			if err := keys.byGroup[gi].Add(example{id: transform.EntityID(key), at: at, row: uint64(keys.rows)}); err != nil {
				keys.close()
				return nil, err
			}
		}
		keys.rows++
	}
	return keys, nil
}

// keyText is a spine value as the text of an entity key.
func keyText(v any) (string, error) {
	if v == nil {
		return "", errors.New("is NULL: no entity has a NULL key")
	}
	return text(v)
}

// result is one spine row's features, in their tagged form.
type result struct {
	row  uint64
	vals []byte
}

var results = spill.Codec[result]{
	Compare: func(a, b result) int { return cmp.Compare(a.row, b.row) },
	Size:    func(r result) int { return len(r.vals) + 32 },
	Append: func(b []byte, r result) []byte {
		return append(binary.AppendUvarint(b, r.row), r.vals...)
	},
	Decode: func(b []byte) (result, error) {
		row, n := binary.Uvarint(b)
		if n <= 0 {
			return result{}, errCorrupt
		}
		return result{row: row, vals: slices.Clone(b[n:])}, nil
	},
}

// groupResult is a group's features for every spine row, sorted by spine
// row, and what their values were.
type groupResult struct {
	feats    *spill.Sorter[result]
	types    []valueTypes // per feature
	replayed int          // table rows replayed
}

// entityIndex locates each entity's examples in a file, in time order.
type entityIndex struct {
	f     *os.File
	spans map[string]*span
	buf   []byte
	ex    []example
}

type span struct {
	off  int64
	size int
	done bool
}

// buildIndex writes a group's examples, sorted by entity, to a file and
// indexes them by entity.
func buildIndex(sorted *spill.Sorter[example], tmp string) (*entityIndex, error) {
	it, err := sorted.Merge()
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(tmp, "index-*")
	if err != nil {
		return nil, fmt.Errorf("spill to disk: %w", err)
	}
	os.Remove(f.Name())
	ix := &entityIndex{f: f, spans: map[string]*span{}}
	w := bufio.NewWriterSize(f, 256<<10)
	var off int64
	var cur *span
	var last string
	var b []byte
	for {
		e, ok, err := it.Next()
		if err != nil {
			f.Close()
			return nil, err
		}
		if !ok {
			break
		}
		if cur == nil || e.id != last {
			cur = &span{off: off}
			ix.spans[e.id] = cur
			last = e.id
		}
		b = appendTime(b[:0], e.at)
		b = binary.AppendUvarint(b, e.row)
		if _, err := w.Write(b); err != nil {
			f.Close()
			return nil, fmt.Errorf("spill to disk: %w", err)
		}
		cur.size += len(b)
		off += int64(len(b))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return nil, fmt.Errorf("spill to disk: %w", err)
	}
	return ix, nil
}

// take returns an entity's examples in time order, once; nil when the
// spine has none for it or they were taken.
func (ix *entityIndex) take(id string) ([]example, error) {
	sp, ok := ix.spans[id]
	if !ok {
		return nil, nil
	}
	if sp.done {
		return nil, fmt.Errorf("the rows of entity %q do not come together in the table's order by its entity columns: keys that PostgreSQL sorts as equal but that differ in text (1.0 and 1.00) are separate entities to tilefeed, so an export cannot replay them", id)
	}
	sp.done = true
	ix.buf = slices.Grow(ix.buf[:0], sp.size)[:sp.size]
	if _, err := ix.f.ReadAt(ix.buf, sp.off); err != nil {
		return nil, fmt.Errorf("read spilled spine keys: %w", err)
	}
	ix.ex = ix.ex[:0]
	for b := ix.buf; len(b) > 0; {
		at, rest, err := readTime(b)
		if err != nil {
			return nil, err
		}
		row, n := binary.Uvarint(rest)
		if n <= 0 {
			return nil, errCorrupt
		}
		b = rest[n:]
		ix.ex = append(ix.ex, example{id: id, at: at, row: row})
	}
	return ix.ex, nil
}

// computeGroup replays a group's table entity by entity, each entity's
// rows in event-time order, and reads each of the entity's spine rows once
// every row with an event time at or before its timestamp, and no later
// one, has been applied: the value a read as of that instant would serve
// from the table as it is now. One entity's state is held at a time.
func computeGroup(ctx context.Context, engine *transform.Engine, g *transform.Group, earliest time.Time, sorted *spill.Sorter[example],
	hist history, tmp string, budget int, progress io.Writer) (*groupResult, error) {
	ix, err := buildIndex(sorted, tmp)
	if err != nil {
		return nil, err
	}
	defer ix.f.Close()
	sorted.Close()
	res := &groupResult{feats: spill.New(tmp, budget, results), types: make([]valueTypes, len(g.FeatureNames()))}
	var enc []byte
	read := func(st *transform.State, e example) error {
		enc = enc[:0]
		for i, f := range g.Read(st, e.at) {
			res.types[i].observe(f.Value)
			var err error
			if enc, err = appendValue(enc, f.Value); err != nil {
				return fmt.Errorf("spine row %d, feature %s: %w", e.row+1, f.Name, err)
			}
		}
		return res.feats.Add(result{row: e.row, vals: slices.Clone(enc)})
	}
	var total int64
	if progress != nil {
		total = hist.estimate(ctx, g)
	}
	started := time.Now()
	nextReport := started.Add(progressEvery)
	// The entity being replayed (have: cur is one), its state (nil when
	// no spine row needs it) and the examples left.
	var cur string
	var have bool
	var st *transform.State
	var pending []example
	finish := func() error {
		for _, e := range pending {
			if err := read(st, e); err != nil {
				return err
			}
		}
		st, pending = nil, nil
		return nil
	}
	var from time.Time
	if len(ix.spans) > 0 {
		if f, ok := g.BackfillFrom(earliest); ok {
			from = f
		}
	}
	var ups []transform.Update
	var stats transform.Stats
	err = hist.each(ctx, g, from, func(ev *change.Event, visible time.Time, only string) error {
		if len(ix.spans) == 0 {
			return nil
		}
		res.replayed++
		n := res.replayed
		if progress != nil && n%4096 == 0 && time.Now().After(nextReport) {
			nextReport = time.Now().Add(progressEvery)
			reportProgress(progress, g, hist.what(), n, total, time.Since(started))
		}
		var err error
		if ups, err = engine.Plan(ev, ups[:0]); err != nil {
			return err
		}
		for i := range ups {
			u := &ups[i]
			if u.Group != g || (only != "" && u.Key.ID != only) {
				continue // another group of the table, or another entity
			}
			if !have || u.Key.ID != cur {
				if err := finish(); err != nil {
					return err
				}
				ex, err := ix.take(u.Key.ID)
				if err != nil {
					return err
				}
				cur, have = u.Key.ID, true
				if ex != nil {
					st, pending = &transform.State{}, ex
				}
			}
			if st == nil {
				continue // no spine row needs the entity
			}
			for len(pending) > 0 && pending[0].at.Before(visible) {
				if err := read(st, pending[0]); err != nil { // a spine row before this change is visible
					return err
				}
				pending = pending[1:]
			}
			if err := g.Apply(st, u, &stats); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = finish()
	}
	if err == nil {
		// Entities without rows: their features as of nothing.
		for id, sp := range ix.spans {
			if sp.done {
				continue
			}
			var ex []example
			if ex, err = ix.take(id); err != nil {
				break
			}
			st := &transform.State{}
			for _, e := range ex {
				if err = read(st, e); err != nil {
					break
				}
			}
		}
	}
	if err != nil {
		res.feats.Close()
		return nil, err
	}
	return res, nil
}

// reportProgress prints a line: rows replayed of the estimate, the rate
// and the time left.
func reportProgress(w io.Writer, g *transform.Group, what string, n int, total int64, el time.Duration) {
	rate := float64(n) / max(el.Seconds(), 1e-9)
	if total <= int64(n) {
		fmt.Fprintf(w, "export: group %s: %d %s replayed, %.0f/s\n", g.Name, n, what, rate)
		return
	}
	eta := time.Duration(float64(total-int64(n)) / rate * float64(time.Second))
	fmt.Fprintf(w, "export: group %s: %d of about %d %s replayed (%.0f%%), %.0f/s, about %s left\n",
		g.Name, n, total, what, 100*float64(n)/float64(total), rate, eta.Round(time.Second))
}

// eventTime is a row's event time: -infinity and infinity sort first and
// last, as PostgreSQL orders them.
func eventTime(v any) (time.Time, bool) {
	switch x := v.(type) {
	case time.Time:
		return x, true
	case change.Infinity:
		if x.String() == "-infinity" {
			return time.Date(-4713, 1, 1, 0, 0, 0, 0, time.UTC), true
		}
		return time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), true
	}
	return time.Time{}, false
}

// writeTable is the last pass: the spine's rows again, in file order,
// each with every group's features.
func writeTable(path string, w io.Writer, sp spineFile, groups []*transform.Group, results []*groupResult, progress io.Writer) error {
	var cols []column
	for _, name := range sp.Columns() {
		cols = append(cols, column{Name: name})
	}
	for gi, g := range groups {
		fns := featureFunctions(g)
		for i, name := range g.FeatureNames() {
			cols = append(cols, column{Name: Column(g.Name, name), types: &results[gi].types[i], function: fns[i]})
		}
	}
	out, err := newTable(path, w, cols, sp, progress)
	if err != nil {
		return err
	}
	iters := make([]*spill.Iter[result], len(groups))
	for gi, r := range results {
		if iters[gi], err = r.feats.Merge(); err != nil {
			return err
		}
	}
	r, err := sp.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	feats := make([][]any, len(groups))
	for row := uint64(0); ; row++ {
		vals, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		for gi, it := range iters {
			res, ok, err := it.Next()
			if err != nil {
				return err
			}
			if !ok || res.row != row {
				return fmt.Errorf("group %s: no features for spine %s: the spine changed during the export", groups[gi].Name, r.Where())
			}
			feats[gi] = feats[gi][:0]
			for b := res.vals; len(b) > 0; {
				var v any
				if v, b, err = readValue(b); err != nil {
					return err
				}
				feats[gi] = append(feats[gi], v)
			}
		}
		row := spineRow{vals: vals}
		if pr, ok := r.(*parquetReader); ok {
			row.raw = pr.rawRow()
		}
		if err := out.Write(row, feats); err != nil {
			return err
		}
	}
	for gi, it := range iters {
		if _, more, _ := it.Next(); more {
			return fmt.Errorf("group %s: the spine lost rows during the export", groups[gi].Name)
		}
	}
	return out.Close()
}

// featureFunctions is each feature's aggregate function, in FeatureNames
// order ("" for a projected column).
func featureFunctions(g *transform.Group) []string {
	fns := make([]string, len(g.Project), len(g.Project)+len(g.Aggs))
	for _, a := range g.Aggs {
		fns = append(fns, a.Function)
	}
	return fns
}

// WriteFile writes to path through a temporary file renamed into place,
// so a failed export leaves nothing half written.
func WriteFile(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
