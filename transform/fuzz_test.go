package transform

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/config"
)

// FuzzValueRoundTrip checks the multiset key encoding. Invariant: for
// every value an aggregate can hold, decodeValue(encodeValue(v)) has v's
// type and value, and encoding the decoded value gives the same key (keys
// are canonical, so equal values share one multiset entry).
func FuzzValueRoundTrip(f *testing.F) {
	f.Add(byte(0), int64(42), 0.0, "")
	f.Add(byte(1), int64(0), 0.0, "12.50")
	f.Add(byte(1), int64(0), 0.0, "-0.000")
	f.Add(byte(1), int64(0), 0.0, "1E+5")
	f.Add(byte(1), int64(0), 0.0, "NaN")
	f.Add(byte(1), int64(0), 0.0, "-Infinity")
	f.Add(byte(2), int64(0), 0.1, "")
	f.Add(byte(2), int64(0), math.Copysign(0, -1), "")
	f.Add(byte(2), int64(0), math.Inf(1), "")
	f.Add(byte(2), int64(0), 1e300, "")
	f.Add(byte(3), int64(0), 0.0, "a|b:c\x00\xff")
	f.Add(byte(4), int64(1795000000123456789), 0.0, "")
	f.Add(byte(4), int64(-62135596800000000), 0.0, "")
	f.Add(byte(5), int64(1), 0.0, "")
	f.Add(byte(6), int64(0), 0.0, "\x00\x01")
	f.Add(byte(7), int64(0), 0.0, `{"a": [1, 2]}`)
	f.Add(byte(8), int64(math.MinInt64), 0.0, "")
	f.Add(byte(8), int64(5400000000000), 0.0, "")
	f.Fuzz(func(t *testing.T, kind byte, i int64, fl float64, s string) {
		var v any
		switch kind % 9 {
		case 0:
			v = i
		case 1:
			d, _, err := apd.NewFromString(s)
			if err != nil || d.Exponent > 1000 || d.Exponent < -1000 || d.NumDigits() > 1000 {
				return
			}
			v = d
		case 2:
			v = fl
		case 3:
			v = s
		case 4:
			// Nanoseconds since 1970: the years 1677-2262.
			v = time.Unix(0, i).UTC()
		case 5:
			v = i%2 == 0
		case 6:
			v = []byte(s)
		case 7:
			v = json.RawMessage(s)
		case 8:
			v = time.Duration(i)
		}
		key, err := encodeValue(v)
		if err != nil {
			t.Fatalf("encodeValue(%#v): %v", v, err)
		}
		back, err := decodeValue(key)
		if err != nil {
			t.Fatalf("decodeValue(%q) (from %#v): %v", key, v, err)
		}
		if reflect.TypeOf(back) != reflect.TypeOf(v) {
			t.Fatalf("%q decodes to a %T, want %T", key, back, v)
		}
		again, err := encodeValue(back)
		if err != nil || again != key {
			t.Fatalf("re-encoding %#v gives %q, %v; want %q", back, again, err, key)
		}
		switch x := v.(type) {
		case *apd.Decimal:
			b := back.(*apd.Decimal)
			if x.Form == apd.Finite && b.Cmp(x) != 0 {
				t.Fatalf("%s decodes to %s", x, b)
			}
			if x.Form != b.Form {
				t.Fatalf("%s decodes to %s (form %v, want %v)", x, b, b.Form, x.Form)
			}
		case float64:
			b := back.(float64)
			if math.Float64bits(b) != math.Float64bits(x) && !(math.IsNaN(x) && math.IsNaN(b)) {
				t.Fatalf("%v decodes to %v", x, b)
			}
		case time.Time:
			if !back.(time.Time).Equal(x) {
				t.Fatalf("%v decodes to %v", x, back)
			}
		case []byte:
			if !bytes.Equal(back.([]byte), x) {
				t.Fatalf("%x decodes to %x", x, back)
			}
		default:
			if !reflect.DeepEqual(back, v) {
				t.Fatalf("%#v decodes to %#v", v, back)
			}
		}
		if c := compareValues(v, back); c != 0 && !isNaN(v) {
			t.Fatalf("compareValues(%#v, its round trip) = %d", v, c)
		}
	})
}

func isNaN(v any) bool {
	switch x := v.(type) {
	case float64:
		return math.IsNaN(x)
	case *apd.Decimal:
		return x.Form == apd.NaN || x.Form == apd.NaNSignaling
	}
	return false
}

// FuzzDecodeState feeds DecodeState bins built from arbitrary bytes, shaped
// like records (tile maps, accumulators, multisets) but with any content.
// Invariants: DecodeState never panics; a state it accepts encodes to bins
// that decode to the same bins again; and reading any accepted state
// never panics.
func FuzzDecodeState(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("\x04\x03\x02\x01\x00\x05\x06\x07\x08tile\x03\x03\x03"))
	f.Add(bytes.Repeat([]byte{5, 3, 1, 2, 7}, 20))
	eng, err := Compile([]config.Feature{{Name: "g", Table: "public.t", Entity: []string{"id"}, Time: "at",
		Project: []string{"a"},
		Aggregations: []config.Aggregation{
			{Name: "n", Function: "count", Window: "10m", Tile: "10s"},
			{Name: "na", Function: "count", Column: "a", Window: "1h", Tile: "1m"},
			{Name: "s", Function: "sum", Column: "a"},
			{Name: "avg", Function: "avg", Column: "a", Window: "10m", Tile: "10s"},
			{Name: "min", Function: "min", Column: "a"},
			{Name: "max", Function: "max", Column: "a", Window: "1h", Tile: "1m"},
			{Name: "d", Function: "distinct", Column: "a"},
			{Name: "dsl", Function: "days_since_last", Column: "a"},
			{Name: "first", Function: "first", Column: "a"},
			{Name: "last", Function: "last", Column: "a", Window: "10m", Tile: "10s"},
		}}})
	if err != nil {
		f.Fatal(err)
	}
	g := eng.Group("g")
	f.Fuzz(func(t *testing.T, data []byte) {
		b := &binBuilder{data: data}
		bins := map[string]any{}
		for n := b.next() % 8; n > 0; n-- {
			bins[b.pick(binNames)] = b.value(0)
		}
		st, err := DecodeState(bins)
		if err != nil {
			return
		}
		enc := st.Bins()
		st2, err := DecodeState(enc)
		if err != nil {
			t.Fatalf("DecodeState(Bins()) of an accepted state: %v\nbins %v", err, enc)
		}
		if again := st2.Bins(); !reflect.DeepEqual(again, enc) {
			t.Fatalf("bins change on a second round trip:\n%v\n%v", enc, again)
		}
		for _, now := range []time.Time{time.Unix(0, 0), time.Unix(65, 0), time.Unix(-3600, 0)} {
			_ = g.Read(st, now)
		}
	})
}

var (
	binNames   = []string{"_lsn", "_ord", "_ts", "_key", "_t10", "_t60", "_tlife", "_t", "_tx", "_new", "a", "b"}
	entryNames = []string{"n", "c:a", "s:a", "v:a", "l:a", "c:", "s:", "v:", "x"}
	valueKeys  = []string{"i:1", "i:x", "d:2.5", "d:NaN", "f:0.1", "s:a", "s:", "t:1970-01-01T00:01:00Z", "t:bad", "b:true",
		"x:00", "x:0", "j:{}", "v:1s", "q:1", "", "i", "09223372036854775808|i:5", "09223372036854775868|s:z", "0|d:1", "x|y"}
	stringValues = []string{"", "0", "1.5", "-1E+3", "abc", "NaN", "Infinity", "12.50"}
)

// binBuilder turns bytes into bin values, each choice one byte.
type binBuilder struct {
	data []byte
	i    int
}

func (b *binBuilder) next() byte {
	if b.i >= len(b.data) {
		return 0
	}
	c := b.data[b.i]
	b.i++
	return c
}

func (b *binBuilder) pick(list []string) string { return list[int(b.next())%len(list)] }

func (b *binBuilder) int() int64 {
	switch b.next() % 5 {
	case 0:
		return 0
	case 1:
		return int64(b.next()) * 10
	case 2:
		return -int64(b.next()) * 10
	case 3:
		return int64(b.next()) * 60
	}
	return math.MaxInt64 - int64(b.next())
}

func (b *binBuilder) value(depth int) any {
	kind := b.next() % 7
	if depth > 3 && kind >= 4 {
		kind = 0
	}
	switch kind {
	case 0:
		return b.int()
	case 1:
		return b.pick(stringValues)
	case 2:
		list := []any{}
		for n := b.next() % 3; n > 0; n-- {
			list = append(list, b.pick(stringValues))
		}
		return list
	case 3:
		return b.pick(valueKeys)
	case 4:
		// A scale: tile start → tile.
		m := map[any]any{}
		for n := b.next() % 3; n > 0; n-- {
			m[b.int()] = b.value(depth + 1)
		}
		return m
	case 5:
		// A tile: accumulator name → count, sum text or multiset.
		m := map[any]any{}
		for n := b.next() % 5; n > 0; n-- {
			m[b.pick(entryNames)] = b.value(depth + 1)
		}
		return m
	}
	// A multiset: tagged value → multiplicity.
	m := map[any]any{}
	for n := b.next() % 4; n > 0; n-- {
		m[b.pick(valueKeys)] = b.int()
	}
	return m
}

// TestValueEncodingIsCanonical pins the tags and the canonical forms that
// make equal values share a multiset entry.
func TestValueEncodingIsCanonical(t *testing.T) {
	t.Parallel()
	cases := []struct {
		v    any
		want string
	}{
		{int64(-3), "i:-3"},
		{dec("12.50"), "d:12.5"},
		{dec("1.2E+3"), "d:1200"},
		{dec("-0.00"), "d:0"}, // negative zero is zero
		{0.1, "f:0.1"},
		{1e21, "f:1e+21"},
		{"a|b", "s:a|b"},
		{time.Date(2026, 11, 22, 4, 0, 0, 0, time.FixedZone("x", 3600)), "t:1795316400.000000000"},
		{true, "b:true"},
		{[]byte{0, 255}, "x:00ff"},
		{json.RawMessage(`[1]`), "j:[1]"},
		{90 * time.Second, "v:1m30s"},
	}
	for _, tc := range cases {
		got, err := encodeValue(tc.v)
		if err != nil || got != tc.want {
			t.Errorf("encodeValue(%#v) = %q, %v; want %q", tc.v, got, err, tc.want)
		}
	}
	for _, v := range []any{nil, []any{1}, map[string]any{}, int32(1), struct{}{}} {
		if _, err := encodeValue(v); err == nil {
			t.Errorf("encodeValue(%#v) succeeded", v)
		}
	}
	for _, s := range []string{"", "i", "i42", "z:1", "i:x", "t:yesterday", "x:0g", "v:forever", "b:maybe"} {
		if _, err := decodeValue(s); err == nil {
			t.Errorf("decodeValue(%q) succeeded", s)
		}
	}
	if !strings.HasPrefix(timedKey(-1, "i:1"), "09223372036854775807|") || timedKey(-1, "i:1") >= timedKey(0, "i:1") {
		t.Errorf("timed keys do not sort negative times first: %q %q", timedKey(-1, "i:1"), timedKey(0, "i:1"))
	}
}

// TestTimesOutsideYears0To9999 covers timestamps PostgreSQL has and
// RFC 3339 does not: years after 9999 and before 1. They must round-trip
// through the multiset encoding, or min/max/first/last would skip them.
func TestTimesOutsideYears0To9999(t *testing.T) {
	t.Parallel()
	for _, tm := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-44, 3, 15, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC)} {
		key, err := encodeValue(tm)
		if err != nil {
			t.Fatalf("encode %v: %v", tm, err)
		}
		got, err := decodeValue(key)
		if err != nil || !got.(time.Time).Equal(tm) {
			t.Errorf("%v encodes as %q and decodes as %v, %v", tm, key, got, err)
		}
	}
}
