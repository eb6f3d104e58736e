package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tilefeed/tilefeed/serve"
)

// TestAsOfReads is the case of issue 10 as a user meets it: 100 rows one
// hour apart, a 24h count, a lifetime count, max(created_at) and
// days_since_last, read over HTTP with at= in the past. Every value the
// API serves equals SQL over the rows with created_at <= T (the window
// ending at T, with its tile precision); what the store cannot answer is
// a 422 naming the feature and an instant that can be read, and reading
// at that instant answers.
func TestAsOfReads(t *testing.T) {
	t.Parallel()
	conn, db := newDB(t)
	raw := connectorJSON(db, storePath(t), "127.0.0.1:0")
	i := bytes.Index(raw, []byte(`"features"`))
	raw = append(raw[:i:i], []byte(`"features": [
    {"name": "pit", "table": "public.transactions", "entity": ["card_id"], "time": "created_at", "history": "2d",
     "aggregations": [
       {"name": "n_24h", "function": "count", "window": "24h"},
       {"name": "n_all", "function": "count"},
       {"name": "last_at", "function": "max", "column": "created_at"},
       {"name": "last_at_24h", "function": "max", "column": "created_at", "window": "24h"},
       {"name": "dsl_24h", "function": "days_since_last", "column": "created_at", "window": "24h"}]},
    {"name": "sync", "table": "public.sync", "entity": ["id"], "project": ["id"]}
  ]
}`)...)
	c := loadConnector(t, raw)
	r := startRuntime(t, c)
	defer r.stop(t)
	ctx := context.Background()
	var base time.Time
	if err := conn.QueryRow(ctx, `SELECT date_trunc('second', now())`).Scan(&base); err != nil {
		t.Fatal(err)
	}
	// Rows at base, base−1h, …, base−99h, inserted oldest first.
	if _, err := conn.Exec(ctx, `INSERT INTO transactions (card_id, merchant, amount, status, created_at)
		SELECT 1, 'm', 1, 'ok', $1::timestamptz - make_interval(hours => i) FROM generate_series(99, 0, -1) i`, base); err != nil {
		t.Fatal(err)
	}
	waitSync(t, conn, r.read, 1)
	srv := httptest.NewServer(serve.NewHandler(r.reader, prometheus.NewRegistry(), func() any { return nil }, func() error { return nil }))
	defer srv.Close()

	get := func(at time.Time, features string) (int, map[string]any) {
		t.Helper()
		q := url.Values{"card_id": {"1"}, "at": {at.UTC().Format(time.RFC3339Nano)}}
		if features != "" {
			q.Set("features", features)
		}
		resp, err := http.Get(srv.URL + "/v1/features/pit?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		d := json.NewDecoder(resp.Body)
		d.UseNumber()
		if err := d.Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	// sql is the truth as of T: rows with created_at <= T in the window's
	// tiles (24h of 15-minute tiles, ending with the one holding T).
	sql := func(T time.Time) (n24 int64, last24 time.Time) {
		t.Helper()
		lo := T.Truncate(15 * time.Minute).Add(-24 * time.Hour)
		if err := conn.QueryRow(ctx, `SELECT count(*), coalesce(max(created_at), 'epoch') FROM transactions
			WHERE card_id = 1 AND created_at >= $1 AND created_at <= $2`, lo, T).Scan(&n24, &last24); err != nil {
			t.Fatal(err)
		}
		return n24, last24
	}
	check := func(T time.Time, f map[string]any) {
		t.Helper()
		n24, last24 := sql(T)
		if !sameValue(f["n_24h"], n24) {
			t.Errorf("as of %s: n_24h = %v, SQL says %d", T, f["n_24h"], n24)
		}
		if !sameValue(f["last_at_24h"], last24) {
			t.Errorf("as of %s: last_at_24h = %v, SQL says %s", T, f["last_at_24h"], last24)
		}
		dsl, err := f["dsl_24h"].(json.Number).Float64()
		if want := T.Sub(last24).Hours() / 24; err != nil || dsl < 0 || fmt.Sprintf("%.9f", dsl) != fmt.Sprintf("%.9f", want) {
			t.Errorf("as of %s: dsl_24h = %v, want %.9f (never negative)", T, f["dsl_24h"], want)
		}
	}
	windowed := "n_24h,last_at_24h,dsl_24h"

	// Five hours ago, one minute after a row: the read. The
	// lifetime count cannot be answered (it keeps no time) and says from
	// when it can; the windowed ones are exact.
	T := base.Add(-5*time.Hour + time.Minute)
	code, body := get(T, "")
	if code != http.StatusUnprocessableEntity || body["feature"] != "n_all" || body["answerable_from"] == nil {
		t.Fatalf("as of %s, every feature: %d %v; want 422 naming n_all", T, code, body)
	}
	// From the end of the sixteenth of a 15-minute tile holding the
	// latest row.
	from, err := time.Parse(time.RFC3339Nano, body["answerable_from"].(string))
	if err != nil || from.Before(base) || from.After(base.Add(15*time.Minute/16)) {
		t.Errorf("n_all answerable from %v, want within 56.25 s after the latest row's time %s", body["answerable_from"], base)
	}
	t.Logf("422: %s", body["error"])

	code, body = get(T, windowed)
	if code != http.StatusOK {
		t.Fatalf("as of %s, %s: %d %v", T, windowed, code, body)
	}
	check(T, body["features"].(map[string]any))
	if _, ok := body["features"].(map[string]any)["n_all"]; ok {
		t.Errorf("features=%s served n_all too", windowed)
	}

	// Where the refusal said, everything answers: the lifetime count too.
	code, body = get(from, "")
	if code != http.StatusOK {
		t.Fatalf("as of %s, after the latest row: %d %v", from, code, body)
	}
	f := body["features"].(map[string]any)
	check(from, f)
	if !sameValue(f["n_all"], int64(100)) || !sameValue(f["last_at"], base) {
		t.Errorf("as of %s: n_all = %v, last_at = %v; want 100 and %s", from, f["n_all"], f["last_at"], base)
	}

	// Four days ago: before the kept history (24h window + 2d), and
	// between rows. The refusal names an instant; reading there answers
	// (a later refusal, inside a tile holding a later row, names the
	// next instant).
	T = base.Add(-99*time.Hour + 30*time.Minute)
	for step := 0; ; step++ {
		code, body = get(T, windowed)
		if code == http.StatusOK {
			break
		}
		if code != http.StatusUnprocessableEntity || body["answerable_from"] == nil || step == 3 {
			t.Fatalf("as of %s: %d %v", T, code, body)
		}
		t.Logf("422: %s", body["error"])
		next, err := time.Parse(time.RFC3339Nano, body["answerable_from"].(string))
		if err != nil || !next.After(T) {
			t.Fatalf("answerable_from %v after a refusal as of %s", body["answerable_from"], T)
		}
		T = next
	}
	if T.Before(base.Add(-72 * time.Hour)) {
		t.Errorf("answered as of %s, before the kept history", T)
	}
	check(T, body["features"].(map[string]any))

	// A read without at is as of now, from every change: days_since_last
	// is never negative even for a row stamped after the reader's clock
	// (read within the row's tile, so that its window holds the row).
	var ahead time.Time
	if err := conn.QueryRow(ctx, `INSERT INTO transactions (card_id, merchant, amount, status, created_at)
		VALUES (1, 'm', 1, 'ok', now() + interval '1 second') RETURNING created_at`).Scan(&ahead); err != nil {
		t.Fatal(err)
	}
	waitSync(t, conn, r.read, 2)
	readAt := ahead.Add(-time.Nanosecond)
	if readAt.Truncate(15*time.Minute) != ahead.Truncate(15*time.Minute) {
		readAt = ahead // the row opened a new tile: read at its time
	}
	_, now, err := r.read("pit", "1", readAt)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := now["dsl_24h"].(json.Number).Float64(); err != nil || d != 0 {
		t.Errorf("days_since_last read at %s of a row at %s = %v, want 0", readAt, ahead, now["dsl_24h"])
	}
}
