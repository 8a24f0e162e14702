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
	row := [8]uint32{0, absent, 0, absent, 0, absent, first, uint32(len(o.headers))}
	add := func(i int, b []byte) {
		row[i], row[i+1] = uint32(len(s.data)), uint32(len(b))
		s.data = append(s.data, b...)
	}
	if o.topic != "" {
		add(0, []byte(o.topic))
	}
	if o.hasKey {
		add(2, o.key)
	}
	if !o.tombstone {
		add(4, o.value)
	}
	for _, v := range row {
		s.u32(&s.rows, v)
	}
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
func processRecords(records []Record) (*sink, *failure) {
	host.BeginCall()
	s := &sink{}
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
