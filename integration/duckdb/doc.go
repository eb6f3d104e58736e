// Package duckdb holds the tests that read tilefeed's Parquet training sets
// with DuckDB, an independent reader and SQL engine: the types it sees,
// the spine's order, and the features against its own SQL over the same
// rows. DuckDB links a 100 MB engine, so it stays out of every other test
// binary.
package duckdb
