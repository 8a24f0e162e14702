// Uppercases every value (ASCII only, like the Rust example); keys, headers and timestamps
// pass through.
package main

import (
	"bytes"

	weir "github.com/weir-rs/weir/sdk/go"
)

func upper(value []byte) []byte {
	out := bytes.Clone(value)
	for i, c := range out {
		if 'a' <= c && c <= 'z' {
			out[i] = c - 'a' + 'A'
		}
	}
	return out
}

func init() {
	weir.Register(weir.Processor{Process: func(record *weir.Record) ([]weir.Output, error) {
		return []weir.Output{record.MapValue(upper)}, nil
	}})
}

func main() {}
