package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pgx/v5"
)

// workload drives a mixed, seeded stream of changes: single and multi-row
// inserts, updates of the amount, the entity key, the event time and the
// filtered column, deletes, rolled-back transactions, and changes to a
// table no feature reads.
type workload struct {
	rng   *rand.Rand
	conn  *pgx.Conn
	live  []int64 // ids of live transactions rows
	cards int
	custs map[int]bool
	// big adds, now and then, a transaction of up to 10,000 rows.
	big bool
	// changes counts the committed row changes to captured tables.
	changes int64
}

func newWorkload(conn *pgx.Conn, seed uint64) *workload {
	return &workload{rng: rand.New(rand.NewPCG(seed, 99)), conn: conn, cards: 40, custs: map[int]bool{}}
}

func (w *workload) createdAt(now time.Time) time.Time {
	var back time.Duration
	switch p := w.rng.IntN(10); {
	case p < 3:
		back = time.Duration(w.rng.Int64N(int64(15 * time.Minute)))
	case p < 6:
		back = time.Duration(w.rng.Int64N(int64(48 * time.Hour)))
	default:
		back = time.Duration(w.rng.Int64N(int64(40 * 24 * time.Hour)))
	}
	return now.Add(-back).Truncate(time.Microsecond)
}

func (w *workload) amount() string {
	return fmt.Sprintf("%d.%02d", w.rng.IntN(500), w.rng.IntN(100))
}

func (w *workload) status() string {
	if w.rng.IntN(6) == 0 {
		return "declined"
	}
	return "approved"
}

// run executes n transactions.
func (w *workload) run(t *testing.T, n int) {
	t.Helper()
	if err := w.runN(n); err != nil {
		t.Fatalf("workload: %v", err)
	}
}

// runN executes n transactions; it may run on another goroutine.
func (w *workload) runN(n int) error {
	ctx := context.Background()
	for i := 0; i < n; i++ {
		tx, err := w.conn.Begin(ctx)
		if err != nil {
			return err
		}
		rollback := w.rng.IntN(15) == 0
		ops := 1 + w.rng.IntN(12)
		var added, removed []int64
		var changed int64
		for j := 0; j < ops; j++ {
			var ids, gone []int64
			var n int64
			if w.big && j == 0 && w.rng.IntN(40) == 0 {
				ids, n, err = w.bigInsert(ctx, tx)
			} else {
				ids, gone, n, err = w.op(ctx, tx)
			}
			if err != nil {
				tx.Rollback(ctx)
				return err
			}
			added = append(added, ids...)
			removed = append(removed, gone...)
			changed += n
		}
		if rollback {
			if err := tx.Rollback(ctx); err != nil {
				return err
			}
			continue
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		w.changes += changed
		w.live = append(w.live, added...)
		for _, id := range removed {
			w.remove(id)
		}
	}
	return nil
}

// ownWorkload is a workload on a connection of its own, for running in
// the background while the test uses its connection.
func ownWorkload(t *testing.T, db string, seed uint64) *workload {
	t.Helper()
	conn, err := reconnect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return newWorkload(conn, seed)
}

// background runs batches of n transactions on another goroutine until
// stop is called; stop returns the first error. stopped closes with stop.
func (w *workload) background(n int, pause time.Duration) (stopped <-chan struct{}, stop func() error) {
	return untilStopped(func() error {
		if err := w.runN(n); err != nil {
			return err
		}
		time.Sleep(pause)
		return nil
	})
}

// untilStopped runs step again and again on another goroutine until stop
// is called or step fails; stop returns step's error. stopped closes with
// stop.
func untilStopped(step func() error) (stopped <-chan struct{}, stop func() error) {
	quit := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for {
			select {
			case <-quit:
				done <- nil
				return
			default:
			}
			if err := step(); err != nil {
				done <- err
				return
			}
		}
	}()
	return quit, func() error { close(quit); return <-done }
}

// bigInsert inserts 1 to 10,000 rows in one statement.
func (w *workload) bigInsert(ctx context.Context, tx pgx.Tx) ([]int64, int64, error) {
	n := 1 + w.rng.IntN(10000)
	r, err := tx.Query(ctx, `INSERT INTO transactions (card_id, merchant, amount, status, created_at)
		SELECT (g * 7 + $2) % $3, 'm' || (g % 8), ((g * 37 + $2) % 50000) / 100.0,
		       CASE WHEN g % 6 = 0 THEN 'declined' ELSE 'approved' END,
		       now() - make_interval(secs => (g * 7919 + $2) % 3456000)
		FROM generate_series(1, $1) g RETURNING id`, n, w.rng.IntN(1000), w.cards)
	if err != nil {
		return nil, 0, err
	}
	ids, err := pgx.CollectRows(r, pgx.RowTo[int64])
	return ids, int64(len(ids)), err
}

func (w *workload) remove(id int64) {
	for i, x := range w.live {
		if x == id {
			w.live = append(w.live[:i], w.live[i+1:]...)
			return
		}
	}
}

func (w *workload) pick() (int64, bool) {
	if len(w.live) == 0 {
		return 0, false
	}
	return w.live[w.rng.IntN(len(w.live))], true
}

// op runs one statement; it returns ids inserted, ids deleted and the
// number of captured rows changed.
func (w *workload) op(ctx context.Context, tx pgx.Tx) ([]int64, []int64, int64, error) {
	now := time.Now()
	switch p := w.rng.IntN(100); {
	case p < 30: // single insert
		var id int64
		err := tx.QueryRow(ctx, `INSERT INTO transactions (card_id, merchant, amount, status, created_at)
			VALUES ($1, $2, $3::numeric, $4, $5) RETURNING id`,
			w.rng.IntN(w.cards), fmt.Sprint("m", w.rng.IntN(8)), w.amount(), w.status(), w.createdAt(now)).Scan(&id)
		return []int64{id}, nil, 1, err
	case p < 45: // multi-row insert: one statement, many rows, one commit LSN
		rows := 2 + w.rng.IntN(20)
		var vals []string
		var args []any
		for r := 0; r < rows; r++ {
			k := len(args)
			vals = append(vals, fmt.Sprintf("($%d, $%d, $%d::numeric, $%d, $%d)", k+1, k+2, k+3, k+4, k+5))
			args = append(args, w.rng.IntN(w.cards), fmt.Sprint("m", w.rng.IntN(8)), w.amount(), w.status(), w.createdAt(now))
		}
		r, err := tx.Query(ctx, "INSERT INTO transactions (card_id, merchant, amount, status, created_at) VALUES "+strings.Join(vals, ",")+" RETURNING id", args...)
		if err != nil {
			return nil, nil, 0, err
		}
		ids, err := pgx.CollectRows(r, pgx.RowTo[int64])
		return ids, nil, int64(len(ids)), err
	case p < 58: // amount changes
		id, ok := w.pick()
		if !ok {
			return nil, nil, 0, nil
		}
		tag, err := tx.Exec(ctx, "UPDATE transactions SET amount = $2::numeric WHERE id = $1", id, w.amount())
		return nil, nil, tag.RowsAffected(), err
	case p < 64: // entity key changes
		id, ok := w.pick()
		if !ok {
			return nil, nil, 0, nil
		}
		tag, err := tx.Exec(ctx, "UPDATE transactions SET card_id = $2 WHERE id = $1", id, w.rng.IntN(w.cards))
		return nil, nil, tag.RowsAffected(), err
	case p < 70: // event time changes
		id, ok := w.pick()
		if !ok {
			return nil, nil, 0, nil
		}
		tag, err := tx.Exec(ctx, "UPDATE transactions SET created_at = $2 WHERE id = $1", id, w.createdAt(now))
		return nil, nil, tag.RowsAffected(), err
	case p < 76: // in and out of the filter
		id, ok := w.pick()
		if !ok {
			return nil, nil, 0, nil
		}
		tag, err := tx.Exec(ctx, "UPDATE transactions SET status = $2, merchant = $3 WHERE id = $1", id, w.status(), fmt.Sprint("m", w.rng.IntN(8)))
		return nil, nil, tag.RowsAffected(), err
	case p < 86: // delete
		id, ok := w.pick()
		if !ok {
			return nil, nil, 0, nil
		}
		tag, err := tx.Exec(ctx, "DELETE FROM transactions WHERE id = $1", id)
		return nil, []int64{id}, tag.RowsAffected(), err
	case p < 94: // customers: upsert or delete
		id := w.rng.IntN(15)
		if w.custs[id] && w.rng.IntN(3) == 0 {
			delete(w.custs, id)
			tag, err := tx.Exec(ctx, "DELETE FROM customers WHERE id = $1", id)
			return nil, nil, tag.RowsAffected(), err
		}
		w.custs[id] = true
		var age any = w.rng.IntN(80)
		if w.rng.IntN(5) == 0 {
			age = nil
		}
		tag, err := tx.Exec(ctx, `INSERT INTO customers VALUES ($1, $2, $3, $4)
			ON CONFLICT (id) DO UPDATE SET name = excluded.name, country = excluded.country, age = excluded.age`,
			id, fmt.Sprint("cust", w.rng.IntN(1000)), []string{"FR", "DE", "US", "JP"}[w.rng.IntN(4)], age)
		return nil, nil, tag.RowsAffected(), err
	default: // a table no feature reads
		_, err := tx.Exec(ctx, "INSERT INTO unrelated (v) VALUES ($1)", fmt.Sprint(w.rng.Int()))
		return nil, nil, 0, err // not captured when the publication is filtered
	}
}

// verify compares every card's and customer's features with the same
// figures computed by SQL, as of at, and reports every mismatch.
func verify(t *testing.T, conn *pgx.Conn, read featureReader, at time.Time, cards int) {
	t.Helper()
	mismatches := cardMismatches(t, conn, read, at, cards, false)
	mismatches = append(mismatches, customerMismatches(t, conn, read, at)...)
	if len(mismatches) > 0 {
		t.Errorf("%d features differ from SQL as of %s:\n%s", len(mismatches), at.Format(time.RFC3339Nano), strings.Join(mismatches, "\n"))
	}
}

// cardMismatches compares every card's features with SQL as of at: over
// every row (a read at now), or, asOf, over the rows with created_at <= at.
func cardMismatches(t *testing.T, conn *pgx.Conn, read featureReader, at time.Time, cards int, asOf bool) []string {
	t.Helper()
	ctx := context.Background()
	bound := ""
	if asOf {
		bound = " AND created_at <= $10"
	}
	type win struct{ lo, hi time.Time }
	// Tile sizes as the engine picks them (config.TileOf): 10m→10s,
	// 1h→1m, 24h→15m, 30d→12h.
	window := func(w, tile time.Duration) win {
		c := at.Truncate(tile) // Unix-epoch aligned for these sizes
		return win{c.Add(-w), c.Add(tile)}
	}
	w10m, w1h, w24h, w30d := window(10*time.Minute, 10*time.Second), window(time.Hour, time.Minute),
		window(24*time.Hour, 15*time.Minute), window(30*24*time.Hour, 12*time.Hour)
	var mismatches []string
	for card := 0; card < cards; card++ {
		var (
			cnt10m, cnt, merch24h int64
			sum1h                 string
			avg30d, max24h, min   *string
			lastAmount            *string
			lastAt                *time.Time
		)
		args := []any{card, w10m.lo, w10m.hi, w1h.lo, w1h.hi, w30d.lo, w30d.hi, w24h.lo, w24h.hi}
		if asOf {
			args = append(args, at)
		}
		err := conn.QueryRow(ctx, `
			WITH r AS (SELECT * FROM transactions WHERE card_id = $1 AND status != 'declined'`+bound+`)
			SELECT
			 (SELECT count(*) FROM r WHERE created_at >= $2 AND created_at < $3),
			 (SELECT coalesce(sum(amount), 0)::text FROM r WHERE created_at >= $4 AND created_at < $5),
			 (SELECT round(avg(amount), 8)::text FROM r WHERE created_at >= $6 AND created_at < $7),
			 (SELECT max(amount)::text FROM r WHERE created_at >= $8 AND created_at < $9),
			 (SELECT count(DISTINCT merchant) FROM r WHERE created_at >= $8 AND created_at < $9),
			 (SELECT min(amount)::text FROM r),
			 (SELECT count(*) FROM r),
			 (SELECT amount::text FROM r ORDER BY created_at DESC LIMIT 1),
			 (SELECT max(created_at) FROM r)`, args...).
			Scan(&cnt10m, &sum1h, &avg30d, &max24h, &merch24h, &min, &cnt, &lastAmount, &lastAt)
		if err != nil {
			t.Fatal(err)
		}
		_, got, err := read("card_activity", fmt.Sprint(card), at)
		if err != nil {
			t.Fatal(err)
		}
		check := func(name string, want any) {
			if !sameValue(got[name], want) {
				mismatches = append(mismatches, fmt.Sprintf("card %d %-15s got %v, SQL %v", card, name, got[name], deref(want)))
			}
		}
		check("txn_count_10m", cnt10m)
		check("amount_sum_1h", sum1h)
		check("amount_avg_30d", avg30d)
		check("amount_max_24h", max24h)
		check("merchants_24h", merch24h)
		check("amount_min", min)
		check("txn_count", cnt)
		check("last_amount", lastAmount)
		check("last_txn_at", lastAt)
	}
	return mismatches
}

// customerMismatches compares the projected customers with the table.
func customerMismatches(t *testing.T, conn *pgx.Conn, read featureReader, at time.Time) []string {
	t.Helper()
	var mismatches []string
	rows, err := conn.Query(context.Background(), "SELECT id, name, country, age FROM customers")
	if err != nil {
		t.Fatal(err)
	}
	type cust struct {
		name, country string
		age           *int64
	}
	want := map[int]cust{}
	for rows.Next() {
		var id int
		var c cust
		if err := rows.Scan(&id, &c.name, &c.country, &c.age); err != nil {
			t.Fatal(err)
		}
		want[id] = c
	}
	for id := 0; id < 15; id++ {
		found, got, err := read("customer", fmt.Sprint(id), at)
		if err != nil {
			t.Fatal(err)
		}
		c, ok := want[id]
		if found != ok {
			mismatches = append(mismatches, fmt.Sprintf("customer %d: found %v, in table %v", id, found, ok))
			continue
		}
		if ok && (!sameValue(got["name"], c.name) || !sameValue(got["country"], c.country) || !sameValue(got["age"], c.age)) {
			mismatches = append(mismatches, fmt.Sprintf("customer %d: got %v, table %+v", id, got, c))
		}
	}
	return mismatches
}

func deref(v any) any {
	switch x := v.(type) {
	case *string:
		if x != nil {
			return *x
		}
		return nil
	case *time.Time:
		if x != nil {
			return *x
		}
		return nil
	case *int64:
		if x != nil {
			return *x
		}
		return nil
	}
	return v
}

// sameValue compares a JSON-decoded feature with a SQL value: numbers as
// exact decimals (averages at 8 places), times to the microsecond.
func sameValue(got any, want any) bool {
	want = deref(want)
	if got == nil || want == nil {
		return got == nil && want == nil
	}
	switch w := want.(type) {
	case time.Time:
		s, ok := got.(string)
		if !ok {
			return false
		}
		g, err := time.Parse(time.RFC3339Nano, s)
		return err == nil && g.Equal(w)
	case int64:
		return fmt.Sprint(got) == fmt.Sprint(w)
	case string:
		gs := fmt.Sprint(got)
		gd, _, err1 := apd.NewFromString(gs)
		wd, _, err2 := apd.NewFromString(w)
		if err1 != nil || err2 != nil {
			return gs == w
		}
		if wd.Exponent == -8 { // a rounded average
			apd.BaseContext.WithPrecision(40).Quantize(gd, gd, -8)
		}
		return gd.Cmp(wd) == 0
	}
	return fmt.Sprint(got) == fmt.Sprint(want)
}

// soon is an instant a tilefeed process reading over HTTP has not reached
// yet: a read as of it is a read at now (docs/point-in-time.md), where
// one as of the test's own clock, a little behind the server's, is exact
// or refused. A minute ahead, so that it is still ahead at the end of a
// long verification on a loaded machine (2 s was not, in TestChaos).
func soon() time.Time { return time.Now().Add(time.Minute) }
