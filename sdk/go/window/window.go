// Package window aggregates over event-time windows, tumbling or hopping, with a grace period
// for late records, on top of package state and package timers (the other SDKs' windows, with
// the same keys and values, so any of them reads the others' windows).
//
//	var counts = window.Tumbling("counts", 10_000).Grace(5_000)
//
//	taken, err := window.Aggregate(counts, record, record.Key, func(n int64) int64 { return n + 1 }, 0)
//	w, ok, err := window.Close[int64](counts, timer)
//
// Each window [start, end) of a key keeps its aggregate in state until event time reaches
// end + grace; then its timer fires and Close hands over the final value once. A record whose
// windows have all closed is late and left out.
package window

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	weir "github.com/weir-rs/weir/sdk/go"
	"github.com/weir-rs/weir/sdk/go/state"
	"github.com/weir-rs/weir/sdk/go/timers"
)

// Windows is a family of windows: their size, how far apart they start, and their grace, in ms.
type Windows struct {
	name                 string
	size, advance, grace int64
	prefix               []byte
}

// Tumbling is windows of sizeMs, one after the other.
func Tumbling(name string, sizeMs int64) Windows { return Hopping(name, sizeMs, sizeMs) }

// Hopping is windows of sizeMs starting every advanceMs.
func Hopping(name string, sizeMs, advanceMs int64) Windows {
	return Windows{name: name, size: sizeMs, advance: advanceMs, prefix: []byte("weir.window/" + name + "/")}
}

// Grace is these windows, kept open for records up to graceMs later than their end.
func (w Windows) Grace(graceMs int64) Windows {
	w.grace = graceMs
	return w
}

// Window is a closed window: its key, start (inclusive), end (exclusive) and value.
type Window[T any] struct {
	Key        []byte
	Start, End int64
	Value      T
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// Starts are the starts of the windows that contain timestamp, oldest first.
func (w Windows) Starts(timestamp int64) []int64 {
	size, advance := max(w.size, 1), max(w.advance, 1)
	last := floorDiv(timestamp, advance) * advance
	var starts []int64
	for s := last - (size-1)/advance*advance; s <= last; s += advance {
		if s+size > timestamp {
			starts = append(starts, s)
		}
	}
	return starts
}

const sign = 1 << 63

// Aggregate folds record into the aggregate of key in each of its windows still open (fold
// maps the aggregate so far, initial at first, to the next) and returns how many took it: 0
// when it came too late for all. A record without a timestamp is an error.
func Aggregate[T any](w Windows, record *weir.Record, key []byte, fold func(T) T, initial T) (int, error) {
	if record.Timestamp < 0 {
		return 0, fmt.Errorf("window `%s`: the record has no timestamp", w.name)
	}
	now, ok := timers.EventTime()
	if !ok {
		now = record.Timestamp
	}
	taken := 0
	for _, start := range w.Starts(record.Timestamp) {
		closes := start + w.size + w.grace
		if closes <= now {
			continue
		}
		k := append(bytes.Clone(w.prefix), binary.BigEndian.AppendUint64(nil, uint64(start)^sign)...)
		k = append(k, key...)
		value := initial
		if raw, ok := state.GetBytes(k); ok {
			if err := json.Unmarshal(raw, &value); err != nil {
				return taken, fmt.Errorf("window `%s`: state under %q does not decode: %w", w.name, k, err)
			}
		}
		raw, err := state.Encode(fold(value))
		if err != nil {
			return taken, err
		}
		state.PutBytes(k, raw)
		timers.Set(weir.EventTime, closes, k)
		taken++
	}
	return taken, nil
}

// Close takes the window the timer closes out of state; ok is false for other timers.
func Close[T any](w Windows, timer *weir.Timer) (closed Window[T], ok bool, err error) {
	if !bytes.HasPrefix(timer.Key, w.prefix) || len(timer.Key) < len(w.prefix)+8 {
		return closed, false, nil
	}
	rest := timer.Key[len(w.prefix):]
	raw, found := state.GetBytes(timer.Key)
	if !found {
		return closed, false, nil
	}
	state.DeleteBytes(timer.Key)
	start := int64(binary.BigEndian.Uint64(rest) ^ sign)
	closed = Window[T]{Key: bytes.Clone(rest[8:]), Start: start, End: start + w.size}
	if err := json.Unmarshal(raw, &closed.Value); err != nil {
		return closed, true, fmt.Errorf("window `%s`: state under %q does not decode: %w", w.name, timer.Key, err)
	}
	return closed, true, nil
}
