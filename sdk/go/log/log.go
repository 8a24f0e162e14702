// Package log writes lines into weir's log of the processor, tagged with the processor, topic
// and partition (`weir logs NAME`). What the processor prints goes there too: stdout as info,
// stderr as warn.
package log

import (
	"fmt"

	"github.com/weir-rs/weir/sdk/go/internal/host"
)

// Trace logs a line of step-by-step detail, off unless asked for.
func Trace(format string, args ...any) { host.Log(host.Trace, fmt.Sprintf(format, args...)) }

// Debug logs a line of detail for debugging a processor.
func Debug(format string, args ...any) { host.Log(host.Debug, fmt.Sprintf(format, args...)) }

// Info logs a line of normal operation.
func Info(format string, args ...any) { host.Log(host.Info, fmt.Sprintf(format, args...)) }

// Warn logs something unexpected that the processor handled.
func Warn(format string, args ...any) { host.Log(host.Warn, fmt.Sprintf(format, args...)) }

// Error logs a failure; weir shows the last error line of a batch with the error it explains.
func Error(format string, args ...any) { host.Log(host.Error, fmt.Sprintf(format, args...)) }
