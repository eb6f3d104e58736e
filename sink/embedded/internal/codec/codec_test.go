package codec

import (
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	values := []any{
		nil, true, false, int64(0), int64(-1 << 62), 3.25, "", "héllo", []byte{0, 1},
		[]any{int64(1), "a", []any{}},
		map[any]any{int64(5): map[any]any{"n": int64(2), "s:amount": "12.50"}, "x": nil},
	}
	for _, v := range values {
		b, err := Append(nil, v)
		if err != nil {
			t.Fatalf("Append(%#v): %v", v, err)
		}
		got, rest, err := Decode(b)
		if err != nil || len(rest) != 0 {
			t.Fatalf("Decode(%#v): %v, rest %d", v, err, len(rest))
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("round trip: got %#v want %#v", got, v)
		}
	}
}

func TestLargeMapRoundTrip(t *testing.T) {
	t.Parallel()
	m := map[any]any{}
	for i := int64(0); i < 1000; i++ {
		m[i] = i
		m[string(rune('a'+i%26))+"k"] = i
	}
	b, err := Append(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	got, rest, err := Decode(b)
	if err != nil || len(rest) != 0 || !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip of a large map: %v, rest %d", err, len(rest))
	}
}

func TestRejects(t *testing.T) {
	t.Parallel()
	if _, err := Append(nil, int(3)); err == nil {
		t.Error("int accepted; only int64 is a bin value")
	}
	if _, err := Append(nil, map[any]any{1.5: int64(1)}); err == nil {
		t.Error("float map key accepted")
	}
}

// FuzzDecode: Decode never panics and never allocates without bound on
// arbitrary bytes; whatever it accepts re-encodes to an equal value.
func FuzzDecode(f *testing.F) {
	seed, _ := Append(nil, map[any]any{int64(1): []any{"a", 2.5, nil}})
	f.Add(seed)
	f.Add([]byte{tList, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, _, err := Decode(b)
		if err != nil {
			return
		}
		enc, err := Append(nil, v)
		if err != nil {
			t.Fatalf("decoded value does not re-encode: %v", err)
		}
		v2, _, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		enc2, _ := Append(nil, v2)
		if len(enc) != len(enc2) { // maps encode in map order; lengths agree
			t.Fatal("re-encoding differs in length")
		}
	})
}
