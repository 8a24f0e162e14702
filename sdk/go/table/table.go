// Package table looks up the pipeline's tables: topics replayed from their start into local
// maps by key and kept current (`[tables.<name>]` in the pipeline file). Table topics usually
// hold JSON: Get decodes it, GetBytes returns the raw value.
package table

import (
	"encoding/json"
	"fmt"

	"github.com/weir-rs/weir/sdk/go/internal/host"
)

// Get is the value under key in table `name`, decoded from JSON into a T, and whether there was
// one. Asking for a table the pipeline does not declare fails the batch, naming the ones it does.
func Get[T any](name, key string) (T, bool, error) {
	var value T
	raw, ok := host.TableGet(name, []byte(key))
	if !ok {
		return value, false, nil
	}
	if err := json.Unmarshal(raw, &value); err != nil {
		return value, true, fmt.Errorf("table %s, key %q does not decode: %w", name, key, err)
	}
	return value, true, nil
}

// GetBytes is the raw value under key in table `name`, and whether there was one.
func GetBytes(name string, key []byte) ([]byte, bool) {
	return host.TableGet(name, key)
}
