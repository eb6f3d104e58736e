package spill

import (
	"cmp"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

type rec struct {
	key   string
	order uint64 // the order it was added in
}

var codec = Codec[rec]{
	Compare: func(a, b rec) int { return cmp.Compare(a.key, b.key) },
	Size:    func(r rec) int { return len(r.key) + 24 },
	Append: func(b []byte, r rec) []byte {
		b = binary.AppendUvarint(b, r.order)
		return append(b, r.key...)
	},
	Decode: func(b []byte) (rec, error) {
		o, n := binary.Uvarint(b)
		if n <= 0 {
			return rec{}, errors.New("bad order")
		}
		return rec{key: string(b[n:]), order: o}, nil
	},
}

// TestSorter: whatever the budget (everything in memory, a few runs, a
// run per record), the records come back sorted, equal keys in the order
// they were added, none lost or repeated.
func TestSorter(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var in []rec
	for i := range 5000 {
		in = append(in, rec{key: string(rune('a' + r.IntN(20))), order: uint64(i)})
	}
	for _, tc := range []struct{ n, budget int }{{5000, 1 << 30}, {5000, 10_000}, {200, 1}} {
		in, budget := in[:tc.n], tc.budget
		want := slices.Clone(in)
		slices.SortStableFunc(want, codec.Compare)
		s := New(t.TempDir(), budget, codec)
		for _, v := range in {
			if err := s.Add(v); err != nil {
				t.Fatal(err)
			}
		}
		it, err := s.Merge()
		if err != nil {
			t.Fatal(err)
		}
		var got []rec
		for {
			v, ok, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			got = append(got, v)
		}
		if !slices.Equal(got, want) {
			t.Errorf("budget %d (%d runs): records out of order or lost (%d of %d back)", budget, s.Runs(), len(got), len(want))
		}
		if budget == 1 && s.Runs() != len(in) {
			t.Errorf("budget 1: %d runs, want one per record", s.Runs())
		}
		if s.Len() != int64(len(in)) {
			t.Errorf("Len %d", s.Len())
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
