// Package integration holds tilefeed's end-to-end tests: a real PostgreSQL
// (started by pgcluster), the tilefeed runtime or binary, and a store,
// checked against the same figures computed by SQL.
package integration
