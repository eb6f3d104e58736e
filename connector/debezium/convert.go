package debezium

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"

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
// committed, and the change's own LSN orders it within its transaction.
// n is transaction.total_order when the connector provides transaction
// metadata. Otherwise n tells apart the changes that share both (the rows
// of one COPY, the tables of one TRUNCATE share an LSN): each distinct
// change (operation, table and row images) of such a run takes the next
// number, and the same change seen again in the run takes its number
// again. So a change Debezium delivers twice, or that a client sends
// again, takes the same position twice and is applied once.
//
// Snapshot rows (op r) all share one LSN; they take (0, 0, n), numbered
// the same way from the snapshot's first row (source.snapshot "first"),
// which sorts them before every streamed change.
//
// What the numbering of a run cannot recognize by itself is a change sent
// again after tilefeed restarted in the middle of that run: the run's
// changes are remembered in memory. Seed gives them back (the Kafka source
// reads the records before its checkpointed offset again for it).
// Transaction metadata (provide.transaction.metadata=true) makes streamed
// positions exact in every case.
type Converter struct {
	last     change.Position
	streamed bool // a streamed change was converted
	run      run
	hash     maphash.Seed
}

// run numbers the distinct changes that share one (LSN, Seq). Most runs
// hold one change: the first is kept as it is and hashed only when a
// second change comes with the same position.
type run struct {
	lsn, seq uint64
	next     uint32
	first    *change.Event     // the run's only change so far, not hashed yet
	ids      map[uint64]uint32 // content → number
}

func (r *run) start(lsn, seq uint64, next uint32) {
	r.lsn, r.seq, r.next, r.first = lsn, seq, next, nil
	clear(r.ids)
}

// content identifies a change by what it is: operation, table, row images.
func (c *Converter) content(ev *change.Event) uint64 {
	var h maphash.Hash
	h.SetSeed(c.hash)
	h.WriteString(ev.Op.String())
	h.WriteString(ev.Table)
	writeRow(&h, ev.Before)
	writeRow(&h, ev.After)
	return h.Sum64()
}

// ordinal returns the number of ev within the run.
func (c *Converter) ordinal(ev *change.Event) uint32 {
	r := &c.run
	if r.next == 1 && len(r.ids) == 0 {
		r.first, r.next = ev, 2
		return 1
	}
	if r.ids == nil {
		r.ids = map[uint64]uint32{}
	}
	if r.first != nil {
		r.ids[c.content(r.first)] = 1
		r.first = nil
	}
	id := c.content(ev)
	if n, ok := r.ids[id]; ok {
		return n
	}
	n := r.next
	r.next++
	r.ids[id] = n
	return n
}

// Seed gives the converter back the numbers of the changes that came just
// before the position it continues after, so that one of them sent again
// is recognized across a restart. envs are records read again from before
// the point the stream resumes at, in stream order; they must hold every
// distinct change of the position's run up to it, or its last ones (the
// run's changes are numbered in order of first appearance, so the last of
// those holds the position's number). Other records are passed over.
func (c *Converter) Seed(envs []decode.Envelope) {
	last := c.last
	if last.Ordinal == 0 || (last.LSN == 0 && last.Seq == 0) {
		return // nothing durable yet, or snapshot rows ("first" renumbers them)
	}
	tmp := NewConverter(change.Position{})
	var ids []uint64
	seen := map[uint64]bool{}
	for i := range envs {
		ev, ok, err := tmp.Event(&envs[i])
		if err != nil || !ok || ev.Op == change.Read || ev.Pos.LSN != last.LSN || ev.Pos.Seq != last.Seq ||
			(envs[i].TxOrder != nil && envs[i].TxOrder.TotalOrder > 0) {
			continue
		}
		if id := c.content(&ev); !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	c.run.start(last.LSN, last.Seq, last.Ordinal+1)
	if c.run.ids == nil {
		c.run.ids = map[uint64]uint32{}
	}
	first := int64(last.Ordinal) - int64(len(ids)) + 1
	for i, id := range ids {
		if n := first + int64(i); n >= 1 {
			c.run.ids[id] = uint32(n)
		}
	}
}

func writeRow(h *maphash.Hash, row change.Row) {
	cols := make([]string, 0, len(row))
	for c := range row {
		cols = append(cols, c)
	}
	slices.Sort(cols)
	h.WriteByte(0)
	for _, c := range cols {
		fmt.Fprintf(h, "%s\x00%T\x00%v\x00", c, row[c], row[c])
	}
}

// NewConverter returns a converter that continues after last, the last
// position of the stream that is durable.
func NewConverter(last change.Position) *Converter {
	c := &Converter{hash: maphash.MakeSeed()}
	c.Reset(last)
	return c
}

// Last returns the position of the last change converted.
func (c *Converter) Last() change.Position { return c.last }

// Reset sets the position the next change follows.
func (c *Converter) Reset(last change.Position) {
	c.last = last
	if c.run.lsn != last.LSN || c.run.seq != last.Seq || c.run.next <= last.Ordinal {
		c.run.start(last.LSN, last.Seq, last.Ordinal+1)
	}
}

// Event returns the event of a decoded record; ok is false for records
// that carry no change (tombstones, transaction metadata, logical
// decoding messages).
func (c *Converter) Event(env *decode.Envelope) (ev change.Event, ok bool, err error) {
	if env.Kind != decode.KindChange {
		return ev, false, nil
	}
	ev = env.Event
	src := &env.Source
	var p change.Position
	switch {
	case ev.Op == change.Read:
		if c.streamed {
			return ev, false, fmt.Errorf("%w: a row of %s read by a snapshot (source.snapshot %q) follows streamed changes (up to %s); aggregates would count it twice. Rebuild the connector's features from an empty sink, or keep Debezium from snapshotting again",
				ErrSnapshotRestarted, ev.Table, src.Snapshot, c.last)
		}
		if c.run.lsn != 0 || c.run.seq != 0 || (src.Snapshot == "first" && len(c.run.ids) == 0) {
			c.run.start(0, 0, 1) // the snapshot read again from its start
		}
	case src.Sequence[1] == nil && src.LSN == 0:
		return ev, false, fmt.Errorf("change of %s has no source.lsn or source.sequence: its position is unknown, so a duplicate could not be told from a new change (Debezium 1.x before sequence existed is not supported)", ev.Table)
	default:
		c.streamed = true
		p.Seq = src.LSN
		if src.Sequence[0] != nil {
			p.LSN = *src.Sequence[0]
		}
		if src.Sequence[1] != nil {
			p.Seq = *src.Sequence[1]
		}
	}
	if env.TxOrder != nil && env.TxOrder.TotalOrder > 0 && ev.Op != change.Read {
		p.Ordinal = uint32(min(env.TxOrder.TotalOrder, 1<<32-1))
	} else {
		if p.LSN != c.run.lsn || p.Seq != c.run.seq {
			c.run.start(p.LSN, p.Seq, 1)
		}
		p.Ordinal = c.ordinal(&ev)
	}
	c.last = p
	ev.Pos = p
	return ev, true, nil
}

// decodeFunc decodes one record's key and value.
type decodeFunc func(key, value []byte) (decode.Envelope, error)

// record turns one record into its event, with origin set: the change, or
// an Invalid event for a record that does not decode or has no position.
// ok is false for a record that carries no change.
func record(dec decodeFunc, conv *Converter, origin string, key, value []byte) (ev change.Event, ok bool) {
	env, err := dec(key, value)
	if err == nil {
		ev, ok, err = conv.Event(&env)
	}
	if err != nil {
		ev, ok = Invalid(origin, value, err), true
	}
	ev.Origin = origin
	return ev, ok
}

// Invalid returns the event that reports a record that could not be used.
// It keeps a copy of the record's start (the caller may reuse raw, as a
// line scanner does).
func Invalid(origin string, raw []byte, err error) change.Event {
	const keep = 4096 // of the raw record, for the dead letter
	return change.Event{Op: change.Invalid, Origin: origin, Err: err, Raw: bytes.Clone(raw[:min(len(raw), keep)])}
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
