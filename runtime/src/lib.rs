//! weir's runtime: runs WebAssembly stream processors on records, with per-partition state.
//!
//! The layers, bottom up: [`config`] (the pipeline file, parsed once), [`contract`] (the WIT
//! bindings), [`error`] and [`api`] (the HTTP API's bodies); [`state`] (stores and their
//! per-batch view), [`record`] (how records cross into the guest and back), [`timers`],
//! [`tables`] and [`kafka`]; [`host`] (what a guest may import) and [`engine`] (compile, cache,
//! instantiate and call components under limits); [`pipeline`] (`weir run`: tasks, the
//! transaction, the loop) and [`testrun`] (`weir test`, no broker); [`supervisor`] (the
//! pipelines of `weir serve`), [`query`] and [`admin`] (queries and the HTTP API); [`cli`].
//! [`build`] (`weir build`) turns a Rust, Python or JavaScript folder into a component.

mod admin;
pub mod api;
mod build;
mod catchup;
pub mod changelog;
pub mod cli;
mod client;
pub mod config;
mod contract;
mod datadir;
mod demo;
pub mod engine;
pub mod error;
mod expect;
pub mod guest_log;
mod host;
mod inspect;
mod jsonl;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod query;
pub mod record;
mod scaffold;
mod sched;
mod serve;
pub mod state;
mod supervisor;
pub mod tables;
mod testrun;
mod ticker;
mod timers;
mod topic;

/// Milliseconds since the Unix epoch, by the wall clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
