// Uppercases every value (ASCII letters, as the Rust one); keys, headers and timestamps pass
// through.
package main

import weir "github.com/weir-rs/weir/sdk/go"

func asciiUpper(value []byte) []byte {
	out := make([]byte, len(value))
	for i, c := range value {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

func uppercase(record *weir.Record) ([]weir.Output, error) {
	return []weir.Output{record.MapValue(asciiUpper)}, nil
}

func init() { weir.Register(weir.Processor{Process: uppercase}) }

func main() {}
