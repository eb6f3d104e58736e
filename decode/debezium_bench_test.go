package decode_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/tilefeed/tilefeed/decode"
)

// dbzBenchRecords is how many records one iteration decodes, so that
// -benchtime 1x (make bench) measures a steady state.
const dbzBenchRecords = 20_000

// BenchmarkDebeziumDecode decodes Debezium records: a JsonConverter
// record with its schema (corpus 03, 24 columns of every common type and
// a 13 KB schema), the same kind of row without a schema (corpus 02), and
// an Avro record of 26 columns (testdata/avro). changes/s counts records.
func BenchmarkDebeziumDecode(b *testing.B) {
	// JsonConverter writes compact JSON.
	_, pretty := dbzReadCorpus(b, "03-c-all-types-arrays-schema.json")
	var buf bytes.Buffer
	if err := json.Compact(&buf, pretty); err != nil {
		b.Fatal(err)
	}
	json03 := buf.Bytes()
	_, json02 := dbzReadCorpus(b, "02-c-customers-schemaless.json")
	schemas, records := avroRecords(b)
	cases := []struct {
		name   string
		decode func(*decode.Debezium) (decode.Envelope, error)
	}{
		{"json-schema", func(d *decode.Debezium) (decode.Envelope, error) { return d.DecodeJSON(nil, json03) }},
		{"json-schemaless", func(d *decode.Debezium) (decode.Envelope, error) { return d.DecodeJSON(nil, json02) }},
		{"avro", func(d *decode.Debezium) (decode.Envelope, error) { return d.DecodeAvro(records[0][0], records[0][1]) }},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			d := &decode.Debezium{Schemas: schemas}
			if _, err := bc.decode(d); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			start := time.Now()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for range dbzBenchRecords {
					if _, err := bc.decode(d); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*dbzBenchRecords)/time.Since(start).Seconds(), "changes/s")
		})
	}
}
