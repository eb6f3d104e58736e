package transform

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
)

// TestSumExact: a sum keeps every digit, 301 significant ones for
// 1e-300 + -2.5 (PostgreSQL's sum(numeric) does), and the delete takes it
// back exactly.
func TestSumExact(t *testing.T) {
	t.Parallel()
	h := newHarness(t, []config.Feature{{Name: "s", Table: table, Entity: []string{"k"},
		Aggregations: []config.Aggregation{{Name: "sum", Function: "sum", Column: "v"}}}})
	small := change.Row{"id": int64(1), "k": int64(1), "v": 1e-300}
	h.mustApply(insert(pos(1, 1), t0, small), insert(pos(2, 1), t0, change.Row{"id": int64(2), "k": int64(1), "v": -2.5}))
	want := "-2.4" + strings.Repeat("9", 298) + "9"
	if got := fmt.Sprint(h.read("s", "1", t0)["sum"]); got != want {
		t.Errorf("sum = %s, want %s", got, want)
	}
	h.mustApply(remove(pos(3, 1), t0, small))
	got, _, err := apd.NewFromString(fmt.Sprint(h.read("s", "1", t0)["sum"]))
	if err != nil || got.Cmp(apd.New(-25, -1)) != 0 {
		t.Errorf("after the delete: sum = %v (%v), want -2.5", got, err)
	}
}
