//! The supervisor: owns the pipelines of a process and their threads, and is the only thing that
//! starts, stops, pauses, swaps and reads them. `weir serve` is a supervisor with a data dir and
//! an HTTP API; `weir run` is a supervisor with one pipeline from a file.
//!
//! A deployment is prepared before anything running is touched (vector's topology controller
//! does the same): the module is compiled, linked, instantiated with the pipeline's config and
//! `init` called. Only then does it reach the pipeline, which swaps it in at its next commit
//! boundary, over the same state stores and offsets. A change the pipeline cannot take in place
//! (inputs, guarantee, state_dir, ...) restarts it: commit, leave the group, start again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::api::Action;
pub use crate::api::{Deployed, NotReady, Status};
use crate::config::PipelineConfig;
use crate::datadir::{DataDir, Deployment, StageModule, Version};
use crate::engine::{Engine, Module};
use crate::error::{Domain, LoadError};
use crate::metrics::{Metrics, PipelineMetrics};
use crate::now_ms;
use crate::pipeline::control::Phase;
use crate::pipeline::{
    channel, channel_with_log, Attach, Command, Handle, Prepared, PreparedStage, Snapshot, Stats, SwapOutcome,
};
use crate::query::Queryable;
use crate::state::MemoryStore;

/// How long a deploy waits for the running pipeline to reach a commit boundary and swap.
const SWAP_WAIT: Duration = Duration::from_secs(120);
/// A running pipeline whose loop has not gone round for this long is stuck.
const STUCK_AFTER_MS: u64 = 120_000;

/// Why a request to the supervisor failed, and whose fault that is.
#[derive(Debug)]
pub struct Refusal {
    pub domain: Domain,
    /// No such pipeline.
    pub not_found: bool,
    /// It conflicts with what runs (the instance slots are taken).
    pub conflict: bool,
    pub message: String,
}

impl Refusal {
    fn of(domain: Domain, message: impl Into<String>) -> Self {
        Self { domain, not_found: false, conflict: false, message: message.into() }
    }
    fn user(message: impl Into<String>) -> Self {
        Self::of(Domain::User, message)
    }
    pub fn not_found(name: &str) -> Self {
        Self { not_found: true, ..Self::user(format!("no pipeline named `{name}`")) }
    }
    fn conflict(message: impl Into<String>) -> Self {
        Self { conflict: true, ..Self::user(message) }
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        Self::of(Domain::Internal, format!("{e:#}"))
    }
    fn load(e: LoadError) -> Self {
        Self::of(e.domain(), e.to_string())
    }
    fn external(e: impl std::fmt::Display) -> Self {
        Self::of(Domain::External, format!("{e:#}"))
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A module to deploy: its file name and bytes.
pub struct Upload {
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// What a deploy uploads: the module of a pipeline without stages, or modules by stage name.
/// What is not uploaded is kept from the live version.
#[derive(Default)]
pub struct Uploads {
    pub module: Option<Upload>,
    pub stages: BTreeMap<String, Upload>,
}

/// One pipeline's slot: the handle of its loop, and what it was started from.
struct Slot {
    handle: Handle,
    thread: Option<JoinHandle<anyhow::Result<Stats>>>,
    metrics: PipelineMetrics,
    /// The file it runs (with the module path and state dir as resolved); none for a pipeline
    /// whose file could not be read back.
    config: Option<PipelineConfig>,
    deployment: Deployment,
    /// The instance slots it holds of the engine's pool (see [`PipelineConfig::instance_slots`]).
    reserved: u32,
}

impl Slot {
    /// Whether the loop still runs (it ends when it failed or was stopped; a failed one may
    /// still be winding down, which does not count).
    fn alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished()) && self.handle.view.snapshot().status != Phase::Failed
    }

    /// Stops the loop (it commits and leaves the group) and waits for it.
    fn stop(&mut self) -> Option<anyhow::Result<Stats>> {
        self.handle.stop();
        let thread = self.thread.take()?;
        match thread.join() {
            Ok(result) => Some(result),
            Err(_) => Some(Err(anyhow::anyhow!("the pipeline thread panicked"))),
        }
    }
}

struct Inner {
    engine: Engine,
    metrics: Metrics,
    data: Option<DataDir>,
    pipelines: Mutex<BTreeMap<String, Slot>>,
    /// The pipelines a change (deploy, pause, delete, ...) is under way for: changes to one
    /// pipeline never interleave, and a slow one (a swap waiting for its commit boundary) holds
    /// up no other pipeline's.
    changing: Mutex<BTreeSet<String>>,
    changed: Condvar,
    site: OnceLock<Site>,
}

/// Where this process sits among an application's instances.
#[derive(Debug, Clone, Default)]
pub struct Site {
    /// The instance id of pipelines whose file names none (else the host name).
    pub instance_id: Option<String>,
    /// Where other instances reach this one's HTTP API, for queries they forward, and the
    /// secret the application's instances share.
    pub advertise: Option<crate::query::membership::Advertise>,
}

/// The pipelines of this process. Cheap to clone; the HTTP layer holds one.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Supervisor {
    /// A supervisor that records its pipelines in `data` (`weir serve`), or nowhere (`weir run`).
    pub fn new(engine: Engine, metrics: Metrics, data: Option<DataDir>) -> Self {
        let inner = Inner {
            engine,
            metrics,
            data,
            pipelines: Mutex::new(BTreeMap::new()),
            changing: Mutex::new(BTreeSet::new()),
            changed: Condvar::new(),
            site: OnceLock::new(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Says where this process sits, before any pipeline starts (once; later calls are ignored).
    pub fn set_site(&self, site: Site) {
        let _ = self.inner.site.set(site);
    }

    fn site(&self) -> Site {
        self.inner.site.get().cloned().unwrap_or_default()
    }

    /// Sends pipeline `name`'s dead-lettered records back to their source topics (see
    /// [`crate::pipeline::dead_letter::replay`]).
    pub fn replay_dead_letters(&self, name: &str, from: Option<i64>, until: Option<i64>) -> Result<u64, Refusal> {
        let config = {
            let pipelines = self.pipelines();
            let slot = pipelines.get(name).ok_or_else(|| Refusal::not_found(name))?;
            slot.config.clone().ok_or_else(|| Refusal::internal("the pipeline's file could not be read back"))?
        };
        crate::pipeline::dead_letter::replay(&config, from, until).map_err(|e| Refusal::external(format!("{e:#}")))
    }

    /// What queries read of pipeline `name`.
    pub fn queryable(&self, name: &str) -> Result<Arc<Queryable>, Refusal> {
        let pipelines = self.pipelines();
        let slot = pipelines.get(name).ok_or_else(|| Refusal::not_found(name))?;
        Ok(slot.handle.view.queryable.clone())
    }

    /// What pipeline `name`'s guests logged.
    pub fn guest_log(&self, name: &str) -> Result<Arc<crate::guest_log::GuestLog>, Refusal> {
        let pipelines = self.pipelines();
        let slot = pipelines.get(name).ok_or_else(|| Refusal::not_found(name))?;
        Ok(slot.handle.view.guest_log.clone())
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    fn pipelines(&self) -> MutexGuard<'_, BTreeMap<String, Slot>> {
        self.inner.pipelines.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until no other change to pipeline `name` is under way, and marks one as under way
    /// until the guard drops.
    fn changes(&self, name: &str) -> Changing<'_> {
        let inner = &*self.inner;
        let mut changing = inner.changing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while changing.contains(name) {
            changing = inner.changed.wait(changing).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        changing.insert(name.to_owned());
        Changing { inner, name: name.to_owned() }
    }

    /// Starts every pipeline the data dir records, as it was (running or paused). A record that
    /// cannot be read back shows as a failed pipeline naming its file; the rest start.
    pub fn restore_all(&self) -> anyhow::Result<usize> {
        let Some(data) = &self.inner.data else { return Ok(0) };
        let (deployments, unreadable) = data.deployments()?;
        for bad in &unreadable {
            tracing::error!(pipeline = %bad.name, "cannot start: {}", bad.error);
            let deployment = Deployment { name: bad.name.clone(), paused: false, live: 0, versions: Vec::new() };
            self.record_failed(&deployment, bad.error.clone());
        }
        for deployment in &deployments {
            let _changes = self.changes(&deployment.name);
            let started = self.live_config(deployment).and_then(|(config, modules)| {
                self.start(config, modules, deployment.clone(), deployment.paused).map_err(|e| e.message)
            });
            if let Err(e) = started {
                // Kept as a failed pipeline with its error, so the rest of the sidecar runs.
                tracing::error!(pipeline = %deployment.name, "cannot start: {e}");
                self.record_failed(deployment, e);
            }
        }
        Ok(deployments.len() + unreadable.len())
    }

    /// The live version's config and modules, from the data dir.
    fn live_config(&self, deployment: &Deployment) -> Result<(PipelineConfig, Vec<Module>), String> {
        let data = self.inner.data.as_ref().ok_or("no data dir")?;
        let live = deployment.live().ok_or_else(|| format!("live version {} is not kept", deployment.live))?;
        let config = self.resolve(&live.pipeline, live).map_err(|e| e.message)?;
        let stored = |digest: &str| data.module(digest).map_err(Refusal::internal);
        let modules = self.load(&deployment.name, live, &stored, &config).map_err(|e| e.message)?;
        Ok((config, modules))
    }

    /// A slot for a pipeline that could not even start, so it shows as failed.
    fn record_failed(&self, deployment: &Deployment, error: String) {
        let (handle, inbox) = channel(Arc::new(AtomicBool::new(false)));
        inbox.view.update(|s| {
            s.status = Phase::Failed;
            s.error = Some(error);
            s.version = Some(deployment.live);
            s.digest = deployment.live().map(|v| v.digest.clone());
        });
        let metrics = self.inner.metrics.pipeline(&deployment.name);
        metrics.set_status(Phase::Failed.as_str());
        let config = deployment.live().and_then(|v| self.resolve(&v.pipeline, v).ok());
        let slot = Slot { handle, thread: None, metrics, config, deployment: deployment.clone(), reserved: 0 };
        self.pipelines().insert(deployment.name.clone(), slot);
    }

    /// Parses a pipeline file of `version` for the data dir: each module is the stored one, and
    /// state lives under the data dir unless the file says where.
    fn resolve(&self, text: &str, version: &Version) -> Result<PipelineConfig, Refusal> {
        let mut config = PipelineConfig::parse(text).map_err(|e| Refusal::user(format!("pipeline file: {e}")))?;
        if config.instance_id.is_none() {
            config.instance_id = self.site().instance_id;
        }
        if let Some(data) = &self.inner.data {
            if let Some(module) = &mut config.module {
                module.path = data.module_path(&version.digest);
            }
            for (name, stage) in &mut config.stages {
                let (digest, _) = version.module_of(name).ok_or_else(|| {
                    Refusal::user(format!("stage `{name}` has no module in version {}", version.version))
                })?;
                stage.module.path = data.module_path(digest);
            }
            match &config.state_dir {
                None => config.state_dir = Some(data.state_dir()),
                Some(dir) => data.confine(dir).map_err(Refusal::user)?,
            }
        }
        Ok(config)
    }

    /// Loads, links and tries the module of every stage of `version` (bytes by digest from
    /// `bytes`): each instantiated over an empty store with its stage's config, `init`
    /// included. Nothing running is touched. The modules are in the order of the stages.
    fn load(
        &self,
        name: &str,
        version: &Version,
        bytes: &dyn Fn(&str) -> Result<Vec<u8>, Refusal>,
        config: &PipelineConfig,
    ) -> Result<Vec<Module>, Refusal> {
        let mut modules = Vec::new();
        for stage in config.stages() {
            let (digest, file_name) = version.module_of(&stage.name).ok_or_else(|| {
                Refusal::user(format!("stage `{}` has no module in version {}", stage.name, version.version))
            })?;
            let shown = match config.has_stages() {
                true => format!("{file_name} (pipeline `{name}` stage `{}` version {})", stage.name, version.version),
                false => format!("{file_name} (pipeline `{name}` version {})", version.version),
            };
            let stem = std::path::Path::new(file_name)
                .file_stem()
                .map_or_else(|| "processor".to_owned(), |s| s.to_string_lossy().into_owned());
            let module = self.inner.engine.load_bytes(&stem, &shown, &bytes(digest)?).map_err(Refusal::load)?;
            let module_config = stage.config.single_module().map_err(Refusal::user)?;
            let limits = crate::engine::Limits::of(module_config, &stage.config);
            let module = module.with_limits(limits).map_err(Refusal::load)?;
            let pairs = stage.config.module_config();
            let topic = stage.config.inputs.first().map_or("", String::as_str);
            module.instantiate(topic, 0, Box::new(MemoryStore::new()), &pairs).map_err(Refusal::load)?;
            modules.push(module);
        }
        Ok(modules)
    }

    /// Starts a pipeline thread and records its slot.
    fn start(
        &self,
        config: PipelineConfig,
        modules: Vec<Module>,
        deployment: Deployment,
        paused: bool,
    ) -> Result<(), Refusal> {
        let name = deployment.name.clone();
        // What its guests logged before a restart stays readable.
        let guest_log = self.pipelines().get(&name).map(|s| s.handle.view.guest_log.clone()).unwrap_or_default();
        let (handle, inbox) = channel_with_log(Arc::new(AtomicBool::new(false)), guest_log);
        let metrics = self.inner.metrics.pipeline(&name);
        let version = deployment.live().map(|v| (v.version, v.digest.clone()));
        let advertise = self.site().advertise;
        let attach = Attach {
            metrics: metrics.clone(),
            view: inbox.view.clone(),
            version,
            paused,
            status_line: false,
            advertise,
            wait_for_kafka: true,
        };
        let reserved = reservation(&config);
        let thread_config = config.clone();
        let thread_metrics = metrics.clone();
        let thread = std::thread::Builder::new()
            .name(format!("weir-{name}"))
            .spawn(move || run_pipeline(thread_config, modules, attach, &inbox, None, &thread_metrics))
            .map_err(Refusal::internal)?;
        let slot = Slot { handle, thread: Some(thread), metrics, config: Some(config), deployment, reserved };
        // Stopped once the map is unlocked: a stop waits for the old loop's last commit.
        let old = self.pipelines().insert(name, slot);
        if let Some(mut old) = old {
            old.stop();
        }
        Ok(())
    }

    /// Deploys a new version of pipeline `name`: a new pipeline starts; a running one swaps
    /// the module in place at its next commit boundary, or restarts when the change cannot
    /// apply in place; a failed one starts again from its committed offsets.
    pub fn deploy(&self, name: &str, pipeline: &str, uploads: Uploads) -> Result<Deployed, Refusal> {
        let data = self.inner.data.clone().ok_or_else(|| Refusal::user("this weir takes no deployments"))?;
        let _changes = self.changes(name);
        let parsed = PipelineConfig::parse(pipeline).map_err(|e| Refusal::user(format!("pipeline file: {e}")))?;
        if parsed.application_id != name {
            return Err(Refusal::user(format!(
                "the pipeline file's application_id is `{}`, but it was deployed as `{name}`; they must agree",
                parsed.application_id
            )));
        }
        self.instance_slots_for(name, &parsed)?;
        let existing = self.pipelines().get(name).map(|s| (s.deployment.clone(), s.alive(), s.config.clone()));
        let live = existing.as_ref().and_then(|(d, _, _)| d.live().cloned());
        let mut deployment = existing.as_ref().map(|(d, _, _)| d.clone()).unwrap_or_else(|| Deployment {
            name: name.to_owned(),
            paused: false,
            live: 0,
            versions: Vec::new(),
        });
        // What is uploaded now, by digest; the rest is in the data dir.
        let mut fresh: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let (digest, module_name, stages) = modules_of(&parsed, uploads, live.as_ref(), &mut fresh)?;
        let version = Version {
            version: deployment.next_number(),
            digest: digest.clone(),
            module_name,
            pipeline: pipeline.to_owned(),
            deployed_at: now_ms(),
            stages,
        };
        let config = self.resolve(pipeline, &version)?;
        let bytes = |digest: &str| match fresh.get(digest) {
            Some(bytes) => Ok(bytes.clone()),
            None => data.module(digest).map_err(Refusal::internal),
        };
        let modules = self.load(name, &version, &bytes, &config)?;
        // Stored only once they loaded, linked and ran their `init`: a refused upload leaves nothing.
        for bytes in fresh.values() {
            data.put_module(bytes).map_err(Refusal::internal)?;
        }
        let number = version.version;
        deployment.push(version);
        let (alive, running) = existing.map_or((false, None), |(_, alive, running)| (alive, running));
        let (action, notice) = self.put_live(&data, name, (alive, running), config, modules, deployment)?;
        tracing::info!(pipeline = name, version = number, digest = %digest, action = action.as_str(), "deployed");
        Ok(Deployed { name: name.to_owned(), version: number, digest, action, notice })
    }

    /// Refuses `config` for pipeline `name` when its instance slots, with every other
    /// pipeline's, would be more than the process's pool (`weir serve --max-instances`).
    fn instance_slots_for(&self, name: &str, config: &PipelineConfig) -> Result<(), Refusal> {
        let pool = self.inner.engine.options().max_instances;
        let others: u32 =
            self.pipelines().iter().filter(|(other, _)| other.as_str() != name).map(|(_, slot)| slot.reserved).sum();
        let wanted = reservation(config);
        if others.saturating_add(wanted) > pool {
            return Err(Refusal::conflict(format!(
                "pipeline `{name}` needs {wanted} instance slots (one per input partition, up to its max_instances \
                 of {}, and one for a swap), and the other pipelines hold {others} of the {pool} this weir serve \
                 has (--max-instances): lower max_instances in the pipeline file, or start weir serve with more",
                config.max_instances
            )));
        }
        Ok(())
    }

    /// Makes `next`'s live version run: swapped into the running pipeline when the change fits
    /// in place, else by a restart (or a start, for a pipeline that does not run); then records
    /// it. Returns what was done, and why a restart was needed.
    fn put_live(
        &self,
        data: &DataDir,
        name: &str,
        (alive, running): (bool, Option<PipelineConfig>),
        config: PipelineConfig,
        modules: Vec<Module>,
        next: Deployment,
    ) -> Result<(Action, Option<String>), Refusal> {
        let fits = running.as_ref().map_or(Err("the pipeline file".to_owned()), |r| in_place(r, &config));
        let live = next.live().ok_or_else(|| Refusal::internal("the live version is not kept"))?;
        let (version, digest) = (live.version, live.digest.clone());
        let done = match (alive, fits) {
            (true, Ok(())) => {
                self.swap(name, modules, (running.as_ref(), &config), version, &digest)?;
                // The file the loop now runs: what the next deploy compares with.
                if let Some(slot) = self.pipelines().get_mut(name) {
                    slot.config = Some(config);
                }
                (Action::Swapped, None)
            }
            (true, Err(why)) => {
                self.stop_slot(name);
                self.start(config, modules, next.clone(), next.paused)?;
                (Action::Restarted, Some(format!("restarted, since {why} cannot change in place")))
            }
            (false, _) => {
                self.stop_slot(name);
                self.start(config, modules, next.clone(), next.paused)?;
                (Action::Started, None)
            }
        };
        data.save(&next).map_err(Refusal::internal)?;
        if let Some(slot) = self.pipelines().get_mut(name) {
            slot.deployment = next;
        }
        Ok(done)
    }

    /// Hands the changed stages' modules to a running pipeline and waits until they are swapped in.
    fn swap(
        &self,
        name: &str,
        modules: Vec<Module>,
        (running, config): (Option<&PipelineConfig>, &PipelineConfig),
        version: u32,
        digest: &str,
    ) -> Result<(), Refusal> {
        let (view, outcome) = {
            let pipelines = self.pipelines();
            let slot = pipelines.get(name).ok_or_else(|| Refusal::not_found(name))?;
            // Only the stages whose module, config, limits or outputs changed (the stored
            // module's path names its digest); the others keep their guests.
            let before = running.map(PipelineConfig::stages).unwrap_or_default();
            let unchanged = |stage: &crate::config::StageSpec| {
                let same = |b: &crate::config::StageSpec| {
                    b.name == stage.name
                        && b.config.module == stage.config.module
                        && b.config.outputs == stage.config.outputs
                };
                before.iter().any(same)
            };
            let stages = config
                .stages()
                .into_iter()
                .zip(modules)
                .filter(|(stage, _)| !unchanged(stage))
                .map(|(stage, module)| PreparedStage {
                    config: stage.config.module_config(),
                    outputs: stage.config.outputs,
                    stage: stage.name,
                    module,
                })
                .collect();
            let prepared = Prepared { stages, version, digest: digest.to_owned() };
            let (reply, outcome) = std::sync::mpsc::channel();
            if !slot.handle.send(Command::Swap(Box::new(prepared), reply)) {
                return Err(Refusal::internal(format!("pipeline `{name}` is not running")));
            }
            (slot.handle.view.clone(), outcome)
        };
        match outcome.recv_timeout(SWAP_WAIT) {
            Ok(SwapOutcome::Swapped) => Ok(()),
            Ok(SwapOutcome::RolledBack(reason)) => {
                Err(Refusal::user(format!("the swap to version {version} was refused: {reason}")))
            }
            // The loop stopped before it reached a commit boundary.
            Err(RecvTimeoutError::Disconnected) => {
                let s = view.snapshot();
                Err(Refusal {
                    domain: s.fault.unwrap_or(Domain::Internal),
                    ..Refusal::user(format!(
                        "pipeline `{name}` stopped before the swap: {}",
                        s.error.unwrap_or_else(|| "it was stopped".to_owned())
                    ))
                })
            }
            Err(RecvTimeoutError::Timeout) => Err(Refusal::external(format!(
                "pipeline `{name}` did not reach a commit boundary within {} s; the swap is still pending",
                SWAP_WAIT.as_secs()
            ))),
        }
    }

    fn stop_slot(&self, name: &str) -> Option<Slot> {
        let mut slot = self.pipelines().remove(name)?;
        if let Some(Err(e)) = slot.stop() {
            tracing::warn!(pipeline = name, "stopped with an error: {e:#}");
        }
        Some(slot)
    }

    /// Swaps back to the version before the live one, the way a deploy swaps.
    pub fn rollback(&self, name: &str) -> Result<Deployed, Refusal> {
        let data = self.inner.data.clone().ok_or_else(|| Refusal::user("this weir takes no deployments"))?;
        let _changes = self.changes(name);
        let (deployment, alive, running) = {
            let pipelines = self.pipelines();
            let slot = pipelines.get(name).ok_or_else(|| Refusal::not_found(name))?;
            (slot.deployment.clone(), slot.alive(), slot.config.clone())
        };
        let previous = deployment.previous().cloned().ok_or_else(|| {
            Refusal::user(format!("pipeline `{name}` has no version before {} to roll back to", deployment.live))
        })?;
        let config = self.resolve(&previous.pipeline, &previous)?;
        let stored = |digest: &str| data.module(digest).map_err(Refusal::internal);
        let modules = self.load(name, &previous, &stored, &config)?;
        let mut next = deployment;
        next.live = previous.version;
        let (action, notice) = self.put_live(&data, name, (alive, running), config, modules, next)?;
        tracing::info!(pipeline = name, version = previous.version, "rolled back");
        Ok(Deployed { name: name.to_owned(), version: previous.version, digest: previous.digest, action, notice })
    }

    /// Pauses (or resumes) a pipeline at its next commit boundary, and records it. Resuming a
    /// failed pipeline starts it again from its committed offsets.
    pub fn set_paused(&self, name: &str, paused: bool) -> Result<(), Refusal> {
        let _changes = self.changes(name);
        let (alive, mut deployment) = {
            let pipelines = self.pipelines();
            let slot = pipelines.get(name).ok_or_else(|| Refusal::not_found(name))?;
            (slot.alive(), slot.deployment.clone())
        };
        deployment.paused = paused;
        if alive {
            let pipelines = self.pipelines();
            if let Some(slot) = pipelines.get(name) {
                slot.handle.send(if paused { Command::Pause } else { Command::Resume });
            }
        } else if !paused {
            let (config, module) = self.live_config(&deployment).map_err(Refusal::user)?;
            self.start(config, module, deployment.clone(), false)?;
        }
        if let Some(data) = &self.inner.data {
            data.save(&deployment).map_err(Refusal::internal)?;
        }
        if let Some(slot) = self.pipelines().get_mut(name) {
            slot.deployment = deployment;
        }
        Ok(())
    }

    /// Stops a pipeline (it commits and leaves the group) and forgets it; with `purge`, its
    /// local state stores too (only the folders weir made and marked: see
    /// [`crate::state::purge`]). Kafka topics are never deleted.
    pub fn undeploy(&self, name: &str, purge: bool) -> Result<(), Refusal> {
        let _changes = self.changes(name);
        let slot = self.stop_slot(name).ok_or_else(|| Refusal::not_found(name))?;
        self.inner.metrics.forget(&slot.metrics);
        if let Some(data) = &self.inner.data {
            data.remove(name).map_err(Refusal::internal)?;
        }
        let stores = slot.config.as_ref().and_then(|c| Some(c.state_dir.as_ref()?.join(&c.application_id)));
        if let Some(dir) = stores.filter(|_| purge) {
            let purged = crate::state::purge(&dir).map_err(Refusal::internal)?;
            tracing::info!(pipeline = name, stores = purged.len(), "purged its state stores under {}", dir.display());
        }
        tracing::info!(pipeline = name, purge, "undeployed");
        Ok(())
    }

    pub fn status(&self, name: &str) -> Result<Status, Refusal> {
        let pipelines = self.pipelines();
        let slot = pipelines.get(name).ok_or_else(|| Refusal::not_found(name))?;
        Ok(status_of(name, slot))
    }

    pub fn list(&self) -> Vec<Status> {
        self.pipelines().iter().map(|(name, slot)| status_of(name, slot)).collect()
    }

    /// Ready when every pipeline runs or is paused with its state restored.
    pub fn readiness(&self) -> Vec<NotReady> {
        let mut not_ready = Vec::new();
        for (name, slot) in self.pipelines().iter() {
            let s = slot.handle.view.snapshot();
            let status = s.status;
            let Some(reason) = not_ready_because(s) else { continue };
            not_ready.push(NotReady { name: name.clone(), status, reason });
        }
        not_ready
    }

    /// Alive unless a pipeline thread died without saying why (a panic) or a running loop is
    /// stuck; a failed pipeline is not a dead process.
    pub fn liveness(&self) -> Vec<String> {
        let mut dead = Vec::new();
        for (name, slot) in self.pipelines().iter() {
            let s = slot.handle.view.snapshot();
            let ended = matches!(s.status, Phase::Failed | Phase::Stopped);
            if slot.thread.is_some() && !slot.alive() && !ended {
                dead.push(format!("{name}: its thread ended unexpectedly"));
            } else if (slot.thread.is_none() || slot.alive()) && matches!(s.status, Phase::Running | Phase::Paused) {
                // (`weir run` drives its one pipeline on the main thread: no thread handle.)
                let silent = slot.handle.view.silent_for_ms();
                if silent > STUCK_AFTER_MS {
                    dead.push(format!("{name}: its loop has not gone round for {} s", silent / 1000));
                }
            }
        }
        dead
    }

    /// Stops every pipeline: each commits and leaves its group.
    pub fn shutdown(&self) {
        let names: Vec<String> = self.pipelines().keys().cloned().collect();
        for name in &names {
            if let Some(slot) = self.pipelines().get(name) {
                slot.handle.stop();
            }
        }
        for name in names {
            self.stop_slot(&name);
        }
    }

    /// `weir run`: one pipeline from its file, on this thread, until `stop` is set or
    /// `max_records` were consumed.
    pub fn run_one(
        &self,
        config: PipelineConfig,
        stop: Arc<AtomicBool>,
        max_records: Option<u64>,
    ) -> anyhow::Result<Stats> {
        let mut modules = Vec::new();
        for stage in config.stages() {
            let module = stage.config.single_module().map_err(|e| anyhow::anyhow!(e))?;
            modules.push(self.inner.engine.load(&module.path)?);
        }
        let name = config.application_id.clone();
        let (handle, inbox) = channel(stop);
        let metrics = self.inner.metrics.pipeline(&name);
        let attach = Attach {
            metrics: metrics.clone(),
            view: inbox.view.clone(),
            version: None,
            paused: false,
            status_line: true,
            advertise: self.site().advertise,
            wait_for_kafka: false,
        };
        let deployment = Deployment { name: name.clone(), paused: false, live: 0, versions: Vec::new() };
        let slot = Slot {
            handle,
            thread: None,
            metrics: metrics.clone(),
            config: Some(config.clone()),
            deployment,
            reserved: 0,
        };
        self.pipelines().insert(name, slot);
        run_pipeline(config, modules, attach, &inbox, max_records, &metrics)
    }
}

/// The modules a deploy of `parsed` runs, as (digest, module name, stage modules) for its
/// [`Version`]: the uploaded ones (put in `fresh` by digest), and the live version's for what
/// was not uploaded. Refuses uploads that do not fit the file's shape (one module, or stages).
fn modules_of(
    parsed: &PipelineConfig,
    mut uploads: Uploads,
    live: Option<&Version>,
    fresh: &mut BTreeMap<String, Vec<u8>>,
) -> Result<(String, String, BTreeMap<String, StageModule>), Refusal> {
    let mut keep = |upload: Upload| {
        let digest = crate::datadir::digest(&upload.bytes);
        fresh.insert(digest.clone(), upload.bytes);
        StageModule { digest, module_name: upload.file_name }
    };
    if !parsed.has_stages() {
        if let Some(stage) = uploads.stages.keys().next() {
            return Err(Refusal::user(format!(
                "a module was uploaded for stage `{stage}`, but the pipeline file has one [module] and no stages"
            )));
        }
        let module = match (uploads.module, live) {
            (Some(upload), _) => keep(upload),
            (None, Some(live)) if live.stages.is_empty() => {
                StageModule { digest: live.digest.clone(), module_name: live.module_name.clone() }
            }
            (None, _) => return Err(Refusal::user("no module was uploaded, and the pipeline has none yet")),
        };
        return Ok((module.digest, module.module_name, BTreeMap::new()));
    }
    if uploads.module.is_some() {
        return Err(Refusal::user("the pipeline file has stages: upload a module for each stage, not one module"));
    }
    if let Some(unknown) = uploads.stages.keys().find(|s| !parsed.stages.contains_key(*s)) {
        return Err(Refusal::user(format!(
            "a module was uploaded for stage `{unknown}`, which the pipeline file does not declare"
        )));
    }
    let mut stages = BTreeMap::new();
    for name in parsed.stages.keys() {
        let module = match uploads.stages.remove(name) {
            Some(upload) => keep(upload),
            None => live.and_then(|v| v.stages.get(name)).cloned().ok_or_else(|| {
                Refusal::user(format!("stage `{name}`: no module was uploaded, and the live version has none"))
            })?,
        };
        stages.insert(name.clone(), module);
    }
    let count = stages.len();
    Ok((crate::datadir::stages_digest(&stages), format!("{count} stages"), stages))
}

/// The instance slots a pipeline holds: one per partition of its widest input (asked of the
/// broker for at most 2 s; all of `max_instances` when it does not answer) and one for a swap.
fn reservation(config: &PipelineConfig) -> u32 {
    config.instance_slots(crate::kafka::widest_input(config, Duration::from_secs(2)))
}

/// Runs a pipeline to its end on this thread, publishing a failure in its view.
fn run_pipeline(
    config: PipelineConfig,
    modules: Vec<Module>,
    attach: Attach,
    inbox: &crate::pipeline::Inbox,
    max_records: Option<u64>,
    metrics: &PipelineMetrics,
) -> anyhow::Result<Stats> {
    let name = config.application_id.clone();
    let result = crate::pipeline::run(config, modules, attach, inbox, max_records);
    if let Err(e) = &result {
        tracing::error!(pipeline = %name, "failed: {e:#}");
        inbox.view.update(|s| {
            s.status = Phase::Failed;
            s.error = Some(format!("{e:#}"));
        });
        metrics.set_status(Phase::Failed.as_str());
    }
    result
}

/// Why a pipeline in snapshot `s` is not ready; `None` when it runs, or is paused, with every
/// assigned partition's state restored.
fn not_ready_because(s: Snapshot) -> Option<String> {
    Some(match s.status {
        Phase::Running | Phase::Paused if s.restored => return None,
        Phase::Running | Phase::Paused => "waiting for its partitions".to_owned(),
        Phase::Restoring => match &s.restore {
            Some(r) => {
                let partitions: Vec<String> = r.partitions.iter().map(i32::to_string).collect();
                let noun = if partitions.len() == 1 { "partition" } else { "partitions" };
                format!("restoring {noun} {}: {} of {} records", partitions.join(", "), r.restored, r.total)
            }
            None => "restoring state".to_owned(),
        },
        Phase::Starting => s.notice.unwrap_or_else(|| "starting".to_owned()),
        Phase::Failed => s.error.unwrap_or_else(|| "failed".to_owned()),
        Phase::Stopped => "stopped".to_owned(),
    })
}

/// Whether the running pipeline can take `next` without a restart (see
/// [`PipelineConfig::needs_restart`]); else the fields that differ.
fn in_place(running: &PipelineConfig, next: &PipelineConfig) -> Result<(), String> {
    if running.threads > 1 {
        // Each thread would swap at its own commit boundary, and one refusing would leave the
        // others on the new version: a restart changes them all or none.
        return Err("the module of a pipeline of several worker threads".into());
    }
    let changed = running.needs_restart(next);
    match changed.is_empty() {
        true => Ok(()),
        false => Err(changed.join(", ")),
    }
}

/// A change to one pipeline under way; dropping it lets the next one for that pipeline start.
struct Changing<'a> {
    inner: &'a Inner,
    name: String,
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        let mut changing = self.inner.changing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        changing.remove(&self.name);
        self.inner.changed.notify_all();
    }
}

fn status_of(name: &str, slot: &Slot) -> Status {
    let snapshot = slot.handle.view.snapshot();
    let lag = snapshot.partitions.iter().map(|p| p.lag).sum::<Option<i64>>();
    Status {
        name: name.to_owned(),
        deployed_at: slot.deployment.live().map(|v| v.deployed_at),
        versions: slot.deployment.versions.iter().map(|v| v.version).collect(),
        lag,
        snapshot,
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::pipeline::control::RestoreProgress;

    #[test]
    fn a_pipeline_is_ready_only_when_running_or_paused_with_its_state_restored() {
        for status in [Phase::Running, Phase::Paused] {
            assert_eq!(not_ready_because(Snapshot { status, restored: true, ..Snapshot::default() }), None);
            let waiting = not_ready_because(Snapshot { status, restored: false, ..Snapshot::default() });
            assert_eq!(waiting.as_deref(), Some("waiting for its partitions"));
        }
    }

    #[test]
    fn readiness_says_which_partitions_restore_and_how_far_they_are() {
        let restore = RestoreProgress { partitions: vec![0, 3], restored: 40, total: 100 };
        let s = Snapshot { status: Phase::Restoring, restore: Some(restore), ..Snapshot::default() };
        assert_eq!(not_ready_because(s).as_deref(), Some("restoring partitions 0, 3: 40 of 100 records"));
        let failed = Snapshot { status: Phase::Failed, error: Some("guest trapped".into()), ..Snapshot::default() };
        assert_eq!(not_ready_because(failed).as_deref(), Some("guest trapped"));
        let starting =
            Snapshot { status: Phase::Starting, notice: Some("waiting for Kafka".into()), ..Snapshot::default() };
        assert_eq!(not_ready_because(starting).as_deref(), Some("waiting for Kafka"));
    }
}
