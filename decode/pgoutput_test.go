package decode_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/decode"
)

// A test-only encoder of pgoutput protocol version 1 messages, byte for
// byte as PostgreSQL writes them (src/backend/replication/logical/proto.c)
// and pglogrepl's message.go reads them.

type relCol struct {
	key  bool
	name string
	oid  uint32
}

// tcol is one column of TupleData: kind 't' with text, 'n' or 'u'.
type tcol struct {
	kind byte
	text string
}

func txt(s string) tcol { return tcol{kind: 't', text: s} }

var (
	null  = tcol{kind: 'n'}
	toast = tcol{kind: 'u'}
)

type enc []byte

func (e enc) u8(v byte) enc      { return append(e, v) }
func (e enc) u16(v uint16) enc   { return binary.BigEndian.AppendUint16(e, v) }
func (e enc) u32(v uint32) enc   { return binary.BigEndian.AppendUint32(e, v) }
func (e enc) u64(v uint64) enc   { return binary.BigEndian.AppendUint64(e, v) }
func (e enc) str(s string) enc   { return append(append(e, s...), 0) }
func (e enc) ts(t time.Time) enc { return e.u64(uint64(t.Sub(pgEpoch).Microseconds())) }

var (
	pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	t0      = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // a commit time for tests that do not look at it
)

func (e enc) tuple(cols []tcol) enc {
	e = e.u16(uint16(len(cols)))
	for _, c := range cols {
		e = e.u8(c.kind)
		if c.kind == 't' || c.kind == 'b' {
			e = append(e.u32(uint32(len(c.text))), c.text...)
		}
	}
	return e
}

func relationMsg(id uint32, schema, table string, cols ...relCol) []byte {
	e := enc{'R'}.u32(id).str(schema).str(table).u8('d').u16(uint16(len(cols)))
	for _, c := range cols {
		var flags byte
		if c.key {
			flags = 1
		}
		e = e.u8(flags).str(c.name).u32(c.oid).u32(0xFFFFFFFF) // atttypmod -1
	}
	return e
}

func beginMsg(finalLSN uint64, commit time.Time, xid uint32) []byte {
	return enc{'B'}.u64(finalLSN).ts(commit).u32(xid)
}

func commitMsg(commitLSN, endLSN uint64, commit time.Time) []byte {
	return enc{'C'}.u8(0).u64(commitLSN).u64(endLSN).ts(commit)
}

func insertMsg(rel uint32, cols ...tcol) []byte {
	return enc{'I'}.u32(rel).u8('N').tuple(cols)
}

// updateMsg encodes an UPDATE; oldKind is 'K', 'O' or 0 (no old tuple).
func updateMsg(rel uint32, oldKind byte, old, new []tcol) []byte {
	e := enc{'U'}.u32(rel)
	if oldKind != 0 {
		e = e.u8(oldKind).tuple(old)
	}
	return e.u8('N').tuple(new)
}

func deleteMsg(rel uint32, kind byte, old ...tcol) []byte {
	return enc{'D'}.u32(rel).u8(kind).tuple(old)
}

func truncateMsg(options byte, rels ...uint32) []byte {
	e := enc{'T'}.u32(uint32(len(rels))).u8(options)
	for _, r := range rels {
		e = e.u32(r)
	}
	return e
}

func typeMsg(oid uint32, schema, name string) []byte {
	return enc{'Y'}.u32(oid).str(schema).str(name)
}

func originMsg(lsn uint64, name string) []byte {
	return enc{'O'}.u64(lsn).str(name)
}

// The relation most tests use: public.accounts.
const accounts = 16384

var accountCols = []relCol{
	{key: true, name: "id", oid: pgtype.Int8OID},
	{name: "owner", oid: pgtype.TextOID},
	{name: "balance", oid: pgtype.NumericOID},
	{name: "note", oid: pgtype.TextOID},
}

func accountsRel() []byte { return relationMsg(accounts, "public", "accounts", accountCols...) }

func dec(t *testing.T, s string) *apd.Decimal {
	t.Helper()
	d, _, err := apd.NewFromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// decodeAll feeds msgs to d and fails the test on the first error.
func decodeAll(t *testing.T, d *decode.PgOutput, msgs ...[]byte) []change.Event {
	t.Helper()
	var out []change.Event
	for i, m := range msgs {
		var err error
		if out, err = d.Decode(out, m); err != nil {
			t.Fatalf("message %d (%c): %v", i, m[0], err)
		}
	}
	return out
}

func TestDecodeTransaction(t *testing.T) {
	t.Parallel()
	const (
		lsn    = 0x16_B374D848
		endLSN = 0x16_B374D8A0
	)
	// The commit time comes in a non-UTC zone on purpose: events carry UTC.
	commit := time.Date(2026, 3, 1, 12, 30, 45, 123456000, time.FixedZone("CET", 3600))
	d := decode.NewPgOutput(nil)
	var events []change.Event
	events = decodeAll(t, d,
		accountsRel(),
		typeMsg(90001, "public", "mood"),
		beginMsg(lsn, commit, 777),
		originMsg(0x1_00000000, "upstream"),
		insertMsg(accounts, txt("1"), txt("ann"), txt("10.50"), null),
		// REPLICA IDENTITY DEFAULT, key changed: the key-only old tuple
		// has every column, the non-key ones as NULL.
		updateMsg(accounts, 'K', []tcol{txt("1"), null, null, null}, []tcol{txt("2"), txt("ann"), txt("10.50"), null}),
		// REPLICA IDENTITY FULL: the whole old row.
		updateMsg(accounts, 'O', []tcol{txt("2"), txt("ann"), txt("10.50"), null}, []tcol{txt("2"), txt("ann"), txt("-0.001"), toast}),
		// Key unchanged under DEFAULT: no old tuple at all.
		updateMsg(accounts, 0, nil, []tcol{txt("2"), txt("bob"), txt("0"), toast}),
		deleteMsg(accounts, 'K', txt("2"), null, null, null),
		deleteMsg(accounts, 'O', txt("3"), txt("cy"), txt("NaN"), txt("x")),
	)
	d2 := relationMsg(16390, "audit", "log", relCol{key: true, name: "id", oid: pgtype.Int4OID})
	events = append(events, decodeAll(t, d, d2, truncateMsg(0, accounts, 16390), commitMsg(lsn, endLSN, commit))...)

	utc := commit.UTC()
	pos := func(n uint32) change.Position { return change.Position{LSN: lsn, Ordinal: n} }
	want := []change.Event{
		{Op: change.Insert, Table: "public.accounts", After: change.Row{"id": int64(1), "owner": "ann", "balance": dec(t, "10.50"), "note": nil}, Pos: pos(1), CommitTime: utc},
		{Op: change.Update, Table: "public.accounts", Before: change.Row{"id": int64(1)},
			After: change.Row{"id": int64(2), "owner": "ann", "balance": dec(t, "10.50"), "note": nil}, Pos: pos(2), CommitTime: utc},
		{Op: change.Update, Table: "public.accounts",
			Before: change.Row{"id": int64(2), "owner": "ann", "balance": dec(t, "10.50"), "note": nil},
			After:  change.Row{"id": int64(2), "owner": "ann", "balance": dec(t, "-0.001"), "note": change.Unchanged}, Pos: pos(3), CommitTime: utc},
		{Op: change.Update, Table: "public.accounts",
			After: change.Row{"id": int64(2), "owner": "bob", "balance": dec(t, "0"), "note": change.Unchanged}, Pos: pos(4), CommitTime: utc},
		{Op: change.Delete, Table: "public.accounts", Before: change.Row{"id": int64(2)}, Pos: pos(5), CommitTime: utc},
		{Op: change.Delete, Table: "public.accounts", Before: change.Row{"id": int64(3), "owner": "cy", "balance": dec(t, "NaN"), "note": "x"}, Pos: pos(6), CommitTime: utc},
		{Op: change.Truncate, Table: "public.accounts", Pos: pos(7), CommitTime: utc},
		{Op: change.Truncate, Table: "audit.log", Pos: pos(8), CommitTime: utc},
		{Op: change.Commit, Pos: pos(9), CommitTime: utc, Resume: endLSN},
	}
	checkEvents(t, events, want)
	for _, ev := range events {
		if ev.CommitTime.Location() != time.UTC {
			t.Errorf("%v at %v: CommitTime in %v, want UTC", ev.Op, ev.Pos, ev.CommitTime.Location())
		}
	}
	if got := events[len(events)-1].Pos.String(); got != "16/B374D848#9" {
		t.Errorf("commit marker at %s", got)
	}
}

// TestDecodeTransactions checks that ordinals restart with every
// transaction and positions only grow.
func TestDecodeTransactions(t *testing.T) {
	t.Parallel()
	d := decode.NewPgOutput(nil)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var msgs [][]byte
	msgs = append(msgs, accountsRel())
	for tx := uint64(1); tx <= 3; tx++ {
		lsn := tx * 0x1000
		msgs = append(msgs, beginMsg(lsn, at, uint32(tx)))
		for i := range tx {
			msgs = append(msgs, insertMsg(accounts, txt(fmt.Sprint(tx*10+i)), null, null, null))
		}
		msgs = append(msgs, commitMsg(lsn, lsn+0x28, at))
	}
	events := decodeAll(t, d, msgs...)
	var got []string
	var last change.Position
	for i, ev := range events {
		got = append(got, fmt.Sprintf("%v@%v", ev.Op, ev.Pos))
		if i > 0 && !last.Less(ev.Pos) {
			t.Errorf("position %v after %v", ev.Pos, last)
		}
		last = ev.Pos
	}
	want := "insert@0/1000#1 commit@0/1000#2 insert@0/2000#1 insert@0/2000#2 commit@0/2000#3 " +
		"insert@0/3000#1 insert@0/3000#2 insert@0/3000#3 commit@0/3000#4"
	if strings.Join(got, " ") != want {
		t.Errorf("got  %s\nwant %s", strings.Join(got, " "), want)
	}
	if r := events[len(events)-1].Resume; r != 0x3028 {
		t.Errorf("resume %X, want 3028", r)
	}
}

func TestDecodeAppends(t *testing.T) {
	t.Parallel()
	d := decode.NewPgOutput(nil)
	decodeAll(t, d, accountsRel(), beginMsg(1, t0, 1))
	prior := []change.Event{{Op: change.Heartbeat, Resume: 5}}
	out, err := d.Decode(prior, insertMsg(accounts, txt("1"), null, null, null))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Op != change.Heartbeat || out[1].Op != change.Insert {
		t.Fatalf("Decode did not append: %+v", out)
	}
	// BEGIN, RELATION, TYPE and ORIGIN imply no event.
	for _, m := range [][]byte{accountsRel(), typeMsg(1, "s", "t"), originMsg(1, "o")} {
		if out, err := d.Decode(nil, m); err != nil || len(out) != 0 {
			t.Errorf("%c: %v, %v", m[0], out, err)
		}
	}
}

func TestDecodeColumnFilter(t *testing.T) {
	t.Parallel()
	var asked []string
	d := decode.NewPgOutput(func(table, column string) bool {
		asked = append(asked, table+"."+column)
		return column != "owner" && column != "note"
	})
	events := decodeAll(t, d, accountsRel(), beginMsg(9, t0, 1),
		insertMsg(accounts, txt("1"), txt("ann"), txt("1"), txt("n")),
		updateMsg(accounts, 'O', []tcol{txt("1"), txt("ann"), txt("1"), txt("n")}, []tcol{txt("1"), txt("bob"), txt("2"), toast}),
		deleteMsg(accounts, 'O', txt("1"), txt("bob"), txt("2"), txt("n")),
		commitMsg(9, 10, t0))
	want := []change.Event{
		{Op: change.Insert, Table: "public.accounts", After: change.Row{"id": int64(1), "balance": dec(t, "1")}, Pos: change.Position{LSN: 9, Ordinal: 1}},
		{Op: change.Update, Table: "public.accounts", Before: change.Row{"id": int64(1), "balance": dec(t, "1")},
			After: change.Row{"id": int64(1), "balance": dec(t, "2")}, Pos: change.Position{LSN: 9, Ordinal: 2}},
		{Op: change.Delete, Table: "public.accounts", Before: change.Row{"id": int64(1), "balance": dec(t, "2")}, Pos: change.Position{LSN: 9, Ordinal: 3}},
		{Op: change.Commit, Pos: change.Position{LSN: 9, Ordinal: 4}, Resume: 10},
	}
	for i := range want {
		want[i].CommitTime = t0
	}
	checkEvents(t, events, want)
	if got := strings.Join(asked, " "); got != "public.accounts.id public.accounts.owner public.accounts.balance public.accounts.note" {
		t.Errorf("keep asked about %s", got)
	}
}

// TestDecodeRelationChange: a RELATION message in the middle of the
// stream (ALTER TABLE ADD COLUMN) replaces the relation for what follows.
func TestDecodeRelationChange(t *testing.T) {
	t.Parallel()
	d := decode.NewPgOutput(nil)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v1 := relationMsg(7, "public", "t", relCol{key: true, name: "id", oid: pgtype.Int4OID}, relCol{name: "a", oid: pgtype.TextOID})
	v2 := relationMsg(7, "public", "t", relCol{key: true, name: "id", oid: pgtype.Int4OID}, relCol{name: "a", oid: pgtype.TextOID},
		relCol{name: "b", oid: pgtype.BoolOID})
	events := decodeAll(t, d, v1, beginMsg(50, at, 1),
		insertMsg(7, txt("1"), txt("x")),
		v2,
		insertMsg(7, txt("2"), txt("y"), txt("t")),
		commitMsg(50, 60, at))
	checkEvents(t, events, []change.Event{
		{Op: change.Insert, Table: "public.t", After: change.Row{"id": int64(1), "a": "x"}, Pos: change.Position{LSN: 50, Ordinal: 1}, CommitTime: at},
		{Op: change.Insert, Table: "public.t", After: change.Row{"id": int64(2), "a": "y", "b": true}, Pos: change.Position{LSN: 50, Ordinal: 2}, CommitTime: at},
		{Op: change.Commit, Pos: change.Position{LSN: 50, Ordinal: 3}, CommitTime: at, Resume: 60},
	})
	// A row of the old shape no longer fits.
	decodeAll(t, d, beginMsg(70, at, 2))
	if _, err := d.Decode(nil, insertMsg(7, txt("3"), txt("z"))); !errors.Is(err, decode.ErrProtocol) {
		t.Errorf("2-column row for a 3-column relation: %v, want ErrProtocol", err)
	}
}

func TestDecodeProtocolViolations(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	row := []tcol{txt("1"), null, null, null}
	cases := []struct {
		name  string
		setup [][]byte // decoded first, without error
		msg   []byte
	}{
		{"insert outside a transaction", [][]byte{accountsRel()}, insertMsg(accounts, row...)},
		{"update outside a transaction", [][]byte{accountsRel()}, updateMsg(accounts, 0, nil, row)},
		{"delete outside a transaction", [][]byte{accountsRel()}, deleteMsg(accounts, 'K', row...)},
		{"truncate outside a transaction", [][]byte{accountsRel()}, truncateMsg(0, accounts)},
		{"insert into an unknown relation", [][]byte{beginMsg(5, at, 1)}, insertMsg(99, row...)},
		{"update of an unknown relation", [][]byte{beginMsg(5, at, 1)}, updateMsg(99, 0, nil, row)},
		{"delete from an unknown relation", [][]byte{beginMsg(5, at, 1)}, deleteMsg(99, 'O', row...)},
		{"truncate of an unknown relation", [][]byte{accountsRel(), beginMsg(5, at, 1)}, truncateMsg(0, accounts, 99)},
		{"commit LSN mismatch", [][]byte{beginMsg(5, at, 1)}, commitMsg(6, 7, at)},
		{"commit without begin", nil, commitMsg(5, 7, at)},
		{"begin inside a transaction", [][]byte{beginMsg(5, at, 1)}, beginMsg(6, at, 2)},
		{"too few columns", [][]byte{accountsRel(), beginMsg(5, at, 1)}, insertMsg(accounts, txt("1"), null, null)},
		{"too many columns", [][]byte{accountsRel(), beginMsg(5, at, 1)}, insertMsg(accounts, txt("1"), null, null, null, null)},
		{"old tuple column count", [][]byte{accountsRel(), beginMsg(5, at, 1)}, updateMsg(accounts, 'O', []tcol{txt("1")}, row)},
		{"delete column count", [][]byte{accountsRel(), beginMsg(5, at, 1)}, deleteMsg(accounts, 'K', txt("1"))},
		{"unknown tuple data kind", [][]byte{accountsRel(), beginMsg(5, at, 1)}, insertMsg(accounts, txt("1"), tcol{kind: 'x'}, null, null)},
		{"empty message", nil, []byte{}},
		{"unknown message type", nil, []byte{'Z', 0, 0}},
		{"short begin", nil, beginMsg(5, at, 1)[:12]},
		{"short relation", nil, accountsRel()[:20]},
		{"column longer than message", [][]byte{accountsRel(), beginMsg(5, at, 1)}, insertMsg(accounts, txt("1"), null, null, null)[:12]},
		{"huge column length", [][]byte{accountsRel(), beginMsg(5, at, 1)},
			append(enc{'I'}.u32(accounts).u8('N').u16(1).u8('t').u32(0xFFFFFFF0), "x"...)},
		{"huge truncate count", [][]byte{accountsRel(), beginMsg(5, at, 1)}, enc{'T'}.u32(0xFFFFFFFF).u8(0).u32(accounts)},
		{"update without new tuple", [][]byte{accountsRel(), beginMsg(5, at, 1)}, updateMsg(accounts, 'K', row, row)[:20]},
		{"insert tuple type", [][]byte{accountsRel(), beginMsg(5, at, 1)}, enc{'I'}.u32(accounts).u8('X').tuple(row)},
		{"delete tuple type", [][]byte{accountsRel(), beginMsg(5, at, 1)}, enc{'D'}.u32(accounts).u8('N').tuple(row)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := decode.NewPgOutput(nil)
			decodeAll(t, d, c.setup...)
			prior := []change.Event{{Op: change.Heartbeat}}
			out, err := d.Decode(prior, c.msg)
			if !errors.Is(err, decode.ErrProtocol) {
				t.Fatalf("err = %v, want one wrapping ErrProtocol", err)
			}
			if len(out) != 1 {
				t.Errorf("events added on error: %+v", out)
			}
		})
	}
}

// A value PostgreSQL cannot have sent is an error, but not a protocol
// violation.
func TestDecodeBadValue(t *testing.T) {
	t.Parallel()
	d := decode.NewPgOutput(nil)
	decodeAll(t, d, accountsRel(), beginMsg(5, t0, 1))
	_, err := d.Decode(nil, insertMsg(accounts, txt("one"), null, null, null))
	if err == nil || !strings.Contains(err.Error(), "public.accounts.id") {
		t.Errorf("err = %v, want one naming public.accounts.id", err)
	}
}

func TestDecodeText(t *testing.T) {
	t.Parallel()
	ts := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UTC()
	}
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	const enumOID = 90001 // a user type: pgx does not know it
	cases := []struct {
		oid  uint32
		text string
		want any
	}{
		{pgtype.Int2OID, "-32768", int64(-32768)},
		{pgtype.Int2OID, "32767", int64(32767)},
		{pgtype.Int4OID, "-2147483648", int64(-2147483648)},
		{pgtype.Int4OID, "0", int64(0)},
		{pgtype.Int8OID, "-9223372036854775808", int64(math.MinInt64)},
		{pgtype.Int8OID, "9223372036854775807", int64(math.MaxInt64)},
		{pgtype.OIDOID, "4294967295", int64(4294967295)},

		{pgtype.NumericOID, "12345678901234567890.123456789", dec(t, "12345678901234567890.123456789")},
		{pgtype.NumericOID, "1234567890123456789012345678901234567890", dec(t, "1234567890123456789012345678901234567890")},
		{pgtype.NumericOID, "-0.001", dec(t, "-0.001")},
		{pgtype.NumericOID, "0.0000000001", dec(t, "0.0000000001")},
		{pgtype.NumericOID, "1.500", dec(t, "1.500")}, // the scale is kept
		{pgtype.NumericOID, "0", dec(t, "0")},
		{pgtype.NumericOID, "100", dec(t, "100")},                           // exponent 0, not 1E+2
		{pgtype.NumericOID, "12345.6789000000", dec(t, "12345.6789000000")}, // numeric(30,10)
		{pgtype.NumericOID, "NaN", dec(t, "NaN")},
		{pgtype.NumericOID, "Infinity", dec(t, "Infinity")},
		{pgtype.NumericOID, "-Infinity", dec(t, "-Infinity")},

		{pgtype.Float4OID, "0.1", 0.1}, // not 0.10000000149011612
		{pgtype.Float4OID, "3.4028235e+38", 3.4028235e+38},
		{pgtype.Float4OID, "1e-45", 1e-45},
		{pgtype.Float4OID, "-1.5", -1.5},
		{pgtype.Float4OID, "Infinity", math.Inf(1)},
		{pgtype.Float4OID, "-Infinity", math.Inf(-1)},
		{pgtype.Float4OID, "NaN", math.NaN()},
		{pgtype.Float8OID, "0.1", 0.1},
		{pgtype.Float8OID, "1.7976931348623157e+308", math.MaxFloat64},
		{pgtype.Float8OID, "5e-324", 5e-324},
		{pgtype.Float8OID, "-0", math.Copysign(0, -1)},
		{pgtype.Float8OID, "-Infinity", math.Inf(-1)},
		{pgtype.Float8OID, "NaN", math.NaN()},

		{pgtype.BoolOID, "t", true},
		{pgtype.BoolOID, "f", false},

		{pgtype.TextOID, "héllo, 'world'", "héllo, 'world'"},
		{pgtype.TextOID, "", ""},
		{pgtype.VarcharOID, "abc", "abc"},
		{pgtype.BPCharOID, "ab ", "ab "}, // char(3) keeps its padding
		{pgtype.NameOID, "pg_class", "pg_class"},
		{pgtype.QCharOID, "a", "a"}, // "char"

		{pgtype.ByteaOID, `\x00ff`, []byte{0, 255}},
		{pgtype.ByteaOID, `\x`, []byte{}},

		{pgtype.DateOID, "2024-02-29", day(2024, 2, 29)},
		{pgtype.DateOID, "0001-01-01", day(1, 1, 1)},
		{pgtype.DateOID, "infinity", change.PosInfinity},
		{pgtype.DateOID, "-infinity", change.NegInfinity},
		{pgtype.TimestampOID, "2024-01-02 03:04:05.123456", ts("2024-01-02T03:04:05.123456Z")},
		{pgtype.TimestampOID, "2024-01-02 03:04:05", ts("2024-01-02T03:04:05Z")},
		{pgtype.TimestampOID, "infinity", change.PosInfinity},
		{pgtype.TimestampOID, "-infinity", change.NegInfinity},
		{pgtype.TimestamptzOID, "2024-01-02 03:04:05.5+05:30", ts("2024-01-01T21:34:05.5Z")},
		{pgtype.TimestamptzOID, "2024-01-02 03:04:05-08", ts("2024-01-02T11:04:05Z")},
		{pgtype.TimestamptzOID, "2024-01-02 03:04:05+00", ts("2024-01-02T03:04:05Z")},
		{pgtype.TimestamptzOID, "1969-12-31 23:59:59.999999+00", ts("1969-12-31T23:59:59.999999Z")},
		{pgtype.TimestamptzOID, "infinity", change.PosInfinity},
		{pgtype.TimestamptzOID, "-infinity", change.NegInfinity},
		{pgtype.TimeOID, "12:34:56.789", "12:34:56.789"},
		{pgtype.TimetzOID, "12:34:56+02", "12:34:56+02"},

		{pgtype.IntervalOID, "1 day 02:03:04.5", 26*time.Hour + 3*time.Minute + 4500*time.Millisecond},
		{pgtype.IntervalOID, "-00:00:01", -time.Second},
		{pgtype.IntervalOID, "00:00:00", time.Duration(0)},
		{pgtype.IntervalOID, "1 mon", "1 mon"}, // a month has no fixed length
		{pgtype.IntervalOID, "1 year 2 mons 3 days 04:05:06", "1 year 2 mons 3 days 04:05:06"},

		{pgtype.UUIDOID, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{pgtype.UUIDOID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},

		{pgtype.JSONOID, `{"b": 1,  "a": [1.10, null]}`, json.RawMessage(`{"b": 1,  "a": [1.10, null]}`)},
		{pgtype.JSONBOID, `{"a": [1.10, null], "b": 1}`, json.RawMessage(`{"a": [1.10, null], "b": 1}`)},
		{pgtype.JSONBOID, `"s"`, json.RawMessage(`"s"`)},

		{pgtype.Int4ArrayOID, "{1,NULL,-3}", []any{int64(1), nil, int64(-3)}},
		{pgtype.Int4ArrayOID, "{}", []any{}},
		{pgtype.Int4ArrayOID, "{{1,2},{3,4}}", []any{[]any{int64(1), int64(2)}, []any{int64(3), int64(4)}}}, // nested, not flattened
		{pgtype.Int4ArrayOID, "{{{1},{2}}}", []any{[]any{[]any{int64(1)}, []any{int64(2)}}}},
		{pgtype.Int8ArrayOID, "{9223372036854775807}", []any{int64(math.MaxInt64)}},
		{pgtype.TextArrayOID, `{a,"b c",NULL,"NULL","x\"y",""}`, []any{"a", "b c", nil, "NULL", `x"y`, ""}},
		{pgtype.NumericArrayOID, "{1.50,NaN,-0.001}", []any{dec(t, "1.50"), dec(t, "NaN"), dec(t, "-0.001")}},
		{pgtype.Float4ArrayOID, "{0.1,Infinity}", []any{0.1, math.Inf(1)}},
		{pgtype.BoolArrayOID, "{t,f}", []any{true, false}},
		{pgtype.TimestamptzArrayOID, `{"2024-01-02 03:04:05+02",infinity}`, []any{ts("2024-01-02T01:04:05Z"), change.PosInfinity}},
		{pgtype.IntervalArrayOID, `{01:00:00,"1 mon 2 days"}`, []any{time.Hour, "1 mon 2 days"}},
		{pgtype.InetArrayOID, "{10.0.0.1,10.0.0.0/8}", []any{"10.0.0.1", "10.0.0.0/8"}},
		{pgtype.JSONBArrayOID, `{"{\"a\": 1}"}`, []any{json.RawMessage(`{"a": 1}`)}},
		{pgtype.UUIDArrayOID, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", []any{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}},

		{pgtype.InetOID, "192.168.0.1/24", "192.168.0.1/24"},
		{pgtype.InetOID, "10.0.0.1", "10.0.0.1"},
		{pgtype.InetOID, "::1", "::1"},
		{pgtype.CIDROID, "10.0.0.0/8", "10.0.0.0/8"},
		{pgtype.MacaddrOID, "08:00:2b:01:02:03", "08:00:2b:01:02:03"},

		{790, "$1,234.56", "$1,234.56"}, // money: pgx has no codec
		{pgtype.XMLOID, "<a>b</a>", "<a>b</a>"},
		{pgtype.XMLArrayOID, "{<a/>}", []any{"<a/>"}},
		{enumOID, "happy", "happy"},
		{enumOID + 1, "{happy,sad}", "{happy,sad}"}, // an array of an unknown type
		{pgtype.Int4rangeOID, "[1,3)", "[1,3)"},
		{pgtype.PointOID, "(1,2)", "(1,2)"},
	}
	types := pgtype.NewMap()
	for _, c := range cases {
		got, err := decode.DecodeText(types, c.oid, []byte(c.text))
		if err != nil {
			t.Errorf("oid %d %q: %v", c.oid, c.text, err)
			continue
		}
		if msg := diffValue(c.want, got); msg != "" {
			t.Errorf("oid %d %q: %s", c.oid, c.text, msg)
		}
	}
}

func TestDecodeTextErrors(t *testing.T) {
	t.Parallel()
	types := pgtype.NewMap()
	for _, c := range []struct {
		oid  uint32
		text string
	}{
		{pgtype.Int4OID, "abc"},
		{pgtype.Int2OID, "40000"},
		{pgtype.NumericOID, "1.2.3"},
		{pgtype.BoolOID, "maybe"},
		{pgtype.DateOID, "2024-13-01"},
		{pgtype.UUIDOID, "not-a-uuid"},
		{pgtype.Int4ArrayOID, "{1,"},
		{pgtype.Int4ArrayOID, "{1,x}"},
	} {
		if v, err := decode.DecodeText(types, c.oid, []byte(c.text)); err == nil {
			t.Errorf("oid %d %q = %#v, want an error", c.oid, c.text, v)
		}
	}
}

// checkEvents compares events field by field and value by value.
func checkEvents(t *testing.T, got, want []change.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d events, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.Op != w.Op || g.Table != w.Table || g.Pos != w.Pos || g.Resume != w.Resume || !g.CommitTime.Equal(w.CommitTime) {
			t.Errorf("event %d: %v %s at %v resume %X time %v, want %v %s at %v resume %X time %v", i,
				g.Op, g.Table, g.Pos, g.Resume, g.CommitTime, w.Op, w.Table, w.Pos, w.Resume, w.CommitTime)
		}
		if msg := diffRow(w.Before, g.Before); msg != "" {
			t.Errorf("event %d (%v) Before: %s", i, g.Op, msg)
		}
		if msg := diffRow(w.After, g.After); msg != "" {
			t.Errorf("event %d (%v) After: %s", i, g.Op, msg)
		}
	}
}

func diffRow(want, got change.Row) string {
	if (want == nil) != (got == nil) {
		return fmt.Sprintf("got %v, want %v", got, want)
	}
	var msgs []string
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			msgs = append(msgs, fmt.Sprintf("%s missing", k))
			continue
		}
		if m := diffValue(w, g); m != "" {
			msgs = append(msgs, k+": "+m)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			msgs = append(msgs, fmt.Sprintf("unexpected %s = %#v", k, g))
		}
	}
	return strings.Join(msgs, "; ")
}

// diffValue compares exactly: same Go type, same value. Decimals must have
// the same coefficient and exponent (1.50 is not 1.5), floats the same
// bits (NaN equals NaN, -0 is not 0), times the same instant in UTC.
func diffValue(want, got any) string {
	if reflect.TypeOf(want) != reflect.TypeOf(got) {
		return fmt.Sprintf("got %T %#v, want %T %#v", got, got, want, want)
	}
	bad := func() string { return fmt.Sprintf("got %#v, want %#v", got, want) }
	switch w := want.(type) {
	case *apd.Decimal:
		g := got.(*apd.Decimal)
		if g.Text('f') != w.Text('f') || g.Form != w.Form || g.Negative != w.Negative || g.Exponent != w.Exponent {
			return fmt.Sprintf("got decimal %s (exp %d), want %s (exp %d)", g.Text('f'), g.Exponent, w.Text('f'), w.Exponent)
		}
		if w.Form == apd.Finite && g.Cmp(w) != 0 {
			return fmt.Sprintf("got decimal %s, want %s", g, w)
		}
	case float64:
		if math.Float64bits(w) != math.Float64bits(got.(float64)) && !(math.IsNaN(w) && math.IsNaN(got.(float64))) {
			return bad()
		}
	case time.Time:
		g := got.(time.Time)
		if !g.Equal(w) || g.Location() != time.UTC {
			return fmt.Sprintf("got %v, want %v", g, w)
		}
	case []byte:
		if !bytes.Equal(w, got.([]byte)) {
			return bad()
		}
	case json.RawMessage:
		if !bytes.Equal(w, got.(json.RawMessage)) {
			return fmt.Sprintf("got %s, want %s", got, w)
		}
	case []any:
		g := got.([]any)
		if len(g) != len(w) {
			return bad()
		}
		for i := range w {
			if m := diffValue(w[i], g[i]); m != "" {
				return fmt.Sprintf("element %d: %s", i, m)
			}
		}
	default:
		if want != got {
			return bad()
		}
	}
	return ""
}
