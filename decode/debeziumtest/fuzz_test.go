package debeziumtest_test

import (
	"math"
	"testing"
	"unicode/utf8"

	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/decode/debeziumtest"
)

// FuzzRoundTrip: for any numeric(20,s), unconstrained numeric, double and
// text value, encoding as a Debezium record in each format and decoding
// it with decode.Debezium gives the value back (the unconstrained numeric
// without trailing zeros, as Debezium strips them).
func FuzzRoundTrip(f *testing.F) {
	f.Add(int64(12345), uint8(2), 0.1, "héllo")
	f.Add(int64(-128), uint8(0), -1e300, "\x00\"\\")
	f.Add(int64(math.MinInt64), uint8(9), math.Inf(1), "__debezium_unavailable_value!")
	f.Fuzz(func(t *testing.T, unscaled int64, scale uint8, fl float64, s string) {
		if !utf8.ValidString(s) || math.IsNaN(fl) {
			t.Skip() // PostgreSQL text is valid UTF-8; NaN != NaN
		}
		sc := int(scale % 20)
		d := apd.New(unscaled, int32(-sc))
		tbl := debeziumtest.Table{Schema: "public", Name: "t", Columns: []debeziumtest.Column{
			{Name: "id", OID: pgtype.Int4OID, Key: true},
			{Name: "n", OID: pgtype.NumericOID, TypeMod: int32(38<<16|sc) + 4},
			{Name: "v", OID: pgtype.NumericOID, TypeMod: -1},
			{Name: "f", OID: pgtype.Float8OID},
			{Name: "s", OID: pgtype.TextOID},
		}}
		after := change.Row{"id": int64(1), "n": d, "v": d, "f": fl, "s": s}
		reduced := new(apd.Decimal)
		reduced.Reduce(d)
		if reduced.Exponent > 0 {
			_, _ = apd.BaseContext.WithPrecision(100).Quantize(reduced, reduced, 0)
		}
		enc, err := debeziumtest.New(debeziumtest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, fm := range formats {
			recs, err := enc.Encode(fm.f, tbl, change.Event{Op: change.Insert, Table: "public.t", After: after}, debeziumtest.Source{})
			if err != nil {
				t.Fatal(err)
			}
			got := decodeRecord(t, enc, fm.f, tbl, debeziumtest.Options{}, recs[0]).Event.After
			if !same(got["n"], d) || !same(got["v"], reduced) || !same(got["f"], fl) {
				t.Errorf("%s: n %v v %v f %v, want %v %v %v", fm.name, got["n"], got["v"], got["f"], d, reduced, fl)
			}
			// Text equal to the placeholder is indistinguishable from it.
			var want any = s
			if s == "__debezium_unavailable_value" {
				want = change.Unchanged
			}
			if got["s"] != want {
				t.Errorf("%s: s %q, want %q", fm.name, got["s"], want)
			}
		}
	})
}
