//! The one place the host generates bindings from `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "stream-processor",
    // Host functions may fail (a RocksDB read error); that becomes a trap in the guest and a
    // typed error for the operator.
    imports: { default: trappable },
});

/// The exported interface every processor must have, with its version.
pub const PROCESSOR_EXPORT: &str = "weir:processor/processor@0.2.0";

/// The state interface, without its version: a component importing it keeps state.
pub const STATE_IMPORT: &str = "weir:processor/state@";
