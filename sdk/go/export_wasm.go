//go:build wasip1

package weir

import (
	"encoding/binary"
	"runtime/debug"
	"unsafe"

	"github.com/weir-rs/weir/sdk/go/internal/host"
)

// The processor's exports, in the canonical ABI of wit/processor.wit, written by hand: the
// world is small, and this needs no generator and no module beyond the standard library.

// result is the return area of the exports (a global, so it does not move): the WIT's
// result<outputs, processing-error> is a byte tag at 0 and its payload from 4.
var result [11]uint32

// keep holds what the results point to until the host has read them (the post-return call).
var keep [][]byte

// Collect less often than Go's default (at 100% heap growth): most of what a call allocates is
// garbage once it returns, and the instance's memory limit bounds the heap anyway. The engine
// benchmark's uppercase went from about 800 to 650 ns a record.
func init() { debug.SetGCPercent(400) }

func addr(b []byte) uint32 {
	keep = append(keep, b)
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

func returnArea() uint32 { return uint32(uintptr(unsafe.Pointer(&result))) }

func released(uint32) {
	clear(keep)
	keep = keep[:0]
	host.ResetArena()
}

//go:wasmexport weir:processor/processor@0.2.1#init
func exportInit(ptr, n uint32) uint32 {
	raw := host.Borrow(ptr, n*16)
	pairs := make([][2]string, n)
	for i := range pairs {
		at := raw[i*16:]
		pairs[i] = [2]string{string(host.Borrow(le32(at), le32(at[4:]))), string(host.Borrow(le32(at[8:]), le32(at[12:])))}
	}
	result[0] = 0
	if err := initialize(pairs); err != nil {
		message := []byte(host.ValidUTF8(err.Error()))
		result[0], result[1], result[2] = 1, addr(message), uint32(len(message))
	}
	return returnArea()
}

//go:wasmexport cabi_post_weir:processor/processor@0.2.1#init
func postInit(ret uint32) { released(ret) }

//go:wasmexport weir:processor/processor@0.2.1#process
func exportProcess(inputPtr, inputLen, topicPtr, topicLen uint32, partition int32, offsetsPtr, offsetsLen,
	stampsPtr, stampsLen, rowsPtr, rowsLen, headersPtr, headersLen, dataPtr, dataLen uint32) uint32 {
	records := decodeBatch(
		string(host.Borrow(inputPtr, inputLen)), string(host.Borrow(topicPtr, topicLen)), partition,
		host.Borrow(offsetsPtr, offsetsLen), host.Borrow(stampsPtr, stampsLen), host.Borrow(rowsPtr, rowsLen),
		host.Borrow(headersPtr, headersLen), host.Borrow(dataPtr, dataLen))
	if registered == nil || registered.Process == nil {
		return fail(&failure{0, "no processor is registered: call weir.Register in an init function"})
	}
	return finish(processRecords(records, int(dataLen)))
}

//go:wasmexport cabi_post_weir:processor/processor@0.2.1#process
func postProcess(ret uint32) { released(ret) }

//go:wasmexport weir:processor/timer-handler@0.2.1#on-timer
func exportOnTimer(ptr, n uint32) uint32 {
	raw := host.Borrow(ptr, n*24)
	fired := make([]Timer, n)
	for i := range fired {
		at := raw[i*24:]
		key := host.Borrow(le32(at[16:]), le32(at[20:]))
		fired[i] = Timer{Clock: Clock(at[0]), At: int64(binary.LittleEndian.Uint64(at[8:])), Key: append(make([]byte, 0, len(key)), key...)}
	}
	return finish(fireTimers(fired))
}

//go:wasmexport cabi_post_weir:processor/timer-handler@0.2.1#on-timer
func postOnTimer(ret uint32) { released(ret) }

func finish(s *sink, f *failure) uint32 {
	if f != nil {
		return fail(f)
	}
	result[0] = 0
	for i, column := range [5][]byte{s.rows, s.sources, s.stamps, s.headers, s.data} {
		result[1+2*i], result[2+2*i] = addr(column), uint32(len(column))
	}
	return returnArea()
}

func fail(f *failure) uint32 {
	message := []byte(host.ValidUTF8(f.message))
	result[0], result[1], result[2] = 1, 1, uint32(f.index)
	result[3], result[4] = addr(message), uint32(len(message))
	return returnArea()
}
