package postgres

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
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

// The progress record stores staged chunks compactly and reads them back
// whole; one that does not name a chunk of the snapshot is refused.
func TestProgressRecord(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)
	p := &progress{Slot: 1000, At: at, Next: 30, Tables: []*tableProgress{
		{Name: "public.keyed", Key: []keyCol{{Name: "id", OID: pgtype.Int8OID}}, Segments: []*segment{{Last: []string{"9"}}}},
		{Name: "public.nokey", BlocksPerChunk: 4, Segments: []*segment{{Block: 8, Open: true}}},
	}, Staged: []*stagedChunk{
		{Table: "public.keyed", First: 0, Rows: 10, Parts: 1, At: at},
		{Table: "public.nokey", First: 10, Rows: 10, Parts: 2, At: at, Keep: true, Retracted: true},
		{Table: "public.nokey", First: 20, Rows: 10, Parts: 0, At: at.Add(time.Minute), Of: "10", Keep: true},
	}}
	p.Staged[2].Parts = 1
	rec, err := p.record("c")
	if err != nil {
		t.Fatal(err)
	}
	raw := rec.Bins["json"].(string)
	if !strings.Contains(raw, `"staged":[[0,10,1,0,`) {
		t.Errorf("chunks not stored as arrays: %s", raw)
	}
	got := &progress{}
	if err := json.Unmarshal([]byte(raw), got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Errorf("read back\n%s\nwant\n%s", show(got), show(p))
	}

	// The most a table read by ctid can keep: its chunks, their
	// retractions after a crash and the chunks of its new read.
	big := &progress{Slot: 1 << 40, At: at, Next: math.MaxUint32 - 1, Tables: p.Tables}
	for i := range uint32(3 * maxKeptChunks) {
		first := math.MaxUint32 - 1_000_000_000 + i*200_000
		c := &stagedChunk{Table: "public.nokey", First: first, Rows: 200_000, Parts: 80, At: at, Keep: true, Retracted: true}
		if i%3 == 1 {
			c.Of, c.Retracted = chunkID(first-200_000, false), false
		}
		big.Staged = append(big.Staged, c)
	}
	rec, err = big.record("c")
	if err != nil {
		t.Fatalf("%d chunks: %v", len(big.Staged), err)
	}
	if n := len(rec.Bins["json"].(string)); n > 700<<10 {
		t.Errorf("%d chunks take %d bytes", len(big.Staged), n)
	} else {
		t.Logf("%d chunks take %d bytes", len(big.Staged), n)
	}

	p.Staged[0].Table = "public.other"
	if _, err := p.record("c"); err == nil {
		t.Error("a chunk of a table the snapshot does not read was stored")
	}
	for _, bad := range []string{`[[0,10,1,5,0,0,-1]]`, `[[0,0,1,0,0,0,-1]]`, `[[-1,10,1,0,0,0,-1]]`} {
		if err := json.Unmarshal([]byte(`{"tables":[{"name":"public.keyed"}],"staged":`+bad+`}`), &progress{}); err == nil {
			t.Errorf("staged %s read without an error", bad)
		}
	}
}

func show(p *progress) string {
	b, _ := json.Marshal((*progressJSON)(p))
	var s strings.Builder
	s.Write(b)
	for _, c := range p.Staged {
		fmt.Fprintf(&s, "\n%+v", *c)
	}
	return s.String()
}

// Durable chunks leave the record, except those of a table read by ctid
// that is not read to its end, and a chunk whose retraction is not durable.
func TestForgetDurable(t *testing.T) {
	t.Parallel()
	chunk := func(first uint32, table string, keep bool, of string) *stagedChunk {
		return &stagedChunk{Table: table, First: first, Rows: 10, Parts: 1, Keep: keep, Of: of}
	}
	p := &progress{Tables: []*tableProgress{
		{Name: "public.keyed", Key: []keyCol{{Name: "id"}}, Segments: []*segment{{Done: true}}},
		{Name: "public.cut", Segments: []*segment{{Done: false}}},
		{Name: "public.whole", Segments: []*segment{{Done: true}}},
		{Name: "public.reread", Segments: []*segment{{Done: true}}},
	}, Staged: []*stagedChunk{
		chunk(0, "public.keyed", false, ""),
		chunk(10, "public.cut", true, ""),
		chunk(20, "public.whole", true, ""),
		chunk(30, "public.reread", true, ""),
		chunk(40, "public.keyed", false, ""),
		chunk(50, "public.reread", true, "30"), // retraction of 30, not durable
	}}
	sn := &snapshot{prog: p, name: "c"}
	gone := sn.forgetDurable(49)
	var ids []string
	for _, c := range p.Staged {
		ids = append(ids, c.ID())
	}
	if want := []string{"10", "30", "50r"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("kept %v, want %v", ids, want)
	}
	if len(gone) != 3 || gone[0].ID != "c/snapshot/0/0" || gone[2].ID != "c/snapshot/40/0" {
		t.Errorf("expired %v", gone)
	}
	sn.forgetDurable(59)
	if len(p.Staged) != 1 || p.Staged[0].ID() != "10" {
		t.Errorf("with the retraction durable, kept %v; want only the cut table's chunk", p.Staged)
	}
}

// A table read by ctid gets chunks of about snapshot.fetch.size rows, and
// no more than maxKeptChunks/threads of them however big it is.
func TestCtidChunk(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		blocks  int64
		tuples  float64
		fetch   int64
		threads int
		want    int64
		capped  bool
	}{
		{name: "small table", blocks: 100, tuples: 10_000, fetch: 1000, threads: 1, want: 10},
		{name: "never analyzed: 50 rows a block", blocks: 100, tuples: 0, fetch: 1000, threads: 1, want: 20},
		{name: "wide rows: one block a chunk", blocks: 100, tuples: 100, fetch: 1, threads: 1, want: 1},
		{name: "85M rows at the default fetch", blocks: 1_000_000, tuples: 85e6, fetch: 10240, threads: 1, want: 245, capped: true},
		{name: "1B rows, two threads", blocks: 10_000_000, tuples: 1e9, fetch: 10240, threads: 2, want: 4883, capped: true},
	}
	for _, tc := range tests {
		got, capped := ctidChunk(tc.blocks, tc.tuples, tc.fetch, tc.threads)
		if got != tc.want || capped != tc.capped {
			t.Errorf("%s: %d blocks a chunk (capped %v), want %d (%v)", tc.name, got, capped, tc.want, tc.capped)
		}
		if chunks := (tc.blocks + got - 1) / got; chunks > maxKeptChunks/int64(tc.threads) {
			t.Errorf("%s: %d chunks, more than %d", tc.name, chunks, maxKeptChunks/tc.threads)
		}
	}
}
