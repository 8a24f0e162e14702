//! Errors that say what went wrong, where, and whose fault it is.
//!
//! Every error that concerns a record carries its [`Location`]: module, topic, partition, offset
//! and key, so an operator can find the record that caused it.

use std::fmt;

/// Whose fault an error is, and so whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Domain {
    /// The module, its configuration or the input is wrong; retrying the same input fails again.
    User,
    /// Something outside weir failed (disk, broker); a retry may succeed.
    External,
    /// A bug in weir.
    Internal,
}

/// Where in the stream an error happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The module's name: the stem of its file (as deployed, for `weir serve`).
    pub module: String,
    pub topic: String,
    pub partition: i32,
    /// The offset of the record at fault, or the first and last offsets of the batch when no
    /// single record could be blamed.
    pub offsets: Offsets,
    /// The key of the record at fault, shown as UTF-8 where valid.
    pub key: Option<Vec<u8>>,
}

/// One offset, or the range of a batch, or the timer that was firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offsets {
    One(i64),
    Range(i64, i64),
    /// A timer set for this time (milliseconds since the epoch) on the event-time clock
    /// (`wall_clock` false) or the wall clock.
    Timer {
        at: i64,
        wall_clock: bool,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "module `{}`, topic `{}` partition {} ", self.module, self.topic, self.partition)?;
        match self.offsets {
            Offsets::One(o) => write!(f, "offset {o}")?,
            Offsets::Range(a, b) => write!(f, "offsets {a}..={b}")?,
            Offsets::Timer { at, wall_clock } => {
                write!(f, "{} timer at {at}", if wall_clock { "wall-clock" } else { "event-time" })?
            }
        }
        match &self.key {
            None => write!(f, " (no key)"),
            Some(k) => match std::str::from_utf8(k) {
                Ok(s) => write!(f, " key {s:?}"),
                Err(_) => write!(f, " key 0x{}", hex::encode(k)),
            },
        }
    }
}

/// Why processing a batch failed. The batch is discarded as a whole: no outputs, no state.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("guest trapped at {location}: {detail}")]
    Trap { location: Box<Location>, detail: String },
    #[error("guest exceeded its deadline of {deadline_ms} ms at {location}")]
    Deadline { location: Box<Location>, deadline_ms: u64 },
    #[error("guest exceeded its memory limit of {limit_mib} MiB at {location}")]
    MemoryLimit { location: Box<Location>, limit_mib: u64 },
    #[error("guest ran out of fuel ({fuel} units per batch) at {location}")]
    OutOfFuel { location: Box<Location>, fuel: u64 },
    #[error("guest rejected the record at {location}: {message}")]
    Rejected { location: Box<Location>, message: String },
    #[error("guest returned malformed outputs at {location}: {detail}")]
    BadOutput { location: Box<Location>, detail: String },
    #[error("guest wrote state Kafka would refuse at {location}: {detail}")]
    BadState { location: Box<Location>, detail: String },
    #[error("state store failed at {location}: {source}")]
    State { location: Box<Location>, source: StateError },
}

impl ProcessError {
    /// Where it happened.
    pub fn location(&self) -> &Location {
        match self {
            ProcessError::Trap { location, .. }
            | ProcessError::Deadline { location, .. }
            | ProcessError::MemoryLimit { location, .. }
            | ProcessError::OutOfFuel { location, .. }
            | ProcessError::Rejected { location, .. }
            | ProcessError::BadOutput { location, .. }
            | ProcessError::BadState { location, .. }
            | ProcessError::State { location, .. } => location,
        }
    }

    /// How many records to give the guest at most from now on, when this befell a batch of
    /// `records` as a whole and none of its records alone (together too much for the guest's
    /// memory, deadline or fuel, though each record fits): half as many, since smaller batches
    /// of the same records may pass. `None` when a record is at fault, or the batch had one.
    pub fn smaller_batch(&self, records: usize) -> Option<usize> {
        let whole = matches!(self.location().offsets, Offsets::Range(..))
            && matches!(
                self,
                ProcessError::Trap { .. }
                    | ProcessError::Deadline { .. }
                    | ProcessError::MemoryLimit { .. }
                    | ProcessError::OutOfFuel { .. }
            );
        (whole && records > 1).then_some(records / 2)
    }

    /// Its kind, as metrics and dead-letter headers name it.
    pub fn kind(&self) -> &'static str {
        match self {
            ProcessError::Trap { .. } => "trap",
            ProcessError::Deadline { .. } => "deadline",
            ProcessError::MemoryLimit { .. } => "memory",
            ProcessError::OutOfFuel { .. } => "fuel",
            ProcessError::Rejected { .. } => "rejected",
            ProcessError::BadOutput { .. } => "output",
            ProcessError::BadState { .. } => "state-value",
            ProcessError::State { .. } => "state",
        }
    }
}

/// A state store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("RocksDB at {path}: {source}")]
    Rocks { path: String, source: rocksdb::Error },
    #[error("state directory {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// A module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: not a WebAssembly file (it does not start with the `\\0asm` magic bytes)")]
    NotWasm { path: String },
    #[error(
        "{path}: a core WebAssembly module, not a component; build for `wasm32-wasip2` \
         (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule { path: String },
    #[error("{path}: invalid component: {detail}")]
    Invalid { path: String, detail: String },
    #[error("{path}: built for another world: it does not export `{expected}` (it exports: {found})")]
    WrongWorld { path: String, expected: String, found: String },
    #[error(
        "{path}: built for weir's processor contract {found}, which this weir does not run (it runs {runs}): \
         rebuild the module with a weir SDK for that version, or run it on a weir that knows {found}"
    )]
    Contract { path: String, found: String, runs: String },
    #[error("{path}: needs imports weir does not provide: {detail}")]
    Imports { path: String, detail: String },
    #[error("{path}: init rejected the configuration: {message}")]
    Config { path: String, message: String },
    #[error("{path}: init failed: {detail}")]
    Init { path: String, detail: String },
    #[error("{path}: {detail}")]
    Limits { path: String, detail: String },
}

impl LoadError {
    pub fn domain(&self) -> Domain {
        match self {
            LoadError::Read { .. } => Domain::External,
            _ => Domain::User,
        }
    }
}
