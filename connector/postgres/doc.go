// Package postgres is the direct PostgreSQL source: logical replication
// with the pgoutput plugin, through jackc/pglogrepl.
//
// Setup checks and prepares the database (tables, columns, replica
// identity, publication, slot) and reports every problem at once. Stream
// reads from the position the sink holds, decodes with decode.PgOutput, and
// acknowledges to the slot only what the runtime reported durable, always
// setting the flush position explicitly.
package postgres
