package debeziumtest

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// appendJSONSchema writes s as JsonConverter.asJsonSchema does, keys in
// its order: type, fields or items, optional, name, version, doc,
// parameters, default, then the field name of a struct field.
func appendJSONSchema(b []byte, s *schema, fieldName string) []byte {
	b = append(b, `{"type":`...)
	b = appendString(b, s.typ)
	switch s.typ {
	case "struct":
		b = append(b, `,"fields":[`...)
		for i, f := range s.fields {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONSchema(b, f.s, f.name)
		}
		b = append(b, ']')
	case "array":
		b = append(b, `,"items":`...)
		b = appendJSONSchema(b, s.items, "")
	}
	b = append(b, `,"optional":`...)
	b = strconv.AppendBool(b, s.optional)
	if s.name != "" {
		b = append(b, `,"name":`...)
		b = appendString(b, s.name)
	}
	if s.version != 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendInt(b, int64(s.version), 10)
	}
	if s.doc != "" {
		b = append(b, `,"doc":`...)
		b = appendString(b, s.doc)
	}
	if len(s.params) > 0 {
		b = append(b, `,"parameters":{`...)
		for i, p := range s.params {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, p.key)
			b = append(b, ':')
			b = appendString(b, p.value)
		}
		b = append(b, '}')
	}
	if s.def != nil {
		b = append(b, `,"default":`...)
		b, _ = appendJSONValue(b, s, s.def)
	}
	if fieldName != "" {
		b = append(b, `,"field":`...)
		b = appendString(b, fieldName)
	}
	return append(b, '}')
}

// appendJSONValue writes v as JsonConverter.convertToJson does: struct
// fields in schema order, nulls included, bytes in base64, floats as
// Java prints them and non-finite ones quoted (Jackson's
// QUOTE_NON_NUMERIC_NUMBERS).
func appendJSONValue(b []byte, s *schema, v any) ([]byte, error) {
	if v == nil {
		return append(b, "null"...), nil
	}
	bad := func() ([]byte, error) {
		return nil, fmt.Errorf("debeziumtest: %T for a %s schema %s", v, s.typ, s.name)
	}
	switch s.typ {
	case "boolean":
		x, ok := v.(bool)
		if !ok {
			return bad()
		}
		return strconv.AppendBool(b, x), nil
	case "int8", "int16", "int32", "int64":
		x, ok := v.(int64)
		if !ok {
			return bad()
		}
		return strconv.AppendInt(b, x, 10), nil
	case "float", "double":
		var f float64
		bits := 64
		switch x := v.(type) {
		case float32:
			f, bits = float64(x), 32
		case float64:
			f = x
		default:
			return bad()
		}
		return appendJavaFloat(b, f, bits), nil
	case "string":
		x, ok := v.(string)
		if !ok {
			return bad()
		}
		return appendString(b, x), nil
	case "bytes":
		x, ok := v.([]byte)
		if !ok {
			return bad()
		}
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, x)
		return append(b, '"'), nil
	case "array":
		a, ok := v.([]any)
		if !ok {
			return bad()
		}
		b = append(b, '[')
		for i, e := range a {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSONValue(b, s.items, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case "struct":
		m, ok := v.(map[string]any)
		if !ok {
			return bad()
		}
		b = append(b, '{')
		for i, f := range s.fields {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, f.name)
			b = append(b, ':')
			var err error
			if b, err = appendJSONValue(b, f.s, m[f.name]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	return bad()
}

// appendJavaFloat prints f as Java's Double.toString (Float.toString for
// bits 32): the shortest digits that read back, plain with at least one
// fraction digit for 1e-3 <= |f| < 1e7, else d.dddE±n.
func appendJavaFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	if a := math.Abs(f); a == 0 || (a >= 1e-3 && a < 1e7) {
		s := strconv.FormatFloat(f, 'f', -1, bits)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
		return append(b, s...)
	}
	s := strconv.FormatFloat(f, 'e', -1, bits) // 1.234e+08
	mant, exp, _ := strings.Cut(s, "e")
	if !strings.Contains(mant, ".") {
		mant += ".0"
	}
	n, _ := strconv.Atoi(exp)
	return strconv.AppendInt(append(append(b, mant...), 'E'), int64(n), 10)
}

// appendString writes s as a JSON string as Jackson does: quote,
// backslash and control characters escaped, nothing else.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			if c < utf8.RuneSelf {
				b = append(b, c)
				i++
				continue
			}
			r, n := utf8.DecodeRuneInString(s[i:])
			b = utf8.AppendRune(b, r) // invalid UTF-8 becomes U+FFFD, as Java's String does
			i += n
			continue
		}
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		case '\t':
			b = append(b, `\t`...)
		case '\b':
			b = append(b, `\b`...)
		case '\f':
			b = append(b, `\f`...)
		default:
			b = append(b, fmt.Sprintf(`\u%04X`, c)...)
		}
		i++
	}
	return append(b, '"')
}
