package app

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/tilefeed/tilefeed/sink"
)

// Fault injection for the crash suite (integration/chaos_test.go). The
// environment variable TILEFEED_FAULT=<phase>:<n> makes the process kill
// itself with SIGKILL the n-th time it reaches <phase>:
//
//	mid-records     half of a batch's records written, the rest not
//	after-records   a batch's records written, its checkpoint not
//	after-checkpoint the checkpoint written, the source not yet told
//	after-status    a standby status update sent to the server
//
// It exists to hit narrow windows deterministically; it is off unless set.
const faultEnv = "TILEFEED_FAULT"

type fault struct {
	phase string
	n     int64
	seen  atomic.Int64
}

func parseFault() (*fault, error) {
	v := os.Getenv(faultEnv)
	if v == "" {
		return nil, nil
	}
	phase, count, ok := strings.Cut(v, ":")
	n, err := strconv.ParseInt(count, 10, 64)
	if !ok || err != nil || n < 1 {
		return nil, fmt.Errorf("%s=%q: want <phase>:<n>", faultEnv, v)
	}
	switch phase {
	case "mid-records", "after-records", "after-checkpoint", "after-status":
	default:
		return nil, fmt.Errorf("%s: unknown phase %q", faultEnv, phase)
	}
	return &fault{phase: phase, n: n}, nil
}

// next counts a visit to phase and reports whether it is the n-th.
func (f *fault) next(phase string) bool {
	return f != nil && f.phase == phase && f.seen.Add(1) == f.n
}

// hit kills the process when phase is reached for the n-th time.
func (f *fault) hit(phase string) {
	if f.next(phase) {
		f.kill()
	}
}

func (f *fault) kill() {
	fmt.Fprintf(os.Stderr, "FAULT: SIGKILL at %s #%d\n", f.phase, f.n)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL cannot be caught; wait for it
}

// faultStore wraps a store with the record and checkpoint faults. It does
// not pass on the embedded store's Atomic, so the runtime writes records
// and checkpoint in two Puts and the window between them can be hit.
type faultStore struct {
	Store
	f *fault
}

func (s faultStore) Put(ctx context.Context, recs []sink.Record) error {
	if len(recs) == 1 && recs[0].Key.Set == sink.CheckpointSet {
		if err := s.Store.Put(ctx, recs); err != nil {
			return err
		}
		s.f.hit("after-checkpoint")
		return nil
	}
	if len(recs) > 1 && s.f.next("mid-records") {
		if err := s.Store.Put(ctx, recs[:len(recs)/2]); err != nil {
			return err
		}
		s.f.kill()
	}
	if err := s.Store.Put(ctx, recs); err != nil {
		return err
	}
	s.f.hit("after-records")
	return nil
}

// Truncate passes the store's Truncate on (snapshot.mode always and
// when_needed need it).
func (s faultStore) Truncate(ctx context.Context, set string) error {
	tr, ok := s.Store.(interface {
		Truncate(ctx context.Context, set string) error
	})
	if !ok {
		return fmt.Errorf("the store cannot truncate set %s", set)
	}
	return tr.Truncate(ctx, set)
}
