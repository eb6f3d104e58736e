// Package debezium is tilefeed's second input path: sources that receive
// the change events the Debezium PostgreSQL connector produces (from Kafka
// topics, from Debezium Server's http sink, from NDJSON files) and hand
// the runtime the same change.Event the direct pgoutput path does, with
// positions taken from the events' own source block so that a change
// Debezium delivers twice is applied once.
//
// Decoding is decode.Debezium's; this package adds transport, positions
// (Converter) and acknowledgement: a Kafka offset, an HTTP 2xx, is given
// only for what is durable in the sink.
package debezium
