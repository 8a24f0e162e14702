//! What the host gives a guest: its imports (one file per interface), WASI without files or
//! network, and the per-store limits.

mod log;
mod state;
mod tables;
mod timers;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

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
}

/// Who is logging, for the structured fields of guest log lines.
#[derive(Debug, Clone)]
pub struct LogContext {
    pub module: String,
    pub topic: String,
    pub partition: i32,
}

impl HostState {
    pub fn new(state: StateView, log: LogContext, memory_limit: usize) -> Self {
        let wasi = WasiCtx::builder()
            // No preopened directories, no sockets: the guest reaches nothing but its imports.
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // Guest prints go to the host's stderr, never into an output stream on stdout.
            .stdout(std::io::stderr())
            .stderr(std::io::stderr())
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter { limit: memory_limit, exceeded: false },
            state,
            tables: TableView { tables: Tables::default(), partition: log.partition },
            log,
            timer_handler: false,
            event_time: None,
            fired: crate::timers::FiredThrough::default(),
            last_error: None,
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

/// Caps a guest's linear memory and remembers when it asked for more, so a failed allocation is
/// reported as the memory limit rather than as whatever trap the guest turned it into.
#[derive(Debug)]
pub struct MemoryLimiter {
    pub limit: usize,
    pub exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit: the guest asked for {desired} bytes, the limit is {}",
                self.limit
            )));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
