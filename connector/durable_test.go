package connector

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/sink"
)

// gatedSource sends first, waits for open, then sends second.
type gatedSource struct {
	fakeSource
	first, second []change.Event
	open          chan struct{}
}

func (s *gatedSource) Stream(ctx context.Context, from Checkpoint, out chan<- change.Event) error {
	for _, ev := range s.first {
		if err := send(ctx, out, ev); err != nil {
			return err
		}
	}
	select {
	case <-s.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	for _, ev := range s.second {
		if err := send(ctx, out, ev); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

// A checkpoint that vanishes (an in-memory Aerospike namespace after a
// restart) or goes back (a store restored from an older backup) while
// tilefeed runs stops it with ErrCheckpointLost naming the record and
// what it held, not with "another writer"; a conflict on the checkpoint
// that the runtime's own unknown write explains still goes on.
func TestCheckpointLost(t *testing.T) {
	t.Parallel()
	evs := script(4)
	for _, tc := range []struct {
		name string
		// lose acts on the store between the two halves.
		lose func(t *testing.T, st Store, had Checkpoint)
		want string // in the message; "" when the stream must go on
	}{
		{"vanished", func(t *testing.T, st Store, _ Checkpoint) {
			if err := st.(interface {
				Truncate(context.Context, string) error
			}).Truncate(context.Background(), sink.CheckpointSet); err != nil {
				t.Fatal(err)
			}
		}, "it is gone"},
		{"went back", func(t *testing.T, st Store, had Checkpoint) {
			recs, err := st.Get(context.Background(), []sink.Key{checkpointKey("c")})
			if err != nil {
				t.Fatal(err)
			}
			old := recs[0]
			old.Bins["changes"], old.Bins["lsn"] = int64(1), int64(1)
			if err := st.Put(context.Background(), []sink.Record{old}); err != nil {
				t.Fatal(err)
			}
		}, "it went back to position 0/1#4 (1 changes)"},
		{"own write landed", func(t *testing.T, st Store, had Checkpoint) {
			recs, err := st.Get(context.Background(), []sink.Key{checkpointKey("c")})
			if err != nil {
				t.Fatal(err)
			}
			same := recs[0] // the same checkpoint written again: a retried write that did land
			if err := st.Put(context.Background(), []sink.Record{same}); err != nil {
				t.Fatal(err)
			}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := openStore(t)
			src := &gatedSource{first: evs[:8], second: evs[8:], open: make(chan struct{})}
			rt := New("c", src, st, newEngine(t), slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()),
				Options{IdleCheckpoint: time.Hour})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- rt.Run(ctx) }()
			for deadline := time.Now().Add(10 * time.Second); src.lastAck() != 250; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the first half was not acknowledged (last ack %d)", src.lastAck())
				}
			}
			cp, _, _, err := LoadCheckpoint(ctx, st, "c")
			if err != nil {
				t.Fatal(err)
			}
			tc.lose(t, st, cp)
			close(src.open)
			if tc.want == "" {
				for deadline := time.Now().Add(10 * time.Second); src.lastAck() != 450; time.Sleep(5 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("the second half was not acknowledged (last ack %d)", src.lastAck())
					}
				}
				return
			}
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("tilefeed kept running after the store lost its checkpoint")
			}
			if !errors.Is(err, ErrCheckpointLost) || !errors.Is(err, ErrFatal) || errors.Is(err, ErrAnotherWriter) {
				t.Fatalf("want ErrCheckpointLost (fatal), got %v", err)
			}
			for _, want := range []string{"_tilefeed/c", "held position 0/C8#4 (6 changes)", tc.want, "without persistence"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message lacks %q: %v", want, err)
				}
			}
		})
	}
}

// The commit→durable histogram takes one value per transaction, not one
// per batch: four transactions in one batch are four samples, each from
// its own commit time.
func TestCommitToDurablePerTransaction(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	evs := script(4)
	for i := range evs { // commit times a second apart, the newest 1 s ago
		evs[i].CommitTime = time.Now().Add(-time.Duration(5-evs[i].Pos.LSN/100) * time.Second)
	}
	src := &gatedSource{first: evs, open: make(chan struct{})}
	m := NewMetrics(prometheus.NewRegistry())
	rt := New("c", src, st, newEngine(t), slog.New(slog.NewTextHandler(io.Discard, nil)), m, Options{BatchMax: 100})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); src.lastAck() != 450; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not acknowledged (last ack %d)", src.lastAck())
		}
	}
	cancel()
	<-done
	var h dto.Metric
	if err := m.CommitToDurable.Write(&h); err != nil {
		t.Fatal(err)
	}
	if n := h.GetHistogram().GetSampleCount(); n != 4 {
		t.Errorf("%d commit→durable samples for 4 transactions", n)
	}
	// 4+3+2+1 s and a little: the sum of each transaction's own lag.
	if sum := h.GetHistogram().GetSampleSum(); sum < 10 || sum > 14 {
		t.Errorf("commit→durable sum %.2f s, want about 10 s", sum)
	}
}

// Series whose labels are known up front exist at 0 before anything
// happens (a rate() alert needs a series to compute over), and the build
// is exported.
func TestMetricsKnownAtZero(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	New("c", &fakeSource{}, openStore(t), newEngine(t), slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(reg), Options{})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			id := f.GetName()
			for _, l := range m.GetLabel() {
				id += " " + l.GetName() + "=" + l.GetValue()
			}
			have[id] = true
		}
	}
	want := []string{"tilefeed_records_written_total group=g", "tilefeed_retractions_unmatched_total group=g",
		"tilefeed_changes_read_total table=public.t", "tilefeed_changes_applied_total table=public.t"}
	for _, k := range ErrorKinds {
		want = append(want, "tilefeed_errors_total kind="+k)
	}
	for _, w := range want {
		if !have[w] {
			t.Errorf("no series %s before the first change", w)
		}
	}
	found := false
	for id := range have {
		if strings.HasPrefix(id, "tilefeed_build_info go=go") && strings.Contains(id, " revision=") && strings.Contains(id, " version=") {
			found = true
		}
	}
	if !found {
		t.Errorf("no tilefeed_build_info{go,revision,version}: %v", have)
	}
}

// The status shows after a restart what it showed before: each group's
// counts, the last commit time and the dead letters come from the
// checkpoint, not from zero.
func TestStatusSurvivesRestart(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	src := &fakeSource{events: script(4)}
	before := run(t, src, st, Options{}, func() bool { return src.lastAck() == 450 }).Status()
	if g := before.Groups["g"]; g.Changes != 12 || g.Records == 0 || !before.LastCommit.Equal(t0) {
		t.Fatalf("status before the restart: %+v", before)
	}
	if !before.Groups["g"].LastCommit.Equal(t0) {
		t.Errorf("group g's last commit %v, want %v", before.Groups["g"].LastCommit, t0)
	}
	reg := prometheus.NewRegistry()
	rt := New("c", &fakeSource{}, st, newEngine(t), slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(reg), Options{IdleCheckpoint: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	var after Status
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if after = rt.Status(); after.State == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not running: %+v", after)
		}
	}
	if after.Groups["g"] != before.Groups["g"] || !after.LastCommit.Equal(before.LastCommit) || after.ChangesTotal != before.ChangesTotal {
		t.Errorf("status after the restart %+v, before %+v", after, before)
	}
	// The group's freshness is known at once too, and grows with the clock.
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == "g" && m.GetGauge() != nil {
				got[f.GetName()] = m.GetGauge().GetValue()
			}
		}
	}
	if got["tilefeed_group_last_commit_timestamp_seconds"] != float64(t0.Unix()) {
		t.Errorf("last commit gauge %v, want %d", got["tilefeed_group_last_commit_timestamp_seconds"], t0.Unix())
	}
	if want := time.Since(t0).Seconds(); got["tilefeed_group_freshness_seconds"] < want-5 || got["tilefeed_group_freshness_seconds"] > want+5 {
		t.Errorf("freshness %v s, want about %v s", got["tilefeed_group_freshness_seconds"], want)
	}
}
