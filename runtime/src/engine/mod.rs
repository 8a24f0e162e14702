//! The WebAssembly engine: compiles (or loads from cache) processor components, links weir's
//! imports once per module, and runs instances under a memory limit, a deadline per batch and
//! optional fuel.
//!
//! ```no_run
//! use weir_runtime::engine::{Engine, EngineOptions};
//! use weir_runtime::record::Batch;
//! use weir_runtime::state::MemoryStore;
//!
//! # fn main() -> anyhow::Result<()> {
//! let engine = Engine::new(EngineOptions::default())?;
//! let module = engine.load(std::path::Path::new("uppercase.wasm"))?;
//! let mut instance = module.instantiate("input", 0, Box::new(MemoryStore::new()), &[])?;
//! let mut batch = Batch::new("input", "input", 0);
//! batch.push(0, None, Some(b"k"), Some(b"hello"), []);
//! let outputs = instance.process(&batch)?;
//! assert_eq!(outputs.iter().next().and_then(|o| o.value()), Some(&b"HELLO"[..]));
//! instance.commit()?;
//! # Ok(()) }
//! ```

mod cache;
mod instance;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use cache::{CacheOutcome, ComponentCache};
pub use instance::{Fired, Instance};

use crate::contract::{
    StreamProcessorPre as ProcessorPre, ON_TIMER, PROCESSOR_EXPORT, STATE_IMPORT, TIMERS_IMPORT, TIMER_HANDLER_EXPORT,
};
use crate::error::LoadError;
use crate::host::HostState;

/// How often the epoch advances; deadlines are rounded up to it.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits and switches of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Most linear memory one instance may use.
    pub memory_limit: usize,
    /// Longest a guest may take for one batch (or for `init`).
    pub deadline: Duration,
    /// Fuel per batch, if fuel metering is wanted (it costs some speed on every guest).
    pub fuel: Option<u64>,
    /// Where compiled components are kept; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// How many instances may be alive at once (the pooling allocator reserves room for them).
    pub max_instances: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            memory_limit: 256 << 20,
            deadline: Duration::from_secs(5),
            fuel: None,
            cache_dir: ComponentCache::default_dir(),
            max_instances: 64,
        }
    }
}

/// What one module's instances may use: memory, time per call, fuel per call. The engine's
/// options are the defaults, and the ceiling for memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub memory_limit: usize,
    pub deadline: Duration,
    pub fuel: Option<u64>,
    pub outputs: crate::record::OutputLimits,
}

impl Limits {
    /// The limits a module's table (`[module]`, or a stage's) and the pipeline's outputs and
    /// `message.max.bytes` set.
    pub fn of(m: &crate::config::ModuleConfig, config: &crate::config::PipelineConfig) -> Self {
        Limits {
            memory_limit: m.memory_limit_mib << 20,
            deadline: Duration::from_millis(m.deadline_ms),
            fuel: m.fuel,
            outputs: crate::record::OutputLimits {
                names: Some(Arc::new(config.outputs.keys().cloned().collect())),
                max_record_bytes: config.message_max_bytes(),
                max_per_record: m.max_outputs_per_record,
                max_batch_bytes: m.max_output_bytes_per_batch,
            },
        }
    }
}

/// A configured wasmtime engine with weir's imports linked. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    wasmtime: wasmtime::Engine,
    linker: Linker<HostState>,
    options: EngineOptions,
    cache: Option<ComponentCache>,
}

impl Engine {
    pub fn new(options: EngineOptions) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        // A component instance holds several core instances (the module, WASI adapter shims).
        pool.total_component_instances(options.max_instances)
            .total_core_instances(options.max_instances * 8)
            .total_memories(options.max_instances * 2)
            .total_tables(options.max_instances * 8)
            .max_memory_size(options.memory_limit);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(options.fuel.is_some())
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let wasmtime = wasmtime::Engine::new(&config)?;
        spawn_epoch_ticker(&wasmtime);

        let mut linker = Linker::new(&wasmtime);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        crate::host::clocks::add_to_linker(&mut linker)?;
        crate::contract::StreamProcessor::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;

        let cache = options.cache_dir.clone().map(ComponentCache::checked).transpose()?;
        Ok(Self { inner: Arc::new(EngineInner { wasmtime, linker, options, cache }) })
    }

    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    /// Loads a processor component from a file.
    pub fn load(&self, path: &Path) -> Result<Module, LoadError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: shown.clone(), source })?;
        let name = path.file_stem().map_or_else(|| "processor".into(), |s| s.to_string_lossy().into_owned());
        self.load_bytes(&name, &shown, &bytes)
    }

    /// Loads a processor component from bytes; `name` names it in errors and logs.
    pub fn load_bytes(&self, name: &str, path: &str, bytes: &[u8]) -> Result<Module, LoadError> {
        let component = self.compile(path, bytes)?.0;
        check_world(&self.inner.wasmtime, &component, path)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Imports { path: path.into(), detail: one_line(&e) })?;
        let pre = ProcessorPre::new(pre).map_err(|e| LoadError::Invalid { path: path.into(), detail: one_line(&e) })?;
        let imports =
            |prefix: &str| component.component_type().imports(&self.inner.wasmtime).any(|(n, _)| n.starts_with(prefix));
        // Timers can only fire in a component that can both set them and handle them.
        let on_timer = component
            .get_export_index(None, TIMER_HANDLER_EXPORT)
            .and_then(|handler| component.get_export_index(Some(&handler), ON_TIMER))
            .filter(|_| imports(TIMERS_IMPORT));
        let uses_state = imports(STATE_IMPORT) || on_timer.is_some();
        let options = &self.inner.options;
        let limits = Limits {
            memory_limit: options.memory_limit,
            deadline: options.deadline,
            fuel: options.fuel,
            outputs: crate::record::OutputLimits::default(),
        };
        Ok(Module {
            limits,
            engine: self.clone(),
            name: name.into(),
            path: path.into(),
            uses_state,
            on_timer,
            pre,
            log: None,
        })
    }

    /// Validates and compiles (or loads from cache) without checking the world.
    pub fn compile(&self, path: &str, bytes: &[u8]) -> Result<(Component, CacheOutcome), LoadError> {
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(LoadError::CoreModule { path: path.into() }),
            Some([0, b'a', b's', b'm', ..]) => {}
            _ => return Err(LoadError::NotWasm { path: path.into() }),
        }
        let invalid = |e: wasmtime::Error| LoadError::Invalid { path: path.into(), detail: one_line(&e) };
        match &self.inner.cache {
            Some(cache) => cache.load(&self.inner.wasmtime, bytes).map_err(invalid),
            None => Component::new(&self.inner.wasmtime, bytes).map(|c| (c, CacheOutcome::Compiled)).map_err(invalid),
        }
    }

    pub(crate) fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.wasmtime
    }
}

/// A loaded, linked processor, ready to instantiate many times.
#[derive(Clone)]
pub struct Module {
    engine: Engine,
    name: String,
    path: String,
    limits: Limits,
    uses_state: bool,
    /// The `on-timer` function, for a component that sets and handles timers.
    on_timer: Option<wasmtime::component::ComponentExportIndex>,
    pre: ProcessorPre<HostState>,
    /// Where its instances' log lines and prints go: the pipeline's guest log.
    log: Option<std::sync::Arc<crate::guest_log::GuestLog>>,
}

impl Module {
    /// The module with its instances logging into `log`.
    pub fn with_log(mut self, log: std::sync::Arc<crate::guest_log::GuestLog>) -> Self {
        self.log = Some(log);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The same module under other limits. The engine's pooling allocator sets the most memory
    /// any instance may have, and fuel can be metered only by an engine that meters it.
    pub fn with_limits(mut self, limits: Limits) -> Result<Self, LoadError> {
        let options = self.engine.options();
        if limits.memory_limit > options.memory_limit {
            return Err(LoadError::Limits {
                path: self.path,
                detail: format!(
                    "memory_limit_mib = {} is more than this weir allows one instance ({} MiB)",
                    limits.memory_limit >> 20,
                    options.memory_limit >> 20
                ),
            });
        }
        if limits.fuel.is_some() && options.fuel.is_none() {
            return Err(LoadError::Limits {
                path: self.path,
                detail: "fuel is set, but this weir does not meter fuel (start it with --fuel)".into(),
            });
        }
        self.limits = limits;
        Ok(self)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the component keeps state or timers (and so needs a changelog).
    pub fn uses_state(&self) -> bool {
        self.uses_state
    }

    /// Whether the component sets and handles timers: weir then tracks the event time of its
    /// partitions and fires its timers.
    pub fn uses_timers(&self) -> bool {
        self.on_timer.is_some()
    }

    /// A new instance for one input partition, with its own state, initialised with `config`.
    pub fn instantiate(
        &self,
        topic: &str,
        partition: i32,
        store: Box<dyn crate::state::StateStore>,
        config: &[(String, String)],
    ) -> Result<Instance, LoadError> {
        Instance::new(self.clone(), topic, partition, crate::state::StateView::new(store), config)
    }
}

/// Refuses components that do not export weir's processor interface, naming what they export,
/// and those built for a version of the contract this weir does not run (another 0.x minor, or
/// another major), naming both versions.
fn check_world(engine: &wasmtime::Engine, component: &Component, path: &str) -> Result<(), LoadError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_owned()).collect();
    let (unversioned, _) = PROCESSOR_EXPORT.rsplit_once('.').unwrap_or((PROCESSOR_EXPORT, ""));
    if exports.iter().any(|e| e.strip_prefix(unversioned).is_some_and(|patch| patch.starts_with('.'))) {
        return Ok(());
    }
    let (interface, runs) = PROCESSOR_EXPORT.split_once('@').unwrap_or((PROCESSOR_EXPORT, ""));
    let other_version = exports.iter().find_map(|e| e.strip_prefix(interface)?.strip_prefix('@'));
    if let Some(found) = other_version {
        let family = runs.rsplit_once('.').map_or(runs, |(major_minor, _)| major_minor);
        let runs = format!("{family}.x, up to {runs}");
        return Err(LoadError::Contract { path: path.into(), found: found.into(), runs });
    }
    let found = if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") };
    Err(LoadError::WrongWorld { path: path.into(), expected: PROCESSOR_EXPORT.into(), found })
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
fn spawn_epoch_ticker(engine: &wasmtime::Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("weir-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!("cannot start the epoch thread, deadlines will not fire: {e}"));
}

/// Deadline in epoch ticks, rounded up, at least one.
fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_millis() as u64).div_ceil(EPOCH_TICK.as_millis() as u64).max(1) + 1
}

/// An error and its causes on one line.
pub(crate) fn one_line(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // Wasm backtraces are multi-line and long; the first line says enough.
        let first = text.lines().next().unwrap_or_default().trim().trim_end_matches(':').to_owned();
        // wasmtime wraps traps in "error while executing at wasm backtrace: <frames>"; the trap
        // itself follows in the chain and says what happened.
        if first.starts_with("error while executing at wasm backtrace") {
            continue;
        }
        if !first.is_empty() && !parts.contains(&first) {
            parts.push(first);
        }
    }
    parts.join(": ")
}
