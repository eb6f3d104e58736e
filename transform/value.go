package transform

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
)

// Values stored inside tiles (multiset keys) carry a one-letter type tag so
// they decode to the type they had: "i:42", "d:12.5", "f:0.1", "s:text",
// "t:1795317540.949453000" (Unix seconds.nanoseconds), "b:true", "x:00ff", "j:{...}", "v:1h0m0s".

// encodeValue renders v as a tagged multiset key.
func encodeValue(v any) (string, error) {
	switch x := v.(type) {
	case int64:
		return "i:" + strconv.FormatInt(x, 10), nil
	case *apd.Decimal:
		var r apd.Decimal
		r.Reduce(x)
		return "d:" + r.Text('f'), nil
	case float64:
		return "f:" + strconv.FormatFloat(x, 'g', -1, 64), nil
	case string:
		return "s:" + x, nil
	case time.Time:
		// Unix seconds and nanoseconds: every timestamp, BC and after
		// 9999 included, round-trips (RFC 3339 cannot hold those years).
		return fmt.Sprintf("t:%d.%09d", x.Unix(), x.Nanosecond()), nil
	case bool:
		return "b:" + strconv.FormatBool(x), nil
	case []byte:
		return "x:" + hex.EncodeToString(x), nil
	case json.RawMessage:
		return "j:" + string(x), nil
	case time.Duration:
		return "v:" + x.String(), nil
	}
	return "", fmt.Errorf("values of type %T cannot be aggregated", v)
}

// decodeValue is the inverse of encodeValue.
func decodeValue(s string) (any, error) {
	if len(s) < 2 || s[1] != ':' {
		return nil, fmt.Errorf("stored value %q has no type tag", s)
	}
	body := s[2:]
	switch s[0] {
	case 'i':
		return strconv.ParseInt(body, 10, 64)
	case 'd':
		d, _, err := apd.NewFromString(body)
		return d, err
	case 'f':
		return strconv.ParseFloat(body, 64)
	case 's':
		return body, nil
	case 't':
		secText, nsText, ok := strings.Cut(body, ".")
		sec, err1 := strconv.ParseInt(secText, 10, 64)
		ns, err2 := strconv.ParseInt(nsText, 10, 64)
		if !ok || err1 != nil || err2 != nil || len(nsText) != 9 || ns < 0 {
			// The RFC 3339 form of earlier layouts.
			return time.Parse(time.RFC3339Nano, body)
		}
		return time.Unix(sec, ns).UTC(), nil
	case 'b':
		return strconv.ParseBool(body)
	case 'x':
		return hex.DecodeString(body)
	case 'j':
		return json.RawMessage(body), nil
	case 'v':
		return time.ParseDuration(body)
	}
	return nil, fmt.Errorf("stored value %q has an unknown type tag", s)
}

// compareValues orders two decoded values: numbers numerically (across
// int, decimal and float), then by type, then within a type.
func compareValues(a, b any) int {
	if da, ok := toDecimal(a); ok {
		if db, ok := toDecimal(b); ok {
			return da.Cmp(db)
		}
	}
	ra, rb := rank(a), rank(b)
	if ra != rb {
		return ra - rb
	}
	switch x := a.(type) {
	case string:
		return strings.Compare(x, b.(string))
	case time.Time:
		return x.Compare(b.(time.Time))
	case bool:
		if x == b.(bool) {
			return 0
		} else if x {
			return 1
		}
		return -1
	case time.Duration:
		return cmpOrdered(x, b.(time.Duration))
	case []byte:
		return strings.Compare(string(x), string(b.([]byte)))
	case json.RawMessage:
		return strings.Compare(string(x), string(b.(json.RawMessage)))
	}
	return 0
}

func cmpOrdered[T int64 | time.Duration](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func rank(v any) int {
	switch v.(type) {
	case int64, *apd.Decimal, float64:
		return 0
	case string:
		return 1
	case time.Time:
		return 2
	case bool:
		return 3
	case time.Duration:
		return 4
	case []byte:
		return 5
	}
	return 6
}

// toDecimal converts a numeric value exactly. Floats convert through their
// shortest decimal form, so 0.1 sums as 0.1.
func toDecimal(v any) (*apd.Decimal, bool) {
	switch x := v.(type) {
	case int64:
		return apd.New(x, 0), true
	case *apd.Decimal:
		return x, x.Form == apd.Finite
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, false
		}
		d, _, err := apd.NewFromString(strconv.FormatFloat(x, 'g', -1, 64))
		return d, err == nil
	}
	return nil, false
}

// entityText renders one entity-key value as text: the form a reader types
// in a URL (42, 4111-1111, 2026-11-22).
func entityText(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", fmt.Errorf("is NULL")
	case change.Row, map[string]any:
		return "", fmt.Errorf("is not a scalar")
	case int64:
		return strconv.FormatInt(x, 10), nil
	case *apd.Decimal:
		return x.Text('f'), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case string:
		return x, nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), nil
	case bool:
		return strconv.FormatBool(x), nil
	case []byte:
		return hex.EncodeToString(x), nil
	}
	if v == change.Unchanged {
		return "", fmt.Errorf("is an unchanged TOAST value the source did not send")
	}
	return fmt.Sprint(v), nil
}

// EntityID joins the texts of an entity's key values into a record ID:
// the text itself for one column, a JSON array of texts for several.
func EntityID(texts []string) string {
	if len(texts) == 1 {
		return texts[0]
	}
	b, _ := json.Marshal(texts)
	return string(b)
}

// storable converts a row value into a sink bin value (projection).
func storable(v any) (any, error) {
	switch x := v.(type) {
	case nil, int64, float64, string, bool, []byte:
		return x, nil
	case *apd.Decimal:
		return x.Text('f'), nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), nil
	case time.Duration:
		return x.String(), nil
	case json.RawMessage:
		return string(x), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			s, err := storable(e)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("values of type %T cannot be stored", v)
}
