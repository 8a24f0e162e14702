// Counts words across all records; for every word seen, emits the word as key and its running
// count as value.
package main

import (
	"strconv"
	"strings"

	weir "github.com/weir-rs/weir/sdk/go"
	"github.com/weir-rs/weir/sdk/go/state"
)

func wordCount(record *weir.Record) ([]weir.Output, error) {
	text, err := record.Text()
	if err != nil {
		return nil, err
	}
	var outputs []weir.Output
	for _, word := range strings.Fields(text) {
		word = strings.ToLower(word)
		count, _, err := state.Get[uint64](word)
		if err != nil {
			return nil, err
		}
		if err := state.Put(word, count+1); err != nil {
			return nil, err
		}
		outputs = append(outputs, weir.NewOutput(strconv.FormatUint(count+1, 10)).WithKey(word))
	}
	return outputs, nil
}

func init() { weir.Register(weir.Processor{Process: wordCount}) }

func main() {}
