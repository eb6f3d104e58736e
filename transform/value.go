package transform

import (
	"cmp"
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
	case change.Infinity:
		return "t:" + x.String(), nil
	case []any:
		// The tagged elements as a JSON array (null for NULL), so arrays
		// are equal exactly when their elements are.
		elems := make([]any, len(x))
		for i, e := range x {
			if e == nil {
				continue
			}
			k, err := encodeValue(e)
			if err != nil {
				return "", fmt.Errorf("array element %d: %w", i+1, err)
			}
			elems[i] = k
		}
		b, err := json.Marshal(elems)
		if err != nil {
			return "", err
		}
		return "a:" + string(b), nil
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

// encodable returns the error encodeValue would return for v, without
// encoding it: the check before a change is applied costs no allocation.
func encodable(v any) error {
	switch x := v.(type) {
	case int64, *apd.Decimal, change.Infinity, float64, string, time.Time, bool, []byte, json.RawMessage, time.Duration:
		return nil
	case []any:
		for i, e := range x {
			if e == nil {
				continue
			}
			if err := encodable(e); err != nil {
				return fmt.Errorf("array element %d: %w", i+1, err)
			}
		}
		return nil
	}
	_, err := encodeValue(v)
	return err
}

// timeKey reads a tagged timestamp key ("t:<unix seconds>.<9 digits of
// nanoseconds>") without allocating; ok is false for any other key,
// the infinities included.
func timeKey(k string) (sec, ns int64, ok bool) {
	if len(k) < 13 || k[0] != 't' || k[1] != ':' {
		return 0, 0, false
	}
	body := k[2:]
	dot := len(body) - 10
	if dot < 1 || body[dot] != '.' {
		return 0, 0, false
	}
	neg := body[0] == '-'
	i := 0
	if neg {
		i = 1
	}
	if i == dot {
		return 0, 0, false
	}
	for ; i < dot; i++ {
		c := body[i]
		if c < '0' || c > '9' || sec > (1<<62)/10 {
			return 0, 0, false
		}
		sec = sec*10 + int64(c-'0')
	}
	for _, c := range []byte(body[dot+1:]) {
		if c < '0' || c > '9' {
			return 0, 0, false
		}
		ns = ns*10 + int64(c-'0')
	}
	if neg {
		sec = -sec
	}
	return sec, ns, true
}

// keyOrder is what a tagged key's text says of its order without
// decoding it: a plain number, a timestamp, or a string.
type keyOrder struct {
	num     string // numText's text, when isNum
	isNum   bool
	sec, ns int64 // timeKey's, when isTime
	isTime  bool
	isStr   bool
}

func orderOf(k string) keyOrder {
	var o keyOrder
	if o.num, o.isNum = numText(k); o.isNum {
		return o
	}
	if o.sec, o.ns, o.isTime = timeKey(k); o.isTime {
		return o
	}
	o.isStr = len(k) >= 2 && k[0] == 's' && k[1] == ':'
	return o
}

// cmpKeys orders two tagged keys as compareValues orders their values,
// decoding them only when their texts cannot tell; ok is false when one
// cannot be decoded.
func cmpKeys(a string, oa keyOrder, b string, ob keyOrder) (c int, ok bool) {
	switch {
	case oa.isNum && ob.isNum:
		return cmpDecText(oa.num, ob.num), true
	case oa.isTime && ob.isTime:
		if c = cmp.Compare(oa.sec, ob.sec); c == 0 {
			c = cmp.Compare(oa.ns, ob.ns)
		}
		return c, true
	case oa.isStr && ob.isStr:
		return strings.Compare(a, b), true // the same tag, then the text
	}
	va, err := decodeValue(a)
	if err != nil {
		return 0, false
	}
	vb, err := decodeValue(b)
	if err != nil {
		return 0, false
	}
	return compareValues(va, vb), true
}

// extreme keeps the greatest key offered, or the least for min, in the
// order of their values.
type extreme struct {
	key string // "" until a key is offered
	ord keyOrder
}

func (x *extreme) offer(k string, min bool) { x.offerOrdered(k, orderOf(k), min) }

// offerOrdered is offer with k's order already read.
func (x *extreme) offerOrdered(k string, o keyOrder, min bool) {
	if x.key != "" {
		c, ok := cmpKeys(k, o, x.key, x.ord)
		if !ok {
			if _, err := decodeValue(k); err != nil {
				return // a value that cannot be read never wins
			}
			c = 1 // over a best that cannot be read
		} else if min {
			c = -c
		}
		if c <= 0 {
			return
		}
	}
	x.key, x.ord = k, o
}

func extIndex(min bool) int {
	if min {
		return 0
	}
	return 1
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
		if inf, ok := change.ParseInfinity(body); ok {
			return inf, nil
		}
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
	case 'a':
		var elems []*string
		if err := json.Unmarshal([]byte(body), &elems); err != nil {
			return nil, fmt.Errorf("stored array %q: %w", s, err)
		}
		out := make([]any, len(elems))
		for i, e := range elems {
			if e == nil {
				continue
			}
			v, err := decodeValue(*e)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
	return nil, fmt.Errorf("stored value %q has an unknown type tag", s)
}

// numberKeys returns the keys the same number has as the other numeric
// types: i:5, d:5 and f:5 are one value. A column whose type changes
// (ALTER COLUMN TYPE integer → numeric) sends old rows in the new type,
// so a retraction that finds nothing under its own key tries these, and
// distinct counts them as one value.
func numberKeys(v any) []string {
	own, err := encodeValue(v)
	if err != nil {
		return nil
	}
	if _, ok := numberOrder(v); !ok {
		return nil
	}
	d, ok := toDecimal(v)
	if !ok {
		return nil // NaN and the infinities
	}
	var r apd.Decimal
	r.Reduce(d)
	text := r.Text('f')
	keys := []string{"d:" + text}
	if n, err := r.Int64(); err == nil && r.Exponent >= 0 {
		keys = append(keys, "i:"+strconv.FormatInt(n, 10))
	}
	if f, err := strconv.ParseFloat(text, 64); err == nil {
		if fd, ok := toDecimal(f); ok && fd.Cmp(&r) == 0 {
			keys = append(keys, "f:"+strconv.FormatFloat(f, 'g', -1, 64))
		}
	}
	out := keys[:0]
	for _, k := range keys {
		if k != own {
			out = append(out, k)
		}
	}
	return out
}

// distinctKey is the key distinct counts a stored value under: numbers by
// value, whatever their type; anything else by its key.
func distinctKey(k string) string {
	if len(k) < 2 || (k[0] != 'i' && k[0] != 'd' && k[0] != 'f') {
		return k
	}
	v, err := decodeValue(k)
	if err != nil {
		return k
	}
	if d, ok := toDecimal(v); ok {
		var r apd.Decimal
		r.Reduce(d)
		return "n:" + r.Text('f')
	}
	if i, ok := nonFiniteIndex(v); ok {
		return "n:" + nonFiniteText(i != 0, i == 2)
	}
	return k
}

// compareValues orders two decoded values: numbers numerically (across
// int, decimal and float), then by type, then within a type.
//
// Numbers order as PostgreSQL orders them: -Infinity, finite values,
// Infinity, then NaN, which PostgreSQL sorts above every number (and
// equal to itself). Dates and timestamps order between -infinity and
// infinity.
func compareValues(a, b any) int {
	if na, ok := numberOrder(a); ok {
		if nb, ok := numberOrder(b); ok {
			if na != 0 || nb != 0 {
				return cmpOrdered(na, nb)
			}
			da, _ := toDecimal(a)
			db, _ := toDecimal(b)
			return da.Cmp(db)
		}
	}
	ra, rb := rank(a), rank(b)
	if ra != rb {
		return ra - rb
	}
	if ta, ok := timeOrder(a); ok {
		tb, _ := timeOrder(b)
		if ta != 0 || tb != 0 {
			return cmpOrdered(ta, tb)
		}
		return a.(time.Time).Compare(b.(time.Time))
	}
	switch x := a.(type) {
	case string:
		return strings.Compare(x, b.(string))
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
	case []any:
		// Element by element, then the shorter first, like PostgreSQL
		// arrays; NULL elements sort last.
		y := b.([]any)
		for i := 0; i < len(x) && i < len(y); i++ {
			switch {
			case x[i] == nil && y[i] == nil:
				continue
			case x[i] == nil:
				return 1
			case y[i] == nil:
				return -1
			}
			if c := compareValues(x[i], y[i]); c != 0 {
				return c
			}
		}
		return cmpOrdered(int64(len(x)), int64(len(y)))
	}
	return 0
}

// numberOrder places a number among the non-finite ones: -2 for
// -Infinity, 0 for a finite number, 1 for Infinity, 2 for NaN. ok is
// false for values that are not numbers.
func numberOrder(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return 0, true
	case *apd.Decimal:
		switch {
		case x.Form == apd.Finite:
			return 0, true
		case x.Form == apd.Infinite && x.Negative:
			return -2, true
		case x.Form == apd.Infinite:
			return 1, true
		}
		return 2, true
	case float64:
		switch {
		case math.IsNaN(x):
			return 2, true
		case math.IsInf(x, -1):
			return -2, true
		case math.IsInf(x, 1):
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// timeOrder places a time among the infinities: -1, 0 for a time, 1.
func timeOrder(v any) (int64, bool) {
	switch x := v.(type) {
	case time.Time:
		return 0, true
	case change.Infinity:
		return int64(x), true
	}
	return 0, false
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
	case time.Time, change.Infinity:
		return 2
	case bool:
		return 3
	case time.Duration:
		return 4
	case []byte:
		return 5
	case []any:
		return 6
	}
	return 7
}

// nonFiniteIndex tells NaN (0), Infinity (1) and -Infinity (2) apart, for
// Tile.NonFinite; ok is false for finite numbers and non-numbers.
func nonFiniteIndex(v any) (int, bool) {
	switch o, _ := numberOrder(v); o {
	case 2:
		return 0, true
	case 1:
		return 1, true
	case -2:
		return 2, true
	}
	return 0, false
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
	case change.Infinity:
		return x.String(), nil
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
	case change.Infinity:
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

// numText returns the text of an int or finite decimal multiset key
// ("i:-12", "d:3.5"): an optional minus, digits, and optionally a point
// and digits. Other keys (NaN, Infinity, exponents, other types) are not.
func numText(k string) (string, bool) {
	if len(k) < 3 || (k[0] != 'i' && k[0] != 'd') || k[1] != ':' {
		return "", false
	}
	body := k[2:]
	digits, point := 0, false
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '-' && i == 0:
		case c == '.' && !point && digits > 0:
			point = true
		default:
			return "", false
		}
	}
	if digits == 0 || body[len(body)-1] == '.' {
		return "", false
	}
	return body, true
}

// cmpDecText orders two texts numText accepted as their numbers do.
func cmpDecText(a, b string) int {
	na, a := signOf(a)
	nb, b := signOf(b)
	switch {
	case na && !nb:
		return -1
	case nb && !na:
		return 1
	}
	c := cmpAbsText(a, b)
	if na {
		return -c
	}
	return c
}

// signOf strips a minus, unless the number is a zero.
func signOf(s string) (negative bool, abs string) {
	if s[0] != '-' {
		return false, s
	}
	if strings.Trim(s[1:], "0.") == "" {
		return false, s[1:]
	}
	return true, s[1:]
}

func cmpAbsText(a, b string) int {
	ia, fa, _ := strings.Cut(a, ".")
	ib, fb, _ := strings.Cut(b, ".")
	ia, ib = strings.TrimLeft(ia, "0"), strings.TrimLeft(ib, "0")
	if len(ia) != len(ib) {
		return cmp.Compare(len(ia), len(ib))
	}
	if c := strings.Compare(ia, ib); c != 0 {
		return c
	}
	// Without trailing zeros, fractions order as text.
	return strings.Compare(strings.TrimRight(fa, "0"), strings.TrimRight(fb, "0"))
}
