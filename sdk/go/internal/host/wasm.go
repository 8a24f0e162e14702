//go:build wasip1

package host

import (
	"encoding/binary"
	"unsafe"
)

//go:wasmimport weir:processor/state@0.2.1 get
func stateGet(key unsafe.Pointer, keyLen uint32, ret unsafe.Pointer)

//go:wasmimport weir:processor/state@0.2.1 put
func statePut(key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32)

//go:wasmimport weir:processor/state@0.2.1 delete
func stateDelete(key unsafe.Pointer, keyLen uint32)

//go:wasmimport weir:processor/state@0.2.1 scan
func stateScan(start unsafe.Pointer, startLen uint32, hasEnd uint32, end unsafe.Pointer, endLen uint32, limit uint32, ret unsafe.Pointer)

//go:wasmimport weir:processor/tables@0.2.1 get
func tablesGet(name unsafe.Pointer, nameLen uint32, key unsafe.Pointer, keyLen uint32, ret unsafe.Pointer)

//go:wasmimport weir:processor/timers@0.2.1 set
func timersSet(clock uint32, at int64, key unsafe.Pointer, keyLen uint32)

//go:wasmimport weir:processor/timers@0.2.1 cancel
func timersCancel(clock uint32, at int64, key unsafe.Pointer, keyLen uint32)

//go:wasmimport weir:processor/timers@0.2.1 event-time
func timersEventTime() int64

//go:wasmimport weir:processor/log@0.2.1 log
func logLog(level uint32, message unsafe.Pointer, messageLen uint32)

// The host writes an import's compound result here (a global: goroutine stacks move, globals
// do not).
var ret [4]uint32

// Arena is where the host puts the lists it passes in: the arguments of an export and the
// results of an import. weir build adds the module's `cabi_realloc` in plain wasm: it bumps
// `low` up the arena and never runs Go, because the host calls it while Go may not run (before
// the runtime starts, and while the host is between two of Go's calls). The WASI adapter's own
// state is taken from the top (`high`, by `cabi_realloc_adapter`) and kept. Everything below
// `low` is dropped after each export call (ResetArena, from its post-return function), so the
// SDK copies what it keeps onto Go's heap. A call whose lists do not fit traps.
const arenaSize = 32 << 20

var arena [arenaSize]byte

// arenaHeader is found by weir build through its magic; the offsets of its fields are part of
// that contract (0 magic, 16 base, 24 size, 32 low, 40 high).
type arenaHeader struct {
	magic [2]uint64
	base  *[arenaSize]byte
	size  uint64
	low   uint64
	high  uint64
}

// "weir.go.arena.v1", little-endian.
var header = arenaHeader{
	magic: [2]uint64{0x2e6f672e72696577, 0x31762e616e657261},
	base:  &arena,
	size:  arenaSize,
	high:  arenaSize,
}

// ResetArena drops what the host wrote for the call that just ended.
func ResetArena() {
	header.low = 0
}

// Borrow is a view of `n` bytes at `ptr` in the arena, valid until the export call returns.
func Borrow(ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(nil, uintptr(ptr))), n)
}

// take copies bytes the host wrote out of the arena.
func take(ptr, n uint32) []byte {
	out := make([]byte, n)
	copy(out, Borrow(ptr, n))
	return out
}

func optionResult() ([]byte, bool) {
	if ret[0]&0xff == 0 {
		return nil, false
	}
	return take(ret[1], ret[2]), true
}

func StateGet(key []byte) ([]byte, bool) {
	stateGet(unsafe.Pointer(unsafe.SliceData(key)), uint32(len(key)), unsafe.Pointer(&ret))
	return optionResult()
}

func StatePut(key, value []byte) {
	statePut(unsafe.Pointer(unsafe.SliceData(key)), uint32(len(key)), unsafe.Pointer(unsafe.SliceData(value)), uint32(len(value)))
}

func StateDelete(key []byte) {
	stateDelete(unsafe.Pointer(unsafe.SliceData(key)), uint32(len(key)))
}

func StateScan(start, end []byte, hasEnd bool, limit uint32) []Entry {
	var endFlag uint32
	if hasEnd {
		endFlag = 1
	}
	stateScan(unsafe.Pointer(unsafe.SliceData(start)), uint32(len(start)), endFlag,
		unsafe.Pointer(unsafe.SliceData(end)), uint32(len(end)), limit, unsafe.Pointer(&ret))
	n := ret[1]
	entries := make([]Entry, n)
	raw := Borrow(ret[0], n*16)
	for i := range entries {
		at := raw[i*16:]
		entries[i] = Entry{Key: take(le32(at), le32(at[4:])), Value: take(le32(at[8:]), le32(at[12:]))}
	}
	return entries
}

func TableGet(name string, key []byte) ([]byte, bool) {
	tablesGet(unsafe.Pointer(unsafe.StringData(name)), uint32(len(name)),
		unsafe.Pointer(unsafe.SliceData(key)), uint32(len(key)), unsafe.Pointer(&ret))
	return optionResult()
}

func TimerSet(clock uint32, at int64, key []byte) {
	timersSet(clock, at, unsafe.Pointer(unsafe.SliceData(key)), uint32(len(key)))
}

func TimerCancel(clock uint32, at int64, key []byte) {
	timersCancel(clock, at, unsafe.Pointer(unsafe.SliceData(key)), uint32(len(key)))
}

func eventTime() int64 {
	return timersEventTime()
}

// Log writes a line to weir's log of this processor; the message is made valid UTF-8 first.
func Log(level uint32, message string) {
	message = ValidUTF8(message)
	logLog(level, unsafe.Pointer(unsafe.StringData(message)), uint32(len(message)))
}

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
