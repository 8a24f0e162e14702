// Counts records per key: for each record, emits its key and how many records with that key
// came so far. The counts live in weir's state store, one per input partition, so input must be
// keyed by what is counted (Kafka sends every record of a key to one partition).
package main

import (
	"strconv"

	weir "github.com/weir-rs/weir/sdk/go"
	"github.com/weir-rs/weir/sdk/go/state"
)

func count(record *weir.Record) ([]weir.Output, error) {
	if record.Key == nil {
		return nil, nil
	}
	n, _, err := state.Get[uint64](string(record.Key))
	if err != nil {
		return nil, err
	}
	if err := state.Put(string(record.Key), n+1); err != nil {
		return nil, err
	}
	return []weir.Output{weir.NewOutput(strconv.FormatUint(n+1, 10)).WithKeyBytes(record.Key)}, nil
}

func init() { weir.Register(weir.Processor{Process: count}) }

func main() {}
