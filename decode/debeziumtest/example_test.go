package debeziumtest_test

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/decode"
	"github.com/tilefeed/tilefeed/decode/debeziumtest"
)

func Example() {
	enc, _ := debeziumtest.New(debeziumtest.Options{TopicPrefix: "shop", Clock: func() time.Time { return time.UnixMilli(0) }})
	tbl := debeziumtest.TableOf("public.orders", []decode.Column{
		{Name: "id", OID: pgtype.Int8OID, TypeMod: -1, Key: true},
		{Name: "total", OID: pgtype.NumericOID, TypeMod: 10<<16 | 2 + 4},
	})
	ev := change.Event{Op: change.Insert, Table: "public.orders",
		After: change.Row{"id": int64(1), "total": dec("39.00")}, CommitTime: time.UnixMilli(1719690972831)}
	var seq debeziumtest.Sequencer
	recs, _ := enc.Encode(debeziumtest.JSONPayload, tbl, ev, seq.Source(ev, 26752656, 752))
	fmt.Printf("%s\n%s\n%s\n", recs[0].Topic, recs[0].Key, recs[0].Value)

	recs, _ = enc.Encode(debeziumtest.Avro, tbl, ev, seq.Source(ev, 26752656, 752))
	env, _ := (&decode.Debezium{Schemas: enc.Registry()}).DecodeAvro(recs[0].Key, recs[0].Value)
	fmt.Println(env.Event.After["total"])
	// Output:
	// shop.public.orders
	// {"id":1}
	// {"before":null,"after":{"id":1,"total":"Dzw="},"source":{"version":"3.1.0.Final","connector":"postgresql","name":"shop","ts_ms":1719690972831,"snapshot":"false","db":"postgres","sequence":"[null,\"26752656\"]","ts_us":1719690972831000,"ts_ns":1719690972831000000,"schema":"public","table":"orders","txId":752,"lsn":26752656,"xmin":null},"transaction":null,"op":"c","ts_ms":0,"ts_us":0,"ts_ns":0}
	// 39.00
}
