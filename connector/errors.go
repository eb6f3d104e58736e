package connector

import (
	"context"
	"errors"
	"fmt"

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

// ErrCheckpointLost means the checkpoint record vanished or went back
// while tilefeed ran: the store lost what had been made durable.
var ErrCheckpointLost = errors.New("the store lost the checkpoint")

// CheckpointLostError says what the checkpoint was and what the store
// holds now. It is fatal: the feature records may be gone or old too.
type CheckpointLostError struct {
	Key sink.Key
	Had Checkpoint  // the last checkpoint this process made durable
	Now *Checkpoint // what the store holds now; nil when the record is gone
}

func (e *CheckpointLostError) Error() string {
	now := "it is gone"
	if e.Now != nil {
		now = fmt.Sprintf("it went back to %s (%d changes)", e.Now.describe(), e.Now.Changes)
	}
	return fmt.Sprintf("%v: record %s held %s (%d changes) and %s: was the store restarted without persistence (Aerospike storage-engine memory), or restored from an older backup? "+
		"The feature records may be lost or old too: rebuild them (snapshot.mode=always, or an empty set and checkpoint), or restore the store", ErrCheckpointLost, e.Key, e.Had.describe(), e.Had.Changes, now)
}

func (e *CheckpointLostError) Unwrap() []error { return []error{ErrFatal, ErrCheckpointLost} }

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
