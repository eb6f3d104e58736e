package transform

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
)

// openTiles returns every tile of st open, by size and start, for
// comparing two states.
func openTiles(st *State) map[int64]map[int64]string {
	out := map[int64]map[int64]string{}
	for size, tiles := range st.Scales {
		out[size] = map[int64]string{}
		for start, t := range tiles {
			out[size][start] = describeTile(t.view())
		}
	}
	return out
}

// TestTileLayoutMigrates: a record of the layout before tile blobs (a map
// of tile maps per size) is read, its features are the same, and its next
// write is in blobs that read back to the same tiles.
func TestTileLayoutMigrates(t *testing.T) {
	t.Parallel()
	old := map[string]any{
		"_lsn": int64(5), "_ord": int64(2), "_ts": int64(7), "_key": []any{"7"},
		"_t60": map[any]any{
			int64(120): map[any]any{"n": int64(2), "c:amount": int64(2), "s:amount": "4.5", "nan:amount": int64(1),
				"v:amount": map[any]any{"d:2.5": int64(1), "i:2": int64(1)}},
			int64(180): map[any]any{"n": int64(1)},
		},
		"_tlife": map[any]any{int64(0): map[any]any{"n": int64(3), "l:m": map[any]any{
			"09223372036854775808|s:a": int64(1), "09223372036854775809|s:b": int64(2)}}},
	}
	st, err := DecodeState(old)
	if err != nil {
		t.Fatal(err)
	}
	want := openTiles(st)
	bins := st.Bins()
	for _, name := range []string{"_t60", "_tlife"} {
		if _, ok := bins[name].([]byte); !ok {
			t.Errorf("bin %s written as %T, want a blob", name, bins[name])
		}
	}
	back, err := DecodeState(bins)
	if err != nil {
		t.Fatal(err)
	}
	if got := openTiles(back); !reflect.DeepEqual(got, want) {
		t.Errorf("tiles after the rewrite:\n%v\nwant\n%v", got, want)
	}
	if got := describeTile(back.Scales[60][120].view()); got != "n=2 c:amount=2 s:amount=4.5 v:amount={d:2.5, i:2}" {
		t.Errorf("tile 120 = %s", got)
	}
	if nf := back.Scales[60][120].view().nonFinite("amount"); nf != [3]int64{1, 0, 0} {
		t.Errorf("non-finite counts %v", nf)
	}
}

// TestOnlyChangedTilesReencoded: a write re-encodes the tiles its changes
// touched; the others keep their stored bytes.
func TestOnlyChangedTilesReencoded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, []config.Feature{aggFeature([]config.Aggregation{
		{Name: "n", Function: "count", Window: "1h", Tile: "1m"},
		{Name: "mx", Function: "max", Column: "amount", Window: "1h", Tile: "1m"},
	})})
	g := h.eng.Group("tx")
	st := &State{}
	var stats Stats
	apply := func(p change.Position, id int64, offset string) {
		t.Helper()
		ups, err := h.eng.Plan(ptr(insert(p, t0, change.Row{"id": id, "customer_id": int64(7), "amount": dec("1.5"), "created_at": at(offset)})), nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ups {
			if err := g.Apply(st, &ups[i], &stats); err != nil {
				t.Fatal(err)
			}
		}
	}
	apply(pos(1, 1), 1, "-30m")
	apply(pos(2, 1), 2, "-10m")
	st.Bins()
	st.Bins() // a write that changed neither tile closes both
	tiles := st.Scales[60]
	untouched, touched := tiles[at("-30m").Unix()/60*60], tiles[at("-10m").Unix()/60*60]
	before := untouched.raw
	apply(pos(3, 1), 3, "-10m")
	if touched.raw != nil || !touched.open || untouched.raw == nil || untouched.open {
		t.Fatalf("after a change: touched tile stored %v, untouched stored %v; want open and stored", touched.raw != nil, untouched.raw != nil)
	}
	if &untouched.raw[0] != &before[0] {
		t.Error("the untouched tile was decoded or re-encoded")
	}
	st.Bins()
	if touched.raw == nil || !touched.open || !strings.Contains(describeTile(touched.view()), "n=2") {
		t.Errorf("touched tile after the write: stored %v, open %v, %s", touched.raw != nil, touched.open, describeTile(touched.view()))
	}
	// A write that leaves it alone closes it; its stored form reads the same.
	apply(pos(4, 1), 4, "-30m")
	st.Bins()
	if touched.open || touched.raw == nil || !strings.Contains(describeTile(touched.view()), "n=2") {
		t.Errorf("tile left alone by a write: stored %v, open %v, %s", touched.raw != nil, touched.open, describeTile(touched.view()))
	}
}

func ptr[T any](v T) *T { return &v }

// FuzzScaleBlob: any bytes given as a scale blob are refused with an error
// or accepted; an accepted blob's tiles all open, and encoding them again
// reads back to the same tiles.
func FuzzScaleBlob(f *testing.F) {
	st := &State{}
	for _, seed := range [][]byte{{}, {1, 0}, {1, 1, 0, 0}, {1, 1, 2, 5, 1, 2, 1, 'a', 1}} {
		f.Add(seed)
	}
	st.Scales = map[int64]map[int64]*Tile{60: {0: {Rows: 2, cols: []tileCol{{name: "a", count: 2, vals: multiset{{"i:1", 1}, {"i:10", 1}}, timed: multiset{{"00|x", 1}}}}}, 120: {Rows: 1}}}
	f.Add(encodeScale(st.Scales[60]))
	when := make([]int64, timeBuckets)
	when[3], when[15] = 1, 2
	f.Add(encodeScale(map[int64]*Tile{600: {Rows: 3, when: when, cols: []tileCol{{name: "a", count: 3}}}, 1200: {Rows: 1, whenLost: true}}))
	f.Fuzz(func(t *testing.T, blob []byte) {
		tiles, err := decodeScale(blob)
		if err != nil {
			return
		}
		want := map[int64]string{}
		for start, tile := range tiles {
			if err := tile.load(); err != nil {
				t.Fatalf("tile %d accepted but does not open: %v", start, err)
			}
			want[start] = describeTile(tile)
		}
		again, err := decodeScale(encodeScale(tiles))
		if err != nil {
			t.Fatalf("re-encoded blob refused: %v", err)
		}
		for start, tile := range again {
			if got := describeTile(tile.view()); got != want[start] {
				t.Fatalf("tile %d: %s, want %s", start, got, want[start])
			}
		}
		if len(again) != len(want) || !bytes.Equal(encodeScale(again), encodeScale(tiles)) {
			t.Fatal("encoding is not stable")
		}
	})
}
