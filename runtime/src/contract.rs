//! The WIT contract, as the host sees it: the one place bindings are generated from `wit/`,
//! at the bottom of the graph so that records, timers, the host and the engine all speak it.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "stream-processor",
    // Host functions may fail (a RocksDB read error); that becomes a trap in the guest and a
    // typed error for the operator.
    imports: { default: trappable },
});

/// The exported interface every processor must have, with its version: any 0.2.x component is
/// accepted (wasmtime matches semver-compatible names).
pub const PROCESSOR_EXPORT: &str = "weir:processor/processor@0.2.1";

/// The export of a component built for the `timed-processor` world, and its one function.
pub const TIMER_HANDLER_EXPORT: &str = "weir:processor/timer-handler@0.2.1";
pub const ON_TIMER: &str = "on-timer";

/// The timers interface, without its version: a component importing it may set timers.
pub const TIMERS_IMPORT: &str = "weir:processor/timers@";

/// The state interface, without its version: a component importing it keeps state.
pub const STATE_IMPORT: &str = "weir:processor/state@";
