package decode_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/decode"
)

// FuzzPgOutputDecode feeds arbitrary pgoutput messages to one decoder,
// after a RELATION message for public.accounts so that row changes have a
// relation. The input is a sequence of messages, each framed by a 2-byte
// big-endian length (see frame), so the fuzzer explores sequences of
// BEGIN, changes, RELATION changes and COMMIT as well as single messages.
//
// Invariant: Decode never panics (nor allocates without bound), whatever
// the bytes. Each call either returns an error, and then appends nothing,
// or appends events whose positions never go backwards within a
// transaction: every event's Pos sorts after the previous event's, with
// the same commit LSN, up to and including the Commit marker. Row events
// name their table and carry the images their operation implies.
func FuzzPgOutputDecode(f *testing.F) {
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	row := []tcol{txt("1"), txt("ann"), txt("10.50"), null}
	row2 := []tcol{txt("2"), txt("bob"), txt("NaN"), toast}
	key := []tcol{txt("1"), null, null, null}
	other := relationMsg(16390, "audit", "log", relCol{key: true, name: "id", oid: 23}, relCol{name: "tags", oid: 1009})
	seeds := [][][]byte{
		{beginMsg(0x100, at, 1), insertMsg(accounts, row...), commitMsg(0x100, 0x128, at)},
		{beginMsg(0x100, at, 1),
			updateMsg(accounts, 'K', key, row2),
			updateMsg(accounts, 'O', row, row2),
			updateMsg(accounts, 0, nil, row2),
			deleteMsg(accounts, 'K', key...),
			deleteMsg(accounts, 'O', row...),
			other,
			insertMsg(16390, txt("7"), txt(`{a,"b c",NULL}`)),
			truncateMsg(1, accounts, 16390),
			commitMsg(0x100, 0x128, at)},
		{beginMsg(0x100, at, 1), insertMsg(accounts, row...), commitMsg(0x100, 0x128, at),
			beginMsg(0x200, at, 2), deleteMsg(accounts, 'O', row...), commitMsg(0x200, 0x228, at)},
		{typeMsg(90001, "public", "mood"), originMsg(0x50, "upstream")},
		{accountsRel()},
	}
	// Every message alone, too, and after a BEGIN.
	for _, m := range [][]byte{
		beginMsg(0x100, at, 1), commitMsg(0x100, 0x128, at), insertMsg(accounts, row...),
		updateMsg(accounts, 'K', key, row2), updateMsg(accounts, 'O', row, row2), updateMsg(accounts, 0, nil, row2),
		deleteMsg(accounts, 'K', key...), deleteMsg(accounts, 'O', row...), truncateMsg(0, accounts),
		typeMsg(90001, "public", "mood"), originMsg(0x50, "upstream"), accountsRel(), other,
	} {
		seeds = append(seeds, [][]byte{m}, [][]byte{beginMsg(0x100, at, 1), m})
	}
	for _, s := range seeds {
		f.Add(frame(s...))
	}
	prelude := accountsRel()
	f.Fuzz(func(t *testing.T, input []byte) {
		// The keep function drops a column, so both paths run.
		d := decode.NewPgOutput(func(_, column string) bool { return column != "note" })
		if _, err := d.Decode(nil, prelude); err != nil {
			t.Fatal(err)
		}
		var (
			last change.Position
			inTx bool
		)
		for _, msg := range unframe(input) {
			prior := []change.Event{{Op: change.Heartbeat, Resume: 1}}
			out, err := d.Decode(prior, msg)
			if len(out) < 1 || out[0].Op != change.Heartbeat {
				t.Fatalf("Decode lost the events it was given: %+v", out)
			}
			if err != nil {
				if len(out) != 1 {
					t.Fatalf("error %v, yet %d events appended", err, len(out)-1)
				}
				continue
			}
			for _, ev := range out[1:] {
				if inTx && (ev.Pos.LSN != last.LSN || !last.Less(ev.Pos)) {
					t.Fatalf("%v at %v after %v: position went backwards within a transaction", ev.Op, ev.Pos, last)
				}
				if ev.Pos.Ordinal == 0 {
					t.Fatalf("%v with ordinal 0", ev.Op)
				}
				last, inTx = ev.Pos, ev.Op != change.Commit
				switch ev.Op {
				case change.Commit:
					if ev.Table != "" || ev.Before != nil || ev.After != nil {
						t.Fatalf("commit marker with a row: %+v", ev)
					}
				case change.Insert:
					if ev.Table == "" || ev.After == nil || ev.Before != nil {
						t.Fatalf("insert with images %v / %v", ev.Before, ev.After)
					}
				case change.Update:
					if ev.Table == "" || ev.After == nil {
						t.Fatalf("update without new image: %+v", ev)
					}
				case change.Delete:
					if ev.Table == "" || ev.Before == nil || ev.After != nil {
						t.Fatalf("delete with images %v / %v", ev.Before, ev.After)
					}
				case change.Truncate:
					if ev.Table == "" || ev.Before != nil || ev.After != nil {
						t.Fatalf("truncate with a row: %+v", ev)
					}
				default:
					t.Fatalf("unexpected op %v", ev.Op)
				}
				for _, r := range []change.Row{ev.Before, ev.After} {
					if _, ok := r["note"]; ok {
						t.Fatalf("%v kept the dropped column: %v", ev.Op, r)
					}
				}
			}
		}
	})
}

// frame joins messages, each behind a 2-byte big-endian length.
func frame(msgs ...[]byte) []byte {
	var b []byte
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
		b = append(b, m...)
	}
	return b
}

// unframe splits what frame joined; a length past the end takes the rest,
// and a lone trailing byte is a message of its own.
func unframe(b []byte) [][]byte {
	var msgs [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			return append(msgs, b)
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		n = min(n, len(b))
		msgs = append(msgs, b[:n])
		b = b[n:]
	}
	return msgs
}
