//! One running processor instance: its store, its state, and the call of a batch (or of due
//! timers) under limits.

use wasmtime::component::TypedFunc;
use wasmtime::{Store, Trap};

use super::{deadline_ticks, one_line, Module};
use crate::contract::exports::weir::processor::processor::ProcessingError;
use crate::contract::weir::processor::types::{Clock, Outputs as WitOutputs, Timer};
use crate::contract::StreamProcessor as Processor;
use crate::error::{LoadError, Location, Offsets, ProcessError, StateError};
use crate::host::{HostState, LogContext};
use crate::record::{Batch, Outputs};
use crate::state::{MemoryStore, StateView};
use crate::tables::TableView;
use crate::timers;

/// The component's `on-timer` export.
type OnTimer = TypedFunc<(Vec<Timer>,), (Result<WitOutputs, ProcessingError>,)>;

/// Most `on-timer` calls per firing: a guest that keeps setting timers that are already due
/// gets the rest at the next firing instead of holding up the partition.
const MAX_TIMER_ROUNDS: usize = 100;

/// Timers that fired together, and the outputs their handler returned.
pub struct Fired {
    pub timers: Vec<Timer>,
    pub outputs: Outputs,
    /// When they fired: the event time, or the wall-clock time, in ms since the epoch.
    pub now: i64,
}

impl Fired {
    /// The timestamp an output answering timer `i` gets unless the guest set one: the timer's
    /// time for an event-time timer, the firing time for a wall-clock timer.
    pub fn timestamp(&self, i: usize) -> Option<i64> {
        let t = self.timers.get(i)?;
        Some(match t.clock {
            Clock::EventTime => t.at,
            Clock::WallClock => self.now,
        })
    }
}

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
    on_timer: Option<OnTimer>,
    dead: bool,
}

/// What a call was about, to say where it failed.
enum Subject<'a> {
    Batch(&'a Batch),
    Timers(&'a [Timer]),
}

impl Subject<'_> {
    fn len(&self) -> usize {
        match self {
            Subject::Batch(b) => b.len(),
            Subject::Timers(t) => t.len(),
        }
    }
}

/// How a call failed, before it is explained with a location.
enum CallFailure {
    Rejected(ProcessingError),
    /// The record at fault, when one is, and what is wrong.
    BadOutput(Option<usize>, String),
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
        let log = LogContext {
            module: module.name.clone(),
            topic: topic.to_owned(),
            partition,
            offsets: None,
            sink: module.log.clone(),
        };
        let host = HostState::new(state, log, module.limits.memory_limit, module.limits.outputs.max_record_bytes);
        let (store, bindings, on_timer) = start(&module, host, config).map_err(|failed| failed.0)?;
        Ok(Self { module, config: config.to_vec(), store, bindings, on_timer, dead: false })
    }

    /// Gives the guest's table lookups these tables, seen from this instance's partition.
    pub fn set_tables(&mut self, tables: TableView) {
        self.store.data_mut().tables = tables;
    }

    /// Runs the guest over `batch`. On error nothing of the batch is kept, and the error names
    /// the record at fault: the one the guest named, or for a trap the one that traps when the
    /// batch's records are retried one by one on a fresh instance.
    pub fn process(&mut self, batch: &Batch) -> Result<Outputs, ProcessError> {
        if self.module.uses_timers() {
            self.event_time(&Subject::Batch(batch))?;
        }
        let result = self.call(batch);
        self.conclude(result, &Subject::Batch(batch))
    }

    /// After a processed batch: moves the partition's event time up to the batch's newest
    /// record timestamp, and fires the event-time timers now due. Nothing for a component
    /// without timers.
    pub fn advance(&mut self, batch: &Batch) -> Result<Vec<Fired>, ProcessError> {
        if !self.module.uses_timers() {
            return Ok(Vec::new());
        }
        let current = self.event_time(&Subject::Batch(batch))?;
        let newest = (0..batch.len()).filter_map(|i| batch.timestamp(i)).max().unwrap_or(-1);
        if newest > current {
            let host = self.store.data_mut();
            host.event_time = Some(newest);
            timers::store_event_time(&mut host.state, newest);
        }
        self.fire(Clock::EventTime, current.max(newest))
    }

    /// Fires the wall-clock timers due at `now` (ms since the epoch).
    pub fn fire_wall_clock(&mut self, now: i64) -> Result<Vec<Fired>, ProcessError> {
        if !self.module.uses_timers() {
            return Ok(Vec::new());
        }
        self.event_time(&Subject::Timers(&[]))?;
        self.fire(Clock::WallClock, now)
    }

    /// The partition's event time, which the guest sees too; read from the store the first
    /// time.
    fn event_time(&mut self, subject: &Subject<'_>) -> Result<i64, ProcessError> {
        let host = self.store.data_mut();
        if let Some(t) = host.event_time {
            return Ok(t);
        }
        let t = timers::load_event_time(&mut host.state)
            .map_err(|source| ProcessError::State { location: self.location(subject, None), source })?;
        self.store.data_mut().event_time = Some(t);
        Ok(t)
    }

    /// Calls `on-timer` with the timers on `clock` due at `now`, deleting each as it fires,
    /// until none is due.
    fn fire(&mut self, clock: Clock, now: i64) -> Result<Vec<Fired>, ProcessError> {
        let mut fired = Vec::new();
        for _ in 0..MAX_TIMER_ROUNDS {
            let host = self.store.data_mut();
            let after = host.fired.through(clock);
            let due = match timers::due(&host.state, clock, after, now, timers::FIRE_BATCH) {
                Ok(due) => due,
                Err(source) => {
                    let wall_clock = clock == Clock::WallClock;
                    let offsets = Offsets::Timer { at: now, wall_clock };
                    let location = Box::new(Location { offsets, ..*self.location(&Subject::Timers(&[]), None) });
                    return Err(ProcessError::State { location, source });
                }
            };
            if due.is_empty() {
                // Everything up to `now` has fired (a timer set before it lowers this again).
                host.fired.set(clock, Some(now));
                break;
            }
            for t in &due {
                host.state.delete(timers::timer_key(t.clock, t.at, &t.key));
            }
            let result = self.call_on_timer(&due);
            let outputs = self.conclude(result, &Subject::Timers(&due))?;
            fired.push(Fired { timers: due, outputs, now });
        }
        Ok(fired)
    }

    /// Turns a failed call into an error that names the record or timer at fault, forgetting
    /// the state writes since the last commit.
    fn conclude(
        &mut self,
        result: Result<Outputs, CallFailure>,
        subject: &Subject<'_>,
    ) -> Result<Outputs, ProcessError> {
        let failure = match result {
            Ok(outputs) => return Ok(outputs),
            Err(failure) => failure,
        };
        self.rollback();
        match failure {
            // The whole batch's failure, explained before the retries change the instance;
            // then, if one record fails alone, that record and how it fails alone.
            CallFailure::Trap(error) if subject.len() > 1 => {
                let whole = self.explain(error, subject, None);
                Err(self.isolate(subject).unwrap_or(whole))
            }
            failure => Err(self.located(failure, subject)),
        }
    }

    /// `failure` of a call over `subject`, located: at the record or timer it names, at the
    /// only one there is, or over them all.
    fn located(&mut self, failure: CallFailure, subject: &Subject<'_>) -> ProcessError {
        let named = |index: Option<usize>| index.filter(|&i| i < subject.len()).or((subject.len() == 1).then_some(0));
        match failure {
            CallFailure::Rejected(e) => {
                let index = named(e.record.map(|i| i as usize));
                ProcessError::Rejected { location: self.location(subject, index), message: e.message }
            }
            CallFailure::BadOutput(index, detail) => {
                ProcessError::BadOutput { location: self.location(subject, named(index)), detail }
            }
            CallFailure::Trap(error) => self.explain(error, subject, named(None)),
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

    /// Whether any state was written since the last commit.
    pub fn has_pending_writes(&self) -> bool {
        self.store.data().state.has_pending()
    }

    /// Forgets the state writes of every batch since the last commit.
    pub fn rollback(&mut self) {
        let host = self.store.data_mut();
        host.state.rollback();
        // The event time may have moved with the forgotten batches, and fired timers come back:
        // read the one again (now, so retries see it; on error, at the next batch) and search
        // for the other from the start.
        if self.module.uses_timers() {
            host.event_time = timers::load_event_time(&mut host.state).ok();
        }
        host.fired = timers::FiredThrough::default();
    }

    fn call(&mut self, batch: &Batch) -> Result<Outputs, CallFailure> {
        let last = batch.len().checked_sub(1);
        let offsets = batch.offset(0).zip(last.and_then(|i| batch.offset(i)));
        self.store.data_mut().log.offsets = offsets;
        self.call_with(batch.len(), |store, bindings, _| {
            bindings.weir_processor_processor().call_process(store, &batch.wit)
        })
    }

    fn call_on_timer(&mut self, timers: &[Timer]) -> Result<Outputs, CallFailure> {
        self.store.data_mut().log.offsets = None;
        self.call_with(timers.len(), |store, _, on_timer| match on_timer {
            Some(f) => f.call(store, (timers.to_vec(),)).map(|(result,)| result),
            None => Err(wasmtime::Error::msg("the component exports no `on-timer`")),
        })
    }

    /// Calls into the guest under fresh limits (restarting it after a trap), and checks the
    /// outputs it returns for `count` records or timers.
    fn call_with(
        &mut self,
        count: usize,
        f: impl FnOnce(
            &mut Store<HostState>,
            &Processor,
            Option<&OnTimer>,
        ) -> wasmtime::Result<Result<WitOutputs, ProcessingError>>,
    ) -> Result<Outputs, CallFailure> {
        if self.dead {
            self.restart().map_err(|e| CallFailure::Trap(wasmtime::Error::msg(e.to_string())))?;
        }
        arm(&mut self.store, &self.module);
        let called = f(&mut self.store, &self.bindings, self.on_timer.as_ref());
        self.store.data_mut().drain_prints();
        match called {
            Ok(Ok(outputs)) => Outputs::check(outputs, count, &self.module.limits.outputs)
                .map_err(|(i, d)| CallFailure::BadOutput(i, d)),
            Ok(Err(rejected)) => Err(CallFailure::Rejected(rejected)),
            Err(trap) => {
                self.dead = true;
                Err(CallFailure::Trap(trap))
            }
        }
    }

    /// Retries each record (or timer) alone to find one that fails alone, and says how it
    /// does; state is rolled back after each. `None` when each passes alone: the subject failed
    /// only as a whole.
    fn isolate(&mut self, subject: &Subject<'_>) -> Option<ProcessError> {
        for i in 0..subject.len() {
            let failed = match subject {
                Subject::Batch(batch) => {
                    let one = batch.single(i);
                    self.call(&one).err().map(|failure| self.located(failure, &Subject::Batch(&one)))
                }
                Subject::Timers(timers) => {
                    let one = &timers[i..=i];
                    self.call_on_timer(one).err().map(|failure| self.located(failure, &Subject::Timers(one)))
                }
            };
            self.rollback();
            if failed.is_some() {
                return failed;
            }
        }
        None
    }

    fn restart(&mut self) -> Result<(), LoadError> {
        let (module, config) = (self.module.clone(), self.config.clone());
        self.start_over(module, config)
    }

    /// Replaces the guest with an instance of `module` (initialised with `config`) over the
    /// same state, tables and event time: a hot swap, at a commit boundary (nothing pending).
    /// On failure the old guest stays, unusable until its next call restarts it.
    pub fn swap(&mut self, module: Module, config: Vec<(String, String)>) -> Result<(), LoadError> {
        self.start_over(module, config)
    }

    fn start_over(&mut self, module: Module, config: Vec<(String, String)>) -> Result<(), LoadError> {
        let data = self.store.data_mut();
        let state = std::mem::replace(&mut data.state, StateView::new(Box::new(MemoryStore::new())));
        let mut log = data.log.clone();
        log.module = module.name.clone();
        if module.log.is_some() {
            log.sink = module.log.clone();
        }
        let mut host = HostState::new(state, log, module.limits.memory_limit, module.limits.outputs.max_record_bytes);
        // What the partition's instance knows carries over to the fresh guest.
        host.tables = data.tables.clone();
        (host.event_time, host.fired) = (data.event_time, data.fired);
        match start(&module, host, &config) {
            Ok((store, bindings, on_timer)) => {
                self.store = store;
                self.bindings = bindings;
                self.on_timer = on_timer;
                self.dead = false;
                self.module = module;
                self.config = config;
                Ok(())
            }
            Err(failed) => {
                let (error, host) = *failed;
                // Keep the partition's state with the dead instance (its tables are still
                // there); the next call retries.
                self.store.data_mut().state = host.into_state();
                self.dead = true;
                Err(error)
            }
        }
    }

    /// The approximate size of the partition's state store in bytes, when the store knows it.
    pub fn state_size(&self) -> Option<u64> {
        self.store.data().state.size_bytes()
    }

    fn explain(&mut self, error: wasmtime::Error, subject: &Subject<'_>, culprit: Option<usize>) -> ProcessError {
        let location = self.location(subject, culprit);
        let limits = &self.module.limits;
        let error = match error.downcast::<StateError>() {
            Ok(source) => return ProcessError::State { location, source },
            Err(e) => e,
        };
        if let Some(detail) = self.store.data_mut().refused_state.take() {
            return ProcessError::BadState { location, detail };
        }
        match Cause::of(&mut self.store, &error) {
            Cause::Memory => ProcessError::MemoryLimit { location, limit_mib: (limits.memory_limit >> 20) as u64 },
            Cause::Deadline => ProcessError::Deadline { location, deadline_ms: limits.deadline.as_millis() as u64 },
            Cause::Fuel => ProcessError::OutOfFuel { location, fuel: limits.fuel.unwrap_or(0) },
            Cause::Trap(detail) => ProcessError::Trap { location, detail },
        }
    }

    fn location(&self, subject: &Subject<'_>, index: Option<usize>) -> Box<Location> {
        let log = &self.store.data().log;
        let mut location = Location {
            module: self.module.name.clone(),
            topic: log.topic.clone(),
            partition: log.partition,
            offsets: Offsets::Range(-1, -1),
            key: None,
        };
        match subject {
            Subject::Batch(batch) => {
                location.topic = batch.topic().to_owned();
                location.partition = batch.partition();
                location.offsets = match index {
                    Some(i) => Offsets::One(batch.offset(i).unwrap_or(-1)),
                    None => Offsets::Range(
                        batch.offset(0).unwrap_or(-1),
                        batch.offset(batch.len().saturating_sub(1)).unwrap_or(-1),
                    ),
                };
                location.key = index.and_then(|i| batch.key(i)).map(<[u8]>::to_vec);
            }
            Subject::Timers(timers) => {
                if let Some(t) = index.or((timers.len() == 1).then_some(0)).and_then(|i| timers.get(i)) {
                    location.offsets = Offsets::Timer { at: t.at, wall_clock: t.clock == Clock::WallClock };
                    location.key = Some(t.key.clone());
                }
            }
        }
        Box::new(location)
    }
}

/// Sets the per-call limits: a fresh deadline, fresh fuel, no remembered guest error.
fn arm(store: &mut Store<HostState>, module: &Module) {
    let options = &module.limits;
    store.set_epoch_deadline(deadline_ticks(options.deadline));
    // Under an engine that meters fuel, a module without a fuel limit gets all there is.
    let metering = module.engine.options().fuel.is_some();
    if let Some(fuel) = options.fuel.or(metering.then_some(u64::MAX)) {
        // Fuel is enabled on the engine whenever its `options.fuel` is set (and a module's
        // limits ask for fuel only then), so this cannot fail.
        let _ = store.set_fuel(fuel);
    }
    let data = store.data_mut();
    data.last_error = None;
    data.limiter.exceeded = false;
    data.limiter.host = data.state.pending_bytes();
    data.refused_state = None;
    // A blocking host call returns by the time the epoch deadline has surely passed, so the
    // guest traps with its deadline as soon as it runs again.
    data.deadline = Some(std::time::Instant::now() + options.deadline + 2 * super::EPOCH_TICK);
}

/// Why a start failed, and the host state to keep.
type FailedStart = Box<(LoadError, HostState)>;

/// Instantiates the module in a new store and calls `init`. On failure the host state comes
/// back, so the partition's state is never lost with a failed start.
fn start(
    module: &Module,
    mut host: HostState,
    config: &[(String, String)],
) -> Result<(Store<HostState>, Processor, Option<OnTimer>), FailedStart> {
    host.timer_handler = module.on_timer.is_some();
    let mut store = Store::new(module.engine.wasmtime(), host);
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_trap();
    arm(&mut store, module);
    let path = module.path.clone();
    let instantiated = module.pre.instance_pre().instantiate(&mut store).and_then(|instance| {
        let bindings = Processor::new(&mut store, &instance)?;
        let on_timer = match &module.on_timer {
            Some(index) => Some(instance.get_typed_func(&mut store, index)?),
            None => None,
        };
        Ok((bindings, on_timer))
    });
    let (bindings, on_timer) = match instantiated {
        Ok(found) => found,
        Err(e) => return Err(Box::new((LoadError::Init { path, detail: one_line(&e) }, store.into_data()))),
    };
    let initialised = bindings.weir_processor_processor().call_init(&mut store, config);
    store.data_mut().drain_prints();
    let error = match initialised {
        Ok(Ok(())) => return Ok((store, bindings, on_timer)),
        Ok(Err(message)) => LoadError::Config { path, message },
        Err(e) => LoadError::Init { path, detail: init_failure(&mut store, module, &e) },
    };
    Err(Box::new((error, store.into_data())))
}

/// Why `init` failed: the limit it hit (the same ones as a batch's), or the trap and what the
/// guest said before it.
fn init_failure(store: &mut Store<HostState>, module: &Module, e: &wasmtime::Error) -> String {
    let limits = &module.limits;
    match Cause::of(store, e) {
        Cause::Memory => format!("it exceeded its memory limit of {} MiB", limits.memory_limit >> 20),
        Cause::Deadline => format!("it did not return within its deadline of {} ms", limits.deadline.as_millis()),
        Cause::Fuel => format!("it ran out of fuel ({} units)", limits.fuel.unwrap_or(0)),
        Cause::Trap(detail) => detail,
    }
}

/// Why a call into the guest trapped: a limit it hit, or the trap itself with what the guest
/// logged as an error just before (the SDKs log panics and exceptions there).
enum Cause {
    Memory,
    Deadline,
    Fuel,
    Trap(String),
}

impl Cause {
    fn of(store: &mut Store<HostState>, error: &wasmtime::Error) -> Self {
        if store.data().limiter.exceeded {
            return Cause::Memory;
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => return Cause::Deadline,
            Some(Trap::OutOfFuel) => return Cause::Fuel,
            _ => {}
        }
        let detail = one_line(error);
        Cause::Trap(match store.data_mut().last_error.take() {
            Some(said) => format!("{detail} (guest said: {})", said.split_whitespace().collect::<Vec<_>>().join(" ")),
            None => detail,
        })
    }
}
