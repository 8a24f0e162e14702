// Package host is the SDK's side of weir's WIT contract: the host's imports, the event time of
// the call in progress, and (on wasm) the arena the host writes its lists into. User code goes
// through the packages above it.
package host

// Clocks, as the WIT's `clock` enum numbers them.
const (
	EventTime uint32 = 0
	WallClock uint32 = 1
)

// Log levels, as the WIT's `level` enum numbers them.
const (
	Trace uint32 = iota
	Debug
	Info
	Warn
	Error
)

// Entry is a key and its value, as a state scan returns them.
type Entry struct {
	Key, Value []byte
}

var (
	hostTime      int64 = -1
	hostTimeKnown bool
	// BatchTime is the largest record timestamp of the current batch so far, -1 before any.
	BatchTime int64 = -1
)

// BeginCall forgets the event time of the previous call.
func BeginCall() {
	hostTimeKnown, BatchTime = false, -1
}

// Now is the partition's event time, counting the current batch's records up to the one being
// processed; -1 before any timestamped record.
func Now() int64 {
	if !hostTimeKnown {
		hostTime, hostTimeKnown = eventTime(), true
	}
	return max(hostTime, BatchTime)
}
