package debezium

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/decode"
)

// FuzzLines feeds arbitrary NDJSON (seeded with every Debezium corpus
// record) through the file source's line handling and the Converter.
//
// Invariant: it never panics; every line yields nothing (a record without
// a change), a change with a position (ordinal ≥ 1, snapshot rows at LSN 0
// and Seq 0), or an Invalid event naming its origin with a non-nil error;
// and the same input converted again by a fresh converter gives the same
// events, so a replay takes the same positions.
func FuzzLines(f *testing.F) {
	files, _ := filepath.Glob("../../decode/testdata/debezium/*.json")
	var all [][]byte
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		line := bytes.Join(bytes.Fields(b), []byte(" "))
		all = append(all, line)
		f.Add(line)
	}
	f.Add(bytes.Join(all, []byte("\n")))
	f.Add([]byte(`{"key":{"id":1},"value":null}` + "\n" + `{"op":"r","source":{"snapshot":"first"},"after":{"id":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		run := func() []change.Event {
			dec := &decode.Debezium{}
			conv := NewConverter(change.Position{})
			var out []change.Event
			for i, line := range bytes.Split(data, []byte("\n")) {
				line = bytes.TrimSpace(line)
				if len(line) == 0 {
					continue
				}
				ev, ok := convertLine(dec, conv, "f:"+string(rune('0'+i%10)), line)
				if !ok {
					continue
				}
				switch {
				case ev.Op == change.Invalid:
					if ev.Err == nil || ev.Origin == "" {
						t.Fatalf("invalid event without error or origin: %+v", ev)
					}
				case ev.Pos.Ordinal < 1:
					t.Fatalf("change without an ordinal: %+v", ev.Pos)
				case ev.Op == change.Read && (ev.Pos.LSN != 0 || ev.Pos.Seq != 0):
					t.Fatalf("snapshot row at %s", ev.Pos)
				}
				ev.Raw = nil
				out = append(out, ev)
			}
			return out
		}
		a, b := run(), run()
		if len(a) != len(b) {
			t.Fatalf("%d events, then %d", len(a), len(b))
		}
		for i := range a {
			if a[i].Pos != b[i].Pos || a[i].Op != b[i].Op || (a[i].Err == nil) != (b[i].Err == nil) ||
				fmt.Sprint(a[i].After) != fmt.Sprint(b[i].After) { // NaN ≠ NaN for DeepEqual
				t.Fatalf("event %d differs: %+v then %+v", i, a[i], b[i])
			}
		}
	})
}

// TestFileStdin: "-" reads standard input, in order with the files.
func TestFileStdin(t *testing.T) {
	line := `{"before":null,"after":{"id":1},"source":{"snapshot":"false","schema":"public","table":"t","txId":5,"lsn":100,"sequence":"[\"50\",\"100\"]","ts_ms":1},"op":"c","ts_ms":2}`
	f := NewFile([]string{"-"}, &decode.Debezium{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.stdin = strings.NewReader("\n" + line + "\n")
	out := make(chan change.Event, 4)
	if err := f.Stream(context.Background(), connector.Checkpoint{}, out); !errors.Is(err, io.EOF) {
		t.Fatalf("Stream: %v, want io.EOF", err)
	}
	close(out)
	var got []change.Event
	for ev := range out {
		got = append(got, ev)
	}
	if len(got) != 1 || got[0].Origin != "stdin:2" || got[0].Pos != (change.Position{LSN: 50, Seq: 100, Ordinal: 1}) {
		t.Errorf("events %+v, want one insert from stdin:2 at 0/32:0/64#1", got)
	}
}
