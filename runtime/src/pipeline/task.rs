//! Tasks, as Kafka Streams calls them: one per assigned input partition, holding that
//! partition's guest instance over its state store.
//!
//! A task is opened when its partition is assigned (its store opened and restored from the
//! changelog, its tables and its reader for queries attached), processes that partition's
//! records and timers, writes its state changes to the changelog at a commit and applies them
//! to its store once the commit holds, rolls them back when the work is dropped, swaps its
//! guest for a new version over the same store, and is closed when its partition is revoked.
//! The loop drives tasks through [`Tasks`] and never reaches into them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use rdkafka::consumer::Consumer as _;
use rdkafka::producer::{BaseRecord, Producer as _};

use super::control::{self, Phase, PreparedStage, View};
use super::failure::Failure;
use super::restore::{Plan, Restore};
use super::sink::send;
use super::source;
use super::standby::Standbys;
use super::store::open_store;
use crate::changelog::{self, Restored};
use crate::config::PipelineConfig;
use crate::engine::{Fired, Instance, Module};
use crate::error::{Domain, LoadError, ProcessError};
use crate::kafka::{self, Consumer, Producer, KAFKA_TIMEOUT};
use crate::metrics::PipelineMetrics;
use crate::query::Positions;
use crate::record::{Batch, Outputs};
use crate::state::StateStore;
use crate::tables::{TableView, Tables};

/// Where a task reports while it opens, and what it opens from.
pub(super) struct Env<'a> {
    pub config: &'a PipelineConfig,
    pub view: &'a Arc<View>,
    pub metrics: &'a PipelineMetrics,
}

/// One input partition's task.
pub(super) struct Task {
    instance: Instance,
}

impl Task {
    /// Runs a batch of the partition's records through the guest, and then the event-time
    /// timers the batch made due: the outputs of both, or the guest's error (counted by kind).
    pub fn process(&mut self, batch: &Batch, metrics: &PipelineMetrics) -> Result<(Outputs, Vec<Fired>), Failure> {
        let called = Instant::now();
        let outputs = self.instance.process(batch).map_err(|error| match error.smaller_batch(batch.len()) {
            Some(most) => {
                metrics.guest_error(error.kind());
                Failure::WholeBatch { error, records: batch.len(), most }
            }
            None => guest_failure(metrics, error),
        })?;
        let fired = self.instance.advance(batch).map_err(|e| guest_failure(metrics, e))?;
        metrics.guest_call_seconds.observe(called.elapsed().as_secs_f64());
        Ok((outputs, fired))
    }
}

/// The open tasks of a pipeline, and what a new one is opened with.
pub(super) struct Tasks {
    module: Module,
    /// The changelog topic, for a processor that keeps state.
    changelog: Option<String>,
    /// The tables the module looks up.
    tables: Tables,
    /// The committed offsets of the assignment, as it began (what a newly opened store reflects).
    positions: Positions,
    /// Whether queries read these tasks' stores (the pipeline's query stage).
    queryable: bool,
    /// The warm stores kept here for partitions other instances own (the query stage's).
    standbys: Option<Arc<Standbys>>,
    open: HashMap<i32, Task>,
    /// Restores under way beside the loop, for partitions whose tasks open when they are done.
    restoring: Vec<Restore>,
    /// Set when a restore was called off while some of its partitions stay assigned.
    reopen: bool,
}

impl Tasks {
    pub fn new(
        module: Module,
        changelog: Option<String>,
        tables: Tables,
        queryable: bool,
        standbys: Option<Arc<Standbys>>,
    ) -> Self {
        Self {
            module,
            changelog,
            tables,
            positions: Positions::new(),
            queryable,
            standbys,
            open: HashMap::new(),
            restoring: Vec::new(),
            reopen: false,
        }
    }

    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The task of `partition`, opened (and its state restored) on first use.
    pub fn task(&mut self, env: &Env<'_>, topic: &str, partition: i32) -> Result<&mut Task, Failure> {
        if !self.open.contains_key(&partition) {
            self.open_partitions(env, &[(topic.to_owned(), partition)])?;
        }
        self.open
            .get_mut(&partition)
            .ok_or_else(|| Failure::Fatal(anyhow!("partition {partition}: no task was opened"), Domain::Internal))
    }

    /// Opens the tasks of `wanted` together, their stores restored first (in one restore, on
    /// this thread), within the pipeline's share of instances.
    fn open_partitions(&mut self, env: &Env<'_>, wanted: &[(String, i32)]) -> Result<(), Failure> {
        self.within_share(env, wanted.len())?;
        let opener = self.opener(env);
        let opened = opener
            .stores(wanted)
            .and_then(|mut stores| {
                if let Some(changelog) = self.changelog.as_deref() {
                    let restored = opener.restore(changelog, wanted, &mut stores)?;
                    opener.restored(restored);
                }
                opener.tasks(wanted, stores, &self.positions)
            })
            .map_err(opening_failure)?;
        self.open.extend(opened);
        Ok(())
    }

    /// Whether `more` tasks fit in the pipeline's share of instances, beside those open and
    /// restoring.
    fn within_share(&self, env: &Env<'_>, more: usize) -> Result<(), Failure> {
        let restoring: usize = self.restoring.iter().map(|r| r.plan.wanted.len()).sum();
        env.config.within_instance_share(self.open.len() + restoring, more).map_err(|e| Failure::Fatal(e, Domain::User))
    }

    fn opener<'a>(&'a self, env: &'a Env<'a>) -> Opener<'a> {
        Opener {
            module: &self.module,
            changelogged: self.changelog.is_some(),
            tables: &self.tables,
            queryable: self.queryable,
            standbys: self.standbys.as_deref(),
            env,
        }
    }

    /// Starts restoring the stores of `wanted` beside the loop: their partitions (`held`, of
    /// every input) are paused until [`Tasks::finish_restores`] opens their tasks.
    fn start_restore(
        &mut self,
        env: &Env<'_>,
        consumer: &Consumer,
        changelog: &str,
        internal: &[String],
        wanted: Vec<(String, i32)>,
        held: Vec<(String, i32)>,
    ) -> Result<(), Failure> {
        self.within_share(env, wanted.len())?;
        let mut pause = rdkafka::TopicPartitionList::new();
        for (topic, partition) in &held {
            pause.add_partition(topic, *partition);
        }
        consumer.pause(&pause)?;
        let stores = self.opener(env).stores(&wanted).map_err(opening_failure)?;
        let positions = self.positions.iter().filter(|((t, p), _)| held.contains(&(t.clone(), *p)));
        let positions: Positions = positions.map(|(k, v)| (k.clone(), *v)).collect();
        let resume_at = source::resume_points(consumer, env.config.auto_offset_reset, internal, &held, &positions)?;
        let plan = Plan { wanted, held, positions, resume_at };
        let restore = Restore::start(env.config, changelog, plan, stores, env.view.clone())
            .map_err(|e| Failure::Fatal(e, Domain::Internal))?;
        self.restoring.push(restore);
        Ok(())
    }

    /// Opens the tasks of the restores that are done, seeks their partitions to their committed
    /// offsets and resumes them (unless the pipeline is `paused`); how many tasks opened. A
    /// restore that failed fails the pipeline, as one on the loop's thread would.
    pub fn finish_restores(&mut self, env: &Env<'_>, consumer: &Consumer, paused: bool) -> Result<usize, Failure> {
        let mut opened = 0;
        while let Some(i) = self.restoring.iter().position(Restore::finished) {
            let restore = self.restoring.swap_remove(i);
            let (Plan { wanted, held, positions, resume_at }, outcome) = restore.join();
            let opener = self.opener(env);
            let tasks = outcome
                .and_then(|(stores, restored)| {
                    opener.restored(restored);
                    opener.tasks(&wanted, stores, &positions)
                })
                .map_err(opening_failure)?;
            opened += tasks.len();
            self.open.extend(tasks);
            // The polls meanwhile may have fetched (and the loop dropped) some of their records.
            consumer.seek_partitions(resume_at, KAFKA_TIMEOUT)?;
            if !paused {
                let mut resume = rdkafka::TopicPartitionList::new();
                for (topic, partition) in &held {
                    resume.add_partition(topic, *partition);
                }
                consumer.resume(&resume)?;
            }
            tracing::info!(
                application = %env.config.application_id, partitions = ?wanted.iter().map(|(_, p)| *p).collect::<Vec<_>>(),
                "restored; the partitions' tasks are open"
            );
        }
        Ok(opened)
    }

    /// Whether a restore is under way.
    pub fn restoring(&self) -> bool {
        !self.restoring.is_empty()
    }

    /// Whether a restore holds `partition` of `topic` back (its records are not processed).
    pub fn holds(&self, topic: &str, partition: i32) -> bool {
        self.restoring.iter().any(|r| r.holds(topic, partition))
    }

    /// The input partitions restores hold back (not to resume with the others).
    pub fn held(&self) -> impl Iterator<Item = &(String, i32)> {
        self.restoring.iter().flat_map(|r| r.plan.held.iter())
    }

    /// Whether partitions still assigned wait for a restore to start again (one they shared
    /// with a revoked partition was called off).
    pub fn reopen_due(&self) -> bool {
        self.reopen
    }

    /// Opens the task of every assigned partition of this stage's inputs that has none (nor a
    /// restore under way): at once for a stage without a changelog, else beside the loop, all
    /// in one restore ([`Tasks::finish_restores`] opens them when it is done). First checks that
    /// no input gained partitions (keys would move away from their state). Returns how many
    /// tasks it opens.
    pub fn open_assigned(
        &mut self,
        env: &Env<'_>,
        consumer: &Consumer,
        layout: &kafka::Layout,
        internal: &[String],
    ) -> Result<usize, Failure> {
        self.reopen = false;
        let mut assignment = rdkafka::TopicPartitionList::new();
        for e in consumer.assignment()?.elements() {
            if env.config.inputs.iter().any(|i| i == e.topic()) {
                assignment.add_partition(e.topic(), e.partition());
            }
        }
        if self.module.uses_state() {
            self.positions = consumer
                .committed_offsets(assignment.clone(), KAFKA_TIMEOUT)?
                .elements()
                .iter()
                .filter_map(|e| {
                    e.offset().to_raw().filter(|o| *o >= 0).map(|o| ((e.topic().to_owned(), e.partition()), o))
                })
                .collect();
        }
        let partitions = kafka::input_partitions(env.config, consumer).map_err(Failure::Kafka)?;
        if let Some((changelog, expected)) = &layout.changelog {
            if let Some(problem) = kafka::repartitioned(env.config, changelog, *expected, |_| partitions) {
                return Err(Failure::Fatal(anyhow!(problem), Domain::User));
            }
        }
        let new = |p: i32| !self.open.contains_key(&p) && !self.restoring.iter().any(|r| r.restores(p));
        let mut wanted: Vec<(String, i32)> = Vec::new();
        let mut held: Vec<(String, i32)> = Vec::new();
        for e in assignment.elements() {
            if !new(e.partition()) {
                continue;
            }
            held.push((e.topic().to_owned(), e.partition()));
            if !wanted.iter().any(|(_, p)| *p == e.partition()) {
                wanted.push((e.topic().to_owned(), e.partition()));
            }
        }
        let opening = wanted.len();
        match self.changelog.clone() {
            _ if wanted.is_empty() => {}
            Some(changelog) => self.start_restore(env, consumer, &changelog, internal, wanted, held)?,
            None => self.open_partitions(env, &wanted)?,
        }
        if self.queryable {
            env.view.queryable.settle(partitions);
        }
        Ok(opening)
    }

    /// Fires the due wall-clock timers of every task, in partition order: what fired, by
    /// partition.
    pub fn fire_wall_clock(&mut self, now: i64, metrics: &PipelineMetrics) -> Result<Vec<(i32, Vec<Fired>)>, Failure> {
        let mut partitions: Vec<i32> = self.open.keys().copied().collect();
        partitions.sort_unstable();
        let mut all = Vec::new();
        for partition in partitions {
            let Some(task) = self.open.get_mut(&partition) else { continue };
            let fired = task.instance.fire_wall_clock(now).map_err(|e| guest_failure(metrics, e))?;
            if !fired.is_empty() {
                all.push((partition, fired));
            }
        }
        Ok(all)
    }

    /// Whether no task has a state change to commit.
    pub fn idle(&self) -> bool {
        self.open.values().all(|t| !t.instance.has_pending_writes())
    }

    /// Produces every task's pending state changes to its changelog partition (a delete as a
    /// tombstone); under exactly-once they join the open transaction.
    pub fn write_changelog(&self, producer: &Producer) -> Result<(), Failure> {
        let Some(topic) = &self.changelog else { return Ok(()) };
        for (partition, task) in &self.open {
            for (key, value) in task.instance.pending_writes() {
                let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(*partition).key(key);
                if let Some(value) = value {
                    record = record.payload(value);
                }
                send(producer, record)?;
            }
        }
        Ok(())
    }

    /// Once a commit holds: applies every task's state changes to its store, with the changelog
    /// offset they reach as the store's checkpoint.
    pub fn commit(&mut self, producer: &Producer) -> Result<(), Failure> {
        for (partition, task) in self.open.iter_mut() {
            let checkpoint = self.changelog.as_ref().and_then(|t| producer.context().take_changelog_end(t, *partition));
            task.instance
                .commit_at(checkpoint)
                .map_err(|e| Failure::Fatal(anyhow!("state commit failed: {e}"), Domain::External))?;
        }
        Ok(())
    }

    /// Drops every task's state changes since the last commit.
    pub fn rollback(&mut self) {
        for task in self.open.values_mut() {
            task.instance.rollback();
        }
    }

    /// Closes every task and calls every restore off (their partitions were lost; the work
    /// since the last commit is gone), and stops queries reading their stores; how many tasks
    /// there were.
    pub fn close_all(&mut self, view: &View) -> usize {
        self.rollback();
        let mut partitions: Vec<i32> = self.open.keys().copied().collect();
        partitions.extend(self.restoring.iter().flat_map(|r| r.plan.wanted.iter().map(|(_, p)| *p)));
        self.close(&partitions, view)
    }

    /// Closes the tasks of `partitions` (revoked, right after a commit: nothing is pending), and
    /// stops queries reading their stores; calls off the restores that hold any of them (the
    /// other partitions of such a restore start another at the next step); how many tasks
    /// were open or restoring.
    pub fn close(&mut self, partitions: &[i32], view: &View) -> usize {
        let mut closed: Vec<i32> = partitions.iter().copied().filter(|p| self.open.remove(p).is_some()).collect();
        let (called_off, kept) = std::mem::take(&mut self.restoring)
            .into_iter()
            .partition::<Vec<Restore>, _>(|r| partitions.iter().any(|p| r.restores(*p)));
        self.restoring = kept;
        for restore in called_off {
            let wanted = &restore.plan.wanted;
            let mine: Vec<i32> = wanted.iter().map(|(_, p)| *p).filter(|p| partitions.contains(p)).collect();
            self.reopen |= mine.len() < wanted.len();
            closed.extend(mine);
            restore.call_off();
        }
        if let Some(standbys) = &self.standbys {
            closed.iter().for_each(|p| standbys.deactivate(*p));
        }
        if self.queryable && !closed.is_empty() {
            view.queryable.release(&closed);
        }
        closed.len()
    }

    /// Replaces every task's guest with the prepared module, over the same stores; called right
    /// after a commit, so nothing is pending. Returns the module it replaced. If one cannot
    /// start, those already swapped go back to the running module (with `running_config`) and
    /// the reason is returned.
    pub fn swap(&mut self, prepared: &PreparedStage, running_config: &[(String, String)]) -> Result<Module, String> {
        let mut swapped = Vec::new();
        let mut failure = None;
        for (partition, task) in self.open.iter_mut() {
            match task.instance.swap(prepared.module.clone(), prepared.config.clone()) {
                Ok(()) => swapped.push(*partition),
                Err(e) => {
                    failure = Some(format!("partition {partition}: {e}"));
                    break;
                }
            }
        }
        let Some(reason) = failure else {
            return Ok(std::mem::replace(&mut self.module, prepared.module.clone()));
        };
        for partition in swapped {
            if let Some(task) = self.open.get_mut(&partition) {
                if let Err(e) = task.instance.swap(self.module.clone(), running_config.to_vec()) {
                    tracing::error!(partition, "swapping back to the running version failed: {e}");
                }
            }
        }
        Err(reason)
    }

    /// Puts `old` back in every task, with `config` (another stage's swap was refused).
    pub fn swap_back(&mut self, old: Module, config: &[(String, String)]) {
        for (partition, task) in self.open.iter_mut() {
            if let Err(e) = task.instance.swap(old.clone(), config.to_vec()) {
                tracing::error!(partition, "swapping back to the running version failed: {e}");
            }
        }
        self.module = old;
    }

    /// The size of each task's state store, where it is known.
    pub fn state_sizes(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.open.iter().filter_map(|(p, t)| t.instance.state_size().map(|bytes| (*p, bytes)))
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }
}

/// A guest error, counted by kind.
fn guest_failure(metrics: &PipelineMetrics, e: ProcessError) -> Failure {
    metrics.guest_error(e.kind());
    Failure::Guest(e)
}

/// A failure to open tasks: a module that does not load or start is the user's; a store or a
/// restore that fails, the disk's or the broker's.
fn opening_failure(e: anyhow::Error) -> Failure {
    let domain = e.downcast_ref::<LoadError>().map_or(Domain::External, LoadError::domain);
    Failure::Fatal(e, domain)
}

/// What opening tasks needs.
struct Opener<'a> {
    module: &'a Module,
    /// Whether a changelog holds the stores.
    changelogged: bool,
    tables: &'a Tables,
    queryable: bool,
    standbys: Option<&'a Standbys>,
    env: &'a Env<'a>,
}

impl Opener<'_> {
    /// The state store of each partition of `wanted`: the standby kept here, taken over (its
    /// restore then applies only the tail), or the store on disk.
    fn stores(&self, wanted: &[(String, i32)]) -> anyhow::Result<Vec<Box<dyn StateStore>>> {
        let config = self.env.config;
        let mut stores = Vec::with_capacity(wanted.len());
        for (_, partition) in wanted {
            let warm = self.standbys.and_then(|s| s.activate(*partition));
            if warm.is_some() {
                tracing::info!(application = %config.application_id, partition, "taking over the standby store");
            }
            let store = warm.map_or_else(|| open_store(config, self.changelogged, *partition), Ok)?;
            stores.push(store);
        }
        Ok(stores)
    }

    /// Tasks for input partitions (`topic`, `partition`) over their restored `stores`, each with
    /// its tables and a reader of its store for queries, reflecting `positions`.
    fn tasks(
        &self,
        wanted: &[(String, i32)],
        stores: Vec<Box<dyn StateStore>>,
        positions: &Positions,
    ) -> anyhow::Result<Vec<(i32, Task)>> {
        let module_config = self.env.config.module_config();
        let mut opened = Vec::with_capacity(wanted.len());
        for ((topic, partition), store) in wanted.iter().zip(stores) {
            let partition = *partition;
            let reader = store.reader();
            let mut instance = self.module.instantiate(topic, partition, store, &module_config)?;
            instance.set_tables(TableView { tables: self.tables.clone(), partition });
            if self.module.uses_state() && self.queryable {
                let positions = positions.iter().filter(|((_, p), _)| *p == partition);
                self.env.view.queryable.open(partition, reader, positions.map(|(k, v)| (k.clone(), *v)).collect());
            }
            opened.push((partition, Task { instance }));
        }
        Ok(opened)
    }

    /// Brings `stores` (of the partitions in `wanted`) up to the end of `changelog` on this
    /// thread, showing the restore in the status meanwhile.
    fn restore(
        &self,
        changelog: &str,
        wanted: &[(String, i32)],
        stores: &mut [Box<dyn StateStore>],
    ) -> anyhow::Result<Restored> {
        let Env { config, view, metrics } = self.env;
        let partitions: Vec<i32> = wanted.iter().map(|(_, p)| *p).collect();
        let before = view.snapshot().status;
        view.update(|s| {
            s.status = Phase::Restoring;
            s.restore = Some(control::RestoreProgress { partitions: partitions.clone(), restored: 0, total: 0 });
        });
        metrics.set_status(Phase::Restoring.as_str());
        let progress = |restored: u64, total: u64| {
            view.beat();
            view.update(|s| {
                s.restore = Some(control::RestoreProgress { partitions: partitions.clone(), restored, total })
            });
            true
        };
        let targets = wanted
            .iter()
            .zip(stores.iter_mut())
            .map(|((_, partition), store)| changelog::Target { partition: *partition, store: store.as_mut() })
            .collect();
        let restored = changelog::restore(config, changelog, targets, &progress)?;
        view.update(|s| {
            s.status = before;
            s.restore = None;
        });
        metrics.set_status(before.as_str());
        Ok(restored)
    }

    /// Counts what a restore did, in the metrics and the status.
    fn restored(&self, restored: Restored) {
        self.env.metrics.restored.inc_by(restored.records);
        self.env.view.update(|s| s.restored_records += restored.records);
    }
}
