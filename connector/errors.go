package connector

import (
	"context"
	"errors"

	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/transform"
)

// ErrFatal marks an error tilefeed cannot get past by retrying: the
// process stops with a non-zero exit and the message says what to check.
var ErrFatal = errors.New("fatal")

// ErrAnotherWriter means a record or the checkpoint kept changing under
// tilefeed between its read and its write: a second instance is running
// with the same connector name, or something else writes its records.
var ErrAnotherWriter = errors.New("another writer changes tilefeed's records")

// Retryable reports whether err is worth retrying after a back-off:
// store outages and lost connections are; bad data, records too big for
// the store, protocol violations and anything marked fatal are not.
func Retryable(err error) bool {
	var de *transform.DataError
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrFatal), errors.As(err, &de), errors.Is(err, ErrAnotherWriter), errors.Is(err, sink.ErrTooBig):
		return false
	case errors.Is(err, context.Canceled):
		return false
	}
	return true // store outages (sink.ErrUnavailable), conflicts, lost connections
}
