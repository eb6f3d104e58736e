package connector

import (
	"context"
	"time"
)

// backoff is how long the runtime waits before retrying a failed sink
// write for the attempt-th time (from 0): 100 ms, doubling to 5 s.
func backoff(attempt int) time.Duration {
	return min(100*time.Millisecond<<min(attempt, 6), 5*time.Second)
}

// Reconnect is how long a source waits before its attempt-th reconnect
// (from 0): 200 ms, doubling to 10 s.
func Reconnect(attempt int) time.Duration {
	return min(200*time.Millisecond<<min(attempt, 6), 10*time.Second)
}

// Sleep waits d, or until ctx ends; it reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
