// Enriches each order with its customer's name from the `customers` table (a topic weir keeps as
// a local map, `[tables.customers]` in pipeline.toml). Orders are keyed by customer id.
package main

import (
	weir "github.com/weir-rs/weir/sdk/go"
	"github.com/weir-rs/weir/sdk/go/table"
)

func enrich(record *weir.Record) ([]weir.Output, error) {
	who := "an unknown customer"
	if record.Key != nil {
		name, found, err := table.Get[string]("customers", string(record.Key))
		if err != nil {
			return nil, err
		}
		if found {
			who = name
		}
	}
	return []weir.Output{record.MapValue(func(order []byte) []byte {
		return append(append([]byte{}, order...), " for "+who...)
	})}, nil
}

func init() { weir.Register(weir.Processor{Process: enrich}) }

func main() {}
