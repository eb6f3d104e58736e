package export

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/transform"
)

// Feature values travel through the spill files in a tagged binary form
// that keeps each value's Go type and a decimal's scale: a tag byte, then
// the value.
const (
	tagNull     = 'n'
	tagInt      = 'i'
	tagFloat    = 'f'
	tagDecimal  = 'd' // apd's text: exponent and NaN/±Infinity kept
	tagString   = 's'
	tagTime     = 't' // Unix seconds (varint), nanoseconds (uvarint)
	tagInfinity = 'I' // change.Infinity's text
	tagBool     = 'b'
	tagBytes    = 'x'
	tagJSON     = 'j'
	tagDuration = 'v'
	tagArray    = 'a' // count, then the elements
)

// appendValue appends v's tagged form.
func appendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, tagNull), nil
	case int64:
		return binary.AppendVarint(append(b, tagInt), x), nil
	case float64:
		return binary.LittleEndian.AppendUint64(append(b, tagFloat), math.Float64bits(x)), nil
	case *apd.Decimal:
		return appendText(append(b, tagDecimal), x.String()), nil
	case string:
		return appendText(append(b, tagString), x), nil
	case time.Time:
		return binary.AppendUvarint(binary.AppendVarint(append(b, tagTime), x.Unix()), uint64(x.Nanosecond())), nil
	case change.Infinity:
		return appendText(append(b, tagInfinity), x.String()), nil
	case bool:
		if x {
			return append(b, tagBool, 1), nil
		}
		return append(b, tagBool, 0), nil
	case []byte:
		return appendText(append(b, tagBytes), string(x)), nil
	case json.RawMessage:
		return appendText(append(b, tagJSON), string(x)), nil
	case time.Duration:
		return binary.AppendVarint(append(b, tagDuration), int64(x)), nil
	case []any:
		b = binary.AppendUvarint(append(b, tagArray), uint64(len(x)))
		var err error
		for i, e := range x {
			if b, err = appendValue(b, e); err != nil {
				return nil, fmt.Errorf("element %d: %w", i+1, err)
			}
		}
		return b, nil
	}
	return nil, fmt.Errorf("values of type %T cannot be exported", v)
}

func appendText(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

var errCorrupt = errors.New("corrupt spilled value")

// readText reads what appendText wrote and returns the rest.
func readText(b []byte) (string, []byte, error) {
	k, n := binary.Uvarint(b)
	if n <= 0 || k > uint64(len(b)-n) {
		return "", nil, errCorrupt
	}
	return string(b[n : n+int(k)]), b[n+int(k):], nil
}

// readValue reads one tagged value from b and returns the rest.
func readValue(b []byte) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errCorrupt
	}
	tag, b := b[0], b[1:]
	switch tag {
	case tagNull:
		return nil, b, nil
	case tagInt, tagDuration:
		x, n := binary.Varint(b)
		if n <= 0 {
			return nil, nil, errCorrupt
		}
		if tag == tagDuration {
			return time.Duration(x), b[n:], nil
		}
		return x, b[n:], nil
	case tagFloat:
		if len(b) < 8 {
			return nil, nil, errCorrupt
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(b)), b[8:], nil
	case tagTime:
		sec, n := binary.Varint(b)
		if n <= 0 {
			return nil, nil, errCorrupt
		}
		ns, m := binary.Uvarint(b[n:])
		if m <= 0 {
			return nil, nil, errCorrupt
		}
		return time.Unix(sec, int64(ns)).UTC(), b[n+m:], nil
	case tagBool:
		if len(b) < 1 {
			return nil, nil, errCorrupt
		}
		return b[0] == 1, b[1:], nil
	case tagArray:
		k, n := binary.Uvarint(b)
		if n <= 0 || k > uint64(len(b)) {
			return nil, nil, errCorrupt
		}
		b = b[n:]
		out := make([]any, k)
		for i := range out {
			var err error
			if out[i], b, err = readValue(b); err != nil {
				return nil, nil, err
			}
		}
		return out, b, nil
	}
	k, n := binary.Uvarint(b)
	if n <= 0 || k > uint64(len(b)-n) {
		return nil, nil, errCorrupt
	}
	s, rest := string(b[n:n+int(k)]), b[n+int(k):]
	switch tag {
	case tagDecimal:
		d, _, err := apd.NewFromString(s)
		return d, rest, err
	case tagString:
		return s, rest, nil
	case tagInfinity:
		inf, ok := change.ParseInfinity(s)
		if !ok {
			return nil, nil, errCorrupt
		}
		return inf, rest, nil
	case tagBytes:
		return []byte(s), rest, nil
	case tagJSON:
		return json.RawMessage(s), rest, nil
	}
	return nil, nil, errCorrupt
}

// text renders a value as the read API's JSON does, unquoted: a CSV
// field, or a spine key's text.
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
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32), nil
	case bool:
		return strconv.FormatBool(x), nil
	default:
		b, err := json.Marshal(x)
		return string(b), err
	}
}
