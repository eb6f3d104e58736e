package integration

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/sink/split"
)

// busyEvents is the size of the busy card's history: 100k transactions
// in 30 days, each at a merchant of its own.
const busyEvents = 100_000

// TestBusyEntity: one card with 100k transactions in 30 days, an exact
// 30-day max and distinct over a column with a value per row, and a
// lifetime min. Its state (about 2 MiB) is over the store's 1 MiB record
// limit, so it is stored split (sink/split); the features equal SQL, also
// after deleting the card's biggest amounts (the max retracts).
func TestBusyEntity(t *testing.T) {
	conn, db := newDB(t)
	c := loadConnector(t, busyConnector(db, storePath(t)))
	busyEntity(t, conn, c)
}

// TestBusyEntityAerospike is TestBusyEntity on a real Aerospike.
func TestBusyEntityAerospike(t *testing.T) {
	conn, db := newDB(t)
	c := loadConnector(t, busyConnector(db, storePath(t)))
	withAerospike(t, c)
	busyEntity(t, conn, c)
}

func busyConnector(db, store string) []byte {
	raw := connectorJSON(db, store, "127.0.0.1:0")
	i := bytes.Index(raw, []byte(`"features"`))
	return append(raw[:i:i], []byte(`"features": [
    {"name": "busy", "table": "public.transactions", "entity": ["card_id"], "time": "created_at",
     "aggregations": [
       {"name": "n_30d", "function": "count", "window": "30d"},
       {"name": "max_30d", "function": "max", "column": "amount", "window": "30d"},
       {"name": "merchants_30d", "function": "distinct", "column": "merchant", "window": "30d"},
       {"name": "min_ever", "function": "min", "column": "amount"}]},
    {"name": "sync", "table": "public.sync", "entity": ["id"], "project": ["id"]}
  ]
}`)...)
}

func busyEntity(t *testing.T, conn *pgx.Conn, c *config.Connector) {
	ctx := context.Background()
	r := startRuntime(t, c)
	defer r.stop(t)
	start := time.Now()
	// In 20 transactions of 5,000 rows, spread over the last 29 days.
	for b := 0; b < 20; b++ {
		_, err := conn.Exec(ctx, `INSERT INTO transactions (card_id, merchant, amount, status, created_at)
			SELECT 7, 'merchant-' || i, (i * 7919 % 1000003) / 100.0, 'ok', now() - (i * interval '25 seconds')
			FROM generate_series($1::int, $2::int) i`, b*5000+1, (b+1)*5000)
		if err != nil {
			t.Fatal(err)
		}
	}
	waitSyncFor(t, conn, r.read, 1, 5*time.Minute)
	t.Logf("%d changes of one card durable in %s", busyEvents, time.Since(start).Round(time.Millisecond))
	busyVerify(t, conn, r.read, time.Now())
	assertSplit(t, r)

	// Retractions: the 1,000 biggest amounts go, and 500 rows change
	// merchant to one the card already has.
	if _, err := conn.Exec(ctx, `DELETE FROM transactions WHERE id IN (SELECT id FROM transactions ORDER BY amount DESC LIMIT 1000)`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE transactions SET merchant = 'merchant-1' WHERE id % 200 = 3`); err != nil {
		t.Fatal(err)
	}
	waitSyncFor(t, conn, r.read, 2, 5*time.Minute)
	busyVerify(t, conn, r.read, time.Now())
}

func busyVerify(t *testing.T, conn *pgx.Conn, read featureReader, at time.Time) {
	t.Helper()
	end := at.Truncate(12 * time.Hour).Add(12 * time.Hour) // the 30d window's tiles are 12h
	var n, merchants int64
	var maxAmount, minAmount string
	err := conn.QueryRow(context.Background(), `SELECT count(*), max(amount)::text, count(DISTINCT merchant),
			(SELECT min(amount)::text FROM transactions WHERE card_id = 7)
		FROM transactions WHERE card_id = 7 AND created_at >= $1 AND created_at < $2`,
		end.Add(-30*24*time.Hour-12*time.Hour), end).Scan(&n, &maxAmount, &merchants, &minAmount)
	if err != nil {
		t.Fatal(err)
	}
	found, f, err := read("busy", "7", at)
	if err != nil || !found {
		t.Fatalf("read the busy card: found %v, %v", found, err)
	}
	want := map[string]any{"n_30d": n, "max_30d": maxAmount, "merchants_30d": merchants, "min_ever": minAmount}
	for name, w := range want {
		if !sameValue(f[name], w) {
			t.Errorf("%s = %v, SQL says %v", name, f[name], w)
		}
	}
}

// assertSplit checks that the busy card's record is stored split: its
// head, read from under the split store, names parts.
func assertSplit(t *testing.T, r *runtime) {
	t.Helper()
	sp, ok := r.store.(*split.Split)
	if !ok {
		t.Fatalf("the runtime's store is a %T, not split", r.store)
	}
	recs, err := sp.Inner().Get(context.Background(), []sink.Key{{Set: "busy", ID: "7"}})
	if err != nil {
		t.Fatal(err)
	}
	parts, ok := recs[0].Bins["_parts"].(map[any]any)
	if !ok {
		t.Fatalf("the busy card's record is not split: %d bins", len(recs[0].Bins))
	}
	n := 0
	for _, l := range parts {
		n += len(l.([]any))
	}
	whole, err := sp.Get(context.Background(), []sink.Key{{Set: "busy", ID: "7"}})
	if err != nil {
		t.Fatal(err)
	}
	size := 0
	for _, v := range whole[0].Bins {
		if b, ok := v.([]byte); ok {
			size += len(b)
		}
	}
	t.Logf("the busy card's record: %d bytes of tiles, in a head and %d parts", size, n)
	if size <= 1<<20 {
		t.Errorf("the busy card's tiles take %d bytes: not over the 1 MiB record limit the test is about", size)
	}
}
