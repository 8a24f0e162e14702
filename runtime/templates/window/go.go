// Counts records per key in 10-second tumbling windows of event time, waiting 5 seconds for late
// records; emits each window's count once, when the window closes (as the Rust one does).
package main

import (
	"fmt"

	weir "github.com/weir-rs/weir/sdk/go"
	"github.com/weir-rs/weir/sdk/go/log"
	"github.com/weir-rs/weir/sdk/go/window"
)

var windows = window.Tumbling("counts", 10_000).Grace(5_000)

func count(record *weir.Record) ([]weir.Output, error) {
	taken, err := window.Aggregate(windows, record, record.Key, func(n int64) int64 { return n + 1 }, 0)
	if err == nil && taken == 0 {
		log.Warn("late record at offset %d left out", record.Offset)
	}
	return nil, err
}

func emit(timer *weir.Timer) ([]weir.Output, error) {
	w, ok, err := window.Close[int64](windows, timer)
	if !ok || err != nil {
		return nil, err
	}
	value := fmt.Sprintf(`{"start":%d,"end":%d,"count":%d}`, w.Start, w.End, w.Value)
	return []weir.Output{weir.NewOutput(value).WithKeyBytes(w.Key)}, nil
}

func init() { weir.Register(weir.Processor{Process: count, OnTimer: emit}) }

func main() {}
