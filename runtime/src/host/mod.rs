//! What the host gives a guest: its imports (one file per interface), WASI without files or
//! network, and the per-store limits.

pub(crate) mod clocks;
mod log;
mod output;
mod state;
mod tables;
mod timers;

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::guest_log::{GuestLog, Level, Origin};
use crate::state::StateView;
use crate::tables::{TableView, Tables};

/// Everything a guest instance's store holds.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) state: StateView,
    /// The pipeline's tables, as this instance's partition sees them (none until set).
    pub(crate) tables: TableView,
    pub(crate) log: LogContext,
    /// Whether the component exports `timer-handler`, so its timers can fire.
    pub(crate) timer_handler: bool,
    /// The partition's event time when the current call started (-1: no timestamped record
    /// yet), once read from the store (for a component with timers).
    pub(crate) event_time: Option<i64>,
    /// How far the timers have fired, per clock (kept down as timers are set before it).
    pub(crate) fired: crate::timers::FiredThrough,
    /// The last error-level line the guest logged during the current call (the SDKs log
    /// panics and exceptions there), to explain a trap.
    pub(crate) last_error: Option<String>,
    /// When the current call's deadline passes: a blocking host call (a sleep) returns by then.
    pub(crate) deadline: Option<std::time::Instant>,
    /// Largest state entry (key and value) the changelog takes: the producer's limit.
    pub(crate) max_state_bytes: usize,
    /// Why the current call's state write was refused, when it was (the record's fault).
    pub(crate) refused_state: Option<String>,
    /// The guest's monotonic clock, to read a sleep's instant by.
    clock: clocks::GuestClock,
    /// What it prints, until the call ends.
    stdout: output::Captured,
    stderr: output::Captured,
}

/// Who is logging, for the structured fields of guest log lines, and where they go.
#[derive(Clone)]
pub struct LogContext {
    pub module: String,
    pub topic: String,
    pub partition: i32,
    /// The offsets of the batch being processed (first and last), during a `process` call.
    pub offsets: Option<(i64, i64)>,
    /// The pipeline's guest log; without one (`weir test`), lines go to weir's own log only.
    pub sink: Option<Arc<GuestLog>>,
}

impl LogContext {
    /// Logs a line the guest wrote (`source`: `log`, `stdout` or `stderr`).
    pub fn write(&self, level: Level, source: &str, message: &str) {
        let origin =
            Origin { module: &self.module, topic: &self.topic, partition: self.partition, offsets: self.offsets };
        match &self.sink {
            Some(sink) => {
                sink.push(level, source, &origin, message);
            }
            None => {
                let (module, topic, partition) = (origin.module, origin.topic, origin.partition);
                match level {
                    Level::Trace => {
                        tracing::trace!(target: "weir::guest", module, topic, partition, source, "{message}")
                    }
                    Level::Debug => {
                        tracing::debug!(target: "weir::guest", module, topic, partition, source, "{message}")
                    }
                    Level::Info => tracing::info!(target: "weir::guest", module, topic, partition, source, "{message}"),
                    Level::Warn => tracing::warn!(target: "weir::guest", module, topic, partition, source, "{message}"),
                    Level::Error => {
                        tracing::error!(target: "weir::guest", module, topic, partition, source, "{message}")
                    }
                }
            }
        }
    }
}

impl HostState {
    /// A guest's host state: `memory_limit` bytes for what it holds, here and in its memories,
    /// and `max_state_bytes` for one state entry (the changelog producer's limit).
    pub fn new(state: StateView, log: LogContext, memory_limit: usize, max_state_bytes: usize) -> Self {
        let clock = clocks::GuestClock::new();
        let (stdout, stderr) = (output::Captured::default(), output::Captured::default());
        let wasi = WasiCtx::builder()
            // Its sleeps end by the call's deadline (see `clocks`).
            .monotonic_clock(clock)
            // No preopened directories, no sockets: the guest reaches nothing but its imports.
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // Guest prints go to its log, never into an output stream on stdout.
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter { limit: memory_limit, exceeded: false, linear: 0, host: 0 },
            state,
            tables: TableView { tables: Tables::default(), partition: log.partition },
            log,
            timer_handler: false,
            event_time: None,
            fired: crate::timers::FiredThrough::default(),
            last_error: None,
            deadline: None,
            max_state_bytes,
            refused_state: None,
            clock,
            stdout,
            stderr,
        }
    }

    /// Hands what the guest printed during the call that just ended to its log: stdout at
    /// `info`, stderr at `warn`.
    pub(crate) fn drain_prints(&mut self) {
        for (stream, source, level) in [(&self.stdout, "stdout", Level::Info), (&self.stderr, "stderr", Level::Warn)] {
            let (lines, dropped) = stream.take();
            for line in lines {
                self.log.write(level, source, &line);
            }
            if dropped > 0 {
                let note = format!("({dropped} more bytes printed in this call were dropped)");
                self.log.write(level, source, &note);
            }
        }
    }

    pub(crate) fn into_state(self) -> StateView {
        self.state
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps what a guest holds, in its linear memories and in the host on its behalf (its
/// uncommitted state writes, a scan's results), and remembers when it went past, so a failed
/// allocation is reported as the memory limit rather than as whatever trap the guest turned it
/// into.
#[derive(Debug)]
pub struct MemoryLimiter {
    pub limit: usize,
    pub exceeded: bool,
    /// Bytes of the instance's linear memories.
    pub linear: usize,
    /// Bytes the host holds for the guest (see [`MemoryLimiter::hold`]).
    pub host: usize,
}

impl MemoryLimiter {
    /// Counts `host` bytes held for the guest; past the limit (with its linear memory), the
    /// call fails with the memory limit.
    pub fn hold(&mut self, host: usize, what: &str) -> wasmtime::Result<()> {
        self.host = host;
        let total = self.linear.saturating_add(host);
        if total > self.limit {
            self.exceeded = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit: {what} holds {host} bytes in the host beside {} of linear memory, the limit is {}",
                self.linear, self.limit
            )));
        }
        Ok(())
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        let linear = self.linear.saturating_add(desired.saturating_sub(current));
        if desired > self.limit || linear.saturating_add(self.host) > self.limit {
            self.exceeded = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit: the guest asked for {desired} bytes beside {} held for it, the limit is {}",
                self.host, self.limit
            )));
        }
        self.linear = linear;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
