package debeziumtest_test

import (
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/decode"
	"github.com/tilefeed/tilefeed/decode/debeziumtest"
)

var opsTable = debeziumtest.Table{Schema: "public", Name: "t", Columns: []debeziumtest.Column{
	{Name: "id", OID: pgtype.Int4OID, Key: true, NotNull: true},
	{Name: "name", OID: pgtype.TextOID},
	{Name: "qty", OID: pgtype.Int8OID, NotNull: true},
}}

// TestOps checks the records of each kind of change: what Debezium emits
// and what the Debezium decoder makes of it.
func TestOps(t *testing.T) {
	t.Parallel()
	commit := time.Date(2025, 5, 5, 10, 18, 35, 942123000, time.UTC)
	row := func(id int64, name any, qty int64) change.Row { return change.Row{"id": id, "name": name, "qty": qty} }
	type want struct {
		kind   decode.Kind
		op     change.Op
		before change.Row
		after  change.Row
		key    change.Row
	}
	cases := []struct {
		name string
		ev   change.Event
		want []want
	}{
		{"insert", change.Event{Op: change.Insert, After: row(1, "a", 2)},
			[]want{{decode.KindChange, change.Insert, nil, row(1, "a", 2), change.Row{"id": int64(1)}}}},
		{"update default", change.Event{Op: change.Update, After: row(1, "b", 2)},
			[]want{{decode.KindChange, change.Update, nil, row(1, "b", 2), change.Row{"id": int64(1)}}}},
		{"update full", change.Event{Op: change.Update, Before: row(1, nil, 2), After: row(1, "b", 3)},
			[]want{{decode.KindChange, change.Update, row(1, nil, 2), row(1, "b", 3), change.Row{"id": int64(1)}}}},
		// A DEFAULT delete's old image has the key only: Debezium fills
		// the rest with null, or the type's zero when NOT NULL.
		{"delete default", change.Event{Op: change.Delete, Before: change.Row{"id": int64(1)}}, []want{
			{decode.KindChange, change.Delete, row(1, nil, 0), nil, change.Row{"id": int64(1)}},
			{decode.KindTombstone, 0, nil, nil, change.Row{"id": int64(1)}},
		}},
		{"key change", change.Event{Op: change.Update, Before: change.Row{"id": int64(1)}, After: row(2, "a", 2)}, []want{
			{decode.KindChange, change.Delete, row(1, nil, 0), nil, change.Row{"id": int64(1)}},
			{decode.KindTombstone, 0, nil, nil, change.Row{"id": int64(1)}},
			{decode.KindChange, change.Insert, nil, row(2, "a", 2), change.Row{"id": int64(2)}},
		}},
		{"truncate", change.Event{Op: change.Truncate}, []want{{decode.KindChange, change.Truncate, nil, nil, nil}}},
	}
	for _, f := range formats {
		enc, err := debeziumtest.New(debeziumtest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			t.Run(f.name+"/"+c.name, func(t *testing.T) {
				ev := c.ev
				ev.Table, ev.CommitTime = "public.t", commit
				recs, err := enc.Encode(f.f, opsTable, ev, debeziumtest.Source{LSN: 100, LastCommitLSN: 90, TxID: 7})
				if err != nil {
					t.Fatal(err)
				}
				if len(recs) != len(c.want) {
					t.Fatalf("%d records, want %d", len(recs), len(c.want))
				}
				for i, w := range c.want {
					env := decodeRecord(t, enc, f.f, opsTable, debeziumtest.Options{}, recs[i])
					if recs[i].Topic != "tilefeed.public.t" {
						t.Errorf("topic %q", recs[i].Topic)
					}
					if env.Kind != w.kind || !sameRow(env.Key, w.key) {
						t.Errorf("record %d: kind %s key %v, want %s %v", i, env.Kind, env.Key, w.kind, w.key)
					}
					if w.kind != decode.KindChange {
						continue
					}
					e := env.Event
					if e.Op != w.op || !sameRow(e.Before, w.before) || !sameRow(e.After, w.after) || !e.CommitTime.Equal(commit) {
						t.Errorf("record %d: %+v\nwant op %s before %v after %v", i, e, w.op, w.before, w.after)
					}
					s := env.Source
					if s.LSN != 100 || s.TxID != 7 || s.Sequence[0] == nil || *s.Sequence[0] != 90 || *s.Sequence[1] != 100 ||
						s.Snapshot != "false" || s.Connector != "postgresql" || s.Name != "tilefeed" || s.DB != "postgres" {
						t.Errorf("record %d: source %+v", i, s)
					}
				}
			})
		}
	}
}

func sameRow(a, b change.Row) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !same(v, w) {
			return false
		}
	}
	return true
}

// TestSequencer checks source.sequence over a stream: null before the
// first commit, then the Resume of the commit before.
func TestSequencer(t *testing.T) {
	t.Parallel()
	var seq debeziumtest.Sequencer
	ins := change.Event{Op: change.Insert, Table: "public.t"}
	if s := seq.Source(ins, 10, 5); s.LastCommitLSN != 0 || s.LSN != 10 || s.TxID != 5 {
		t.Errorf("first: %+v", s)
	}
	seq.Source(change.Event{Op: change.Commit, Resume: 20}, 19, 5)
	if s := seq.Source(ins, 30, 6); s.LastCommitLSN != 20 || s.LSN != 30 || s.TxID != 6 {
		t.Errorf("second: %+v", s)
	}
}

// TestRegistryHTTP decodes Avro records through decode.SchemaRegistry
// talking to the encoder's Registry over HTTP.
func TestRegistryHTTP(t *testing.T) {
	t.Parallel()
	enc, err := debeziumtest.New(debeziumtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := enc.Encode(debeziumtest.Avro, opsTable, change.Event{Op: change.Insert, Table: "public.t",
		After: change.Row{"id": int64(1), "name": "a", "qty": int64(2)}}, debeziumtest.Source{LSN: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(enc.Registry())
	defer srv.Close()
	d := &decode.Debezium{Schemas: decode.NewSchemaRegistry(srv.URL, srv.Client())}
	env, err := d.DecodeAvro(recs[0].Key, recs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if !sameRow(env.Event.After, change.Row{"id": int64(1), "name": "a", "qty": int64(2)}) {
		t.Errorf("after %v", env.Event.After)
	}
	if _, err := decode.NewSchemaRegistry(srv.URL, srv.Client()).Schema(99); err == nil {
		t.Error("schema 99 found")
	}
}

// TestUnrepresentable checks the values Debezium itself fails on.
func TestUnrepresentable(t *testing.T) {
	t.Parallel()
	enc, err := debeziumtest.New(debeziumtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tbl := debeziumtest.Table{Schema: "public", Name: "t", Columns: []debeziumtest.Column{
		{Name: "id", OID: pgtype.Int4OID, Key: true},
		{Name: "n", OID: pgtype.NumericOID, TypeMod: -1},
		{Name: "a", OID: pgtype.Float8ArrayOID},
	}}
	for _, after := range []change.Row{
		{"id": int64(1), "n": dec("NaN")},
		{"id": int64(1), "a": change.Unchanged},
	} {
		_, err := enc.Encode(debeziumtest.JSON, tbl, change.Event{Op: change.Update, Table: "public.t", After: after}, debeziumtest.Source{})
		if !errors.Is(err, debeziumtest.ErrUnrepresentable) {
			t.Errorf("%v: %v, want ErrUnrepresentable", after, err)
		}
	}
}
