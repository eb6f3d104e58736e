// Package decode turns source bytes into change events, with no I/O (but
// SchemaRegistry, which fetches Avro schemas over HTTP): the
// pgoutput logical replication protocol (PgOutput) and Debezium change-event
// envelopes in JSON (with or without the JsonConverter schema) and Avro in the
// Confluent wire format (Debezium).
// Every decoder yields change.Event, so one set of transforms serves every
// source.
package decode
