package transform

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/decode"
)

// TestAbsentKeyIsNull: a schemaless Debezium envelope whose producer drops
// null keys (Gson) lacks a column the group reads: that column is NULL,
// not dropped. A dropped column is told by the schema: an envelope whose
// schema lacks it is a SchemaError, one whose schema lists it and whose
// payload omits it is NULL again.
func TestAbsentKeyIsNull(t *testing.T) {
	t.Parallel()
	features := []config.Feature{
		{Name: "row", Table: "public.t", Entity: []string{"id"}, Project: []string{"score", "note"}},
		{Name: "agg", Table: "public.t", Entity: []string{"k"}, Aggregations: []config.Aggregation{
			{Name: "n", Function: "count", Column: "score"},
			{Name: "d", Function: "distinct", Column: "score"},
			{Name: "s", Function: "sum", Column: "score"}}},
	}
	source := func(lsn int) string {
		return fmt.Sprintf(`"source": {"schema": "public", "table": "t", "lsn": %d, "sequence": "[null,\"%d\"]", "ts_ms": 1700000000000, "txId": %d}`, lsn, lsn, lsn)
	}
	// schemaless: the bare payload, null keys dropped.
	schemaless := func(op, before, after string, lsn int) string {
		return `{"op": "` + op + `", "before": ` + before + `, "after": ` + after + `, ` + source(lsn) + `}`
	}
	h := newHarness(t, features)
	apply := func(value string) error {
		env, err := (&decode.Debezium{}).DecodeJSON(nil, []byte(value))
		if err != nil {
			t.Fatalf("decode %s: %v", value, err)
		}
		_, err = h.apply(env.Event)
		return err
	}
	must := func(value string) {
		t.Helper()
		if err := apply(value); err != nil {
			t.Fatalf("%s: %v", value, err)
		}
	}
	must(schemaless("c", "null", `{"id": 1, "k": 1, "score": 5, "note": "a"}`, 100))
	must(schemaless("c", "null", `{"id": 2, "k": 1, "note": "b"}`, 200)) // score NULL, dropped by the producer
	must(schemaless("u", `{"id": 1, "k": 1, "score": 5, "note": "a"}`, `{"id": 1, "k": 1}`, 300))
	if got := h.read("agg", "1", t0); got["n"] != int64(0) || got["d"] != int64(0) {
		t.Errorf("after score went NULL: count %v, distinct %v, want 0 and 0 (features %v)", got["n"], got["d"], got)
	}
	for _, id := range []string{"1", "2"} {
		got := h.read("row", id, t0)
		if v, ok := got["score"]; !ok || v != nil {
			t.Errorf("row %s: score = %#v (present %v), want NULL", id, v, ok)
		}
	}
	if got := h.read("row", "1", t0); got["note"] != nil {
		t.Errorf("row 1: note = %#v, want NULL (absent from the new image)", got["note"])
	}

	// With a schema: the schema says which columns the table has.
	withSchema := func(fields []string, after string, lsn int) string {
		var fs []string
		for _, f := range fields {
			fs = append(fs, `{"field": "`+f+`", "type": "int32", "optional": true}`)
		}
		row := `{"type": "struct", "optional": true, "fields": [` + strings.Join(fs, ", ") + `]}`
		return `{"schema": {"type": "struct", "fields": [{"field": "before", ` + row[1:] + `, {"field": "after", ` + row[1:] +
			`, {"field": "op", "type": "string"}]}, "payload": {"op": "c", "before": null, "after": ` + after + `, ` + source(lsn) + `}}`
	}
	if err := apply(withSchema([]string{"id", "k", "score", "note"}, `{"id": 3, "k": 1}`, 400)); err != nil {
		t.Errorf("a schema'd row without the keys of null columns: %v", err)
	}
	if got := h.read("row", "3", t0); got["score"] != nil {
		t.Errorf("row 3: score = %#v, want NULL", got["score"])
	}
	err := apply(withSchema([]string{"id", "k", "note"}, `{"id": 4, "k": 1, "note": null}`, 500))
	var se *SchemaError
	if !errors.As(err, &se) || se.Column != "score" {
		t.Errorf("a schema without score: got %v, want a *SchemaError naming score", err)
	}
}
