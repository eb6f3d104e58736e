package transform

import (
	"fmt"
	"testing"
	"time"
)

// TestTimeKey: timeKey reads exactly the keys encodeValue writes for
// times, before 1970 and after 9999 too, and nothing else; ordering by it
// is ordering by time.
func TestTimeKey(t *testing.T) {
	times := []time.Time{time.Date(-44, 3, 15, 12, 0, 0, 1, time.UTC), time.Unix(-1, 999999999).UTC(), time.Unix(0, 0).UTC(),
		time.Date(2026, 12, 8, 1, 2, 3, 456789000, time.UTC), time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)}
	for i, tm := range times {
		k, err := encodeValue(tm)
		if err != nil {
			t.Fatal(err)
		}
		sec, ns, ok := timeKey(k)
		if !ok || !time.Unix(sec, ns).Equal(tm) {
			t.Errorf("%s: %q read as %d.%d, %v", tm, k, sec, ns, ok)
		}
		if i > 0 {
			ps, pn, _ := timeKey(mustEncode(t, times[i-1]))
			if ps > sec || (ps == sec && pn >= ns) {
				t.Errorf("%s does not order after %s", tm, times[i-1])
			}
		}
	}
	for _, k := range []string{"t:infinity", "t:-infinity", "t:.000000000", "t:-.000000000", "t:12.00000000", "t:1a.000000000", "i:1.000000000", "t:99999999999999999999.000000000"} {
		if _, _, ok := timeKey(k); ok {
			t.Errorf("%q read as a time", k)
		}
	}
}

func mustEncode(t *testing.T, v any) string {
	t.Helper()
	k, err := encodeValue(v)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestEncodable: encodable refuses what encodeValue refuses, with the
// same error.
func TestEncodable(t *testing.T) {
	for _, v := range []any{int64(1), 0.5, "s", true, []byte{1}, time.Now(), []any{int64(1), nil, []any{"x"}}, struct{}{}, []any{int64(1), map[string]int{}}, int32(3)} {
		_, want := encodeValue(v)
		got := encodable(v)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%T: encodable %v, encodeValue %v", v, got, want)
		}
	}
}
