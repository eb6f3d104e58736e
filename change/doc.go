// Package change defines the canonical change event that every source
// produces (the pgoutput path and the Debezium-envelope path alike) and the
// position that orders those events.
//
// It is a package of its own, outside the design card's folders, because
// decode, transform, connector and sink all speak it and none of them should
// import another just for a type.
package change
