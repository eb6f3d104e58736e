// Package aerospike is the sink store on an Aerospike cluster (server 6.0 or
// later: it uses batch writes). A sink key (set, id) is the record's set and
// string user key in one namespace; bins are stored as they are, and bins
// holding maps are stored as KEY_ORDERED maps, as the record layout promises.
// Every Put is a compare-and-set per record that replaces the whole record:
// Gen 0 creates a record that must not exist, Gen n rewrites a record whose
// generation is n, and any mismatch is reported as a *sink.ConflictError.
// Unlike the embedded store, a Put of many records is not atomic: records
// that passed their generation check are written even when others in the
// same call conflict or fail. Timeouts and unreachable nodes are reported as
// sink.ErrUnavailable; the write may then have landed, so the caller re-reads.
// TTLs have whole-second granularity and are rounded up.
package aerospike
