package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/expr-lang/expr/parser"
)

// MaxBinName is Aerospike's limit on a bin name's length.
const MaxBinName = 15

var (
	groupNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,62}$`)
	featureKeys = map[string]bool{"name": true, "table": true, "entity": true, "time": true,
		"where": true, "aggregations": true, "project": true, "ttl": true, "history": true, "columns": true}
	aggregationKeys = map[string]bool{"name": true, "function": true, "column": true, "window": true, "tile": true}
)

// decodeFeatures decodes the feature groups. A group that does not decode
// is reported, kept in place (so the indexes of the groups after it still
// match the file) and marked broken, so validation skips it.
func decodeFeatures(raw json.RawMessage, v *validator) ([]Feature, map[int]bool) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		v.addf("features", "must be an array of feature groups")
		return nil, nil
	}
	if len(items) == 0 {
		// [] or null: as useless as no features at all.
		v.addf("features", "is required: a connector without features writes nothing")
		return nil, nil
	}
	broken := map[int]bool{}
	out := make([]Feature, 0, len(items))
	for i, item := range items {
		path := fmt.Sprintf("features[%d]", i)
		unknownKeys(item, featureKeys, path, v)
		var f Feature
		if !decodeFields(item, &f, path, v) {
			broken[i] = true // not an object: nothing to check further
		}
		out = append(out, f)
	}
	return out, broken
}

// decodeFields decodes the JSON object raw into the struct dst one field
// at a time, so that a value of the wrong type is reported under its own
// path ("features[0].aggregations[1].window: want a string, got number")
// and the other fields are still decoded and checked. Slices of structs
// (aggregations) are decoded element by element. It reports false when
// raw is not an object.
func decodeFields(raw json.RawMessage, dst any, path string, v *validator) bool {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		v.wrongType(path, "want an object, got %s", jsonKind(raw))
		return false
	}
	rv := reflect.ValueOf(dst).Elem()
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		val, ok := m[name]
		if !ok || name == "" || name == "-" {
			continue
		}
		field := rv.Field(i)
		fpath := path + "." + name
		if field.Kind() == reflect.Slice && field.Type().Elem().Kind() == reflect.Struct {
			var items []json.RawMessage
			if err := json.Unmarshal(val, &items); err != nil {
				v.wrongType(fpath, "want an array, got %s", jsonKind(val))
				continue
			}
			elems := reflect.MakeSlice(field.Type(), len(items), len(items))
			for j, item := range items {
				epath := fmt.Sprintf("%s[%d]", fpath, j)
				if field.Type().Elem() == reflect.TypeOf(Aggregation{}) {
					unknownKeys(item, aggregationKeys, epath, v)
				}
				decodeFields(item, elems.Index(j).Addr().Interface(), epath, v)
			}
			field.Set(elems)
			continue
		}
		if err := json.Unmarshal(val, field.Addr().Interface()); err != nil {
			v.wrongType(fpath, "want %s, got %s", kindOf(field.Type()), jsonKind(val))
		}
	}
	return true
}

// kindOf names a Go type as the JSON it decodes from.
func kindOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array of " + strings.TrimPrefix(kindOf(t.Elem()), "a ") + "s"
	case reflect.Map:
		return "an object of " + strings.TrimPrefix(kindOf(t.Elem()), "a ") + "s"
	case reflect.Bool:
		return "true or false"
	}
	return "a " + t.Kind().String()
}

// jsonKind names the kind of a JSON value.
func jsonKind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func unknownKeys(raw json.RawMessage, allowed map[string]bool, path string, v *validator) {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return
	}
	for _, k := range sortedKeys(m) {
		if !allowed[k] {
			v.addf(path+"."+k, "unknown field")
		}
	}
}

func validateFeatures(c *Connector, broken map[int]bool, v *validator) {
	groups := map[string]bool{}
	// Declared column types are per table: the decoder reads a column one
	// way whichever group declared it.
	type declared struct{ typ, path string }
	types := map[string]declared{}
	for i := range c.Features {
		if broken[i] {
			continue
		}
		f := &c.Features[i]
		path := fmt.Sprintf("features[%d]", i)
		switch {
		case f.Name == "":
			v.addf(path+".name", "is required")
		case !groupNameRE.MatchString(f.Name):
			v.addf(path+".name", "%q: start with a letter; letters, digits and '_' only; at most 63 characters (it names an Aerospike set)", f.Name)
		case groups[f.Name]:
			v.addf(path+".name", "%q is used by another feature group", f.Name)
		}
		groups[f.Name] = true
		if f.Table == "" {
			v.addf(path+".table", "is required")
		} else {
			f.Table = qualify(f.Table)
			if !c.Postgres.Captures(f.Table) {
				v.addf(path+".table", "%q is excluded by table.include.list/table.exclude.list", f.Table)
			}
		}
		for _, col := range sortedKeys(f.Columns) {
			typ, p := f.Columns[col], path+".columns."+col
			norm := typeSpelling.Replace(strings.Join(strings.Fields(strings.ToLower(typ)), " "))
			switch d, ok := types[f.Table+"."+col]; {
			case norm == "":
				v.addf(p, "empty type: give the column's PostgreSQL type, as in \"numeric(12,2)\"")
			case ok && d.typ != norm:
				v.addf(p, "%q, but %s declares %q: groups of one table must agree on a column's type", typ, d.path, d.typ)
			case !ok:
				types[f.Table+"."+col] = declared{norm, p}
			}
		}
		if len(f.Entity) == 0 {
			v.addf(path+".entity", "is required: list the columns that key an entity")
		}
		checkColumns(c, f, path+".entity", f.Entity, v)
		if f.Time != "" {
			checkColumns(c, f, path+".time", []string{f.Time}, v)
		}
		if f.Where != "" {
			if _, err := parser.Parse(f.Where); err != nil {
				v.addf(path+".where", "%q does not parse: %v", f.Where, firstLine(err.Error()))
			}
		}
		if len(f.Aggregations) == 0 && len(f.Project) == 0 && !v.wrong[path+".aggregations"] && !v.wrong[path+".project"] {
			v.addf(path, "has neither aggregations nor project: it would write nothing")
		}
		if f.TTL != "" {
			if _, err := ParseDuration(f.TTL); err != nil && f.TTL != "0" {
				v.addf(path+".ttl", "%v", err)
			}
		}
		if f.History != "" {
			if d, err := HistoryOf(*f); err != nil {
				v.addf(path+".history", "%v", err)
			} else if d > 0 && f.Time == "" {
				v.addf(path+".history", "needs a time column: a group without one keeps no tiles to read back in")
			}
		}
		if f.Time == "" {
			for _, a := range f.Aggregations {
				if a.Window != "" || a.Function == "first" || a.Function == "last" {
					v.addf(path+".time", "is required for windowed aggregates and first/last: an UPDATE or DELETE must find the tile its row was added to, so the event time must be a column of the row (the commit time of the change is not the row's)")
					break
				}
			}
		}
		names := map[string]string{}
		for j, col := range f.Project {
			p := fmt.Sprintf("%s.project[%d]", path, j)
			switch {
			case len(col) > MaxBinName:
				v.addf(p, "%q is longer than %d characters, Aerospike's limit for a bin name", col, MaxBinName)
			case col == "" || col[0] == '_':
				v.addf(p, "%q: projected columns become bins; names starting with '_' are tilefeed's own", col)
			case names[col] != "":
				v.addf(p, "%q is already %s", col, names[col])
			}
			names[col] = "a projected column"
		}
		checkColumns(c, f, path+".project", f.Project, v)
		for j := range f.Aggregations {
			validateAggregation(c, f, &f.Aggregations[j], fmt.Sprintf("%s.aggregations[%d]", path, j), names, v)
		}
	}
}

func validateAggregation(c *Connector, f *Feature, a *Aggregation, path string, names map[string]string, v *validator) {
	switch {
	case a.Name == "":
		v.addf(path+".name", "is required")
	case names[a.Name] != "":
		v.addf(path+".name", "%q is already %s in this group", a.Name, names[a.Name])
	}
	names[a.Name] = "a feature name"
	needsColumn, known := Functions[a.Function]
	switch {
	case !known:
		v.addf(path+".function", "%q is not a function (count, sum, avg, min, max, first, last, distinct, days_since_last)", a.Function)
	case needsColumn && a.Column == "":
		v.addf(path+".column", "is required for %s", a.Function)
	}
	if a.Column != "" {
		checkColumns(c, f, path+".column", []string{a.Column}, v)
	}
	if _, err := TileOf(*a); err != nil {
		field := ".window"
		if a.Tile != "" {
			if _, werr := ParseDuration(a.Window); werr == nil || a.Window == "" {
				field = ".tile"
			}
		}
		v.addf(path+field, "%v", err)
	}
}

// typeSpelling drops the spaces a type may have around its modifiers, so
// "numeric(12, 2)" and "numeric (12,2)" compare equal.
var typeSpelling = strings.NewReplacer(" (", "(", "( ", "(", " ,", ",", ", ", ",", " )", ")")

func checkColumns(c *Connector, f *Feature, path string, cols []string, v *validator) {
	seen := map[string]bool{}
	for _, col := range cols {
		switch {
		case col == "":
			v.addf(path, "empty column name")
		case seen[col]:
			v.addf(path, "%q is listed twice", col)
		case f.Table != "" && !c.Postgres.CapturesColumn(f.Table+"."+col):
			v.addf(path, "%q is dropped by column.include.list/column.exclude.list", col)
		}
		seen[col] = true
	}
}

func firstLine(s string) string {
	if i := bytes.IndexByte([]byte(s), '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// tileLadder holds the round tile sizes tilefeed picks from.
var tileLadder = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 4 * time.Hour, 6 * time.Hour, 8 * time.Hour, 12 * time.Hour,
	24 * time.Hour,
}

// MinTilesPerWindow is how many tiles an automatic tile size cuts a window
// into at least, so a read is off by less than 1/60 of the window.
const MinTilesPerWindow = 60

// TileOf returns an aggregation's window and tile size (0, 0 for a
// lifetime aggregate): the tile set in the file, or the largest round size
// that divides the window into at least MinTilesPerWindow tiles.
func TileOf(a Aggregation) (time.Duration, error) {
	if a.Window == "" {
		if a.Tile != "" {
			return 0, fmt.Errorf("a tile needs a window")
		}
		return 0, nil
	}
	w, err := ParseDuration(a.Window)
	if err != nil {
		return 0, err
	}
	if w < time.Second || w%time.Second != 0 {
		return 0, fmt.Errorf("%q: a window is a whole number of seconds, at least 1s", a.Window)
	}
	if a.Tile != "" {
		t, err := ParseDuration(a.Tile)
		if err != nil {
			return 0, err
		}
		if t < time.Second || t%time.Second != 0 || w%t != 0 {
			return 0, fmt.Errorf("tile %q must be whole seconds and divide the window %q", a.Tile, a.Window)
		}
		return t, nil
	}
	best := time.Second
	for _, t := range tileLadder {
		if w%t == 0 && w/t >= MinTilesPerWindow {
			best = t
		}
	}
	return best, nil
}

// HistoryOf returns the group's history: how far back before its longest
// window it keeps tiles (0 when unset).
func HistoryOf(f Feature) (time.Duration, error) {
	if f.History == "" || f.History == "0" {
		return 0, nil
	}
	d, err := ParseDuration(f.History)
	if err != nil {
		return 0, err
	}
	if d < 0 || d%time.Second != 0 {
		return 0, fmt.Errorf("%q: history is a whole number of seconds, 0 or more", f.History)
	}
	return d, nil
}

// WindowOf returns an aggregation's window (0: lifetime). The file must
// have been validated.
func WindowOf(a Aggregation) time.Duration {
	if a.Window == "" {
		return 0
	}
	w, _ := ParseDuration(a.Window)
	return w
}
