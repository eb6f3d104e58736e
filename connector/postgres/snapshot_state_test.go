package postgres

import (
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tilefeed/tilefeed/change"
)

// Staged rows decode back to what the snapshot decoded the first time.
func TestRawRowsRoundTrip(t *testing.T) {
	t.Parallel()
	r := newRawRows([]string{"id", "name", "at"}, []uint32{pgtype.Int8OID, pgtype.TextOID, pgtype.TimestamptzOID})
	r.add([][]byte{[]byte("7"), []byte("a'b"), []byte("2024-05-01 10:00:00+00")})
	r.add([][]byte{[]byte("8"), nil, nil})
	rows, err := decodeRawRows(pgtype.NewMap(), r.buf)
	if err != nil {
		t.Fatal(err)
	}
	want := []change.Row{
		{"id": int64(7), "name": "a'b", "at": time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)},
		{"id": int64(8), "name": nil, "at": nil},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("got %v, want %v", rows, want)
	}
	if _, err := decodeRawRows(pgtype.NewMap(), r.buf[:len(r.buf)-3]); err == nil {
		t.Error("a truncated chunk decoded without an error")
	}
}

// The stream filter drops exactly the images a later read holds: keys in
// (10, 20] were read at point 500, the rest at the slot's point 100.
func TestSnapFilter(t *testing.T) {
	t.Parallel()
	p := &progress{Slot: 100, Points: []uint64{500}, Tables: []*tableProgress{
		{Name: "public.t", Key: []keyCol{{Name: "id", OID: pgtype.Int8OID}},
			Reads: []keyRange{{Lo: []string{"10"}, Hi: []string{"20"}, Point: 500}}},
		{Name: "public.nokey", ReadAt: 500},
	}}
	f, err := newSnapFilter(p)
	if err != nil || f == nil {
		t.Fatalf("filter %v, %v", f, err)
	}
	row := func(id int64) change.Row { return change.Row{"id": id} }
	tests := []struct {
		name   string
		ev     change.Event
		keep   bool
		wantOp change.Op
	}{
		{"insert in the later range, before its point", change.Event{Op: change.Insert, Table: "public.t", After: row(15), Pos: change.Position{LSN: 300}}, false, 0},
		{"insert in the later range, after its point", change.Event{Op: change.Insert, Table: "public.t", After: row(15), Pos: change.Position{LSN: 500}}, true, change.Insert},
		{"range bounds: 10 is out", change.Event{Op: change.Insert, Table: "public.t", After: row(10), Pos: change.Position{LSN: 300}}, true, change.Insert},
		{"range bounds: 20 is in", change.Event{Op: change.Delete, Table: "public.t", Before: row(20), Pos: change.Position{LSN: 300}}, false, 0},
		{"key moved into the later range", change.Event{Op: change.Update, Table: "public.t", Before: row(5), After: row(12), Pos: change.Position{LSN: 300}}, true, change.Delete},
		{"key moved out of the later range", change.Event{Op: change.Update, Table: "public.t", Before: row(12), After: row(25), Pos: change.Position{LSN: 300}}, true, change.Insert},
		{"update without old image", change.Event{Op: change.Update, Table: "public.t", After: row(12), Pos: change.Position{LSN: 300}}, false, 0},
		{"table read whole later", change.Event{Op: change.Insert, Table: "public.nokey", After: row(1), Pos: change.Position{LSN: 499}}, false, 0},
		{"other table", change.Event{Op: change.Insert, Table: "public.x", After: row(15), Pos: change.Position{LSN: 300}}, true, change.Insert},
		{"commit marker", change.Event{Op: change.Commit, Pos: change.Position{LSN: 300}}, true, change.Commit},
	}
	for _, tc := range tests {
		got, keep := f.apply(tc.ev)
		if keep != tc.keep || (keep && got.Op != tc.wantOp) {
			t.Errorf("%s: keep %v op %v, want %v %v", tc.name, keep, got.Op, tc.keep, tc.wantOp)
		}
	}
	if f, _ := newSnapFilter(&progress{Slot: 100}); f != nil {
		t.Error("a snapshot read at the slot's point needs no filter")
	}
}

func TestCompareKeys(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		a, b []any
		want int
	}{
		{[]any{int64(1), "b"}, []any{int64(1), "c"}, -1},
		{[]any{int64(2)}, []any{int64(1)}, 1},
		{[]any{t0}, []any{t0}, 0},
		{[]any{"-infinity"}, []any{t0}, -1},
		{[]any{"infinity"}, []any{t0}, 1},
		{[]any{"0a000000-0000-0000-0000-000000000000"}, []any{"1a000000-0000-0000-0000-000000000000"}, -1},
	}
	for _, tc := range tests {
		if got := compareKeys(tc.a, tc.b); got != tc.want {
			t.Errorf("compareKeys(%v, %v) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
