package transform

import (
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/sink"
)

// Engine holds the compiled feature groups of a connector.
type Engine struct {
	groups  []*Group
	byName  map[string]*Group
	byTable map[string][]*Group
}

// Group is one compiled feature group.
type Group struct {
	Name    string
	Table   string
	Entity  []string
	TimeCol string
	Where   string
	Project []string
	Aggs    []Aggregation
	// History is how far back before its longest window the group keeps
	// tiles, for as-of reads (ReadAsOf).
	History time.Duration
	// TTL is how long an idle entity's record lives; 0 is forever.
	TTL      time.Duration
	filter   *vm.Program
	scales   []*scale // by size
	columns  []string // columns every new row image must have
	keyTypes keyTypes // of the entity columns, where known (CheckKey)
}

// Aggregation is one compiled aggregate.
type Aggregation struct {
	Name     string
	Function string
	Column   string
	Window   time.Duration // 0: lifetime
	Tile     time.Duration // 0: lifetime
}

// scale is what the tiles of one size must hold.
type scale struct {
	size int64 // seconds; 0 for lifetime
	// horizon is how far before the newest tile tiles are kept, seconds:
	// the longest window served plus the group's history.
	horizon int64
	counts  []string
	sums    []string
	vals    []string
	timed   []string
	// extremes are the vals columns that min, max or days_since_last
	// read: their tiles keep their extremes (tileCol.ext).
	extremes []string
}

// Compile builds the engine for validated feature groups.
func Compile(features []config.Feature) (*Engine, error) {
	e := &Engine{byName: map[string]*Group{}, byTable: map[string][]*Group{}}
	for i, f := range features {
		g := &Group{Name: f.Name, Table: f.Table, Entity: f.Entity, TimeCol: f.Time, Where: f.Where, Project: f.Project}
		if f.Where != "" {
			prog, err := expr.Compile(f.Where, expr.AllowUndefinedVariables())
			if err != nil {
				return nil, fmt.Errorf("features[%d].where: %w", i, err)
			}
			g.filter = prog
		}
		history, err := config.HistoryOf(f)
		if err != nil {
			return nil, fmt.Errorf("features[%d].history: %w", i, err)
		}
		g.History = history
		scales := map[int64]*scale{}
		lifetime := len(f.Project) > 0
		var longest time.Duration
		for j, a := range f.Aggregations {
			tile, err := config.TileOf(a)
			if err != nil {
				return nil, fmt.Errorf("features[%d].aggregations[%d]: %w", i, j, err)
			}
			ag := Aggregation{Name: a.Name, Function: a.Function, Column: a.Column, Window: config.WindowOf(a), Tile: tile}
			if f.Time == "" && (ag.Window != 0 || ag.Function == "first" || ag.Function == "last") {
				return nil, fmt.Errorf("features[%d].time: is required for windowed aggregates and first/last", i)
			}
			g.Aggs = append(g.Aggs, ag)
			size := int64(tile / time.Second)
			sc := scales[size]
			if sc == nil {
				sc = &scale{size: size}
				scales[size] = sc
			}
			if w := int64((ag.Window + history) / time.Second); w > sc.horizon && size > 0 {
				sc.horizon = w
			}
			if ag.Window == 0 {
				lifetime = true
			}
			if ag.Window+ag.Tile > longest {
				longest = ag.Window + ag.Tile
			}
			switch ag.Function {
			case "count":
				if ag.Column != "" {
					sc.counts = appendOnce(sc.counts, ag.Column)
				}
			case "sum", "avg":
				sc.sums = appendOnce(sc.sums, ag.Column)
				sc.counts = appendOnce(sc.counts, ag.Column)
			case "min", "max", "distinct", "days_since_last":
				sc.vals = appendOnce(sc.vals, ag.Column)
				if ag.Function != "distinct" {
					sc.extremes = appendOnce(sc.extremes, ag.Column)
				}
			case "first", "last":
				sc.timed = appendOnce(sc.timed, ag.Column)
			default:
				return nil, fmt.Errorf("features[%d].aggregations[%d].function: %q is not a function", i, j, ag.Function)
			}
		}
		for _, sc := range scales {
			g.scales = append(g.scales, sc)
		}
		sort.Slice(g.scales, func(a, b int) bool { return g.scales[a].size < g.scales[b].size })
		// An entity idle for longer than its longest window has nothing left
		// to serve; a day of slack keeps records of late readers.
		if !lifetime {
			g.TTL = longest + history + 24*time.Hour
		}
		if f.TTL != "" {
			if f.TTL == "0" {
				g.TTL = 0
			} else if d, err := config.ParseDuration(f.TTL); err == nil {
				g.TTL = d
			}
		}
		// A new row image always carries every column of its table, so a
		// missing column the group reads (key, time, aggregated, projected
		// or in the filter) was dropped or renamed: reading it as NULL
		// would quietly change the features.
		g.columns = g.Columns()
		if g.filter != nil {
			for _, col := range identifiers(g.filter.Node()) {
				g.columns = appendOnce(g.columns, col)
			}
		}
		if len(f.Columns) > 0 {
			g.SetKeyTypes(f.Columns) // declared types (the Debezium path)
		}
		e.groups = append(e.groups, g)
		e.byName[g.Name] = g
		e.byTable[g.Table] = append(e.byTable[g.Table], g)
	}
	return e, nil
}

// identifiers returns the variables a filter reads: its row's columns.
// Function names and the filter's own variables (let) are not columns.
func identifiers(node ast.Node) []string {
	var v identVisitor
	ast.Walk(&node, &v)
	var out []string
	for _, name := range v.idents {
		if !v.notColumns[name] {
			out = appendOnce(out, name)
		}
	}
	return out
}

type identVisitor struct {
	idents     []string
	notColumns map[string]bool
}

func (v *identVisitor) Visit(node *ast.Node) {
	if v.notColumns == nil {
		v.notColumns = map[string]bool{}
	}
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		v.idents = append(v.idents, n.Value)
	case *ast.CallNode:
		if id, ok := n.Callee.(*ast.IdentifierNode); ok {
			v.notColumns[id.Value] = true
		}
	case *ast.VariableDeclaratorNode:
		v.notColumns[n.Name] = true
	}
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// Groups returns the groups in file order.
func (e *Engine) Groups() []*Group { return e.groups }

// Group returns the group called name, or nil.
func (e *Engine) Group(name string) *Group { return e.byName[name] }

// Tables returns the source tables the groups read, sorted.
func (e *Engine) Tables() []string {
	out := make([]string, 0, len(e.byTable))
	for t := range e.byTable {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Columns returns every column of the group's table that the group reads.
func (g *Group) Columns() []string {
	cols := append([]string{}, g.Entity...)
	if g.TimeCol != "" {
		cols = appendOnce(cols, g.TimeCol)
	}
	for _, c := range g.Project {
		cols = appendOnce(cols, c)
	}
	for _, a := range g.Aggs {
		if a.Column != "" {
			cols = appendOnce(cols, a.Column)
		}
	}
	return cols
}

// BackfillFrom returns the earliest event time a snapshot taken at t must
// read for this group: rows older than it fall in tiles no window can
// include, which Apply skips anyway. ok is false when the group needs every
// row (lifetime aggregates, projected columns, or no time column).
func (g *Group) BackfillFrom(t time.Time) (from time.Time, ok bool) {
	if g.TimeCol == "" || len(g.Project) > 0 || len(g.scales) == 0 {
		return time.Time{}, false
	}
	var longest int64
	for _, sc := range g.scales {
		if sc.size == 0 {
			return time.Time{}, false
		}
		longest = max(longest, sc.horizon+sc.size)
	}
	return t.Add(-time.Duration(longest) * time.Second), true
}

// NeedsOldImage reports whether the group must see whole old rows on
// UPDATE and DELETE (REPLICA IDENTITY FULL): aggregates retract the old
// row's values, and a filter is evaluated on the old row.
func (g *Group) NeedsOldImage() bool { return len(g.Aggs) > 0 || g.filter != nil }

// Update is one change's effect on one entity record of one group: the
// old image's contribution leaves, the new image's enters.
type Update struct {
	Group  *Group
	Key    sink.Key
	Entity []string
	Stream string // the event's stream; Pos orders it within
	Pos    change.Position
	Commit int64 // commit time, Unix microseconds
	Old    change.Row
	OldAt  int64 // event time of Old, Unix microseconds
	New    change.Row
	NewAt  int64
}

// DataError is a change a group cannot use: a NULL entity key or event
// time, a value of the wrong type. It names everything needed to find it.
type DataError struct {
	Group  string
	Table  string
	Pos    change.Position
	Column string
	Value  any
	Reason string
}

func (e *DataError) Error() string {
	col := ""
	if e.Column != "" {
		col = fmt.Sprintf(" column %s", e.Column)
		if e.Value != nil {
			col += fmt.Sprintf(" value %v", e.Value)
		}
	}
	return fmt.Sprintf("feature group %s: change %s on %s:%s %s", e.Group, e.Pos, e.Table, col, e.Reason)
}

// Plan appends to dst the updates that ev implies, reading no state.
func (e *Engine) Plan(ev *change.Event, dst []Update) ([]Update, error) {
	groups := e.byTable[ev.Table]
	if len(groups) == 0 {
		return dst, nil
	}
	if ev.Op == change.Truncate {
		return dst, &DataError{Group: groups[0].Name, Table: ev.Table, Pos: ev.Pos,
			Reason: "is a TRUNCATE: tilefeed cannot retract a truncate yet, so the group's features would be wrong; re-create the slot and the store to start over"}
	}
	commit := ev.CommitTime.UnixMicro()
	for _, g := range groups {
		var err error
		if dst, err = g.plan(ev, commit, dst); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

func (g *Group) plan(ev *change.Event, commit int64, dst []Update) ([]Update, error) {
	var oldRow, newRow change.Row
	switch ev.Op {
	case change.Insert, change.Read:
		newRow = ev.After
	case change.Update:
		oldRow, newRow = ev.Before, ev.After
		if oldRow == nil && g.NeedsOldImage() {
			return dst, g.dataErr(ev, "", nil, "has no old row image: set REPLICA IDENTITY FULL on the table")
		}
		newRow = fillUnchanged(newRow, oldRow)
	case change.Delete:
		oldRow = ev.Before
		if oldRow == nil {
			return dst, g.dataErr(ev, "", nil, "is a DELETE without the old row: set REPLICA IDENTITY FULL on the table")
		}
	default:
		return dst, nil
	}
	if ev.Sparse {
		oldRow, newRow = g.fillAbsent(oldRow), g.fillAbsent(newRow)
	}
	if err := g.hasColumns(ev, newRow); err != nil {
		return dst, err
	}
	oldIn, err := g.accepts(ev, oldRow)
	if err != nil {
		return dst, err
	}
	newIn, err := g.accepts(ev, newRow)
	if err != nil {
		return dst, err
	}
	var oldKey, newKey []string
	if oldIn {
		if oldKey, err = g.entity(ev, oldRow); err != nil {
			return dst, err
		}
	}
	if newIn {
		if newKey, err = g.entity(ev, newRow); err != nil {
			return dst, err
		}
	}
	if oldIn {
		if err := g.checkValues(ev, oldRow); err != nil {
			return dst, err
		}
	}
	if newIn {
		if err := g.checkValues(ev, newRow); err != nil {
			return dst, err
		}
	}
	u := Update{Group: g, Stream: ev.Stream, Pos: ev.Pos, Commit: commit}
	if oldIn {
		u.Old = oldRow
		if u.OldAt, err = g.eventTime(ev, oldRow); err != nil {
			return dst, err
		}
	}
	if newIn {
		u.New = newRow
		if u.NewAt, err = g.eventTime(ev, newRow); err != nil {
			return dst, err
		}
	}
	switch {
	case oldIn && newIn && equalKeys(oldKey, newKey):
		u.Entity = newKey
		u.Key = sink.Key{Set: g.Name, ID: EntityID(newKey)}
		return append(dst, u), nil
	case oldIn && newIn:
		out, in := u, u
		out.New, out.Entity = nil, oldKey
		out.Key = sink.Key{Set: g.Name, ID: EntityID(oldKey)}
		in.Old, in.Entity = nil, newKey
		in.Key = sink.Key{Set: g.Name, ID: EntityID(newKey)}
		return append(dst, out, in), nil
	case oldIn:
		u.Entity = oldKey
		u.Key = sink.Key{Set: g.Name, ID: EntityID(oldKey)}
		return append(dst, u), nil
	case newIn:
		u.Entity = newKey
		u.Key = sink.Key{Set: g.Name, ID: EntityID(newKey)}
		return append(dst, u), nil
	}
	return dst, nil
}

// fillUnchanged replaces unchanged-TOAST markers in the new image with the
// old image's values when the old image has them.
func fillUnchanged(newRow, oldRow change.Row) change.Row {
	var out change.Row
	for k, v := range newRow {
		if v != change.Unchanged || oldRow == nil {
			continue
		}
		if ov, ok := oldRow[k]; ok && ov != change.Unchanged {
			if out == nil {
				out = maps.Clone(newRow)
			}
			out[k] = ov
		}
	}
	if out == nil {
		return newRow
	}
	return out
}

func equalKeys(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (g *Group) dataErr(ev *change.Event, col string, v any, reason string) *DataError {
	return &DataError{Group: g.Name, Table: ev.Table, Pos: ev.Pos, Column: col, Value: v, Reason: reason}
}

// accepts evaluates the filter on a row image; a nil image is never in.
func (g *Group) accepts(ev *change.Event, row change.Row) (bool, error) {
	if row == nil {
		return false, nil
	}
	if g.filter == nil {
		return true, nil
	}
	env := make(map[string]any, len(row))
	for k, v := range row {
		env[k] = filterValue(v)
	}
	out, err := expr.Run(g.filter, env)
	if err != nil {
		return false, g.dataErr(ev, "", nil, fmt.Sprintf("where %q failed: %v", g.Where, err))
	}
	b, ok := out.(bool)
	if !ok {
		return false, g.dataErr(ev, "", nil, fmt.Sprintf("where %q gave %T, not a boolean", g.Where, out))
	}
	return b, nil
}

// filterValue adapts a row value to what expr compares naturally.
func filterValue(v any) any {
	switch x := v.(type) {
	case *apd.Decimal:
		f, err := x.Float64()
		if err != nil {
			return nil
		}
		return f
	case []byte:
		return string(x)
	case change.Infinity:
		return x.String()
	case json.RawMessage:
		var out any
		if json.Unmarshal(x, &out) != nil {
			return string(x)
		}
		return out
	}
	if v == change.Unchanged {
		return nil
	}
	return v
}

// SchemaError is a change whose row no longer has a column a feature group
// reads: the column was dropped or renamed while tilefeed streamed. It is
// fatal, whatever errors.tolerance says: every later change would fail too.
type SchemaError struct {
	Group, Table, Column string
	Pos                  change.Position
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("feature group %s reads column %s of %s, which change %s no longer has: it was dropped or renamed. Fix the feature definition (or the table) and restart",
		e.Group, e.Column, e.Table, e.Pos)
}

// hasColumns checks that a new row image has every column the group
// reads; a nil image (none sent) passes. A sparse image has them all by
// then (fillAbsent).
func (g *Group) hasColumns(ev *change.Event, row change.Row) error {
	if row == nil {
		return nil
	}
	for _, col := range g.columns {
		if _, ok := row[col]; !ok {
			return &SchemaError{Group: g.Name, Table: ev.Table, Column: col, Pos: ev.Pos}
		}
	}
	return nil
}

// fillAbsent returns row with NULL for each column the group reads that
// row lacks (a sparse image: absent is NULL); row itself when it lacks
// none, or is nil.
func (g *Group) fillAbsent(row change.Row) change.Row {
	if row == nil {
		return nil
	}
	var out change.Row
	for _, col := range g.columns {
		if _, ok := row[col]; ok {
			continue
		}
		if out == nil {
			out = maps.Clone(row)
		}
		out[col] = nil
	}
	if out == nil {
		return row
	}
	return out
}

// checkValues makes sure, before any state changes, that every value the
// group's aggregates read from row is usable, so that Apply cannot fail
// halfway through an update.
func (g *Group) checkValues(ev *change.Event, row change.Row) error {
	for _, sc := range g.scales {
		for _, cols := range [][]string{sc.counts, sc.sums, sc.vals, sc.timed} {
			for _, col := range cols {
				if row[col] == change.Unchanged {
					return g.dataErr(ev, col, nil, "is an unchanged TOAST value the source did not send; set REPLICA IDENTITY FULL so the old value is known")
				}
			}
		}
		for _, col := range sc.sums {
			if v := row[col]; v != nil {
				if _, ok := numberOrder(v); !ok {
					return g.dataErr(ev, col, v, "is not a number, so it cannot be summed")
				}
			}
		}
		for _, cols := range [][]string{sc.vals, sc.timed} {
			for _, col := range cols {
				if v := row[col]; v != nil {
					if err := encodable(v); err != nil {
						return g.dataErr(ev, col, v, err.Error())
					}
				}
			}
		}
	}
	return nil
}

func (g *Group) entity(ev *change.Event, row change.Row) ([]string, error) {
	key := make([]string, len(g.Entity))
	for i, col := range g.Entity {
		v, ok := row[col]
		if !ok {
			return nil, g.dataErr(ev, col, nil, "entity column is missing from the row image")
		}
		t, err := entityText(v)
		if err != nil {
			return nil, g.dataErr(ev, col, nil, "entity key "+err.Error())
		}
		key[i] = t
	}
	return key, nil
}

func (g *Group) eventTime(ev *change.Event, row change.Row) (int64, error) {
	if g.TimeCol == "" || len(g.Aggs) == 0 {
		return ev.CommitTime.UnixMicro(), nil
	}
	v := row[g.TimeCol]
	t, ok := v.(time.Time)
	if !ok {
		if v == nil {
			return 0, g.dataErr(ev, g.TimeCol, nil, "event time is NULL")
		}
		if inf, ok := v.(change.Infinity); ok {
			return 0, g.dataErr(ev, g.TimeCol, nil, "event time is "+inf.String()+", which falls in no tile")
		}
		return 0, g.dataErr(ev, g.TimeCol, v, fmt.Sprintf("event time is a %T, not a timestamp", v))
	}
	return t.UnixMicro(), nil
}
