package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/sink/embedded"
	"github.com/tilefeed/tilefeed/transform"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// fixture stores two cards' features, built by the real transform.
func fixture(t *testing.T) (*Handler, *error) {
	t.Helper()
	engine, err := transform.Compile([]config.Feature{{
		Name: "card_activity", Table: "public.tx", Entity: []string{"card_id"}, Time: "at", History: "2h",
		Aggregations: []config.Aggregation{
			{Name: "n_10m", Function: "count", Window: "10m"},
			{Name: "sum_1h", Function: "sum", Column: "amount", Window: "1h"},
			{Name: "max_amount", Function: "max", Column: "amount"},
		},
	}, {
		Name: "customer", Table: "public.customers", Entity: []string{"id"}, Project: []string{"country"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(filepath.Join(t.TempDir(), "s.db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dec := func(s string) *apd.Decimal { d, _, _ := apd.NewFromString(s); return d }
	events := []change.Event{
		{Op: change.Insert, Table: "public.tx", After: change.Row{"card_id": int64(1), "amount": dec("10.50"), "at": t0.Add(-5 * time.Minute)}},
		{Op: change.Insert, Table: "public.tx", After: change.Row{"card_id": int64(1), "amount": dec("2.25"), "at": t0.Add(-30 * time.Minute)}},
		{Op: change.Insert, Table: "public.customers", After: change.Row{"id": int64(7), "country": "FR"}},
	}
	states := map[sink.Key]*transform.State{}
	for i := range events {
		events[i].Pos = change.Position{LSN: 100, Ordinal: uint32(i + 1)}
		events[i].CommitTime = t0
		ups, err := engine.Plan(&events[i], nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range ups {
			s := states[u.Key]
			if s == nil {
				s = &transform.State{}
				states[u.Key] = s
			}
			if err := u.Group.Apply(s, &u, &transform.Stats{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var recs []sink.Record
	for k, s := range states {
		recs = append(recs, sink.Record{Key: k, Bins: s.Bins()})
	}
	if err := st.Put(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	engine.Group("card_activity").SetKeyTypes(map[string]string{"card_id": "integer", "amount": "numeric(12,2)"}) // as setup does
	notReady := new(error)
	h := NewHandler(&Reader{Engine: engine, Store: st}, prometheus.NewRegistry(),
		func() any { return map[string]any{"connector": "x"} },
		func() error { return *notReady })
	h.now = func() time.Time { return t0 }
	return h, notReady
}

func do(t *testing.T, h http.Handler, method, url, body string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, url, strings.NewReader(body)))
	var out map[string]any
	d := json.NewDecoder(rec.Body)
	d.UseNumber()
	if err := d.Decode(&out); err != nil && method != "" {
		t.Fatalf("%s %s: body is not JSON: %v", method, url, err)
	}
	return rec.Code, out
}

func TestGetFeatures(t *testing.T) {
	h, _ := fixture(t)
	code, out := do(t, h, "GET", "/v1/features/card_activity?card_id=1", "")
	if code != 200 || out["found"] != true {
		t.Fatalf("got %d %v", code, out)
	}
	f := out["features"].(map[string]any)
	if f["n_10m"].(json.Number) != "1" || f["sum_1h"].(json.Number) != "12.75" || f["max_amount"].(json.Number) != "10.5" {
		t.Errorf("features %v", f)
	}
	// As of 20 minutes later the 10m window is empty; the 1h sum keeps the newer row only.
	_, out = do(t, h, "GET", "/v1/features/card_activity?card_id=1&at="+t0.Add(40*time.Minute).Format(time.RFC3339), "")
	f = out["features"].(map[string]any)
	if f["n_10m"].(json.Number) != "0" || f["sum_1h"].(json.Number) != "10.50" {
		t.Errorf("features 40 minutes later %v", f)
	}
	if _, out = do(t, h, "GET", "/v1/features/card_activity?card_id=2", ""); out["found"] != false {
		t.Errorf("unknown card: %v", out)
	}
}

func TestGetFeaturesErrors(t *testing.T) {
	h, _ := fixture(t)
	code, out := do(t, h, "POST", "/v1/get-online-features", `{"features": ["card_activity:n_10m"], "entities": {"card_id": ["1", "x1"]}}`)
	if code != 400 || !strings.Contains(fmt.Sprint(out["error"]), `"x1" is not one`) {
		t.Errorf("batch read with a bad key: %d %v", code, out)
	}
	for _, tc := range []struct {
		url  string
		code int
		want string
	}{
		{"/v1/features/nope?id=1", 404, `no feature group "nope"`},
		{"/v1/features/card_activity", 400, `missing entity column "card_id"`},
		{"/v1/features/card_activity?card_id=1&at=yesterday", 400, `not an RFC 3339 time`},
		{"/v1/features/card_activity?card_id=abc", 400, `entity column card_id of group card_activity is integer: "abc" is not one`},
	} {
		code, out := do(t, h, "GET", tc.url, "")
		if code != tc.code || !strings.Contains(out["error"].(string), tc.want) {
			t.Errorf("%s: got %d %v, want %d %q", tc.url, code, out, tc.code, tc.want)
		}
	}
}

func TestGetOnlineFeatures(t *testing.T) {
	h, _ := fixture(t)
	code, out := do(t, h, "POST", "/v1/get-online-features", `{
		"features": ["card_activity:sum_1h", "customer:country", "card_activity:nope"],
		"entities": {"card_id": ["1", "9"], "id": ["7", "8"]}}`)
	if code != 200 {
		t.Fatalf("got %d %v", code, out)
	}
	names := out["metadata"].(map[string]any)["feature_names"].([]any)
	if len(names) != 5 || names[0] != "card_id" || names[2] != "card_activity:sum_1h" {
		t.Fatalf("feature_names %v", names)
	}
	results := out["results"].([]any)
	col := func(i int) ([]any, []any) {
		r := results[i].(map[string]any)
		return r["values"].([]any), r["statuses"].([]any)
	}
	vals, sts := col(2)
	if vals[0].(json.Number) != "12.75" || sts[0] != "PRESENT" || sts[1] != "NOT_FOUND" {
		t.Errorf("sum_1h: %v %v", vals, sts)
	}
	vals, sts = col(3)
	if vals[0] != "FR" || sts[0] != "PRESENT" || sts[1] != "NOT_FOUND" {
		t.Errorf("country: %v %v", vals, sts)
	}
	if _, sts = col(4); sts[0] != "NOT_FOUND" {
		t.Errorf("unknown feature: %v", sts)
	}
	code, _ = do(t, h, "POST", "/v1/get-online-features", `{"features": ["x:y"], "entities": {"id": ["1"]}}`)
	if code != 400 {
		t.Errorf("unknown group: %d", code)
	}
}

func TestHealthAndReady(t *testing.T) {
	h, notReady := fixture(t)
	if code, _ := do(t, h, "GET", "/healthz", ""); code != 200 {
		t.Errorf("healthz %d", code)
	}
	if code, _ := do(t, h, "GET", "/readyz", ""); code != 200 {
		t.Errorf("readyz %d", code)
	}
	*notReady = errors.New("sink (embedded): store unavailable")
	code, out := do(t, h, "GET", "/readyz", "")
	if code != 503 || !strings.Contains(out["reason"].(string), "sink") {
		t.Errorf("readyz when the sink is down: %d %v", code, out)
	}
	// Every reason, each apart.
	*notReady = errors.Join(errors.New("sink (embedded): store unavailable"), errors.New("replication connection lost"))
	code, out = do(t, h, "GET", "/readyz", "")
	if rs, _ := out["reasons"].([]any); code != 503 || len(rs) != 2 || rs[1] != "replication connection lost" ||
		out["reason"] != "sink (embedded): store unavailable; replication connection lost" {
		t.Errorf("readyz with two reasons: %d %v", code, out)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Errorf("metrics %d", rec.Code)
	}
}

// TestAsOfRefusals: a read with at is exact or a 422 that names the
// feature and when it can be read; features= narrows a read to what can
// be answered.
func TestAsOfRefusals(t *testing.T) {
	h, _ := fixture(t)
	at := t0.Add(-10 * time.Minute).Format(time.RFC3339) // before the newer row (t0−5m)
	code, out := do(t, h, "GET", "/v1/features/card_activity?card_id=1&features=sum_1h,max_amount&at="+at, "")
	if code != 422 || out["feature"] != "max_amount" || out["answerable_from"] != "2026-11-22T09:55:00.624999Z" || // the 16th of a 10 s tile holding the row
		!strings.Contains(out["error"].(string), "lifetime aggregate keeps no time") {
		t.Fatalf("lifetime max as of %s: %d %v", at, code, out)
	}
	code, out = do(t, h, "GET", "/v1/features/card_activity?card_id=1&features=n_10m,sum_1h&at="+at, "")
	if code != 200 {
		t.Fatalf("windowed features as of %s: %d %v", at, code, out)
	}
	if f := out["features"].(map[string]any); len(f) != 2 || f["n_10m"].(json.Number) != "0" || f["sum_1h"].(json.Number) != "2.25" {
		t.Errorf("as of %s: %v; want n_10m 0 and sum_1h 2.25 (the older row only)", at, f)
	}
	// An instant the reader's clock has not passed reads as at now.
	if code, out = do(t, h, "GET", "/v1/features/card_activity?card_id=1&at="+t0.Format(time.RFC3339), ""); code != 200 {
		t.Errorf("as of the reader's now: %d %v", code, out)
	}
	code, out = do(t, h, "GET", "/v1/features/card_activity?card_id=1&features=nope", "")
	if code != 400 || !strings.Contains(out["error"].(string), `no feature "nope" (it has n_10m, sum_1h, max_amount)`) {
		t.Errorf("unknown feature: %d %v", code, out)
	}
	code, out = do(t, h, "POST", "/v1/get-online-features", `{"features": ["card_activity:sum_1h"], "entities": {"card_id": ["1"]}, "at": "`+at+`"}`)
	if code != 200 || out["results"].([]any)[1].(map[string]any)["values"].([]any)[0].(json.Number) != "2.25" {
		t.Errorf("batch read of sum_1h as of %s: %d %v", at, code, out)
	}
	code, out = do(t, h, "POST", "/v1/get-online-features", `{"features": ["card_activity:max_amount"], "entities": {"card_id": ["1"]}, "at": "`+at+`"}`)
	if code != 422 || out["feature"] != "max_amount" {
		t.Errorf("batch read of the lifetime max as of %s: %d %v", at, code, out)
	}
}
