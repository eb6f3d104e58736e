package change

import (
	"fmt"
	"time"
)

// Op is the kind of a change, named as in Debezium envelopes.
type Op byte

const (
	Insert   Op = 'c'
	Update   Op = 'u'
	Delete   Op = 'd'
	Truncate Op = 't'
	Read     Op = 'r' // a row read by a snapshot

	// Commit marks the end of a transaction. Its Pos sorts after every
	// change of the transaction and its Resume is where a restart may begin
	// without losing anything up to and including the transaction.
	Commit Op = 'C'
	// Heartbeat carries source progress while no captured table changes.
	// It has no Pos; only Resume.
	Heartbeat Op = 'H'
	// Invalid is a record the source could not decode. Err says why and
	// Origin where it came from; it has no Pos. The runtime stops on it, or
	// dead-letters it under errors.tolerance=all.
	Invalid Op = '!'
)

func (o Op) String() string {
	switch o {
	case Insert:
		return "insert"
	case Update:
		return "update"
	case Delete:
		return "delete"
	case Truncate:
		return "truncate"
	case Read:
		return "read"
	case Commit:
		return "commit"
	case Heartbeat:
		return "heartbeat"
	case Invalid:
		return "invalid"
	}
	return fmt.Sprintf("op(%q)", byte(o))
}

// IsMarker reports whether o carries progress only, no row.
func (o Op) IsMarker() bool { return o == Commit || o == Heartbeat }

// Position totally orders the changes of one stream. Many rows share a
// transaction, so a position is the transaction's place in commit order
// (LSN), then the change's place within it (Seq, then Ordinal).
//
// On the direct pgoutput path LSN is the commit LSN of the transaction,
// Seq is 0 and Ordinal the 1-based index of the change in it. On the
// Debezium path LSN is source.sequence[0] (where the previous
// transaction's commit record ends: the same for every change of a
// transaction, growing from one transaction to the next), Seq the
// change's own WAL position (source.lsn) and Ordinal tells apart changes
// that share both (see connector/debezium).
type Position struct {
	LSN     uint64
	Seq     uint64
	Ordinal uint32
}

// Less reports whether p sorts before q.
func (p Position) Less(q Position) bool {
	if p.LSN != q.LSN {
		return p.LSN < q.LSN
	}
	if p.Seq != q.Seq {
		return p.Seq < q.Seq
	}
	return p.Ordinal < q.Ordinal
}

// IsZero reports whether p is the zero position (before everything).
func (p Position) IsZero() bool { return p == Position{} }

func (p Position) String() string {
	if p.Seq != 0 {
		return fmt.Sprintf("%s:%s#%d", FormatLSN(p.LSN), FormatLSN(p.Seq), p.Ordinal)
	}
	return fmt.Sprintf("%s#%d", FormatLSN(p.LSN), p.Ordinal)
}

// FormatLSN renders an LSN the way PostgreSQL does (16/B374D848).
func FormatLSN(lsn uint64) string {
	return fmt.Sprintf("%X/%X", uint32(lsn>>32), uint32(lsn))
}

// Row is one row image: column name to value. Values are nil (SQL NULL),
// bool, int64, float64, *apd.Decimal (numeric, exact), string, []byte,
// time.Time, time.Duration (interval without months), []any (arrays),
// json.RawMessage (json, jsonb) or Unchanged.
type Row map[string]any

// unchanged is the type of Unchanged.
type unchanged struct{}

func (unchanged) String() string { return "<unchanged toast>" }

// Unchanged stands for a column whose value the source did not send because
// it did not change (pgoutput's unchanged-TOAST marker, Debezium's
// __debezium_unavailable_value). It is never a value: a projection keeps the
// stored one and an aggregate must not read it as data.
var Unchanged any = unchanged{}

// Event is one change, decoded and source-independent.
type Event struct {
	Op     Op
	Table  string // schema-qualified: "public.transactions"
	Before Row    // old image (UPDATE, DELETE); nil when the source has none
	After  Row    // new image (INSERT, UPDATE, READ)
	Pos    Position
	// CommitTime is the commit time of the transaction. Transforms use it
	// (never the wall clock) whenever they need "now", so replays are
	// deterministic.
	CommitTime time.Time
	// Resume is set on Commit and Heartbeat markers: the source position a
	// restart may resume from once this marker is durable.
	Resume uint64
	// Stream names the ordered stream the event belongs to when a source
	// has several (a Kafka topic partition, "topic/3"); "" for a source
	// with one. Positions are compared only within a stream.
	Stream string
	// Offset, when not 0, is where the stream resumes once this event is
	// durable (a Kafka partition's next offset). Markers may carry one
	// with no row, so that skipped records still advance the stream.
	Offset int64
	// Origin says where the record came from when the source can tell
	// ("orders/3@1234" for a Kafka record, "file.ndjson:12"): for errors
	// and dead letters.
	Origin string
	// Marker, when set, names a unit of input (an HTTP request) that this
	// event ends: once the event is durable, so is all of the unit, and the
	// checkpoint keeps the name (connector.Checkpoint.Marker).
	Marker string
	// Err is why an Invalid record could not be decoded; Raw is the record
	// as received, for the dead letter.
	Err error
	Raw []byte
	// Sparse marks row images that hold only the columns the source sent
	// a value for: an absent column is NULL (a schemaless Debezium
	// envelope, whose producer may drop null keys). Without it an image
	// holds every column of the table (pgoutput's RELATION message, or the
	// envelope's schema, says which), so a column it lacks was dropped or
	// renamed.
	Sparse bool
}
