package aerospike

import (
	"fmt"
	"strconv"

	as "github.com/aerospike/aerospike-client-go/v7"
)

// maxDepth bounds nesting, as the embedded store's codec does.
const maxDepth = 32

// valueError names where in a bin value a problem is, e.g. `[2]["s:x"]`.
type valueError struct {
	path string
	msg  string
}

func (e *valueError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return e.path + ": " + e.msg
}

// under prefixes err's path with one step (an index or a map key); the path
// is built only on the way out of a failure, so valid values cost nothing.
func under(step string, err error) error {
	if ve, ok := err.(*valueError); ok {
		ve.path = step + ve.path
	}
	return err
}

func keyStep(k any) string {
	if s, ok := k.(string); ok {
		return "[" + strconv.Quote(s) + "]"
	}
	return fmt.Sprintf("[%v]", k)
}

// checkValue reports whether v is a sink bin value: nil, bool, int64,
// float64, string, []byte, []any and map[any]any with int64 or string keys,
// recursively. The client packs exactly these types natively, so a value that
// passes is written as it is.
func checkValue(v any) error { return checkValueAt(v, 0) }

func checkValueAt(v any, depth int) error {
	if depth > maxDepth {
		return &valueError{msg: fmt.Sprintf("nested deeper than %d levels", maxDepth)}
	}
	switch x := v.(type) {
	case nil, bool, int64, float64, string, []byte:
		return nil
	case []any:
		for i, e := range x {
			if err := checkValueAt(e, depth+1); err != nil {
				return under(fmt.Sprintf("[%d]", i), err)
			}
		}
		return nil
	case map[any]any:
		for k, e := range x {
			switch k.(type) {
			case int64, string:
			default:
				return &valueError{msg: fmt.Sprintf("map key %v of type %T (want int64 or string)", k, k)}
			}
			if err := checkValueAt(e, depth+1); err != nil {
				return under(keyStep(k), err)
			}
		}
		return nil
	default:
		return &valueError{msg: fmt.Sprintf("value of type %T is not a sink bin value", v)}
	}
}

// fromAerospike converts a value as the client decodes it into the sink
// model: integers come back as int and become int64, lists as
// []interface{}, unordered maps as map[interface{}]interface{} and
// KEY_ORDERED maps as []as.MapPair; both map forms become map[any]any.
func fromAerospike(v any) (any, error) { return fromAerospikeAt(v, 0) }

func fromAerospikeAt(v any, depth int) (any, error) {
	if depth > maxDepth {
		return nil, &valueError{msg: fmt.Sprintf("nested deeper than %d levels", maxDepth)}
	}
	switch x := v.(type) {
	case nil, bool, int64, float64, string, []byte:
		return x, nil
	case int:
		return int64(x), nil
	case float32:
		return float64(x), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := fromAerospikeAt(e, depth+1)
			if err != nil {
				return nil, under(fmt.Sprintf("[%d]", i), err)
			}
			out[i] = c
		}
		return out, nil
	case map[any]any:
		out := make(map[any]any, len(x))
		for k, e := range x {
			if err := putEntry(out, k, e, depth); err != nil {
				return nil, err
			}
		}
		return out, nil
	case []as.MapPair:
		out := make(map[any]any, len(x))
		for _, p := range x {
			if err := putEntry(out, p.Key, p.Value, depth); err != nil {
				return nil, err
			}
		}
		return out, nil
	default:
		return nil, &valueError{msg: fmt.Sprintf("stored value of type %T has no sink equivalent", v)}
	}
}

func putEntry(out map[any]any, k, v any, depth int) error {
	ck, err := fromAerospikeKey(k)
	if err != nil {
		return err
	}
	cv, err := fromAerospikeAt(v, depth+1)
	if err != nil {
		return under(keyStep(ck), err)
	}
	out[ck] = cv
	return nil
}

func fromAerospikeKey(k any) (any, error) {
	switch x := k.(type) {
	case string, int64:
		return x, nil
	case int:
		return int64(x), nil
	default:
		return nil, &valueError{msg: fmt.Sprintf("stored map key %v of type %T (want an integer or a string)", k, k)}
	}
}

// binsFromAerospike converts a record's bins.
func binsFromAerospike(bins as.BinMap) (map[string]any, error) {
	out := make(map[string]any, len(bins))
	for name, v := range bins {
		c, err := fromAerospike(v)
		if err != nil {
			return nil, fmt.Errorf("bin %q: %w", name, err)
		}
		out[name] = c
	}
	return out, nil
}
