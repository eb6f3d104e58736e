// Package decode turns source bytes into change events, with no I/O: the
// pgoutput logical replication protocol today, Debezium envelopes next.
// Every decoder yields change.Event, so one set of transforms serves every
// source.
package decode
