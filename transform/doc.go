// Package transform turns change events into feature state and feature
// state into feature values.
//
// A feature group keeps, per entity, time tiles of partial aggregates (row
// counts, exact decimal sums, multisets of values for min/max/distinct,
// (time, value) multisets for first/last) plus the projected columns of the
// entity's row. An INSERT adds the row's contribution; a DELETE retracts
// exactly what the row added; an UPDATE does both, so every aggregate stays
// exact under updates and deletes, including min and max.
//
// Everything here is deterministic: the only clock is the commit time of
// the change being applied (for trimming tiles) and the read time a caller
// passes to Read. Replaying the same changes gives the same state.
package transform
