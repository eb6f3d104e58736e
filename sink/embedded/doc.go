// Package embedded is a sink store on a local bbolt file: the store tilefeed
// uses when no Aerospike is configured, and the one most tests run against.
//
// It has Aerospike's semantics where tilefeed relies on them: per-record
// generations checked on every write, record TTLs, and a write that is
// durable (fsynced) when Put returns. A Put is also atomic, which Aerospike's
// batch writes are not; tilefeed does not rely on that.
package embedded
