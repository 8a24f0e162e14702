// Package join joins two streams by key within a time window, with a grace period, on top of
// package state and package timers (the Rust, Python and JavaScript SDKs' join, with the same
// keys and values, so any of them reads the others' buffers).
//
//	var paid = join.New("order-payment", 600_000).Grace(60_000)
//
//	matches, onTime, err := paid.Add(join.Left, record)
//
// A record at t joins the other side's records of its key at t ± within, and leaves the buffer
// when event time reaches t + within + grace: its timer fires then, and Expire says whether the
// record ever found a partner, for left and outer joins. A record older than that on arrival is
// late: Add reports it not on time.
package join

import (
	"bytes"
	"encoding/binary"
	"fmt"

	weir "github.com/weir-rs/weir/sdk/go"
	"github.com/weir-rs/weir/sdk/go/state"
	"github.com/weir-rs/weir/sdk/go/timers"
)

// Side is a side of a join.
type Side byte

const (
	Left  Side = 'L'
	Right Side = 'R'
)

func (s Side) other() Side {
	if s == Left {
		return Right
	}
	return Left
}

// Join is a join of two streams by key, within a time window of each other.
type Join struct {
	name          string
	within, grace int64
	head          []byte
}

// New is the join called name (its records are kept in state under that name), of records
// within withinMs of each other.
func New(name string, withinMs int64) Join {
	return Join{name: name, within: withinMs, head: []byte("weir.join/" + name + "/")}
}

// Grace is this join, keeping records buffered graceMs longer for late partners.
func (j Join) Grace(graceMs int64) Join {
	j.grace = graceMs
	return j
}

// Match is a buffered record of the other side that a new record joins.
type Match struct {
	Timestamp int64
	Value     []byte
}

// Expired is a buffered record whose time to join is over, and whether it ever joined.
type Expired struct {
	Side      Side
	Key       []byte
	Timestamp int64
	Value     []byte
	Matched   bool
}

func (j Join) prefix(side Side, key []byte) []byte {
	p := append(bytes.Clone(j.head), byte(side))
	p = binary.BigEndian.AppendUint32(p, uint32(len(key)))
	return append(p, key...)
}

const sign = 1 << 63

// timeKey orders times as bytes (big-endian, sign bit flipped).
func timeKey(at int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(at)^sign) }

func timeFrom(raw []byte) int64 { return int64(binary.BigEndian.Uint64(raw) ^ sign) }

type buffered struct {
	matched bool
	value   []byte
}

func encode(records []buffered) []byte {
	var out []byte
	for _, b := range records {
		flag := byte(0)
		if b.matched {
			flag = 1
		}
		out = append(out, flag)
		out = binary.BigEndian.AppendUint32(out, uint32(len(b.value)))
		out = append(out, b.value...)
	}
	return out
}

func decode(raw, key []byte) ([]buffered, error) {
	var records []buffered
	for at := 0; at < len(raw); {
		if at+5 > len(raw) {
			return nil, fmt.Errorf("join buffer under %q is corrupt", key)
		}
		n := int(binary.BigEndian.Uint32(raw[at+1:]))
		if at+5+n > len(raw) {
			return nil, fmt.Errorf("join buffer under %q is corrupt", key)
		}
		records = append(records, buffered{raw[at] == 1, raw[at+5 : at+5+n]})
		at += 5 + n
	}
	return records, nil
}

// Add buffers record on side and returns the other side's buffered records of its key within
// the window, oldest first. onTime is false, and nothing is buffered, when the record came too
// late. The record needs a key and a timestamp.
func (j Join) Add(side Side, record *weir.Record) (matches []Match, onTime bool, err error) {
	if record.Key == nil || record.Timestamp < 0 {
		return nil, false, fmt.Errorf("join `%s`: the record needs a key and a timestamp", j.name)
	}
	ts := record.Timestamp
	expires := ts + j.within + j.grace
	if now, ok := timers.EventTime(); ok && expires <= now {
		return nil, false, nil
	}
	other := j.prefix(side.other(), record.Key)
	from := append(bytes.Clone(other), timeKey(ts-j.within)...)
	to := append(bytes.Clone(other), timeKey(ts+j.within+1)...)
	for k, raw := range state.Range(from, to) {
		records, err := decode(raw, k)
		if err != nil {
			return nil, false, err
		}
		all := true
		for i := range records {
			all = all && records[i].matched
			records[i].matched = true
		}
		if !all {
			state.PutBytes(k, encode(records))
		}
		for _, b := range records {
			matches = append(matches, Match{Timestamp: timeFrom(k[len(other):]), Value: b.value})
		}
	}
	own := append(j.prefix(side, record.Key), timeKey(ts)...)
	var records []buffered
	if raw, ok := state.GetBytes(own); ok {
		if records, err = decode(raw, own); err != nil {
			return nil, false, err
		}
	}
	value := record.Value
	if value == nil {
		value = []byte{}
	}
	records = append(records, buffered{len(matches) > 0, value})
	state.PutBytes(own, encode(records))
	timers.Set(weir.EventTime, expires, own)
	return matches, true, nil
}

// Expire takes out of state the buffered records the timer expires. ours is false for timers
// that are not this join's.
func (j Join) Expire(timer *weir.Timer) (expired []Expired, ours bool, err error) {
	key := timer.Key
	if !bytes.HasPrefix(key, j.head) || len(key) < len(j.head)+5 {
		return nil, false, nil
	}
	rest := key[len(j.head):]
	side := Side(rest[0])
	n := int(binary.BigEndian.Uint32(rest[1:5]))
	if (side != Left && side != Right) || len(rest) != 5+n+8 {
		return nil, false, nil
	}
	raw, ok := state.GetBytes(key)
	if !ok {
		return nil, true, nil
	}
	state.DeleteBytes(key)
	records, err := decode(raw, key)
	if err != nil {
		return nil, true, err
	}
	ts := timeFrom(rest[5+n:])
	for _, b := range records {
		expired = append(expired, Expired{Side: side, Key: bytes.Clone(rest[5 : 5+n]), Timestamp: ts, Value: b.value, Matched: b.matched})
	}
	return expired, true, nil
}
