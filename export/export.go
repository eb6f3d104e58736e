// Package export builds training sets: for each labelled example of a
// spine (entity keys, a timestamp, labels), the features of the requested
// groups as of that timestamp, computed by the same Plan, Apply and Read
// the online path uses, from the source tables' rows replayed in
// event-time order (docs/point-in-time.md, "Training sets").
package export

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/transform"
)

// Spine is the labelled examples, in file order.
type Spine struct {
	Header []string
	Rows   [][]string
	At     []time.Time // each row's timestamp
}

// timeLayouts are the spine timestamps accepted besides RFC 3339: what
// PostgreSQL, pandas and Spark write.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999Z07",
	"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999", "2006-01-02"}

// ParseTime parses a spine timestamp; one without a zone is UTC.
func ParseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a timestamp (RFC 3339, or 2006-01-02 15:04:05[.frac][zone], or a date)", s)
}

// ReadCSV reads a spine with a header row; timeCol names its timestamp
// column. A bad row is an error naming its line and column.
func ReadCSV(r io.Reader, timeCol string) (*Spine, error) {
	cr := csv.NewReader(r)
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("spine header: %w", err)
	}
	ti := slices.Index(header, timeCol)
	if ti < 0 {
		return nil, fmt.Errorf("spine has no timestamp column %q (columns: %s; -time names another)", timeCol, strings.Join(header, ", "))
	}
	sp := &Spine{Header: header}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("spine: %w", err)
		}
		line, _ := cr.FieldPos(0)
		at, err := ParseTime(rec[ti])
		if err != nil {
			return nil, fmt.Errorf("spine line %d, column %s: %w", line, timeCol, err)
		}
		sp.Rows = append(sp.Rows, rec)
		sp.At = append(sp.At, at)
	}
	return sp, nil
}

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

// Column names a group's feature in the output: <group>__<feature>.
func Column(group, feature string) string { return group + "__" + feature }

// Compute returns, for each group, each spine row's features as of its
// timestamp, rendered as CSV fields (no line end). Each group's table is
// read once, entity by entity, each entity's rows in event-time order;
// each spine row of the entity is read once every row of it with an event
// time at or before its timestamp, and no later one, has been applied:
// the value a read as of that instant would serve from the table as it is
// now. One entity's state is held at a time. progress, when not nil, gets
// a line per group.
func Compute(ctx context.Context, engine *transform.Engine, groups []*transform.Group, sp *Spine, src Table, progress io.Writer) ([][]string, error) {
	keyCols := make([][]int, len(groups))
	for gi, g := range groups {
		if g.TimeCol == "" {
			return nil, fmt.Errorf("group %s has no time column: an export replays rows by event time", g.Name)
		}
		for _, col := range g.Entity {
			i := slices.Index(sp.Header, col)
			if i < 0 {
				return nil, fmt.Errorf("spine has no column %q (group %s is keyed by %s)", col, g.Name, strings.Join(g.Entity, ", "))
			}
			keyCols[gi] = append(keyCols[gi], i)
		}
		for r, row := range sp.Rows {
			if err := g.CheckKey(spineKey(row, keyCols[gi])); err != nil {
				return nil, fmt.Errorf("spine row %d: %w", r+1, err)
			}
		}
	}
	out := make([][]string, len(groups))
	for gi, g := range groups {
		start := time.Now()
		res, n, err := computeGroup(ctx, engine, g, keyCols[gi], sp, src, progress)
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", g.Name, err)
		}
		out[gi] = res
		if progress != nil {
			el := time.Since(start)
			fmt.Fprintf(progress, "export: group %s: %d rows of %s replayed, %d spine rows read, %s (%.0f spine rows/s)\n",
				g.Name, n, g.Table, len(sp.Rows), el.Round(time.Millisecond), float64(len(sp.Rows))/max(el.Seconds(), 1e-9))
		}
	}
	return out, nil
}

func spineKey(row []string, cols []int) []string {
	key := make([]string, len(cols))
	for j, i := range cols {
		key[j] = row[i]
	}
	return key
}

func computeGroup(ctx context.Context, engine *transform.Engine, g *transform.Group, keyCols []int, sp *Spine, src Table, progress io.Writer) ([]string, int, error) {
	var total int64
	if e, ok := src.(Estimator); ok && progress != nil {
		total = e.Estimate(ctx, g.Table)
	}
	started := time.Now()
	nextReport := started.Add(progressEvery)
	// Each entity's spine rows, by timestamp.
	byEntity := map[string][]int{}
	earliest := time.Time{}
	for r, row := range sp.Rows {
		id := transform.EntityID(spineKey(row, keyCols))
		byEntity[id] = append(byEntity[id], r)
		if earliest.IsZero() || sp.At[r].Before(earliest) {
			earliest = sp.At[r]
		}
	}
	for _, rs := range byEntity {
		sort.SliceStable(rs, func(a, b int) bool { return sp.At[rs[a]].Before(sp.At[rs[b]]) })
	}
	res := make([]string, len(sp.Rows))
	var renderErr error
	read := func(st *transform.State, r int) {
		if s, err := render(g.Read(st, sp.At[r])); err != nil && renderErr == nil {
			renderErr = fmt.Errorf("spine row %d: %w", r+1, err)
		} else {
			res[r] = s
		}
	}
	// The entity being replayed: its state and the spine rows left.
	var cur string
	var st *transform.State
	var pending []int
	finish := func() {
		for _, r := range pending {
			read(st, r)
		}
		delete(byEntity, cur)
		cur, st, pending = "", nil, nil
	}
	var from time.Time
	if len(sp.Rows) > 0 {
		if f, ok := g.BackfillFrom(earliest); ok {
			from = f
		}
	}
	var ups []transform.Update
	var stats transform.Stats
	n := 0
	err := src.Read(ctx, g.Table, g.Entity, g.TimeCol, from, func(row change.Row) error {
		if len(sp.Rows) == 0 {
			return nil
		}
		at, ok := eventTime(row[g.TimeCol])
		if !ok {
			return fmt.Errorf("column %s holds %v, not a time", g.TimeCol, row[g.TimeCol])
		}
		n++
		if progress != nil && n%4096 == 0 && time.Now().After(nextReport) {
			nextReport = time.Now().Add(progressEvery)
			reportProgress(progress, g, n, total, time.Since(started))
		}
		ev := change.Event{Op: change.Read, Table: g.Table, After: row, Pos: change.Position{LSN: uint64(n)}, CommitTime: at}
		var err error
		if ups, err = engine.Plan(&ev, ups[:0]); err != nil {
			return err
		}
		for i := range ups {
			u := &ups[i]
			if u.Group != g {
				continue // another group of the table
			}
			if u.Key.ID != cur {
				finish()
				rs, wanted := byEntity[u.Key.ID]
				if !wanted {
					continue // no spine row needs the entity
				}
				cur, st, pending = u.Key.ID, &transform.State{}, rs
			}
			for len(pending) > 0 && sp.At[pending[0]].Before(at) {
				read(st, pending[0]) // a spine row before this row's time
				pending = pending[1:]
			}
			if err := g.Apply(st, u, &stats); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, n, err
	}
	finish()
	for _, rs := range byEntity { // entities without rows
		for _, r := range rs {
			read(&transform.State{}, r)
		}
	}
	return res, n, renderErr
}

// reportProgress prints a line: rows replayed of the estimate, the rate
// and the time left.
func reportProgress(w io.Writer, g *transform.Group, n int, total int64, el time.Duration) {
	rate := float64(n) / max(el.Seconds(), 1e-9)
	if total <= int64(n) {
		fmt.Fprintf(w, "export: group %s: %d rows of %s replayed, %.0f rows/s\n", g.Name, n, g.Table, rate)
		return
	}
	eta := time.Duration(float64(total-int64(n)) / rate * float64(time.Second))
	fmt.Fprintf(w, "export: group %s: %d of about %d rows of %s replayed (%.0f%%), %.0f rows/s, about %s left\n",
		g.Name, n, total, g.Table, 100*float64(n)/float64(total), rate, eta.Round(time.Second))
}

// render writes features as CSV fields, without a line end.
func render(feats []transform.Feature) (string, error) {
	fields := make([]string, len(feats))
	for i, f := range feats {
		s, err := text(f.Value)
		if err != nil {
			return "", fmt.Errorf("%s: %w", f.Name, err)
		}
		fields[i] = s
	}
	var b strings.Builder
	cw := csv.NewWriter(&b)
	if err := cw.Write(fields); err != nil {
		return "", err
	}
	cw.Flush()
	return strings.TrimSuffix(b.String(), "\n"), cw.Error()
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

// WriteCSV writes the spine's columns, then each group's features, one row
// per spine row in spine order. NULL is an empty field.
func WriteCSV(w io.Writer, sp *Spine, groups []*transform.Group, feats [][]string) error {
	bw := bufio.NewWriter(w)
	cw := csv.NewWriter(bw)
	header := append([]string{}, sp.Header...)
	for _, g := range groups {
		for _, name := range g.FeatureNames() {
			header = append(header, Column(g.Name, name))
		}
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	var line strings.Builder
	lw := csv.NewWriter(&line)
	for r, row := range sp.Rows {
		line.Reset()
		if err := lw.Write(row); err != nil {
			return err
		}
		lw.Flush()
		rec := strings.TrimSuffix(line.String(), "\n")
		for gi := range groups {
			if len(groups[gi].FeatureNames()) > 0 {
				rec += "," + feats[gi][r]
			}
		}
		if _, err := bw.WriteString(rec + "\n"); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// text renders a feature value as the read API's JSON does, unquoted.
func text(v any) (string, error) {
	switch x := transform.JSONValue(v).(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	default:
		b, err := json.Marshal(x)
		return string(b), err
	}
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

// Options are what Run needs besides the connector's groups.
type Options struct {
	Spine, Out string   // file paths (CSV)
	TimeColumn string   // the spine's timestamp column; "ts" when empty
	Groups     []string // groups to export; every group with a time column when empty
	Progress   io.Writer
}

// Run reads the spine, computes the features from the tables src reads,
// and writes the training set. Every input is checked before anything is
// written.
func Run(ctx context.Context, engine *transform.Engine, src Table, o Options) error {
	if o.TimeColumn == "" {
		o.TimeColumn = "ts"
	}
	var groups []*transform.Group
	if len(o.Groups) == 0 {
		// Every group that has event times to replay by.
		for _, g := range engine.Groups() {
			if g.TimeCol != "" {
				groups = append(groups, g)
			} else if o.Progress != nil {
				fmt.Fprintf(o.Progress, "export: group %s left out: it has no time column\n", g.Name)
			}
		}
		if len(groups) == 0 {
			return errors.New("no feature group has a time column: an export replays rows by event time")
		}
	}
	for _, name := range o.Groups {
		g := engine.Group(name)
		if g == nil {
			return fmt.Errorf("no feature group %q", name)
		}
		groups = append(groups, g)
	}
	for _, p := range []string{o.Spine, o.Out} {
		if strings.EqualFold(filepath.Ext(p), ".parquet") {
			return fmt.Errorf("%s: Parquet is not supported yet; spines and training sets are CSV", p)
		}
	}
	f, err := os.Open(o.Spine)
	if err != nil {
		return err
	}
	sp, err := ReadCSV(f, o.TimeColumn)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", o.Spine, err)
	}
	start := time.Now()
	feats, err := Compute(ctx, engine, groups, sp, src, o.Progress)
	if err != nil {
		return err
	}
	if err := WriteFile(o.Out, func(w io.Writer) error { return WriteCSV(w, sp, groups, feats) }); err != nil {
		return err
	}
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "export: %d spine rows × %d groups → %s in %s\n", len(sp.Rows), len(groups), o.Out, time.Since(start).Round(time.Millisecond))
	}
	return nil
}
