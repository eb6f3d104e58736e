package transform

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/apd/v3"
)

// TestCmpDecText: plain number keys compared as text order as their
// numbers do (apd.Decimal.Cmp), over ints and decimals of every sign,
// with leading and trailing zeros and zeros of both signs.
func TestCmpDecText(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var keys []string
	for _, k := range []string{"i:0", "d:0", "d:-0", "d:0.000", "d:-0.0", "i:-1", "d:1.0", "d:1", "d:0.1", "d:0.10", "d:-0.01", "d:007.5", "i:10", "d:9.99"} {
		keys = append(keys, k)
	}
	for range 400 {
		v := apd.New(rng.Int64N(2_000_001)-1_000_000, -rng.Int32N(6))
		if rng.IntN(3) == 0 {
			keys = append(keys, "i:"+fmt.Sprint(rng.Int64N(2001)-1000))
			continue
		}
		k, err := encodeValue(v)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	for _, a := range keys {
		for _, b := range keys {
			ta, oka := numText(a)
			tb, okb := numText(b)
			if !oka || !okb {
				t.Fatalf("numText refused %q or %q", a, b)
			}
			da, _, _ := apd.NewFromString(ta)
			db, _, _ := apd.NewFromString(tb)
			if got, want := cmpDecText(ta, tb), da.Cmp(db); got != want {
				t.Fatalf("cmpDecText(%s, %s) = %d, apd says %d", ta, tb, got, want)
			}
		}
	}
	for _, k := range []string{"d:NaN", "d:Infinity", "d:-Infinity", "d:1E+3", "f:1.5", "s:12", "i:", "d:-", "d:1.", "d:.5", "d:1.2.3", "i:1-2"} {
		if _, ok := numText(k); ok {
			t.Errorf("numText accepted %q", k)
		}
	}
}
