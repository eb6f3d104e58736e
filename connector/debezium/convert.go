package debezium

import (
	"context"
	"errors"
	"fmt"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/decode"
)

// Format is the encoding of the records a source receives.
type Format uint8

const (
	// JSON is Kafka Connect's JsonConverter, with or without schemas.
	JSON Format = iota
	// Avro is Confluent's AvroConverter wire format (magic byte, schema id).
	Avro
)

// ParseFormat reads a converter class or a content type.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "", "json", "application/json", "org.apache.kafka.connect.json.JsonConverter":
		return JSON, nil
	case "avro", "avro/bytes", "application/avro", "io.confluent.connect.avro.AvroConverter":
		return Avro, nil
	}
	return JSON, fmt.Errorf("%q is neither JSON (org.apache.kafka.connect.json.JsonConverter) nor Avro (io.confluent.connect.avro.AvroConverter)", s)
}

// ErrSnapshotRestarted reports snapshot rows arriving after the stream they
// belong to moved on: Debezium started a snapshot again (snapshot.mode
// always, an interrupted snapshot redone, an incremental snapshot), and
// its rows would count a second time in aggregates.
var ErrSnapshotRestarted = errors.New("debezium sent snapshot rows again")

// Converter turns decoded Debezium records of one ordered stream into
// positioned change events. It is not safe for concurrent use: each stream
// (a Kafka partition, the HTTP endpoint, a file) has its own.
//
// # Positions
//
// A streamed change takes (source.sequence[0], source.lsn, n): the end of
// the previous transaction's commit record orders transactions as they
// committed, the change's own LSN orders it within its transaction, and n
// is transaction.total_order when the connector provides transaction
// metadata, else 1 + the number of changes just before it with the same
// two (the rows of one COPY, the tables of one TRUNCATE share an LSN).
// Those positions are the source's own, so a change Debezium sends twice
// (it delivers at least once) takes the same position twice and is
// applied once.
//
// Snapshot rows (op r) all share one LSN; they take (0, 0, n) with n
// counted from the snapshot's first row (source.snapshot "first"), which
// sorts them before every streamed change. The count is only as good as
// the order of delivery: exact for a Kafka partition or a file read again
// from its start, and for the HTTP endpoint as long as Debezium Server
// resends a failed request unchanged.
type Converter struct {
	last change.Position
}

// NewConverter returns a converter that continues after last, the last
// position of the stream that is durable.
func NewConverter(last change.Position) *Converter { return &Converter{last: last} }

// Last returns the position of the last change converted.
func (c *Converter) Last() change.Position { return c.last }

// Reset sets the position the next change follows.
func (c *Converter) Reset(last change.Position) { c.last = last }

// Event returns the event of a decoded record; ok is false for records
// that carry no change (tombstones, transaction metadata, logical
// decoding messages).
func (c *Converter) Event(env *decode.Envelope) (ev change.Event, ok bool, err error) {
	if env.Kind != decode.KindChange {
		return ev, false, nil
	}
	ev = env.Event
	src := &env.Source
	if ev.Op == change.Read {
		switch {
		case src.Snapshot == "first":
			c.last = change.Position{}
		case c.last.LSN != 0 || c.last.Seq != 0:
			return ev, false, fmt.Errorf("%w: a row of %s read by a snapshot (source.snapshot %q) follows streamed changes (up to %s); aggregates would count it twice. Rebuild the connector's features from an empty sink, or exclude the table from Debezium's snapshots",
				ErrSnapshotRestarted, ev.Table, src.Snapshot, c.last)
		}
		c.last.Ordinal++
		ev.Pos = c.last
		return ev, true, nil
	}
	if src.Sequence[1] == nil && src.LSN == 0 {
		return ev, false, fmt.Errorf("change of %s has no source.lsn or source.sequence: its position is unknown, so a duplicate could not be told from a new change (Debezium 1.x before sequence existed is not supported)", ev.Table)
	}
	p := change.Position{Seq: src.LSN}
	if src.Sequence[0] != nil {
		p.LSN = *src.Sequence[0]
	}
	if src.Sequence[1] != nil {
		p.Seq = *src.Sequence[1]
	}
	switch {
	case env.TxOrder != nil && env.TxOrder.TotalOrder > 0:
		p.Ordinal = uint32(min(env.TxOrder.TotalOrder, 1<<32-1))
	case p.LSN == c.last.LSN && p.Seq == c.last.Seq:
		p.Ordinal = c.last.Ordinal + 1
	default:
		p.Ordinal = 1
	}
	c.last = p
	ev.Pos = p
	return ev, true, nil
}

// Invalid returns the event that reports a record that could not be used.
func Invalid(origin string, raw []byte, err error) change.Event {
	const keep = 4096 // of the raw record, for the dead letter
	if len(raw) > keep {
		raw = raw[:keep]
	}
	return change.Event{Op: change.Invalid, Origin: origin, Err: err, Raw: raw}
}

// emit sends ev, blocking while out is full, until ctx ends.
func emit(ctx context.Context, out chan<- change.Event, ev change.Event) error {
	select {
	case out <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
