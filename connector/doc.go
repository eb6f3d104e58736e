// Package connector runs a tilefeed connector: it reads change events from
// a source, applies them to feature records through the transform engine,
// writes the records and then the checkpoint to the sink store, and only
// then acknowledges the source.
//
// The contract on positions: an event is received, then applied (in
// memory), then durable (its records and the checkpoint covering it are in
// the store). The source learns of a position only once it is durable, so
// a restart at any instant resumes at or before what is durable, and the
// per-record positions stored with the data skip whatever was already
// applied. docs/exactly-once.md gives the whole argument.
package connector
