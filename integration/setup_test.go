package integration

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/connector/postgres"
	"github.com/tilefeed/tilefeed/transform"
)

// TestSetupReportsEveryProblem: a connector whose features do not fit the
// live tables fails at startup with one error naming every problem and its
// fix, and changes nothing.
func TestSetupReportsEveryProblem(t *testing.T) {
	conn, db := newDB(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `CREATE TABLE plain (id int PRIMARY KEY, card_id int, amount text, at text)`); err != nil {
		t.Fatal(err)
	}
	raw := strings.Replace(string(connectorJSON(db, storePath(t), "127.0.0.1:0")), `"features": [`, `"features": [
    {"name": "bad", "table": "public.plain", "entity": ["card_id"], "time": "at",
     "aggregations": [{"name": "s", "function": "sum", "column": "amount", "window": "1h"},
                      {"name": "m", "function": "max", "column": "nope"}]},
    {"name": "missing", "table": "public.nothere", "entity": ["id"], "project": ["x"]},`, 1)
	err := setupOnly(t, []byte(raw))
	if err == nil {
		t.Fatal("Setup accepted features that do not fit the tables")
	}
	for _, want := range []string{
		`column "nope" does not exist in public.plain`,
		`time column public.plain.at is text, not a timestamp`,
		`sum(amount) needs a number, but public.plain.amount is text`,
		`ALTER TABLE "public"."plain" REPLICA IDENTITY FULL`,
		`table public.nothere does not exist`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	var slots int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", db).Scan(&slots); err != nil || slots != 0 {
		t.Errorf("a failed setup created %d slots (%v)", slots, err)
	}
}

// TestReplicaIdentityAutoset: replica.identity.autoset.values fixes the
// table instead of failing.
func TestReplicaIdentityAutoset(t *testing.T) {
	conn, db := newDB(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "ALTER TABLE transactions REPLICA IDENTITY DEFAULT"); err != nil {
		t.Fatal(err)
	}
	raw := strings.Replace(string(connectorJSON(db, storePath(t), "127.0.0.1:0")), `"snapshot.mode"`,
		`"replica.identity.autoset.values": "public.transactions:FULL", "snapshot.mode"`, 1)
	r := startRuntime(t, loadConnector(t, []byte(raw)))
	defer r.stop(t)
	var ident string
	if err := conn.QueryRow(ctx, "SELECT relreplident::text FROM pg_class WHERE relname = 'transactions'").Scan(&ident); err != nil || ident != "f" {
		t.Errorf("replica identity %q, want f (FULL)", ident)
	}
}

// TestSlotNeverAheadOfCheckpoint samples the slot's confirmed_flush_lsn
// under a workload: it never passes the checkpoint stored in the sink.
func TestSlotNeverAheadOfCheckpoint(t *testing.T) {
	conn, db := newDB(t)
	c := loadConnector(t, connectorJSON(db, storePath(t), "127.0.0.1:0"))
	r := startRuntime(t, c)
	defer r.stop(t)
	ctx, cancel := context.WithCancel(context.Background())
	type sample struct{ slot, checkpoint uint64 }
	samples := make(chan sample, 100000)
	done := make(chan error, 1)
	go func() {
		defer close(samples)
		watcher, err := cluster.CreateDatabase(ctx, db+"_w")
		if err != nil {
			done <- err
			return
		}
		defer watcher.Close(context.Background())
		for ctx.Err() == nil {
			var lsn *string
			if err := watcher.QueryRow(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", c.Postgres.SlotName).Scan(&lsn); err != nil {
				if ctx.Err() == nil {
					done <- err
				}
				break
			}
			cp, _, _, err := connector.LoadCheckpoint(ctx, r.store, c.Name)
			if err != nil {
				done <- err
				return
			}
			if lsn != nil {
				l, _ := pglogrepl.ParseLSN(*lsn)
				samples <- sample{uint64(l), cp.Resume}
			}
			time.Sleep(5 * time.Millisecond)
		}
		done <- nil
	}()
	w := newWorkload(conn, 3)
	w.run(t, 200)
	waitSync(t, conn, r.read, 1)
	time.Sleep(500 * time.Millisecond) // idle: heartbeats advance the slot
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	n, advanced := 0, 0
	var first uint64
	for s := range samples {
		if s.slot > s.checkpoint {
			t.Fatalf("slot confirmed %X past the checkpoint %X", s.slot, s.checkpoint)
		}
		if n == 0 {
			first = s.slot
		} else if s.slot > first {
			advanced++
		}
		n++
	}
	if n < 20 || advanced == 0 {
		t.Fatalf("%d samples, %d after the slot advanced: the check saw too little", n, advanced)
	}
	t.Logf("%d samples, slot never ahead of the checkpoint", n)
}

// TestPostgresRestart restarts PostgreSQL mid-stream: tilefeed reconnects
// and the features still equal SQL.
func TestPostgresRestart(t *testing.T) {
	conn, db := newDB(t)
	c := loadConnector(t, connectorJSON(db, storePath(t), "127.0.0.1:0"))
	r := startRuntime(t, c)
	defer r.stop(t)
	w := newWorkload(conn, 4)
	w.run(t, 100)
	ctx := context.Background()
	if err := cluster.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	var err error
	if conn, err = reconnect(ctx, db); err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	w.conn = conn
	w.run(t, 100)
	waitSync(t, conn, r.read, 1)
	verify(t, conn, r.read, time.Now(), w.cards)
}

// TestSlotDropped: a slot dropped behind tilefeed's back is a fatal error
// that names the slot and what to do, never a silent fresh start.
func TestSlotDropped(t *testing.T) {
	conn, db := newDB(t)
	c := loadConnector(t, connectorJSON(db, storePath(t), "127.0.0.1:0"))
	r := startRuntime(t, c)
	w := newWorkload(conn, 5)
	w.run(t, 20)
	waitSync(t, conn, r.read, 1)
	r.stop(t)
	if _, err := conn.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", c.Postgres.SlotName); err != nil {
		t.Fatal(err)
	}
	st := openStore(t, c)
	defer st.Close()
	cp, _, _, err := connector.LoadCheckpoint(context.Background(), st, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	engine, _ := transform.Compile(c.Features)
	src := postgres.New(c.Postgres, postgres.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)), connector.NewMetrics(prometheus.NewRegistry()))
	err = src.Setup(context.Background(), engine, cp.Resume)
	if !errors.Is(err, postgres.ErrSlotLost) || !strings.Contains(err.Error(), c.Postgres.SlotName) {
		t.Fatalf("want ErrSlotLost naming the slot, got %v", err)
	}
}

// setupOnly runs the source's Setup (the live checks) for a connector file
// and returns its error.
func setupOnly(t *testing.T, raw []byte) error {
	t.Helper()
	c := loadConnector(t, raw)
	engine, err := transform.Compile(c.Features)
	if err != nil {
		t.Fatal(err)
	}
	src := postgres.New(c.Postgres, postgres.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)), connector.NewMetrics(prometheus.NewRegistry()))
	return src.Setup(context.Background(), engine, 0)
}

// TestValidateLiveAutoset: `tilefeed validate -live` judges the replica
// identities as replica.identity.autoset.values will set them, says what
// run would set, and changes nothing; without the autoset it names the fix.
func TestValidateLiveAutoset(t *testing.T) {
	conn, db := newDB(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "ALTER TABLE transactions REPLICA IDENTITY DEFAULT"); err != nil {
		t.Fatal(err)
	}
	bin := buildBinary(t)
	validate := func(raw string) (string, error) {
		file := filepath.Join(t.TempDir(), "c.json")
		if err := os.WriteFile(file, []byte(raw), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "validate", "-c", file, "-live").CombinedOutput()
		return string(out), err
	}
	plain := string(connectorJSON(db, storePath(t), "127.0.0.1:0"))
	out, err := validate(plain)
	if err == nil || !strings.Contains(out, "run ALTER TABLE") || !strings.Contains(out, "replica.identity.autoset.values=public.transactions:FULL") {
		t.Errorf("validate -live of a table without REPLICA IDENTITY FULL: %v\n%s", err, out)
	}
	autoset := strings.Replace(plain, `"snapshot.mode"`, `"replica.identity.autoset.values": "public.transactions:FULL", "snapshot.mode"`, 1)
	out, err = validate(autoset)
	if err != nil || !strings.Contains(out, "would set REPLICA IDENTITY FULL on public.transactions") || strings.Contains(out, "run ALTER TABLE") {
		t.Errorf("validate -live with the autoset: %v\n%s", err, out)
	}
	var ident string
	if err := conn.QueryRow(ctx, "SELECT relreplident::text FROM pg_class WHERE relname = 'transactions'").Scan(&ident); err != nil || ident != "d" {
		t.Errorf("validate -live changed the replica identity to %q", ident)
	}
	bad := strings.Replace(plain, `"snapshot.mode"`, `"replica.identity.autoset.values": "public.transactions:EVERYTHING", "snapshot.mode"`, 1)
	if out, err = validate(bad); err == nil || !strings.Contains(out, `"EVERYTHING" for public.transactions is not FULL`) {
		t.Errorf("validate -live with a bad autoset value: %v\n%s", err, out)
	}
}

// TestKeyTypesFromTable: setup learns the entity columns' types from the
// table, so a read with a key no row can have (card_id=abc on an integer
// key) is an error naming the column, not "not found".
func TestKeyTypesFromTable(t *testing.T) {
	_, db := newDB(t)
	r := startRuntime(t, loadConnector(t, connectorJSON(db, storePath(t), "127.0.0.1:0")))
	defer r.stop(t)
	_, err := r.reader.Read(context.Background(), "card_activity", [][]string{{"abc"}}, time.Now())
	var ke *transform.KeyError
	if !errors.As(err, &ke) || ke.Column != "card_id" || ke.Type != "integer" {
		t.Errorf("read card_id=abc: %v, want a KeyError naming card_id, integer", err)
	}
	if ents, err := r.reader.Read(context.Background(), "card_activity", [][]string{{"42"}}, time.Now()); err != nil || ents[0].Found {
		t.Errorf("read card_id=42: %+v, %v", ents, err)
	}
}
