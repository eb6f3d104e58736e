// Package sink holds the record model shared by the stores tilefeed writes
// to: a record is a set of named bins under a (set, id) key, with a
// generation that makes every write a compare-and-set.
//
// Stores (sink/embedded, sink/aerospike) persist records; they do not know
// about features or positions. sink/split wraps a store so that a record
// too big for one is stored as a head and parts. The layout of the bins is the transform
// package's business and is documented in docs/record-layout.md.
//
// Bin values are restricted to: nil, bool, int64, float64, string, []byte,
// []any and map[any]any whose keys are int64 or string, recursively.
package sink
