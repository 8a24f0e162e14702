//go:build !wasip1

package weir

import "fmt"

// Run calls the registered processor with records as one batch, off wasm (in `go test`), with
// state, tables and timers served in memory. An error names the record that failed.
func Run(records ...Record) ([]Output, error) {
	if registered == nil || registered.Process == nil {
		return nil, fmt.Errorf("no processor is registered")
	}
	for i := range records {
		records[i].Index = i
	}
	s, f := processRecords(records, 0)
	if f != nil {
		return nil, fmt.Errorf("record %d: %s", f.index, f.message)
	}
	return s.outputs(), nil
}

// NewRecord is a record for Run: a value, and a key (nil for none), at offset 0 with no timestamp.
func NewRecord(key, value []byte) Record {
	return Record{Key: key, Value: value, Timestamp: -1, Topic: "test", Input: "test"}
}

// outputs reads the packed outputs back, for tests.
func (s *sink) outputs() []Output {
	n := len(s.rows) / 32
	outs := make([]Output, n)
	part := func(at, l uint32) []byte {
		if l == absent {
			return nil
		}
		return s.data[at : at+l]
	}
	for i := range outs {
		row := s.rows[i*32:]
		o := Output{source: int(le32(s.sources[i*4:]))}
		o.topic = string(part(le32(row), le32(row[4:])))
		o.key, o.hasKey = part(le32(row[8:]), le32(row[12:])), le32(row[12:]) != absent
		o.value, o.tombstone = part(le32(row[16:]), le32(row[20:])), le32(row[20:]) == absent
		outs[i] = o
	}
	return outs
}
