package debeziumtest

import (
	"crypto/md5"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
)

// Debezium's values for PostgreSQL's ±infinity timestamps: PgJDBC's
// PGStatement.DATE_POSITIVE_INFINITY and DATE_NEGATIVE_INFINITY as µs
// (PostgresValueConverter.POSITIVE_INFINITY_LOCAL_DATE_TIME), ms for
// Timestamp and Long.MAX_VALUE / MIN_VALUE for NanoTimestamp.
const (
	infinityMicros    = 9223372036825200000
	negInfinityMicros = -9223372036832400000
)

// value converts a pgoutput value (change.Row's types) of a column of type
// ti into the Connect value Debezium writes for it.
func (e *Encoder) value(ti typeInfo, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	if v == change.Unchanged {
		return e.placeholder(ti)
	}
	if !ti.array {
		return e.scalar(ti, v)
	}
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("want []any for a %s[], got %T", ti.name, v)
	}
	elem := ti
	elem.array = false
	out := make([]any, len(a))
	for i, x := range a {
		var err error
		if x != nil {
			if out[i], err = e.scalar(elem, x); err != nil {
				return nil, fmt.Errorf("element %d: %w", i+1, err)
			}
		}
	}
	return out, nil
}

func want(ti typeInfo, v any) error {
	return fmt.Errorf("a %s value as pgoutput decodes it, not %T %v", ti.name, v, v)
}

func (e *Encoder) scalar(ti typeInfo, v any) (any, error) {
	switch ti.kind {
	case kBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case kInt16, kInt32, kInt64:
		if n, ok := v.(int64); ok {
			return n, nil
		}
	case kFloat32:
		if f, ok := v.(float64); ok {
			return float32(f), nil
		}
	case kFloat64:
		if f, ok := v.(float64); ok {
			return f, nil
		}
	case kNumeric:
		if d, ok := v.(*apd.Decimal); ok {
			return e.decimal(ti, d)
		}
	case kMoney:
		switch x := v.(type) {
		case string:
			d, err := parseMoney(x)
			if err != nil {
				return nil, err
			}
			return e.decimal(ti, d)
		case *apd.Decimal:
			return e.decimal(ti, x)
		}
	case kText, kXML, kUUID, kEnum:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case kJSON:
		switch x := v.(type) {
		case json.RawMessage:
			return string(x), nil
		case string:
			return x, nil
		}
	case kBytea:
		if b, ok := v.([]byte); ok {
			return b, nil
		}
	case kDate:
		if t, ok := v.(time.Time); ok {
			return floorDiv(t.Unix(), 86400), nil
		}
		if inf, ok := v.(change.Infinity); ok {
			return nil, fmt.Errorf("%w: date %s", ErrUnrepresentable, inf)
		}
	case kTime:
		if s, ok := v.(string); ok {
			us, err := parseTimeOfDay(s)
			if err != nil {
				return nil, err
			}
			if e.scalarSchema(ti).typ == "int32" {
				return us / 1000, nil
			}
			return us, nil
		}
	case kTimeTZ:
		if s, ok := v.(string); ok {
			return zonedTime(s)
		}
	case kTimestamp:
		return e.timestamp(ti, v)
	case kTimestampTZ:
		switch x := v.(type) {
		case time.Time:
			return zonedTimestamp(x, timePrecision(ti.mod)), nil
		case change.Infinity:
			return x.String(), nil
		}
	case kInterval:
		switch x := v.(type) {
		case time.Duration:
			return int64(x / time.Microsecond), nil
		case string:
			return intervalMicros(x)
		}
	case kBits:
		if s, ok := v.(string); ok {
			return bits(ti, s)
		}
	}
	return nil, want(ti, v)
}

// ---- numbers

// decimal renders a numeric or money value per decimal.handling.mode
// (PostgresValueConverter.convertDecimal, SpecialValueDecimal.fromLogical).
func (e *Encoder) decimal(ti typeInfo, d *apd.Decimal) (any, error) {
	scale, constrained := 2, true
	if ti.kind == kNumeric {
		_, scale, constrained = numericMod(ti.mod)
	}
	switch e.opts.DecimalHandlingMode {
	case "double":
		switch d.Form {
		case apd.NaN, apd.NaNSignaling:
			return math.NaN(), nil
		case apd.Infinite:
			return math.Inf(map[bool]int{true: -1, false: 1}[d.Negative]), nil
		}
		f, err := d.Float64()
		return f, err
	case "string":
		switch d.Form {
		case apd.NaN, apd.NaNSignaling:
			return "NAN", nil
		case apd.Infinite:
			if d.Negative {
				return "NEGATIVE_INFINITY", nil
			}
			return "POSITIVE_INFINITY", nil
		}
		if constrained {
			var err error
			if d, err = rescale(d, scale); err != nil {
				return nil, err
			}
		}
		return d.Text('f'), nil
	}
	if d.Form != apd.Finite {
		// SpecialValueDecimal.fromLogical throws in precise mode.
		return nil, fmt.Errorf("%w: numeric %s in decimal.handling.mode=precise", ErrUnrepresentable, d)
	}
	if !constrained {
		// VariableScaleDecimal: trailing zeros stripped, scale at least 0.
		r := new(apd.Decimal)
		r.Reduce(d)
		if r.Exponent > 0 {
			var err error
			if r, err = rescale(r, 0); err != nil {
				return nil, err
			}
		}
		return map[string]any{"scale": int64(-r.Exponent), "value": unscaledBytes(r)}, nil
	}
	r, err := rescale(d, scale)
	if err != nil {
		return nil, err
	}
	return unscaledBytes(r), nil
}

// rescale sets d's scale (BigDecimal.setScale), failing if digits would
// be lost.
func rescale(d *apd.Decimal, scale int) (*apd.Decimal, error) {
	if int(-d.Exponent) == scale {
		return d, nil
	}
	r := new(apd.Decimal)
	c := apd.BaseContext.WithPrecision(1000)
	c.Traps = apd.DefaultTraps | apd.Inexact | apd.Rounded
	if _, err := c.Quantize(r, d, int32(-scale)); err != nil {
		return nil, fmt.Errorf("numeric %s at scale %d: %w", d, scale, err)
	}
	return r, nil
}

// unscaledBytes is Java's BigInteger.toByteArray of d's unscaled value:
// big-endian two's complement, minimal length.
func unscaledBytes(d *apd.Decimal) []byte {
	u := d.Coeff.MathBigInt()
	if d.Negative {
		u.Neg(u)
	}
	if u.Sign() >= 0 {
		b := u.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return b
	}
	// −u − 1 in ones' complement gives the two's complement of u.
	n := new(big.Int).Not(u) // = −u − 1 ≥ 0
	b := n.Bytes()
	for i := range b {
		b[i] = ^b[i]
	}
	if len(b) == 0 || b[0]&0x80 == 0 {
		b = append([]byte{0xff}, b...)
	}
	return b
}

// parseMoney reads money as PostgreSQL prints it with lc_monetary C:
// $1,234.11, -$1,234.11 (PostgresMoney.parse also takes ($1,234.11)).
func parseMoney(s string) (*apd.Decimal, error) {
	t := strings.TrimSpace(s)
	neg := false
	if strings.HasPrefix(t, "(") && strings.HasSuffix(t, ")") {
		neg, t = true, t[1:len(t)-1]
	}
	if strings.HasPrefix(t, "-") {
		neg, t = !neg, t[1:]
	}
	t = strings.ReplaceAll(strings.TrimPrefix(t, "$"), ",", "")
	d, _, err := apd.NewFromString(t)
	if err != nil || d.Form != apd.Finite {
		return nil, fmt.Errorf("money %q: not $digits.cents", s)
	}
	d.Negative = neg && !d.IsZero()
	return d, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// ---- time

func (e *Encoder) timestamp(ti typeInfo, v any) (any, error) {
	unit := e.scalarSchema(ti).name
	switch x := v.(type) {
	case time.Time:
		if unit == nameMicroTimestamp {
			return x.UnixMicro(), nil
		}
		return x.UnixMilli(), nil
	case change.Infinity:
		us := int64(infinityMicros)
		if x < 0 {
			us = negInfinityMicros
		}
		if unit == nameMicroTimestamp {
			return us, nil
		}
		return us / 1000, nil
	}
	return nil, want(ti, v)
}

// parseTimeOfDay reads HH:MM:SS[.ffffff] (24:00:00 included) as µs.
func parseTimeOfDay(s string) (int64, error) {
	hms, frac, _ := strings.Cut(s, ".")
	parts := strings.Split(hms, ":")
	if len(parts) != 3 {
		return 0, fmt.Errorf("time %q: want HH:MM:SS[.ffffff]", s)
	}
	var n [3]int64
	for i, p := range parts {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("time %q: want HH:MM:SS[.ffffff]", s)
		}
		n[i] = v
	}
	us := ((n[0]*60+n[1])*60 + n[2]) * 1e6
	if frac != "" {
		if len(frac) > 6 {
			return 0, fmt.Errorf("time %q: more than 6 fraction digits", s)
		}
		f, err := strconv.ParseInt((frac + "000000")[:6], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("time %q: bad fraction", s)
		}
		us += f
	}
	return us, nil
}

// zonedTime turns a timetz as PostgreSQL prints it (13:51:30.123789+02,
// …-03:30) into ZonedTime: the time at UTC, ISO_OFFSET_TIME (11:51:30.123789Z).
func zonedTime(s string) (string, error) {
	i := strings.LastIndexAny(s, "+-")
	if i < 0 {
		return "", fmt.Errorf("timetz %q: no offset", s)
	}
	us, err := parseTimeOfDay(s[:i])
	if err != nil {
		return "", err
	}
	sign := int64(1)
	if s[i] == '-' {
		sign = -1
	}
	var off int64
	for j, p := range strings.Split(s[i+1:], ":") {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil || j > 2 {
			return "", fmt.Errorf("timetz %q: bad offset", s)
		}
		off += v * []int64{3600, 60, 1}[j]
	}
	day := int64(86400e6)
	us = ((us-sign*off*1e6)%day + day) % day
	return isoTime(us*1000, -1) + "Z", nil
}

// isoTime prints nanoseconds of day as ISO_LOCAL_TIME does (fraction
// without trailing zeros) or, for width > 0, with exactly width digits.
func isoTime(ns int64, width int) string {
	sec := ns / 1e9
	s := fmt.Sprintf("%02d:%02d:%02d", sec/3600, sec/60%60, sec%60)
	frac := ns % 1e9
	if width > 0 && width <= 9 {
		return s + "." + fmt.Sprintf("%09d", frac)[:width]
	}
	if frac == 0 {
		return s
	}
	return s + "." + strings.TrimRight(fmt.Sprintf("%09d", frac), "0")
}

// zonedTimestamp is ZonedTimestamp.toIsoString at UTC: ISO_OFFSET_DATE_TIME
// with the fraction padded to the column's precision (6 by default), years
// beyond 9999 signed.
func zonedTimestamp(t time.Time, precision int) string {
	t = t.UTC()
	y := t.Year()
	var year string
	switch {
	case y > 9999:
		year = "+" + strconv.Itoa(y)
	case y < 0:
		year = fmt.Sprintf("-%04d", -y)
	default:
		year = fmt.Sprintf("%04d", y)
	}
	ns := int64(t.Hour()*3600+t.Minute()*60+t.Second())*1e9 + int64(t.Nanosecond())
	return fmt.Sprintf("%s-%02d-%02dT%sZ", year, t.Month(), t.Day(), isoTime(ns, precision))
}

// intervalMicros reads an interval as PostgreSQL prints it
// (IntervalStyle postgres: "1 year 2 mons 3 days 04:05:06.78", "-1 days
// -00:00:01") and computes MicroDuration as Debezium does, a month being
// 30.4375 days, in floating point (MicroDuration.durationMicros).
func intervalMicros(s string) (int64, error) {
	var years, months, days, hours, minutes, seconds float64
	f := strings.Fields(s)
	for i := 0; i < len(f); i++ {
		if strings.Contains(f[i], ":") {
			// PGInterval: hours and minutes integers, seconds a double.
			t := f[i]
			sign := 1.0
			if strings.HasPrefix(t, "-") {
				sign, t = -1, t[1:]
			}
			parts := strings.Split(strings.TrimPrefix(t, "+"), ":")
			if len(parts) != 3 {
				return 0, fmt.Errorf("interval %q: bad time part", s)
			}
			h, err1 := strconv.ParseFloat(parts[0], 64)
			m, err2 := strconv.ParseFloat(parts[1], 64)
			sc, err3 := strconv.ParseFloat(parts[2], 64)
			if err := errors.Join(err1, err2, err3); err != nil {
				return 0, fmt.Errorf("interval %q: %w", s, err)
			}
			hours, minutes, seconds = hours+sign*h, minutes+sign*m, seconds+sign*sc
			continue
		}
		if i+1 >= len(f) {
			return 0, fmt.Errorf("interval %q: a number without a unit", s)
		}
		n, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return 0, fmt.Errorf("interval %q: %w", s, err)
		}
		i++
		switch strings.TrimSuffix(f[i], "s") {
		case "year":
			years += n
		case "mon":
			months += n
		case "day":
			days += n
		default:
			return 0, fmt.Errorf("interval %q: unit %q", s, f[i])
		}
	}
	const daysPerMonth = 365.25 / 12
	numberOfDays := (years*12+months)*daysPerMonth + days
	numberOfSeconds := (((numberOfDays*24+hours)*60)+minutes)*60 + seconds
	return int64(numberOfSeconds * 1e6), nil
}

// ---- bits

// bits converts bit text ("101") as PostgresValueConverter.convertBits
// does: BIT(1) to a boolean, else the bits read as a binary number written
// little-endian in as few bytes as its highest set bit needs.
func bits(ti typeInfo, s string) (any, error) {
	for _, c := range s {
		if c != '0' && c != '1' {
			return nil, fmt.Errorf("bit string %q", s)
		}
	}
	if bitIsBool(ti) {
		return strings.Contains(s, "1"), nil
	}
	n := new(big.Int)
	n.SetString("0"+s, 2)
	be := n.Bytes()
	le := make([]byte, len(be))
	for i, b := range be {
		le[len(be)-1-i] = b
	}
	return le, nil
}

// ---- the unavailable-value placeholder

// ErrUnrepresentable marks a value Debezium itself cannot encode: it fails
// the event (NaN in precise mode, an unchanged TOAST value of a type with
// no placeholder form) or has no documented form (date ±infinity).
var ErrUnrepresentable = errors.New("debezium cannot represent the value")

// placeholder is the form Debezium gives the unavailable-value placeholder
// in a column of type ti (UnchangedToastedReplicationMessageColumn,
// UnchangedToastedPlaceholder, PostgresValueConverter).
func (e *Encoder) placeholder(ti typeInfo) (any, error) {
	ph := e.opts.UnavailablePlaceholder
	if ti.array {
		switch ti.kind {
		case kText, kJSON:
			if ti.name == "text" || ti.name == "varchar" || ti.name == "bpchar" || ti.kind == kJSON {
				return []any{ph}, nil
			}
		case kBytea:
			return []any{[]byte(ph)}, nil
		case kInt32, kInt64, kDate:
			if ti.kind == kInt64 && ti.name != "int8" {
				break
			}
			out := make([]any, len(ph))
			for i := range len(ph) {
				out[i] = int64(int8(ph[i])) // Java bytes are signed
			}
			return out, nil
		case kUUID:
			return []any{nameUUID3(ph)}, nil
		}
		return nil, fmt.Errorf("%w: an unchanged TOAST value of a %s[] column", ErrUnrepresentable, ti.name)
	}
	switch e.scalarSchema(ti).typ {
	case "string":
		return ph, nil
	case "bytes":
		if ti.kind == kBytea {
			return []byte(ph), nil
		}
	}
	return nil, fmt.Errorf("%w: an unchanged TOAST value of a %s column", ErrUnrepresentable, ti.name)
}

// nameUUID3 is Java's UUID.nameUUIDFromBytes.
func nameUUID3(s string) string {
	h := md5.Sum([]byte(s))
	h[6] = h[6]&0x0f | 0x30
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
