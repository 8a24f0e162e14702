// Package timers has weir call the processor's OnTimer function at an event time or a
// wall-clock time, for a key.
//
//	timers.Set(weir.EventTime, record.Timestamp+60_000, record.Key)
//
// weir keeps timers in the processor's state store, so they survive crashes and move with the
// partition; under exactly-once each fires exactly once, with its handler's outputs and state
// changes. Event time is the partition's largest record timestamp so far; a timer fires once a
// record at or past its time has been processed. Setting the same clock, time and key twice
// keeps one timer.
package timers

import (
	weir "github.com/weir-rs/weir/sdk/go"
	"github.com/weir-rs/weir/sdk/go/internal/host"
)

// Set sets a timer for key at `at` (ms since the Unix epoch) on clock.
func Set(clock weir.Clock, at int64, key []byte) {
	host.TimerSet(uint32(clock), at, key)
}

// Cancel removes the timer for key at `at` on clock, if there is one.
func Cancel(clock weir.Clock, at int64, key []byte) {
	host.TimerCancel(uint32(clock), at, key)
}

// EventTime is the partition's event time, counting the current batch's records up to the one
// being processed, and false before any timestamped record.
func EventTime() (int64, bool) {
	now := host.Now()
	return now, now >= 0
}
