package decode

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tilefeed/tilefeed/change"
)

// benchChanges is how many row changes one iteration decodes: enough that
// -benchtime 1x (make bench) measures a steady state, not a warm-up.
const benchChanges = 1_000_000

// BenchmarkPgOutputDecode decodes a pgoutput stream shaped like the
// integration tests' public.transactions table (bigint, int, text,
// numeric(12,2), text, timestamptz; REPLICA IDENTITY FULL): transactions
// of 1–5 row changes, each framed by BEGIN and COMMIT. "insert" streams
// INSERTs; "update" streams UPDATEs, which carry the old row as well. The
// messages are encoded by hand following pglogrepl's message.go layout.
//
// One iteration decodes benchChanges row changes; changes/s counts row
// changes only (BEGIN and COMMIT are decoded but not counted).
func BenchmarkPgOutputDecode(b *testing.B) {
	for _, bc := range []struct {
		name   string
		update bool
	}{{"insert", false}, {"update", true}} {
		b.Run(bc.name, func(b *testing.B) {
			s := newBenchStream(bc.update)
			d := NewPgOutput(nil)
			if _, err := d.Decode(nil, s.relation); err != nil {
				b.Fatal(err)
			}
			checkBenchStream(b, d, s, bc.update)

			var ms0, ms1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms0)
			events := make([]change.Event, 0, 4)
			var err error
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				n := 0
				for n < benchChanges {
					for _, msg := range s.msgs {
						if events, err = d.Decode(events[:0], msg); err != nil {
							b.Fatal(err)
						}
						if len(events) == 1 && !events[0].Op.IsMarker() {
							n++
						}
					}
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&ms1)
			total := float64(b.N) * float64(benchRoundUp(benchChanges, s.rows))
			b.ReportMetric(total/b.Elapsed().Seconds(), "changes/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/total, "ns/change")
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/total, "allocs/change")
			b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/total, "B/change")
		})
	}
}

// benchRoundUp is n rounded up to a multiple of step: the loop above decodes
// whole passes over the stream.
func benchRoundUp(n, step int) int { return (n + step - 1) / step * step }

// benchStream is a pre-encoded pgoutput stream, decoded in a loop.
type benchStream struct {
	relation []byte
	msgs     [][]byte // BEGIN, row changes, COMMIT, BEGIN, …
	rows     int      // row changes in msgs
}

const benchRelID = 16384

// benchColumns is public.transactions as pgoutput describes it. Every
// column carries the key flag under REPLICA IDENTITY FULL.
var benchColumns = []struct {
	name   string
	oid    uint32
	typmod int32
}{
	{"id", pgtype.Int8OID, -1},
	{"card_id", pgtype.Int4OID, -1},
	{"merchant", pgtype.TextOID, -1},
	{"amount", pgtype.NumericOID, (12<<16 | 2) + 4},
	{"status", pgtype.TextOID, -1},
	{"created_at", pgtype.TimestamptzOID, -1},
}

// newBenchStream encodes 20,000 transactions (about 60,000 row changes:
// large enough not to sit in a CPU cache, small enough to build quickly).
func newBenchStream(update bool) *benchStream {
	rng := rand.New(rand.NewPCG(1, 2))
	s := &benchStream{relation: benchRelationMsg()}
	lsn := uint64(0x16_B374_D848)
	commit := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	id := int64(1_000_000)
	for tx := 0; tx < 20_000; tx++ {
		commit = commit.Add(time.Duration(rng.IntN(5000)) * time.Microsecond)
		final := lsn + 4096
		s.msgs = append(s.msgs, benchBeginMsg(final, commit, uint32(7000+tx)))
		for r := 1 + rng.IntN(5); r > 0; r-- {
			id++
			row := benchRow(rng, id, commit)
			if update {
				old := row
				old[3] = fmt.Sprintf("%d.%02d", rng.IntN(500), rng.IntN(100))
				s.msgs = append(s.msgs, benchUpdateMsg(old, row))
			} else {
				s.msgs = append(s.msgs, benchInsertMsg(row))
			}
			s.rows++
		}
		s.msgs = append(s.msgs, benchCommitMsg(final, final+56, commit))
		lsn = final + 56
	}
	return s
}

// benchRow is one row's text values, as PostgreSQL sends them.
func benchRow(rng *rand.Rand, id int64, commit time.Time) [6]string {
	status := "approved"
	if rng.IntN(6) == 0 {
		status = "declined"
	}
	created := commit.Add(-time.Duration(rng.Int64N(int64(40 * 24 * time.Hour)))).Truncate(time.Microsecond)
	return [6]string{
		fmt.Sprint(id),
		fmt.Sprint(rng.IntN(10_000)),
		fmt.Sprintf("merchant-%04d", rng.IntN(500)),
		fmt.Sprintf("%d.%02d", rng.IntN(500), rng.IntN(100)),
		status,
		created.Format("2006-01-02 15:04:05.999999-07"),
	}
}

// checkBenchStream decodes the first transaction and checks the values
// came out typed, so the benchmark measures the real decoding path.
func checkBenchStream(b *testing.B, d *PgOutput, s *benchStream, update bool) {
	b.Helper()
	var evs []change.Event
	for _, m := range s.msgs {
		var err error
		if evs, err = d.Decode(evs, m); err != nil {
			b.Fatal(err)
		}
		if len(evs) > 0 && evs[len(evs)-1].Op == change.Commit {
			break
		}
	}
	if len(evs) < 2 {
		b.Fatalf("first transaction decoded to %d events", len(evs))
	}
	ev := evs[0]
	want := change.Insert
	if update {
		want = change.Update
		if len(ev.Before) != len(benchColumns) {
			b.Fatalf("update has old image %v", ev.Before)
		}
	}
	if ev.Op != want || ev.Table != "public.transactions" {
		b.Fatalf("first event is %s on %s", ev.Op, ev.Table)
	}
	_, ok1 := ev.After["id"].(int64)
	_, ok2 := ev.After["card_id"].(int64)
	_, ok3 := ev.After["amount"].(*apd.Decimal)
	_, ok4 := ev.After["created_at"].(time.Time)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		b.Fatalf("values are not typed: %#v", ev.After)
	}
}

func benchAppendString(buf []byte, s string) []byte { return append(append(buf, s...), 0) }

func benchRelationMsg() []byte {
	buf := []byte{'R'}
	buf = binary.BigEndian.AppendUint32(buf, benchRelID)
	buf = benchAppendString(buf, "public")
	buf = benchAppendString(buf, "transactions")
	buf = append(buf, 'f') // REPLICA IDENTITY FULL
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(benchColumns)))
	for _, c := range benchColumns {
		buf = append(buf, 1)
		buf = benchAppendString(buf, c.name)
		buf = binary.BigEndian.AppendUint32(buf, c.oid)
		buf = binary.BigEndian.AppendUint32(buf, uint32(c.typmod))
	}
	return buf
}

// benchPgEpoch is the zero of pgoutput timestamps.
var benchPgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func benchBeginMsg(final uint64, commit time.Time, xid uint32) []byte {
	buf := []byte{'B'}
	buf = binary.BigEndian.AppendUint64(buf, final)
	buf = binary.BigEndian.AppendUint64(buf, uint64(commit.Sub(benchPgEpoch).Microseconds()))
	return binary.BigEndian.AppendUint32(buf, xid)
}

func benchCommitMsg(lsn, end uint64, commit time.Time) []byte {
	buf := []byte{'C', 0}
	buf = binary.BigEndian.AppendUint64(buf, lsn)
	buf = binary.BigEndian.AppendUint64(buf, end)
	return binary.BigEndian.AppendUint64(buf, uint64(commit.Sub(benchPgEpoch).Microseconds()))
}

func benchAppendTuple(buf []byte, vals [6]string) []byte {
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(vals)))
	for _, v := range vals {
		buf = append(buf, 't')
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(v)))
		buf = append(buf, v...)
	}
	return buf
}

func benchInsertMsg(row [6]string) []byte {
	buf := binary.BigEndian.AppendUint32([]byte{'I'}, benchRelID)
	return benchAppendTuple(append(buf, 'N'), row)
}

func benchUpdateMsg(old, row [6]string) []byte {
	buf := binary.BigEndian.AppendUint32([]byte{'U'}, benchRelID)
	buf = benchAppendTuple(append(buf, 'O'), old)
	return benchAppendTuple(append(buf, 'N'), row)
}
