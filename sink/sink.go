package sink

import (
	"errors"
	"fmt"
	"time"
)

// Key names a record. Set is the feature group (or a reserved set such as
// CheckpointSet); ID is the entity key rendered as text.
type Key struct {
	Set string
	ID  string
}

func (k Key) String() string { return k.Set + "/" + k.ID }

// Record is one stored record.
type Record struct {
	Key Key
	// Gen is the record's generation as read (0: the record does not
	// exist). On Put it is the generation the write expects to replace
	// (AnyGen: whatever is stored, or nothing), and after a successful Put
	// it holds the new generation.
	Gen uint32
	// TTL is how long the record lives after this write; 0 means forever.
	TTL time.Duration
	// Bins are the record's bins. On Put, nil Bins delete the record
	// (with Gen AnyGen only); a record that is not there is no error.
	Bins map[string]any
}

// AnyGen as a Put's Gen writes (or deletes) the record whatever generation
// is stored, and whether or not it exists. Only for records no two writers
// can disagree on, such as the content-addressed parts of a split record
// (sink/split).
const AnyGen = ^uint32(0)

// CheckpointSet is the set that holds one checkpoint record per connector.
const CheckpointSet = "_tilefeed"

// ErrConflict means a record's generation was not the one a write expected:
// somebody else wrote it, or an earlier write whose outcome was unknown did
// land. The caller must re-read before writing again.
var ErrConflict = errors.New("record changed since it was read")

// ErrUnavailable means the store could not be reached or did not answer in
// time; the write may or may not have landed. Retryable after a re-read.
var ErrUnavailable = errors.New("store unavailable")

// ErrTooBig means a record is bigger than the store takes in one record
// (Aerospike's max-record-size, 1 MiB by default). Retrying cannot help.
var ErrTooBig = errors.New("record too big for the store")

// TooBigError names the records the store refused for their size.
type TooBigError struct {
	Keys []Key
	// Bytes is the first record's encoded size and Limit the store's, when
	// the store knows them (0 otherwise: Aerospike does not say).
	Bytes, Limit int
}

func (e *TooBigError) Error() string {
	size := ""
	if e.Bytes > 0 {
		size = fmt.Sprintf(" (%d bytes, limit %d)", e.Bytes, e.Limit)
	}
	if len(e.Keys) == 1 {
		return fmt.Sprintf("record %s is too big for the store%s", e.Keys[0], size)
	}
	return fmt.Sprintf("%d records are too big for the store (first: %s%s)", len(e.Keys), e.Keys[0], size)
}

func (e *TooBigError) Unwrap() error { return ErrTooBig }

// ConflictError lists the records whose generation did not match.
type ConflictError struct {
	Keys []Key
}

func (e *ConflictError) Error() string {
	if len(e.Keys) == 1 {
		return fmt.Sprintf("record %s changed since it was read", e.Keys[0])
	}
	return fmt.Sprintf("%d records changed since they were read (first: %s)", len(e.Keys), e.Keys[0])
}

func (e *ConflictError) Unwrap() error { return ErrConflict }
