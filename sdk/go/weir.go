// Package weir is weir's Go SDK: write a stream processor as one function per record.
//
//	package main
//
//	import (
//		"bytes"
//
//		weir "github.com/weir-rs/weir/sdk/go"
//	)
//
//	func init() {
//		weir.Register(weir.Processor{Process: func(r *weir.Record) ([]weir.Output, error) {
//			return []weir.Output{r.MapValue(bytes.ToUpper)}, nil
//		}})
//	}
//
//	func main() {}
//
// Build the folder with `weir build DIR` (stock Go, GOOS=wasip1, made into a component by weir).
// The function receives a Record and returns the outputs it produces; an error or a panic fails
// the batch with a processing error that names the record, and weir commits nothing of a failed
// batch. Processors keep typed state (package state), look up tables (table), set timers
// (timers, with Processor.OnTimer), read their configuration (Config) and log (log).
//
// A processor runs in one WebAssembly instance, on one thread: goroutines work, but they run
// one at a time and only while weir is inside a call to the processor, so there is nothing to
// gain from them, and nothing a goroutine does after the call returns is seen by weir.
package weir

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/weir-rs/weir/sdk/go/internal/host"
)

// Processor is what a component registers: the function called per record, the configuration
// keys it accepts, and the function called with each timer that fires.
type Processor struct {
	// Process is called with each record, in order within its partition.
	Process func(*Record) ([]Output, error)
	// OnTimer is called with each timer that fires (see package timers); nil if it sets none.
	OnTimer func(*Timer) ([]Output, error)
	// Config lists the configuration keys it accepts (`--config key=value`); others are refused.
	Config []string
}

var (
	registered *Processor
	config     = map[string]string{}
)

// Register makes p the component's processor; call it once, from an init function.
func Register(p Processor) {
	if registered != nil {
		panic("weir.Register called twice; a component has one processor")
	}
	registered = &p
}

// Config is the value given for configuration key `key`, and whether one was given.
func Config(key string) (string, bool) {
	v, ok := config[key]
	return v, ok
}

// Header is one of a record's headers. Names may repeat; a header may have no value (nil).
type Header struct {
	Name  string
	Value []byte
}

// Record is one input record. Its byte slices stay valid after the call, and may be kept.
type Record struct {
	// Key is nil when the record has none.
	Key []byte
	// Value is nil for a tombstone.
	Value []byte
	// Offset is the record's offset in its partition.
	Offset int64
	// Timestamp is in milliseconds since the Unix epoch, -1 when the record has none.
	Timestamp int64
	// Topic and Partition say where the record was read; Input is the input's name (the topic
	// name unless configured).
	Topic     string
	Partition int32
	Input     string
	// Index is the record's position in its batch.
	Index int

	headers []Header
}

// Headers are the record's headers, in order.
func (r *Record) Headers() []Header { return r.headers }

// Header is the value of the first header called `name`, and whether there is one.
func (r *Record) Header(name string) ([]byte, bool) {
	for _, h := range r.headers {
		if h.Name == name {
			return h.Value, true
		}
	}
	return nil, false
}

// Text is the value as a string; an error for a tombstone or a value that is not UTF-8.
func (r *Record) Text() (string, error) {
	if r.Value == nil {
		return "", fmt.Errorf("the record has no value (tombstone)")
	}
	if !utf8.Valid(r.Value) {
		return "", fmt.Errorf("the value is not UTF-8")
	}
	return string(r.Value), nil
}

// KeyText is the key as a string ("" without a key).
func (r *Record) KeyText() string { return string(r.Key) }

// MapValue is an output like this record (same key and headers, its timestamp) with the value
// mapped by f; a tombstone stays a tombstone.
func (r *Record) MapValue(f func([]byte) []byte) Output {
	o := Output{key: r.Key, hasKey: r.Key != nil, headers: r.headers, source: r.Index}
	if r.Value == nil {
		o.tombstone = true
	} else {
		o.value = f(r.Value)
	}
	return o
}

// Forward is an output identical to this record, for the default output.
func (r *Record) Forward() Output {
	return r.MapValue(func(v []byte) []byte { return v })
}

// Output is one record to produce. Build it with NewOutput or Tombstone, then the With methods.
type Output struct {
	value     []byte
	tombstone bool
	key       []byte
	hasKey    bool
	topic     string
	headers   []Header
	timestamp int64
	hasTime   bool
	source    int // -1: the record (or timer) being handled
}

// NewOutput is an output with this value, for the default output, with no key.
func NewOutput[V ~string | ~[]byte](value V) Output {
	return Output{value: []byte(value), source: -1}
}

// Tombstone is an output with no value: a deletion, for a compacted topic.
func Tombstone() Output {
	return Output{tombstone: true, source: -1}
}

// WithKey is this output with a key.
func (o Output) WithKey(key string) Output {
	o.key, o.hasKey = []byte(key), true
	return o
}

// WithKeyBytes is this output with a key given as bytes.
func (o Output) WithKeyBytes(key []byte) Output {
	o.key, o.hasKey = key, true
	return o
}

// WithTopic is this output sent to the configured output `name` instead of the default one.
func (o Output) WithTopic(name string) Output {
	o.topic = name
	return o
}

// WithHeader is this output with one more header.
func (o Output) WithHeader(name string, value []byte) Output {
	o.headers = append(o.headers[:len(o.headers):len(o.headers)], Header{name, value})
	return o
}

// WithTimestamp is this output with its own timestamp (ms since the Unix epoch) instead of the
// one of the record it answers.
func (o Output) WithTimestamp(ms int64) Output {
	o.timestamp, o.hasTime = ms, true
	return o
}

// Value is the output's value, nil for a tombstone.
func (o Output) Value() []byte {
	if o.tombstone {
		return nil
	}
	if o.value == nil {
		return []byte{}
	}
	return o.value
}

// Key is the output's key, nil when it has none.
func (o Output) Key() []byte {
	if !o.hasKey {
		return nil
	}
	if o.key == nil {
		return []byte{}
	}
	return o.key
}

// Topic is the output the record goes to, "" for the default one.
func (o Output) Topic() string { return o.topic }

// Clock is the clock a timer follows.
type Clock uint8

const (
	// EventTime is the partition's largest record timestamp so far.
	EventTime Clock = Clock(host.EventTime)
	// WallClock is the host's clock.
	WallClock Clock = Clock(host.WallClock)
)

// Timer is a timer that fired: its clock, its time (ms since the Unix epoch) and its key.
type Timer struct {
	Clock Clock
	At    int64
	Key   []byte
}

func initialize(pairs [][2]string) error {
	accepted := []string{}
	if registered != nil {
		accepted = registered.Config
	}
	for _, kv := range pairs {
		known := false
		for _, a := range accepted {
			known = known || a == kv[0]
		}
		if !known {
			if len(accepted) == 0 {
				return fmt.Errorf("unknown config key `%s`; this processor takes no configuration", kv[0])
			}
			return fmt.Errorf("unknown config key `%s`; this processor accepts: %s", kv[0], strings.Join(accepted, ", "))
		}
	}
	clear(config)
	for _, kv := range pairs {
		config[kv[0]] = kv[1]
	}
	if registered == nil || registered.Process == nil {
		return fmt.Errorf("no processor is registered: call weir.Register(weir.Processor{Process: f}) in an init function")
	}
	return nil
}
