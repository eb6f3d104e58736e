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
	}
	return fmt.Sprintf("op(%q)", byte(o))
}

// IsMarker reports whether o carries progress only, no row.
func (o Op) IsMarker() bool { return o == Commit || o == Heartbeat }

// Position totally orders the changes of one source. Many rows share a
// commit LSN (every change of a transaction, a multi-row INSERT), so the
// ordinal within the transaction breaks the tie.
type Position struct {
	LSN     uint64 // commit LSN of the change's transaction
	Ordinal uint32 // 1-based index of the change within its transaction
}

// Less reports whether p sorts before q.
func (p Position) Less(q Position) bool {
	if p.LSN != q.LSN {
		return p.LSN < q.LSN
	}
	return p.Ordinal < q.Ordinal
}

// IsZero reports whether p is the zero position (before everything).
func (p Position) IsZero() bool { return p == Position{} }

func (p Position) String() string {
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
}
