package archive

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
)

func dec(s string) *apd.Decimal {
	d, _, err := apd.NewFromString(s)
	if err != nil {
		panic(err)
	}
	return d
}

// events returns n changes of every value type, positions growing.
func events(n int) []*change.Event {
	var out []*change.Event
	t0 := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	for i := range n {
		after := change.Row{"id": int64(i % 7), "amount": dec(fmt.Sprintf("%d.50", i)), "f": 0.1, "s": "a\nb\"c", "b": true, "null": nil,
			"x": []byte{0, byte(i)}, "t": t0.Add(time.Duration(i) * time.Microsecond), "bc": time.Date(-44, 3, 15, 0, 0, 0, 0, time.UTC),
			"v": 90 * time.Minute, "j": json.RawMessage(`{"k":[1,2]}`), "inf": change.PosInfinity,
			"arr": []any{int64(1), nil, []any{"x", dec("1.0")}}, "toast": change.Unchanged}
		ev := &change.Event{Op: change.Insert, Table: "public.t", After: after, Pos: change.Position{LSN: uint64(100 + i), Ordinal: uint32(i % 3)},
			CommitTime: t0.Add(time.Duration(i) * time.Second)}
		if i%3 == 1 {
			ev.Op, ev.Before = change.Update, change.Row{"id": int64(i % 7), "amount": dec("0.00")}
		}
		if i%5 == 4 {
			ev.Op, ev.Before, ev.After, ev.Sparse = change.Delete, change.Row{"id": int64(i % 7)}, nil, true
		}
		out = append(out, ev)
	}
	return out
}

func same(t *testing.T, got, want *change.Event) {
	t.Helper()
	if fmt.Sprintf("%+v", *got) != fmt.Sprintf("%+v", *want) || !reflect.DeepEqual(got.Before, want.Before) && len(got.Before)+len(want.Before) > 0 {
		t.Errorf("read back\n%+v\nwant\n%+v", *got, *want)
	}
}

// TestRoundTrip: every value type a row holds comes back with its type
// (a decimal with its scale, BC times, the unchanged-TOAST marker).
func TestRoundTrip(t *testing.T) {
	for _, ev := range events(10) {
		line, err := Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		same(t, &back, ev)
	}
	if _, err := Encode(&change.Event{Op: change.Insert, Table: "t", After: change.Row{"c": int32(1)}}); err == nil ||
		!strings.Contains(err.Error(), "column c: values of type int32 cannot be archived") {
		t.Errorf("an int32: %v", err)
	}
	for _, bad := range []string{`{`, `{"op":"x","table":"t","commit":"2026-01-01T00:00:00Z"}`, `{"op":"c","table":"t","commit":"2026-01-01T00:00:00Z","after":{"a":"q:1"}}`} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("%s decoded", bad)
		}
	}
}

func readAll(t *testing.T, dir string) ([]*change.Event, Stats) {
	t.Helper()
	var got []*change.Event
	st, err := Read(dir, func(ev *change.Event) error {
		got = append(got, ev)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, st
}

// TestWriterCrash: rotated files read back in order; a file cut at any
// byte (a crash mid-write) loses only its cut tail, and the changes a
// restart sends again come back once, in order.
func TestWriterCrash(t *testing.T) {
	evs := events(60)
	for _, compress := range []bool{true, false} {
		dir := t.TempDir()
		w, err := OpenWriter(dir, 2000, compress)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 40; i += 4 {
			if err := w.Append(evs[i : i+4]); err != nil {
				t.Fatal(err)
			}
		}
		// No Close: the process dies with a file open.
		files, _ := Files(dir)
		if len(files) < 3 {
			t.Fatalf("compress=%v: %d files, want rotation", compress, len(files))
		}
		got, st := readAll(t, dir)
		if len(got) != 40 || st.Repeated != 0 {
			t.Fatalf("compress=%v: %d changes back (%+v)", compress, len(got), st)
		}
		// Cut the last file at every length: a prefix of its changes.
		lastFile := filepath.Join(dir, files[len(files)-1])
		whole, _ := os.ReadFile(lastFile)
		prev := -1
		for cut := len(whole); cut >= 0; cut -= max(1, len(whole)/97) {
			os.WriteFile(lastFile, whole[:cut], 0o644)
			got, _ := readAll(t, dir)
			for i, ev := range got {
				same(t, ev, evs[i])
			}
			if prev >= 0 && len(got) > prev {
				t.Fatalf("compress=%v: a shorter file gave more changes", compress)
			}
			prev = len(got)
		}
		// The restart: a new file, the source's replay from change 30 on.
		os.WriteFile(lastFile, whole[:len(whole)/2], 0o644)
		w, err = OpenWriter(dir, 2000, compress)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Append(evs[30:]); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		got, st = readAll(t, dir)
		if len(got) != len(evs) {
			t.Fatalf("compress=%v: %d changes after the restart, want %d (%+v)", compress, len(got), len(evs), st)
		}
		for i, ev := range got {
			same(t, ev, evs[i])
		}
		if st.Repeated == 0 {
			t.Errorf("compress=%v: the replay's repeats were not seen: %+v", compress, st)
		}
	}
}

// FuzzDecode: any line decodes to a change or an error, never a panic;
// what decodes encodes back to a line that decodes the same.
func FuzzDecode(f *testing.F) {
	for _, ev := range events(3) {
		line, _ := Encode(ev)
		f.Add(line)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		ev, err := Decode(line)
		if err != nil {
			return
		}
		again, err := Encode(&ev)
		if err != nil {
			t.Fatalf("decoded %q does not encode: %v", line, err)
		}
		back, err := Decode(again)
		if err != nil || fmt.Sprintf("%+v", back) != fmt.Sprintf("%+v", ev) {
			t.Fatalf("%q → %+v → %q → %+v (%v)", line, ev, again, back, err)
		}
	})
}
