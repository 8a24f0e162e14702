//go:build !wasip1

package host

import (
	"bytes"
	"fmt"
	"os"
	"sort"
)

// Off wasm (`go test` on the developer's machine) the host is an in-memory stand-in, as in the
// Rust and Python SDKs.

// Store is the state `state` reads and writes off wasm.
var Store = map[string][]byte{}

// Tables is what `table.Get` finds off wasm, by table name and key.
var Tables = map[string]map[string][]byte{}

// Pending holds the timers set off wasm.
var Pending = map[PendingTimer]bool{}

// PendingTimer is a timer set off wasm.
type PendingTimer struct {
	Clock uint32
	At    int64
	Key   string
}

// HostTime is the event time the stand-in host reports.
var HostTime int64 = -1

func StateGet(key []byte) ([]byte, bool) {
	v, ok := Store[string(key)]
	return bytes.Clone(v), ok
}

func StatePut(key, value []byte) { Store[string(key)] = bytes.Clone(value) }

func StateDelete(key []byte) { delete(Store, string(key)) }

func StateScan(start, end []byte, hasEnd bool, limit uint32) []Entry {
	keys := make([]string, 0, len(Store))
	for k := range Store {
		if k >= string(start) && (!hasEnd || k < string(end)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if len(keys) > int(limit) {
		keys = keys[:limit]
	}
	entries := make([]Entry, len(keys))
	for i, k := range keys {
		entries[i] = Entry{Key: []byte(k), Value: bytes.Clone(Store[k])}
	}
	return entries
}

func TableGet(name string, key []byte) ([]byte, bool) {
	v, ok := Tables[name][string(key)]
	return bytes.Clone(v), ok
}

func TimerSet(clock uint32, at int64, key []byte) {
	Pending[PendingTimer{clock, at, string(key)}] = true
}

func TimerCancel(clock uint32, at int64, key []byte) {
	delete(Pending, PendingTimer{clock, at, string(key)})
}

func eventTime() int64 { return HostTime }

func Log(level uint32, message string) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", [...]string{"trace", "debug", "info", "warn", "error"}[min(level, Error)], message)
}

// ResetArena does nothing off wasm.
func ResetArena() {}
