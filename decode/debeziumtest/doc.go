// Package debeziumtest encodes pgoutput change events as the records
// Debezium's PostgreSQL connector would have written for them, so that one
// workload can be fed through both input paths and their features
// compared (issue #4). It is test support: pure, no I/O but Registry's
// HTTP handler.
//
// An Encoder (New(Options)) takes a change.Event as decode.PgOutput
// produced it, the Table it belongs to (TableOf builds one from
// decode.PgOutput.Columns) and its Source (Sequencer.Source derives it
// from the XLogData's WALStart and decode.PgOutput.XID), and returns
// Kafka records:
//
//	enc, _ := debeziumtest.New(debeziumtest.Options{})
//	var seq debeziumtest.Sequencer
//	for _, ev := range events { // from pg.Decode(nil, xld.WALData)
//		src := seq.Source(ev, uint64(xld.WALStart), pg.XID())
//		t := debeziumtest.TableOf(ev.Table, pg.Columns(ev.Table))
//		recs, err := enc.Encode(debeziumtest.JSON, t, ev, src)
//		…
//	}
//	dbz := decode.Debezium{Schemas: enc.Registry()} // or httptest.NewServer(enc.Registry())
//
// Formats: JSON (JsonConverter, schemas.enable=true), JSONPayload
// (schemas.enable=false; give decode.Debezium.ColumnTypes from
// Encoder.ColumnTypes) and Avro (Confluent wire format; schema ids from
// Encoder.Registry, which serves GET /schemas/ids/{id}).
//
// What Debezium does, and so the encoder: the value envelope {before,
// after, source, transaction, op, ts_ms, ts_us, ts_ns} under
// <prefix>.<schema>.<table>.Envelope; before null for inserts and for
// updates without an old image (REPLICA IDENTITY DEFAULT), the key columns
// with nulls elsewhere for DEFAULT deletes, the full row under FULL; a
// tombstone after each delete; an update that changes the key becomes a
// delete, its tombstone and a create; truncate has a null key. Values
// follow decimal.handling.mode (precise, string, double) and
// time.precision.mode (adaptive, adaptive_time_microseconds, connect) as
// PostgresValueConverter does; an unchanged TOAST value becomes the
// unavailable-value placeholder in its type's form. Values Debezium fails
// on (NaN in precise mode, an unchanged TOAST value of a type with no
// placeholder form) are ErrUnrepresentable.
//
// Not covered: schema defaults ("default" of serial and DEFAULT columns),
// the __debezium.oldkey/newkey headers, transaction metadata, logical
// decoding messages, heartbeats, binary/interval/hstore handling modes,
// geometric types, hstore, citext, ltree, date ±infinity.
package debeziumtest
