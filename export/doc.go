// Package export builds training sets: for each labelled example of a
// spine (entity keys, a timestamp, labels), the features of the requested
// groups as of that timestamp, computed by the same Plan, Apply and Read
// the online path uses, from the source tables' rows replayed in
// event-time order (docs/point-in-time.md, "Training sets").
//
// Memory does not grow with the spine's length: the spine is read twice
// from its file, and its keys and the computed features wait on disk in
// sorted runs (internal/spill) between the passes. What stays in memory is
// an index of the spine's distinct entities and one entity's state.
package export
