package transform

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/apd/v3"
)

// KeyError is an entity key value that cannot be one of its column's
// values (card_id=abc on an integer key): no entity can have it, so a
// read asking for it is a bad request, not "not found".
type KeyError struct {
	Group, Column, Type, Value string
}

func (e *KeyError) Error() string {
	return fmt.Sprintf("entity column %s of group %s is %s: %q is not one", e.Column, e.Group, e.Type, e.Value)
}

// keyTypes holds the PostgreSQL types of a group's entity columns, where
// known: from the source table (the direct path's setup) or the group's
// declared columns. Set while HTTP reads run, so swapped whole.
type keyTypes = atomic.Pointer[[]string]

// SetKeyTypes records the PostgreSQL types of the group's table columns
// (name → format_type text); the entity columns' are kept for CheckKey.
func (g *Group) SetKeyTypes(types map[string]string) {
	ts := make([]string, len(g.Entity))
	if old := g.keyTypes.Load(); old != nil {
		copy(ts, *old)
	}
	for i, col := range g.Entity {
		if t, ok := types[col]; ok {
			ts[i] = t
		}
	}
	g.keyTypes.Store(&ts)
}

// CheckKey reports a key value that its column's type cannot hold, as a
// *KeyError. Integer, numeric and uuid columns are checked; a column of
// another or unknown type takes any text.
func (g *Group) CheckKey(key []string) error {
	ts := g.keyTypes.Load()
	if ts == nil {
		return nil
	}
	for i, t := range *ts {
		if i >= len(key) || t == "" {
			continue
		}
		if !keyFits(t, key[i]) {
			return &KeyError{Group: g.Name, Column: g.Entity[i], Type: t, Value: key[i]}
		}
	}
	return nil
}

func keyFits(typ, v string) bool {
	base, _, _ := strings.Cut(strings.ToLower(typ), "(")
	switch strings.TrimSpace(base) {
	case "smallint", "int2":
		_, err := strconv.ParseInt(v, 10, 16)
		return err == nil
	case "integer", "int", "int4":
		_, err := strconv.ParseInt(v, 10, 32)
		return err == nil
	case "bigint", "int8":
		_, err := strconv.ParseInt(v, 10, 64)
		return err == nil
	case "numeric", "decimal":
		_, _, err := apd.NewFromString(v)
		return err == nil
	case "uuid":
		return isUUID(v)
	}
	return true
}

func isUUID(v string) bool {
	if len(v) != 36 {
		return false
	}
	for i, c := range v {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}
