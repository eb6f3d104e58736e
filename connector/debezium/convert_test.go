package debezium_test

import (
	"strings"
	"testing"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/connector/debezium"
	"github.com/tilefeed/tilefeed/decode"
)

func envOf(t *testing.T, value string) decode.Envelope {
	t.Helper()
	env, err := (&decode.Debezium{}).DecodeJSON(nil, []byte(value))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestConverterResends: changes that share a position are numbered by
// content, so one sent again (with a new envelope ts_ms, as Debezium does
// after its restart) takes its old number, right after itself or later;
// Seed gives the numbers back to a converter after a restart.
func TestConverterResends(t *testing.T) {
	o := newOrders()
	o.copyLSN = 5000 // the rows of one COPY share a WAL position
	lines := o.txn(ins(1, 1, "1.00"), ins(2, 1, "2.00"), ins(3, 2, "3.00"))
	resend := func(l string) string { return strings.Replace(l, `"ts_ms":1763800000100`, `"ts_ms":1763800099999`, 1) }

	c := debezium.NewConverter(change.Position{})
	var pos []change.Position
	for _, l := range []string{lines[0], lines[1], resend(lines[1]), lines[2], resend(lines[0])} {
		env := envOf(t, l)
		ev, ok, err := c.Event(&env)
		if err != nil || !ok {
			t.Fatalf("Event: %v %v", ok, err)
		}
		pos = append(pos, ev.Pos)
	}
	if pos[0].Ordinal != 1 || pos[1].Ordinal != 2 || pos[2] != pos[1] || pos[3].Ordinal != 3 || pos[4] != pos[0] {
		t.Errorf("positions %v: want 1, 2, 2 again, 3, 1 again", pos)
	}
	if pos[0].Seq != 5000 || pos[0].LSN != pos[3].LSN {
		t.Errorf("positions %v: want one transaction at LSN 5000", pos)
	}

	// A restart after the second change was durable: the records before
	// the resume point come back through Seed, the resend of the first
	// is recognized, the third is new.
	r := debezium.NewConverter(pos[1])
	r.Seed([]decode.Envelope{envOf(t, lines[0]), envOf(t, lines[1])})
	for i, l := range []string{resend(lines[0]), lines[2]} {
		env := envOf(t, l)
		ev, _, _ := r.Event(&env)
		if want := []change.Position{pos[0], pos[3]}[i]; ev.Pos != want {
			t.Errorf("after the restart, record %d at %s, want %s", i, ev.Pos, want)
		}
	}
	// Without Seed the resend would look new: what Seed is for.
	u := debezium.NewConverter(pos[1])
	env := envOf(t, resend(lines[0]))
	if ev, _, _ := u.Event(&env); ev.Pos == pos[0] {
		t.Errorf("an unseeded converter recognized the resend: the test does not test Seed")
	}
}
