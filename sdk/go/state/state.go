// Package state is the processor's key-value state, private to it and to the input partition
// being processed.
//
// Values are stored as JSON, like the Rust, Python and JavaScript SDKs' state, so processors in
// any language read the same state. Writes are visible at once and become durable with the
// batch's outputs; a failed batch leaves the state as it was.
//
//	count, _, err := state.Get[uint64](word)
//	err = state.Put(word, count+1)
package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
	"strconv"

	"github.com/weir-rs/weir/sdk/go/internal/host"
)

const page = 256

// Get is the value under key decoded from JSON into a T, and whether there was one.
func Get[T any](key string) (T, bool, error) {
	var value T
	raw, ok := host.StateGet([]byte(key))
	if !ok {
		return value, false, nil
	}
	if err := decode(raw, &value); err != nil {
		return value, true, fmt.Errorf("state under key %q does not decode: %w", key, err)
	}
	return value, true, nil
}

// decode is json.Unmarshal, with the counters most state holds parsed without reflection.
func decode(raw []byte, into any) error {
	switch p := into.(type) {
	case *uint64:
		if n, err := strconv.ParseUint(string(raw), 10, 64); err == nil {
			*p = n
			return nil
		}
	case *int64:
		if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			*p = n
			return nil
		}
	case *int:
		if n, err := strconv.ParseInt(string(raw), 10, 0); err == nil {
			*p = int(n)
			return nil
		}
	}
	return json.Unmarshal(raw, into)
}

// Put stores value, as JSON, under key.
func Put(key string, value any) error {
	raw, err := Encode(value)
	if err != nil {
		return fmt.Errorf("state under key %q: %w", key, err)
	}
	host.StatePut([]byte(key), raw)
	return nil
}

// Encode is value as weir's SDKs store it: compact JSON, UTF-8 left as it is.
func Encode(value any) ([]byte, error) {
	switch v := value.(type) {
	case uint64:
		return strconv.AppendUint(nil, v, 10), nil
	case int64:
		return strconv.AppendInt(nil, v, 10), nil
	case int:
		return strconv.AppendInt(nil, int64(v), 10), nil
	}
	var buf bytes.Buffer
	encoder := json.NewEncoder(&buf)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(value); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Delete removes key.
func Delete(key string) {
	host.StateDelete([]byte(key))
}

// GetBytes is the raw value under key, and whether there was one.
func GetBytes(key []byte) ([]byte, bool) {
	return host.StateGet(key)
}

// PutBytes stores raw bytes under key.
func PutBytes(key, value []byte) {
	host.StatePut(key, value)
}

// DeleteBytes removes a key given as bytes.
func DeleteBytes(key []byte) {
	host.StateDelete(key)
}

// Range is the entries with start <= key < end (no end when end is nil), in key order, raw,
// fetched from the host a page at a time.
func Range(start, end []byte) iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		from := bytes.Clone(start)
		for {
			entries := host.StateScan(from, end, end != nil, page)
			for _, e := range entries {
				if !yield(e.Key, e.Value) {
					return
				}
			}
			if len(entries) < page {
				return
			}
			from = append(bytes.Clone(entries[len(entries)-1].Key), 0)
		}
	}
}

// Prefix is the entries whose keys start with prefix, in key order, raw.
func Prefix(prefix []byte) iter.Seq2[[]byte, []byte] {
	return Range(prefix, successor(prefix))
}

// successor is the smallest key above every key that starts with prefix; nil when none is.
func successor(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for len(end) > 0 {
		last := len(end) - 1
		if end[last] < 0xff {
			end[last]++
			return end
		}
		end = end[:last]
	}
	return nil
}
