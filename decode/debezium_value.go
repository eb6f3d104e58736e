package decode

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
)

// Semantic schema names (Connect's and Debezium's).
const (
	nameDecimal          = "org.apache.kafka.connect.data.Decimal"
	nameConnectDate      = "org.apache.kafka.connect.data.Date"
	nameConnectTime      = "org.apache.kafka.connect.data.Time"
	nameConnectTimestamp = "org.apache.kafka.connect.data.Timestamp"
	nameVariableScale    = "io.debezium.data.VariableScaleDecimal"
	nameJSON             = "io.debezium.data.Json"
	nameUUID             = "io.debezium.data.Uuid"
	nameDate             = "io.debezium.time.Date"
	nameTime             = "io.debezium.time.Time"
	nameMicroTime        = "io.debezium.time.MicroTime"
	nameNanoTime         = "io.debezium.time.NanoTime"
	nameTimestamp        = "io.debezium.time.Timestamp"
	nameMicroTimestamp   = "io.debezium.time.MicroTimestamp"
	nameNanoTimestamp    = "io.debezium.time.NanoTimestamp"
	nameZonedTimestamp   = "io.debezium.time.ZonedTimestamp"
	nameIsoDate          = "io.debezium.time.IsoDate"
	nameIsoTimestamp     = "io.debezium.time.IsoTimestamp"
	nameMicroDuration    = "io.debezium.time.MicroDuration"
)

// row decodes a row image (or a key): the fields the schema declares, by
// their schemas (a declared field that is absent is NULL: producers such
// as Gson drop null keys, the schema still lists the column), then any
// others as schemaless values.
func (c *conv) row(path string, s *connectSchema, v any, table string) (change.Row, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fieldErr(path, show(v), "want an object")
	}
	if s != nil && s.Type != "struct" {
		return nil, fieldErr(path, "", "the schema is a %s, want a struct", s.Type)
	}
	row := make(change.Row, len(m))
	declared := 0
	if s != nil {
		for _, f := range s.Fields {
			raw, ok := m[f.Name]
			if !ok {
				row[f.Name] = nil
				continue
			}
			declared++
			val, err := c.column(path+"."+f.Name, f.Schema, raw)
			if err != nil {
				return nil, err
			}
			row[f.Name] = val
		}
	}
	if declared == len(m) {
		return row, nil
	}
	extra := make([]string, 0, len(m)-declared)
	for k := range m {
		if s.field(k) == nil {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra) // the first bad column, by name, is the one reported
	types := c.columnTypes[table]
	for _, k := range extra {
		val, err := c.schemaless(path+"."+k, types[k], m[k])
		if err != nil {
			return nil, err
		}
		row[k] = val
	}
	return row, nil
}

// column decodes one column value with its schema.
func (c *conv) column(path string, s *connectSchema, v any) (any, error) {
	if c.isPlaceholder(s, v) {
		return change.Unchanged, nil
	}
	return c.value(path, s, v, 0)
}

// schemaless decodes one column value that has no schema: by its declared
// type when ColumnTypes gives one, else as the JSON has it.
func (c *conv) schemaless(path, declared string, v any) (any, error) {
	if c.isPlaceholder(nil, v) {
		return change.Unchanged, nil
	}
	if declared == "" {
		return plain(path, v, 0)
	}
	return c.typed(path, parsePGType(declared), v, 0)
}

func (c *conv) value(path string, s *connectSchema, v any, depth int) (any, error) {
	if v == nil {
		return nil, nil
	}
	if depth > maxSchemaDepth {
		return nil, fieldErr(path, "", "nests deeper than %d levels", maxSchemaDepth)
	}
	switch s.Name {
	case nameDecimal:
		return decimalValue(path, s, v)
	case nameVariableScale:
		return variableScale(path, v)
	case nameDate, nameConnectDate:
		return epochDays(path, v)
	case nameTime, nameConnectTime:
		return timeOfDay(path, v, time.Millisecond)
	case nameMicroTime:
		return timeOfDay(path, v, time.Microsecond)
	case nameNanoTime:
		return timeOfDay(path, v, time.Nanosecond)
	case nameTimestamp, nameConnectTimestamp:
		return wallClock(path, v, time.Millisecond)
	case nameMicroTimestamp:
		return wallClock(path, v, time.Microsecond)
	case nameNanoTimestamp:
		return wallClock(path, v, time.Nanosecond)
	case nameZonedTimestamp, nameIsoTimestamp:
		return timestampText(path, v)
	case nameIsoDate:
		return dateText(path, v)
	case nameMicroDuration:
		return micros(path, v)
	case nameJSON:
		if x, ok := v.(string); ok {
			return jsonText(path, x)
		}
	}
	switch s.Type {
	case "boolean":
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, fieldErr(path, show(v), "want a boolean")
	case "int8", "int16", "int32", "int64":
		return intOf(path, v)
	case "float", "double":
		return floatOf(path, v)
	case "string":
		if x, ok := v.(string); ok {
			return x, nil
		}
		return nil, fieldErr(path, show(v), "want a string")
	case "bytes":
		return bytesOf(path, v)
	case "array":
		a, ok := v.([]any)
		if !ok {
			return nil, fieldErr(path, show(v), "want an array")
		}
		out := make([]any, len(a))
		for i, e := range a {
			var err error
			if out[i], err = c.value(path+"["+strconv.Itoa(i)+"]", s.Items, e, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	case "map":
		m, ok := v.(map[string]any)
		if !ok {
			// JsonConverter writes a map with non-string keys as [[k, v], …].
			return plain(path, v, depth)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys) // the first bad entry, by key, is the one reported
		out := make(map[string]any, len(m))
		for _, k := range keys {
			var err error
			if out[k], err = c.value(path+"."+k, s.Values, m[k], depth+1); err != nil {
				return nil, err
			}
		}
		return marshalRaw(path, out)
	case "struct":
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fieldErr(path, show(v), "want an object")
		}
		out := make(map[string]any, len(m))
		for _, f := range s.Fields {
			if e, ok := m[f.Name]; ok {
				var err error
				if out[f.Name], err = c.value(path+"."+f.Name, f.Schema, e, depth+1); err != nil {
					return nil, err
				}
			}
		}
		return marshalRaw(path, out)
	}
	return nil, fieldErr(path, show(v), "unknown schema type %q", s.Type)
}

func marshalRaw(path string, v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, wrapErr(path, "", err)
	}
	return json.RawMessage(b), nil
}

// plain converts a schemaless JSON value: strings and booleans as they
// are, numbers to int64 or an exact decimal, arrays to []any and objects
// to json.RawMessage.
func plain(path string, v any, depth int) (any, error) {
	switch x := v.(type) {
	case json.Number:
		return number(path, x)
	case []any:
		if depth > maxSchemaDepth {
			return nil, fieldErr(path, "", "nests deeper than %d levels", maxSchemaDepth)
		}
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = plain(path+"["+strconv.Itoa(i)+"]", e, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		return marshalRaw(path, x)
	}
	return v, nil
}

// number reads a JSON number exactly: int64 when its text is an integer
// that fits, else a decimal with the literal's digits and scale.
func number(path string, n json.Number) (any, error) {
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return i, nil
	}
	d, _, err := apd.NewFromString(string(n))
	if err != nil {
		return nil, wrapErr(path, n.String(), err)
	}
	return d, nil
}

// ---- the unavailable-value placeholder

// isPlaceholder reports whether v is one of the forms Debezium gives the
// unavailable-value placeholder for a field of schema s (nil: unknown).
func (c *conv) isPlaceholder(s *connectSchema, v any) bool {
	switch x := v.(type) {
	case string:
		if s == nil {
			return x == c.placeholder || x == c.placeholder64 || c.isHstorePlaceholder(x)
		}
		switch s.Type {
		case "string":
			return x == c.placeholder || (s.Name == nameJSON && c.isHstorePlaceholder(x))
		case "bytes":
			return x == c.placeholder64
		}
	case []byte:
		return s != nil && s.Type == "bytes" && string(x) == c.placeholder
	case []any:
		return c.isArrayPlaceholder(s, x)
	case map[string]any:
		if (s == nil && len(x) == 2 && x["scale"] != nil) || (s != nil && s.Name == nameVariableScale) {
			switch b := x["value"].(type) {
			case string:
				return b == c.placeholder64
			case []byte:
				return string(b) == c.placeholder
			}
			return false
		}
		if s == nil || s.Type == "map" {
			p, ok := x[c.placeholder].(string)
			return ok && len(x) == 1 && p == c.placeholder
		}
	}
	return false
}

// isHstorePlaceholder recognizes {"p":"p"}, the hstore form serialized
// as JSON text (hstore.handling.mode=json).
func (c *conv) isHstorePlaceholder(s string) bool {
	if len(s) > 2*len(c.placeholder)+64 || !strings.HasPrefix(s, "{") {
		return false
	}
	var m map[string]string
	if json.Unmarshal([]byte(s), &m) != nil {
		return false
	}
	return len(m) == 1 && m[c.placeholder] == c.placeholder
}

func (c *conv) isArrayPlaceholder(s *connectSchema, a []any) bool {
	var items string // element type; "" when unknown
	if s != nil {
		if s.Type != "array" {
			return false
		}
		items = s.Items.Type
	}
	if len(a) == 1 {
		switch e := a[0].(type) {
		case string:
			if (items == "" || items == "string") && (e == c.placeholder || e == c.placeholderUUID()) {
				return true
			}
			return (items == "" || items == "bytes") && e == c.placeholder64
		case []byte:
			return items == "bytes" && string(e) == c.placeholder
		}
	}
	// int[], bigint[] and date[] carry the placeholder's bytes as numbers
	// (Java's signed bytes).
	switch items {
	case "", "int8", "int16", "int32", "int64":
	default:
		return false
	}
	if len(a) != len(c.placeholder) {
		return false
	}
	for i, e := range a {
		var n int64
		switch x := e.(type) {
		case json.Number:
			var err error
			if n, err = x.Int64(); err != nil {
				return false
			}
		case int64:
			n = x
		default:
			return false
		}
		if n != int64(int8(c.placeholder[i])) {
			return false
		}
	}
	return true
}

// placeholderUUID is Java's UUID.nameUUIDFromBytes of the placeholder,
// Debezium's placeholder element for uuid[]: an MD5 (version 3) UUID.
func (c *conv) placeholderUUID() string {
	h := md5.Sum([]byte(c.placeholder))
	h[6] = h[6]&0x0f | 0x30
	h[8] = h[8]&0x3f | 0x80
	var b [36]byte
	hex.Encode(b[0:8], h[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], h[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], h[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], h[8:10])
	b[23] = '-'
	hex.Encode(b[24:], h[10:])
	return string(b[:])
}

// ---- scalars

func intOf(path string, v any) (int64, error) {
	switch x := v.(type) {
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 64)
		if err != nil {
			return 0, fieldErr(path, x.String(), "want an integer")
		}
		return n, nil
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case int:
		return int64(x), nil
	}
	return 0, fieldErr(path, show(v), "want an integer")
}

func floatOf(path string, v any) (float64, error) {
	switch x := v.(type) {
	case json.Number:
		// From the text, so 0.1 in a real column stays 0.1.
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return 0, fieldErr(path, x.String(), "want a float")
		}
		return f, nil
	case float64:
		return x, nil
	case float32:
		// Through the shortest text of the float32, as pgoutput's text
		// does: float32(0.1) reads 0.1, not 0.10000000149011612.
		f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
		return f, nil
	case int64:
		return float64(x), nil
	case string:
		// Jackson writes non-finite floats as quoted strings.
		switch x {
		case "NaN":
			return math.NaN(), nil
		case "Infinity":
			return math.Inf(1), nil
		case "-Infinity":
			return math.Inf(-1), nil
		}
	}
	return 0, fieldErr(path, show(v), "want a float")
}

func bytesOf(path string, v any) ([]byte, error) {
	switch x := v.(type) {
	case []byte:
		return x, nil
	case string:
		b, err := base64.StdEncoding.DecodeString(x)
		if err != nil {
			return nil, wrapErr(path, show(x), err)
		}
		return b, nil
	}
	return nil, fieldErr(path, show(v), "want base64 text")
}

func jsonText(path, s string) (any, error) {
	if !json.Valid([]byte(s)) {
		return nil, fieldErr(path, show(s), "not JSON")
	}
	return json.RawMessage(s), nil
}

// ---- decimals

// maxScale bounds decimal scales: PostgreSQL allows −1000 to 1000.
const maxScale = 1000

func decimalValue(path string, s *connectSchema, v any) (any, error) {
	ss, ok := s.Params["scale"]
	if !ok {
		return nil, fieldErr(path, "", "the Decimal schema has no scale parameter")
	}
	scale, err := strconv.Atoi(ss)
	if err != nil || scale < -maxScale || scale > maxScale {
		return nil, fieldErr(path, strconv.Quote(ss), "bad Decimal scale parameter")
	}
	if n, ok := v.(json.Number); ok { // JsonConverter decimal.format=NUMERIC
		return decimalText(path, string(n), scale)
	}
	b, err := bytesOf(path, v)
	if err != nil {
		return nil, err
	}
	return decimalBytes(path, b, scale)
}

func variableScale(path string, v any) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fieldErr(path, show(v), "want {scale, value}")
	}
	scale, err := intOf(path+".scale", m["scale"])
	if err != nil {
		return nil, err
	}
	if scale < -maxScale || scale > maxScale {
		return nil, fieldErr(path+".scale", strconv.FormatInt(scale, 10), "out of range")
	}
	b, err := bytesOf(path+".value", m["value"])
	if err != nil {
		return nil, err
	}
	return decimalBytes(path+".value", b, int(scale))
}

// decimalBytes reads Java's BigInteger.toByteArray (big-endian two's
// complement) as the unscaled value U: the decimal U × 10^−scale.
func decimalBytes(path string, b []byte, scale int) (*apd.Decimal, error) {
	if len(b) == 0 {
		return nil, fieldErr(path, "0 bytes", "an unscaled decimal has at least one byte")
	}
	var u big.Int
	u.SetBytes(b)
	if b[0]&0x80 != 0 {
		u.Sub(&u, new(big.Int).Lsh(big.NewInt(1), uint(len(b))*8))
	}
	var coeff apd.BigInt
	coeff.SetMathBigInt(&u)
	return apd.NewWithBigInt(&coeff, int32(-scale)), nil
}

// decimalText reads decimal text exactly; with fewer fraction digits than
// scale it is padded to scale (39 with scale 2 is 39.00).
func decimalText(path, s string, scale int) (*apd.Decimal, error) {
	d, _, err := apd.NewFromString(s)
	if err != nil || d.Form != apd.Finite {
		return nil, fieldErr(path, strconv.Quote(s), "not a decimal number")
	}
	if shift := int64(d.Exponent) + int64(scale); shift > 0 && shift <= 2*maxScale {
		var mul apd.BigInt
		mul.Exp(apd.NewBigInt(10), apd.NewBigInt(shift), nil)
		d.Coeff.Mul(&d.Coeff, &mul)
		d.Exponent = int32(-scale)
	}
	return d, nil
}

// ---- time

// Debezium's values for PostgreSQL's ±infinity timestamps
// (PGStatement.DATE_POSITIVE_INFINITY and its LocalDateTime).
const (
	infinityMicros    = 9223372036825200000
	negInfinityMicros = -9223372036832400000
)

func epochDays(path string, v any) (any, error) {
	n, err := intOf(path, v)
	if err != nil {
		return nil, err
	}
	if n < math.MinInt32 || n > math.MaxInt32 {
		return nil, fieldErr(path, strconv.FormatInt(n, 10), "days out of range for a date")
	}
	return time.Unix(n*86400, 0).UTC(), nil
}

func wallClock(path string, v any, unit time.Duration) (any, error) {
	n, err := intOf(path, v)
	if err != nil {
		return nil, err
	}
	switch unit {
	case time.Millisecond:
		switch n {
		case infinityMicros / 1000:
			return change.PosInfinity, nil
		case negInfinityMicros / 1000:
			return change.NegInfinity, nil
		}
		return time.UnixMilli(n).UTC(), nil
	case time.Microsecond:
		switch n {
		case infinityMicros:
			return change.PosInfinity, nil
		case negInfinityMicros:
			return change.NegInfinity, nil
		}
		return time.UnixMicro(n).UTC(), nil
	}
	switch n {
	case math.MaxInt64:
		return change.PosInfinity, nil
	case math.MinInt64:
		return change.NegInfinity, nil
	}
	return time.Unix(0, n).UTC(), nil
}

// timeOfDay renders a time since midnight as PostgreSQL prints a time:
// HH:MM:SS and the fraction without trailing zeros. 24:00:00 is allowed.
func timeOfDay(path string, v any, unit time.Duration) (any, error) {
	n, err := intOf(path, v)
	if err != nil {
		return nil, err
	}
	if n < 0 || n > int64(24*time.Hour/unit) {
		return nil, fieldErr(path, strconv.FormatInt(n, 10), "out of range for a time of day")
	}
	ns := n * int64(unit)
	sec := ns / 1e9
	b := make([]byte, 0, 18)
	b = append(b, byte('0'+sec/36000), byte('0'+sec/3600%10), ':',
		byte('0'+sec/600%6), byte('0'+sec/60%10), ':', byte('0'+sec%60/10), byte('0'+sec%10))
	if frac := ns % 1e9; frac != 0 {
		f := strconv.FormatInt(1e9+frac, 10)[1:]
		b = append(b, '.')
		b = append(b, strings.TrimRight(f, "0")...)
	}
	return string(b), nil
}

func micros(path string, v any) (any, error) {
	n, err := intOf(path, v)
	if err != nil {
		return nil, err
	}
	if n > math.MaxInt64/1000 || n < math.MinInt64/1000 {
		return nil, fieldErr(path, strconv.FormatInt(n, 10), "interval overflows time.Duration (±292 years)")
	}
	return time.Duration(n) * time.Microsecond, nil
}

func timestampText(path string, v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fieldErr(path, show(v), "want ISO-8601 text")
	}
	if inf, ok := change.ParseInfinity(s); ok {
		return inf, nil
	}
	t, err := parseTimestamp(s)
	if err != nil {
		return nil, wrapErr(path, strconv.Quote(s), err)
	}
	return t, nil
}

func dateText(path string, v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fieldErr(path, show(v), "want an ISO-8601 date")
	}
	if inf, ok := change.ParseInfinity(s); ok {
		return inf, nil
	}
	t, err := parseDate(s)
	if err != nil {
		return nil, wrapErr(path, strconv.Quote(s), err)
	}
	return t, nil
}

type timeSyntaxError string

func (e timeSyntaxError) Error() string { return string(e) }

// isoScanner reads the ISO-8601 forms Java's ISO_OFFSET_DATE_TIME and
// ISO_LOCAL_DATE_TIME print.
type isoScanner struct {
	s   string
	i   int
	bad bool
}

func (p *isoScanner) digits(min, max int) int {
	start, n := p.i, 0
	for p.i < len(p.s) && p.i-start < max && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		n = n*10 + int(p.s[p.i]-'0')
		p.i++
	}
	if p.i-start < min {
		p.bad = true
	}
	return n
}

func (p *isoScanner) lit(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *isoScanner) must(c byte) {
	if !p.lit(c) {
		p.bad = true
	}
}

// date reads [±]YYYY[Y…]-MM-DD.
func (p *isoScanner) date() (year, month, day int) {
	neg := false
	if p.lit('-') {
		neg = true
	} else {
		p.lit('+')
	}
	year = p.digits(4, 9)
	if neg {
		year = -year
	}
	p.must('-')
	month = p.digits(2, 2)
	p.must('-')
	day = p.digits(2, 2)
	if month < 1 || month > 12 || day < 1 || day > daysIn(year, month) {
		p.bad = true
	}
	return year, month, day
}

// offset reads Z, ±hh, ±hh:mm, ±hhmm or ±hh:mm:ss; none is UTC.
func (p *isoScanner) offset() int {
	if p.i == len(p.s) || p.lit('Z') {
		return 0
	}
	sign := 1
	if p.lit('-') {
		sign = -1
	} else if !p.lit('+') {
		p.bad = true
		return 0
	}
	h := p.digits(2, 2)
	var m, s int
	if p.lit(':') {
		m = p.digits(2, 2)
		if p.lit(':') {
			s = p.digits(2, 2)
		}
	} else if p.i < len(p.s) {
		m = p.digits(2, 2)
	}
	if h > 18 || m > 59 || s > 59 {
		p.bad = true
	}
	return sign * (h*3600 + m*60 + s)
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// parseTimestamp reads ISO-8601 date-time text as Debezium writes it: a
// year of four or more digits, possibly signed, 0–9 fraction digits and an
// offset (Z, ±hh:mm), and returns the UTC instant. Text without an offset
// is a wall clock, returned as that wall clock in UTC.
func parseTimestamp(s string) (time.Time, error) {
	p := isoScanner{s: s}
	year, month, day := p.date()
	if !p.lit('T') {
		p.must(' ')
	}
	hour := p.digits(2, 2)
	p.must(':')
	minute := p.digits(2, 2)
	var sec, nanos int
	if p.lit(':') {
		sec = p.digits(2, 2)
		if p.lit('.') {
			start := p.i
			nanos = p.digits(1, 9)
			for range 9 - (p.i - start) {
				nanos *= 10
			}
		}
	}
	off := p.offset()
	if p.bad || p.i != len(s) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, timeSyntaxError("not an ISO-8601 timestamp")
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nanos, time.UTC)
	return t.Add(-time.Duration(off) * time.Second), nil
}

// parseDate reads an ISO-8601 date, with an offset that is ignored
// (IsoDate writes 2016-11-04Z).
func parseDate(s string) (time.Time, error) {
	p := isoScanner{s: s}
	year, month, day := p.date()
	p.offset()
	if p.bad || p.i != len(s) {
		return time.Time{}, timeSyntaxError("not an ISO-8601 date")
	}
	return time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC), nil
}

// ---- declared PostgreSQL types (schemaless values)

// pgType is a declared column type, reduced to what decoding needs.
type pgType struct {
	kind      string // bool, bits, int, float, numeric, money, date, time, timestamp, timestamptz, interval, json, bytea, text
	array     bool
	precision int // -1 when not declared
	scale     int // -1 when not declared
}

// parsePGType reads a type as PostgreSQL prints it: "numeric(10,2)",
// "timestamp(3) without time zone", "int4[]", "_int4", "character varying".
func parsePGType(decl string) pgType {
	t := pgType{precision: -1, scale: -1}
	s := strings.ToLower(strings.TrimSpace(decl))
	for strings.HasSuffix(s, "[]") {
		s, t.array = strings.TrimSpace(strings.TrimSuffix(s, "[]")), true
	}
	if strings.HasPrefix(s, "_") {
		s, t.array = s[1:], true
	}
	if open := strings.IndexByte(s, '('); open >= 0 {
		if end := strings.IndexByte(s[open:], ')'); end > 0 {
			mods := strings.Split(s[open+1:open+end], ",")
			if n, err := strconv.Atoi(strings.TrimSpace(mods[0])); err == nil {
				t.precision = n
			}
			if len(mods) > 1 {
				if n, err := strconv.Atoi(strings.TrimSpace(mods[1])); err == nil {
					t.scale = n
				}
			}
			s = strings.Join(strings.Fields(s[:open]+" "+s[open+end+1:]), " ")
		}
	}
	switch s {
	case "bool", "boolean":
		t.kind = "bool"
	case "bit", "bit varying", "varbit":
		t.kind = "bits"
		if t.precision == 1 || (t.precision < 0 && s == "bit") {
			t.kind = "bool" // BIT(1) and BIT VARYING(1) are booleans
		}
	case "int2", "smallint", "smallserial", "serial2", "int4", "int", "integer", "serial", "serial4",
		"int8", "bigint", "bigserial", "serial8", "oid":
		t.kind = "int"
	case "float4", "real", "float8", "float", "double precision":
		t.kind = "float"
	case "numeric", "decimal":
		t.kind = "numeric"
	case "money":
		t.kind, t.scale = "money", 2
	case "date":
		t.kind = "date"
	case "time", "time without time zone":
		t.kind = "time"
	case "timestamp", "timestamp without time zone":
		t.kind = "timestamp"
	case "timestamptz", "timestamp with time zone":
		t.kind = "timestamptz"
	case "interval":
		t.kind = "interval"
	case "json", "jsonb", "hstore":
		t.kind = "json"
	case "bytea":
		t.kind = "bytea"
	default:
		t.kind = "text" // text, varchar, uuid, timetz, xml, inet, enums, …: as the JSON has it
	}
	return t
}

// typed decodes a schemaless value of a declared type as Debezium's
// default settings encode it.
func (c *conv) typed(path string, t pgType, v any, depth int) (any, error) {
	if v == nil {
		return nil, nil
	}
	if t.array {
		a, ok := v.([]any)
		if !ok {
			return nil, fieldErr(path, show(v), "want an array")
		}
		if depth > maxSchemaDepth {
			return nil, fieldErr(path, "", "nests deeper than %d levels", maxSchemaDepth)
		}
		elem := t
		elem.array = false
		out := make([]any, len(a))
		for i, e := range a {
			var err error
			if out[i], err = c.typed(path+"["+strconv.Itoa(i)+"]", elem, e, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	switch t.kind {
	case "bool":
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, fieldErr(path, show(v), "want a boolean")
	case "bits", "bytea":
		return bytesOf(path, v)
	case "int":
		return intOf(path, v)
	case "float":
		return floatOf(path, v)
	case "numeric", "money":
		switch x := v.(type) {
		case json.Number: // decimal.handling.mode=double, or decimal.format=NUMERIC
			d, _, err := apd.NewFromString(string(x))
			if err != nil {
				return nil, wrapErr(path, x.String(), err)
			}
			return d, nil
		case map[string]any:
			return variableScale(path, x)
		case string:
			if c.stringDecimal {
				if x == "NAN" || x == "NaN" {
					return x, nil
				}
				return decimalText(path, x, 0)
			}
			if x == "NaN" || x == "Infinity" || x == "-Infinity" {
				return floatOf(path, x) // decimal.handling.mode=double: Jackson quotes non-finite doubles
			}
			if t.scale < 0 {
				return nil, fieldErr(path, show(x), "a base64 decimal needs its scale: declare the column as numeric(p,s) in ColumnTypes")
			}
			b, err := bytesOf(path, x)
			if err != nil {
				return nil, err
			}
			return decimalBytes(path, b, t.scale)
		}
		return nil, fieldErr(path, show(v), "want a decimal")
	case "date":
		if s, ok := v.(string); ok {
			return dateText(path, s)
		}
		return epochDays(path, v)
	case "time":
		if s, ok := v.(string); ok {
			return s, nil
		}
		if t.precision >= 0 && t.precision <= 3 {
			return timeOfDay(path, v, time.Millisecond)
		}
		return timeOfDay(path, v, time.Microsecond)
	case "timestamp":
		if s, ok := v.(string); ok {
			return timestampText(path, s)
		}
		if t.precision >= 0 && t.precision <= 3 {
			return wallClock(path, v, time.Millisecond)
		}
		return wallClock(path, v, time.Microsecond)
	case "timestamptz":
		return timestampText(path, v)
	case "interval":
		if s, ok := v.(string); ok {
			return s, nil // interval.handling.mode=string
		}
		return micros(path, v)
	case "json":
		if s, ok := v.(string); ok {
			return jsonText(path, s)
		}
		return marshalRaw(path, v) // hstore.handling.mode=map
	}
	return plain(path, v, depth)
}
