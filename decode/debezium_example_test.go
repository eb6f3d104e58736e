package decode_test

import (
	"fmt"

	"github.com/tilefeed/tilefeed/decode"
)

func ExampleDebezium_DecodeJSON() {
	// A schemaless update (schemas.enable=false) whose biography was an
	// unchanged TOAST value, and whose price column is declared so that
	// its base64 unscaled value can be read.
	value := []byte(`{
		"before": null,
		"after": {"id": 1001, "price": "Dzw=", "biography": "__debezium_unavailable_value", "dob": -1257206400000000},
		"source": {"connector": "postgresql", "ts_ms": 1746440315942, "schema": "inventory", "table": "authors",
			"txId": 777, "lsn": 34415840, "sequence": "[\"34415000\",\"34415840\"]"},
		"op": "u"
	}`)
	d := &decode.Debezium{ColumnTypes: map[string]map[string]string{
		"inventory.authors": {"price": "numeric(10,2)", "dob": "timestamp"},
	}}
	env, err := d.DecodeJSON([]byte(`{"id": 1001}`), value)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(env.Kind, env.Event.Op, env.Event.Table, env.Event.CommitTime)
	fmt.Println("price:", env.Event.After["price"])
	fmt.Println("dob:", env.Event.After["dob"])
	fmt.Println("biography:", env.Event.After["biography"])
	fmt.Println("order:", *env.Source.Sequence[0], *env.Source.Sequence[1], "key:", env.Key["id"])

	// Without the declared scale the decoder does not guess.
	d.ColumnTypes["inventory.authors"]["price"] = "numeric"
	_, err = d.DecodeJSON(nil, value)
	fmt.Println(err)
	// Output:
	// change update inventory.authors 2025-05-05 10:18:35.942 +0000 UTC
	// price: 39.00
	// dob: 1930-03-01 00:00:00 +0000 UTC
	// biography: <unchanged toast>
	// order: 34415000 34415840 key: 1001
	// debezium value.after.price = "Dzw=": a base64 decimal needs its scale: declare the column as numeric(p,s) in ColumnTypes
}
