//! Write a weir stream processor in Rust as one function.
//!
//! ```
//! use weir_sdk::{processor, Output, Record};
//!
//! #[processor]
//! fn uppercase(record: &Record) -> Output {
//!     record.map_value(|v| v.to_ascii_uppercase())
//! }
//! # let out = weir_sdk::testing::TestBatch::new("t").with(None, "hi").run(uppercase).unwrap();
//! # assert_eq!(out[0].value(), Some(&b"HI"[..]));
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release` and run the `.wasm` with
//! `weir test` or `weir run`. A processor returns zero, one or many [`Output`]s per record
//! (`()`, `Output`, `Option<Output>`, `Vec<Output>`, or any of these in a `Result`); with
//! `#[processor(batch)]` it receives the whole [`Batch`] instead. Processors keep typed state in
//! [`state`], look up tables with [`table`], set [`timers`] (with `#[processor(on_timer = f)]`),
//! aggregate over time [`window`]s, join two streams with [`join`], read their configuration with
//! [`config`], and log with [`log`].
//!
//! Off wasm (in `cargo test`), [`state`] and [`log`] are served by an in-process stub, so a
//! processor's unit tests run on the host; see [`testing`].

// The generated bindings name this crate by its public path.
extern crate self as weir_sdk;

mod error;
mod glue;
pub mod join;
pub mod log;
mod output;
mod record;
pub mod state;
pub mod table;
pub mod testing;
pub mod timers;
pub mod window;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "timed-processor",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "weir_sdk::bindings",
        runtime_path: "weir_sdk::__private::wit_bindgen::rt",
    });
}

pub use error::Error;
pub use output::{IntoOutputs, Output};
pub use record::{Batch, Headers, Record};
pub use weir_sdk_macro::processor;

/// The value of configuration key `key`, as given to the processor (`--config key=value`).
/// Only keys declared with `#[processor(config = [...])]` are accepted at start.
pub fn config(key: &str) -> Option<&'static str> {
    glue::config(key)
}

#[doc(hidden)]
pub mod __private {
    pub use crate::glue::*;
    pub use wit_bindgen;
}
