// Package codec encodes sink bin values into a compact binary form for
// the embedded store.
package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

const (
	tNil byte = iota
	tFalse
	tTrue
	tInt
	tFloat
	tString
	tBytes
	tList
	tMap
)

// maxDepth bounds nesting so corrupt input cannot exhaust the stack.
const maxDepth = 32

// Append appends the encoding of v to dst.
func Append(dst []byte, v any) ([]byte, error) { return appendValue(dst, v, 0) }

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, errors.New("codec: value nested too deeply")
	}
	switch x := v.(type) {
	case nil:
		return append(dst, tNil), nil
	case bool:
		if x {
			return append(dst, tTrue), nil
		}
		return append(dst, tFalse), nil
	case int64:
		return binary.AppendVarint(append(dst, tInt), x), nil
	case float64:
		return binary.BigEndian.AppendUint64(append(dst, tFloat), math.Float64bits(x)), nil
	case string:
		dst = binary.AppendUvarint(append(dst, tString), uint64(len(x)))
		return append(dst, x...), nil
	case []byte:
		dst = binary.AppendUvarint(append(dst, tBytes), uint64(len(x)))
		return append(dst, x...), nil
	case []any:
		dst = binary.AppendUvarint(append(dst, tList), uint64(len(x)))
		var err error
		for _, e := range x {
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return nil, err
			}
		}
		return dst, nil
	case map[any]any:
		// In map order: encodings of one map may differ, which nothing
		// relies on, and sorting large multisets cost a third of a write.
		dst = binary.AppendUvarint(append(dst, tMap), uint64(len(x)))
		var err error
		for k, v := range x {
			switch k.(type) {
			case int64, string:
			default:
				return nil, fmt.Errorf("codec: map key of type %T (want int64 or string)", k)
			}
			if dst, err = appendValue(dst, k, depth+1); err != nil {
				return nil, err
			}
			if dst, err = appendValue(dst, v, depth+1); err != nil {
				return nil, err
			}
		}
		return dst, nil
	}
	return nil, fmt.Errorf("codec: unsupported value type %T", v)
}

// Decode decodes one value from src and returns it with the rest of src.
func Decode(src []byte) (any, []byte, error) { return decode(src, 0) }

var errShort = errors.New("codec: truncated value")

func decode(src []byte, depth int) (any, []byte, error) {
	if depth > maxDepth {
		return nil, nil, errors.New("codec: value nested too deeply")
	}
	if len(src) == 0 {
		return nil, nil, errShort
	}
	tag, src := src[0], src[1:]
	switch tag {
	case tNil:
		return nil, src, nil
	case tFalse:
		return false, src, nil
	case tTrue:
		return true, src, nil
	case tInt:
		v, n := binary.Varint(src)
		if n <= 0 {
			return nil, nil, errShort
		}
		return v, src[n:], nil
	case tFloat:
		if len(src) < 8 {
			return nil, nil, errShort
		}
		return math.Float64frombits(binary.BigEndian.Uint64(src)), src[8:], nil
	case tString, tBytes:
		l, n := binary.Uvarint(src)
		if n <= 0 || uint64(len(src)-n) < l {
			return nil, nil, errShort
		}
		b := src[n : n+int(l)]
		if tag == tString {
			return string(b), src[n+int(l):], nil
		}
		return append([]byte{}, b...), src[n+int(l):], nil
	case tList:
		l, n := binary.Uvarint(src)
		if n <= 0 || uint64(len(src)-n) < l { // every element takes a byte at least
			return nil, nil, errShort
		}
		src = src[n:]
		out := make([]any, 0, l)
		for i := uint64(0); i < l; i++ {
			var v any
			var err error
			if v, src, err = decode(src, depth+1); err != nil {
				return nil, nil, err
			}
			out = append(out, v)
		}
		return out, src, nil
	case tMap:
		l, n := binary.Uvarint(src)
		if n <= 0 || uint64(len(src)-n)/2 < l {
			return nil, nil, errShort
		}
		src = src[n:]
		out := make(map[any]any, l)
		for i := uint64(0); i < l; i++ {
			var k, v any
			var err error
			if k, src, err = decode(src, depth+1); err != nil {
				return nil, nil, err
			}
			switch k.(type) {
			case int64, string:
			default:
				return nil, nil, fmt.Errorf("codec: map key of type %T", k)
			}
			if v, src, err = decode(src, depth+1); err != nil {
				return nil, nil, err
			}
			out[k] = v
		}
		return out, src, nil
	}
	return nil, nil, fmt.Errorf("codec: unknown tag %d", tag)
}
