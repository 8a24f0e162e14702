//! One running processor instance: its store, its state, and the call of a batch under limits.

use wasmtime::{Store, Trap};

use super::bindings::exports::weir::processor::processor::ProcessingError;
use super::bindings::StreamProcessor as Processor;
use super::{deadline_ticks, one_line, Module};
use crate::error::{LoadError, Location, Offsets, ProcessError, StateError};
use crate::host::{HostState, LogContext};
use crate::record::{Batch, Outputs};
use crate::state::{MemoryStore, StateView};
use crate::tables::TableView;

/// An instance of a [`Module`] serving one input partition.
///
/// [`Instance::process`] leaves the batch's state writes pending; [`Instance::commit`] makes
/// them durable (the pipeline does so together with its Kafka commit), and a failed batch rolls
/// back everything since the last commit. A trap leaves the guest unusable, so the next call
/// starts a fresh instance (calling `init` again) over the same state.
pub struct Instance {
    module: Module,
    config: Vec<(String, String)>,
    store: Store<HostState>,
    bindings: Processor,
    dead: bool,
}

/// How a call failed, before it is explained with a location.
enum Failure {
    Rejected(ProcessingError),
    BadOutput(usize, String),
    Trap(wasmtime::Error),
}

impl Instance {
    pub(super) fn new(
        module: Module,
        topic: &str,
        partition: i32,
        state: StateView,
        config: &[(String, String)],
    ) -> Result<Self, LoadError> {
        let log = LogContext { module: module.name.clone(), topic: topic.to_owned(), partition };
        let host = HostState::new(state, log, module.engine.options().memory_limit);
        let (store, bindings) = start(&module, host, config).map_err(|failed| failed.0)?;
        Ok(Self { module, config: config.to_vec(), store, bindings, dead: false })
    }

    pub fn module(&self) -> &Module {
        &self.module
    }

    /// Gives the guest's table lookups these tables, seen from this instance's partition.
    pub fn set_tables(&mut self, tables: TableView) {
        self.store.data_mut().tables = tables;
    }

    /// Runs the guest over `batch`. On error nothing of the batch is kept, and the error names
    /// the record at fault: the one the guest named, or for a trap the one that traps when the
    /// batch's records are retried one by one on a fresh instance.
    #[allow(clippy::result_large_err, reason = "errors are rare and carry their whole location")]
    pub fn process(&mut self, batch: &Batch) -> Result<Outputs, ProcessError> {
        let failure = match self.call(batch) {
            Ok(outputs) => return Ok(outputs),
            Err(failure) => failure,
        };
        self.rollback();
        match failure {
            Failure::Rejected(e) => {
                let index = e.record.map(|i| i as usize).filter(|&i| i < batch.len());
                Err(ProcessError::Rejected { location: self.location(batch, index), message: e.message })
            }
            Failure::BadOutput(index, detail) => {
                Err(ProcessError::BadOutput { location: self.location(batch, Some(index)), detail })
            }
            Failure::Trap(error) => {
                let culprit = if batch.len() > 1 { self.isolate(batch) } else { Some(0) };
                Err(self.explain(error, batch, culprit))
            }
        }
    }

    /// Makes the state writes of every batch since the last commit durable, atomically.
    pub fn commit(&mut self) -> Result<(), StateError> {
        self.commit_at(None)
    }

    /// Like [`Instance::commit`], recording the changelog offset the store now reflects.
    pub fn commit_at(&mut self, checkpoint: Option<i64>) -> Result<(), StateError> {
        self.store.data_mut().state.commit(checkpoint)
    }

    /// The state writes since the last commit (`None`: a delete), for the changelog.
    pub fn pending_writes(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.store.data().state.pending()
    }

    /// Forgets the state writes of every batch since the last commit.
    pub fn rollback(&mut self) {
        self.store.data_mut().state.rollback();
    }

    fn call(&mut self, batch: &Batch) -> Result<Outputs, Failure> {
        if self.dead {
            self.restart().map_err(|e| Failure::Trap(wasmtime::Error::msg(e.to_string())))?;
        }
        arm(&mut self.store, &self.module);
        let result = self.bindings.weir_processor_processor().call_process(&mut self.store, &batch.wit);
        match result {
            Ok(Ok(outputs)) => Outputs::check(outputs, batch.len()).map_err(|(i, d)| Failure::BadOutput(i, d)),
            Ok(Err(rejected)) => Err(Failure::Rejected(rejected)),
            Err(trap) => {
                self.dead = true;
                Err(Failure::Trap(trap))
            }
        }
    }

    /// Retries each record alone to find the one that traps; state is rolled back after each.
    fn isolate(&mut self, batch: &Batch) -> Option<usize> {
        let mut culprit = None;
        for i in 0..batch.len() {
            let failed = self.call(&batch.single(i)).is_err();
            self.rollback();
            if failed {
                culprit = Some(i);
                break;
            }
        }
        culprit
    }

    fn restart(&mut self) -> Result<(), LoadError> {
        let data = self.store.data_mut();
        let state = std::mem::replace(&mut data.state, StateView::new(Box::new(MemoryStore::new())));
        let mut host = HostState::new(state, data.log.clone(), self.module.engine.options().memory_limit);
        host.tables = data.tables.clone();
        match start(&self.module, host, &self.config) {
            Ok((store, bindings)) => {
                self.store = store;
                self.bindings = bindings;
                self.dead = false;
                Ok(())
            }
            Err(failed) => {
                let (error, host) = *failed;
                // Keep the partition's state with the dead instance (its tables are still
                // there); the next call retries.
                self.store.data_mut().state = host.into_state();
                Err(error)
            }
        }
    }

    fn explain(&mut self, error: wasmtime::Error, batch: &Batch, culprit: Option<usize>) -> ProcessError {
        let location = self.location(batch, culprit);
        let options = self.module.engine.options();
        if self.store.data().limiter.exceeded {
            return ProcessError::MemoryLimit { location, limit_mib: (options.memory_limit >> 20) as u64 };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => {
                return ProcessError::Deadline { location, deadline_ms: options.deadline.as_millis() as u64 }
            }
            Some(Trap::OutOfFuel) => return ProcessError::OutOfFuel { location, fuel: options.fuel.unwrap_or(0) },
            _ => {}
        }
        let error = match error.downcast::<StateError>() {
            Ok(source) => return ProcessError::State { location, source },
            Err(e) => e,
        };
        let mut detail = one_line(&error);
        if let Some(said) = self.store.data_mut().last_error.take() {
            let said = said.split_whitespace().collect::<Vec<_>>().join(" ");
            detail = format!("{detail} (guest said: {said})");
        }
        ProcessError::Trap { location, detail }
    }

    fn location(&self, batch: &Batch, index: Option<usize>) -> Location {
        let offsets = match index {
            Some(i) => Offsets::One(batch.offset(i).unwrap_or(-1)),
            None => Offsets::Range(batch.offset(0).unwrap_or(-1), batch.offset(batch.len().saturating_sub(1)).unwrap_or(-1)),
        };
        Location {
            module: self.module.name.clone(),
            topic: batch.topic().to_owned(),
            partition: batch.partition(),
            offsets,
            key: index.and_then(|i| batch.key(i)).map(<[u8]>::to_vec),
        }
    }
}

/// Sets the per-call limits: a fresh deadline, fresh fuel, no remembered guest error.
fn arm(store: &mut Store<HostState>, module: &Module) {
    let options = module.engine.options();
    store.set_epoch_deadline(deadline_ticks(options.deadline));
    if let Some(fuel) = options.fuel {
        // Fuel is enabled on the engine whenever `options.fuel` is set, so this cannot fail.
        let _ = store.set_fuel(fuel);
    }
    let data = store.data_mut();
    data.last_error = None;
    data.limiter.exceeded = false;
}

/// Why a start failed, and the host state to keep.
type FailedStart = Box<(LoadError, HostState)>;

/// Instantiates the module in a new store and calls `init`. On failure the host state comes
/// back, so the partition's state is never lost with a failed start.
fn start(
    module: &Module,
    host: HostState,
    config: &[(String, String)],
) -> Result<(Store<HostState>, Processor), FailedStart> {
    let mut store = Store::new(module.engine.wasmtime(), host);
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_trap();
    arm(&mut store, module);
    let path = module.path.clone();
    let bindings = match module.pre.instantiate(&mut store) {
        Ok(bindings) => bindings,
        Err(e) => return Err(Box::new((LoadError::Init { path, detail: one_line(&e) }, store.into_data()))),
    };
    let error = match bindings.weir_processor_processor().call_init(&mut store, config) {
        Ok(Ok(())) => return Ok((store, bindings)),
        Ok(Err(message)) => LoadError::Config { path, message },
        Err(e) => LoadError::Init { path, detail: one_line(&e) },
    };
    Err(Box::new((error, store.into_data())))
}
