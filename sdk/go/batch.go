package weir

import (
	"encoding/binary"
	"fmt"
	"runtime/debug"

	"github.com/weir-rs/weir/sdk/go/internal/host"
)

// absent is the length that marks a byte string absent in weir's columns (wit/processor.wit).
const absent = 0xffff_ffff

// decodeBatch turns weir's columns into records. `data` is copied once, so the records' slices
// outlive the call.
func decodeBatch(input, topic string, partition int32, offsets, stamps, rows, headerRows, data []byte) []Record {
	owned := make([]byte, len(data))
	copy(owned, data)
	part := func(at, n uint32) []byte {
		if n == absent {
			return nil
		}
		return owned[at : at+n : at+n]
	}
	headers := make([]Header, len(headerRows)/16)
	for i := range headers {
		h := headerRows[i*16:]
		headers[i] = Header{Name: string(part(le32(h), le32(h[4:]))), Value: part(le32(h[8:]), le32(h[12:]))}
	}
	records := make([]Record, len(offsets)/8)
	for i := range records {
		row := rows[i*24:]
		first, count := le32(row[16:]), le32(row[20:])
		r := &records[i]
		r.Key, r.Value = part(le32(row), le32(row[4:])), part(le32(row[8:]), le32(row[12:]))
		r.Offset = int64(binary.LittleEndian.Uint64(offsets[i*8:]))
		r.Timestamp = int64(binary.LittleEndian.Uint64(stamps[i*8:]))
		r.Topic, r.Partition, r.Input, r.Index = topic, partition, input, i
		if count > 0 {
			r.headers = headers[first : first+count : first+count]
		}
	}
	return records
}

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

// failure is a batch (or a round of timers) that failed, and the record (or timer) to blame.
type failure struct {
	index   int
	message string
}

// sink packs outputs into weir's columns.
type sink struct {
	rows, sources, stamps, headers, data []byte
	source                               int
}

func (s *sink) u32(column *[]byte, v uint32) { *column = binary.LittleEndian.AppendUint32(*column, v) }

func (s *sink) push(o Output) {
	first := uint32(len(s.headers) / 16)
	for _, h := range o.headers {
		at := uint32(len(s.data))
		s.data = append(s.data, h.Name...)
		valueLen := uint32(absent)
		if h.Value != nil {
			valueLen = uint32(len(h.Value))
			s.data = append(s.data, h.Value...)
		}
		for _, v := range [4]uint32{at, uint32(len(h.Name)), at + uint32(len(h.Name)), valueLen} {
			s.u32(&s.headers, v)
		}
	}
	var row [32]byte
	put := func(i int, v uint32) { binary.LittleEndian.PutUint32(row[i*4:], v) }
	put(1, absent)
	put(3, absent)
	put(5, absent)
	put(6, first)
	put(7, uint32(len(o.headers)))
	if o.topic != "" {
		put(0, uint32(len(s.data)))
		put(1, uint32(len(o.topic)))
		s.data = append(s.data, o.topic...)
	}
	if o.hasKey {
		put(2, uint32(len(s.data)))
		put(3, uint32(len(o.key)))
		s.data = append(s.data, o.key...)
	}
	if !o.tombstone {
		put(4, uint32(len(s.data)))
		put(5, uint32(len(o.value)))
		s.data = append(s.data, o.value...)
	}
	s.rows = append(s.rows, row[:]...)
	source := o.source
	if source < 0 {
		source = s.source
	}
	s.u32(&s.sources, uint32(source))
	stamp := int64(-1)
	if o.hasTime {
		stamp = o.timestamp
	}
	s.stamps = binary.LittleEndian.AppendUint64(s.stamps, uint64(stamp))
}

// newSink is a sink with room for about one output per record of n records and bytes of data.
func newSink(n, bytes int) *sink {
	return &sink{rows: make([]byte, 0, 32*n), sources: make([]byte, 0, 4*n), stamps: make([]byte, 0, 8*n), data: make([]byte, 0, bytes)}
}

// guarded calls f, turning a panic into an error with its stack.
func guarded[T any](f func(T) ([]Output, error), arg T) (outs []Output, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return f(arg)
}

// processRecords runs the registered processor over a batch's records.
func processRecords(records []Record, dataLen int) (*sink, *failure) {
	host.BeginCall()
	s := newSink(len(records), dataLen)
	for i := range records {
		r := &records[i]
		host.BatchTime = max(host.BatchTime, r.Timestamp)
		s.source = i
		outs, err := guarded(registered.Process, r)
		if err != nil {
			host.Log(host.Error, fmt.Sprintf("record %d (offset %d): %s", i, r.Offset, err))
			return nil, &failure{i, firstLine(err.Error())}
		}
		for _, o := range outs {
			s.push(o)
		}
	}
	return s, nil
}

// fireTimers runs the registered timer handler over timers that fired.
func fireTimers(fired []Timer) (*sink, *failure) {
	host.BeginCall()
	if registered == nil || registered.OnTimer == nil {
		return nil, &failure{0, "a timer fired, but no function handles timers: set Processor.OnTimer"}
	}
	s := &sink{}
	for i := range fired {
		s.source = i
		outs, err := guarded(registered.OnTimer, &fired[i])
		if err != nil {
			host.Log(host.Error, fmt.Sprintf("timer %d (at %d): %s", i, fired[i].At, err))
			return nil, &failure{i, firstLine(err.Error())}
		}
		for _, o := range outs {
			s.push(o)
		}
	}
	return s, nil
}

// firstLine keeps a panic's stack in the log line, out of the processing error.
func firstLine(message string) string {
	for i := 0; i < len(message); i++ {
		if message[i] == '\n' {
			return message[:i]
		}
	}
	return message
}
