//! Starting a pipeline: wait for (or probe) Kafka, check and create the topics it needs, read
//! its tables to their end, join the membership topic, and make the clients and the transaction
//! its guarantee calls for. Nothing is consumed yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};

use super::control::{channel, GroupSnapshot, Phase, View};
use super::health::{await_kafka, Health};
use super::stage::{Stage, Stages};
use super::standby::{Keeper, Standbys};
use super::table_feed::TableFeed;
use super::task::Tasks;
use super::work::{Pipeline, Stats, Work};
use super::{dead_letter, txn};
use crate::changelog;
use crate::config::{PipelineConfig, StageSpec};
use crate::engine::{Engine, Limits, Module};
use crate::kafka::{self, Shared};
use crate::metrics::{Metrics, PipelineMetrics};
use crate::query::membership::{Advertise, Publisher};
use crate::record::Batch;
use crate::tables::{TableSpec, Tables};

/// Where a pipeline reports: its metrics and the view its supervisor reads.
pub struct Attach {
    pub metrics: PipelineMetrics,
    pub view: Arc<View>,
    /// The module's version number and SHA-256, as deployed.
    pub version: Option<(u32, String)>,
    /// Start paused (nothing is consumed until resumed).
    pub paused: bool,
    pub status_line: bool,
    /// The URL other instances reach this one's queries at; with it, a stateful pipeline joins
    /// the membership topic (see [`crate::query::membership`]).
    pub advertise: Option<Advertise>,
    /// Wait, with backoff, for a broker that does not answer at start (`weir serve`), rather
    /// than fail (`weir run`).
    pub wait_for_kafka: bool,
}

impl Attach {
    /// Reporting into `view` only, with metrics of its own, on a terminal's status line.
    pub fn quiet(config: &PipelineConfig, view: Arc<View>) -> Self {
        Attach {
            metrics: Metrics::new().pipeline(&config.application_id),
            view,
            version: None,
            paused: false,
            status_line: true,
            advertise: None,
            wait_for_kafka: false,
        }
    }
}

impl Pipeline {
    /// Loads the module of each stage and connects to Kafka, reporting nowhere in particular
    /// (the demo and the benchmarks).
    pub fn new(config: PipelineConfig, engine: &Engine) -> anyhow::Result<Self> {
        let modules = Self::modules(&config, engine)?;
        let (_, inbox) = channel(Arc::default());
        let attach = Attach::quiet(&config, inbox.view);
        Self::start(config, modules, attach)
    }

    /// The module of each stage of `config`, loaded.
    pub fn modules(config: &PipelineConfig, engine: &Engine) -> anyhow::Result<Vec<Module>> {
        let mut modules = Vec::new();
        for stage in config.stages() {
            let module = stage.config.single_module().map_err(|e| anyhow!(e))?;
            modules.push(engine.load(&module.path)?);
        }
        Ok(modules)
    }

    /// Connects to Kafka with the module of each stage (`modules`, in the order of
    /// [`PipelineConfig::stages`], under the file's limits); nothing is consumed yet. The loop
    /// of a pipeline of one worker thread.
    pub fn start(config: PipelineConfig, modules: Vec<Module>, attach: Attach) -> anyhow::Result<Self> {
        let mut common = Common::start(config, modules, &attach)?;
        let membership = common.membership.take();
        let thread =
            Thread { number: None, view: attach.view, metrics: attach.metrics, status_line: attach.status_line };
        let mut pipeline = common.thread(thread, attach.paused)?;
        pipeline._membership = membership;
        Ok(pipeline)
    }
}

/// What the worker threads of a pipeline share, made once before any starts: the topics
/// checked and created, the modules under their limits, the tables read to their end, the
/// claim on the membership topic, and the keeper of the standby stores.
pub(super) struct Common {
    config: PipelineConfig,
    specs: Vec<StageSpec>,
    modules: Vec<Module>,
    /// Each stage's changelog topic and its partitions, for the stages that keep state.
    changelogs: Vec<Option<(String, i32)>>,
    query_stage: Option<usize>,
    tables: Tables,
    /// Keeps the tables current: polled by the first thread's loop.
    table_feed: Option<TableFeed>,
    /// Writes this instance's partitions (all threads') to the membership topic.
    pub(super) membership: Option<Publisher>,
    standbys: Option<Arc<Standbys>>,
    dead_letter: Option<String>,
    repartitions: Vec<String>,
}

/// One worker thread's share of a pipeline: its number (with several), where it reports.
pub(super) struct Thread {
    pub number: Option<u32>,
    pub view: Arc<View>,
    pub metrics: PipelineMetrics,
    pub status_line: bool,
}

impl Common {
    pub(super) fn start(config: PipelineConfig, modules: Vec<Module>, attach: &Attach) -> anyhow::Result<Self> {
        let specs = config.stages();
        if specs.len() != modules.len() {
            bail!(
                "pipeline `{}` has {} stages, but {} modules were given",
                config.application_id,
                specs.len(),
                modules.len()
            );
        }
        let view = &attach.view;
        view.update(|s| {
            s.status = Phase::Starting;
            (s.version, s.digest) = attach.version.clone().map_or((None, None), |(v, d)| (Some(v), Some(d)));
        });
        attach.metrics.set_status(Phase::Starting.as_str());
        view.guest_log.count_into(attach.metrics.guest_log());
        await_kafka(&config, view, attach.wait_for_kafka)?;
        ensure_repartition_topics(&config, &specs)?;
        for spec in &specs {
            kafka::check_topics(&spec.config)?;
        }
        let dead_letter = config.dead_letter_topic();
        if let Some(topic) = &dead_letter {
            dead_letter::ensure_topic(&config, topic)?;
        }
        let mut limited = Vec::with_capacity(modules.len());
        for (spec, module) in specs.iter().zip(modules) {
            let limits = Limits::of(spec.config.single_module().map_err(|e| anyhow!(e))?, &spec.config);
            limited.push(module.with_limits(limits)?);
        }
        let modules = limited;
        // Queries read the last stage that keeps state.
        let query_stage = modules.iter().rposition(Module::uses_state);
        // Tables are read to their end before the inputs are subscribed to.
        let tables = Tables::new(&TableSpec::of(&config));
        let table_feed = TableFeed::start(&config, &tables)?;
        view.queryable.started(&config.instance(), tables.clone(), query_stage.map(|i| specs[i].name.as_str()));
        let membership = match (&attach.advertise, query_stage) {
            (Some(at), Some(_)) => Some(Publisher::start(&config, &at.url, at.key.clone(), view.queryable.clone())?),
            _ => None,
        };
        let repartitions: Vec<String> = specs.iter().filter_map(|s| Some(s.repartition.as_ref()?.0.clone())).collect();
        let mut changelogs = Vec::with_capacity(specs.len());
        let mut standbys = None;
        for (i, (spec, module)) in specs.iter().zip(&modules).enumerate() {
            let changelog = match module.uses_state() {
                true => Some(changelog::ensure(&spec.config, spec.config.store_name())?),
                false => None,
            };
            if let (Some((topic, _)), true) = (&changelog, query_stage == Some(i)) {
                standbys = start_standbys(&spec.config, topic, membership.is_some(), view)?.map(Arc::new);
            }
            changelogs.push(changelog);
        }
        Ok(Self {
            config,
            specs,
            modules,
            changelogs,
            query_stage,
            tables,
            table_feed,
            membership,
            standbys,
            dead_letter,
            repartitions,
        })
    }

    /// The loop of one worker thread: its stages' tasks, its consumer in the group, its
    /// producer and transaction. The first one made polls the table feed.
    pub(super) fn thread(&mut self, thread: Thread, paused: bool) -> anyhow::Result<Pipeline> {
        let Thread { number, view, metrics, status_line } = thread;
        let config = PipelineConfig { thread: number, ..self.config.clone() };
        let mut stages = Vec::with_capacity(self.specs.len());
        for (i, (spec, module)) in self.specs.iter().zip(&self.modules).enumerate() {
            let changelog = self.changelogs[i].clone();
            let layout = kafka::Layout { changelog: changelog.clone(), dead_letter: self.dead_letter.clone() };
            tracing::info!(
                application = %config.application_id, stage = %spec.name, inputs = ?spec.config.inputs,
                module = %module.name(), thread = number, "stage ready"
            );
            // Queries read the query stage's stores and partitions; with no stateful stage, table
            // lookups still need the first stage's partition count.
            let queried = self.query_stage.unwrap_or(0) == i;
            let standbys = self.standbys.clone().filter(|_| self.query_stage == Some(i));
            let changelog = changelog.map(|(name, _)| name);
            let module = module.clone().with_log(view.guest_log.clone());
            let tasks = Tasks::new(module, changelog, self.tables.clone(), queried, standbys);
            let stage_config = PipelineConfig { thread: number, ..spec.config.clone() };
            stages.push(Stage { name: spec.name.clone(), config: stage_config, tasks, layout, warned_unkeyed: false });
        }
        let admin = match self.repartitions.is_empty() {
            true => None,
            false => Some(kafka::base(&config).create().context("cannot create a Kafka admin client")?),
        };
        let stages = Stages::new(stages, self.repartitions.clone(), admin);
        let changelogs: Vec<String> = self.changelogs.iter().flatten().map(|(name, _)| name.clone()).collect();
        let shared = Shared::new(view.queryable.clone());
        let producer = kafka::producer(&config, &changelogs)?;
        shared.set_producer(producer.clone());
        let plan = kafka::GroupPlan::of(&config, stages.copartitioned());
        let consumer = kafka::consumer(&config, &stages.inputs(), plan, shared.clone())?;
        let group = GroupSnapshot {
            protocol: plan.protocol.as_str().into(),
            assignor: plan.assignor.into(),
            incremental: plan.incremental,
            instance_id: kafka::group_instance_id(&config),
            threads: config.threads,
            ..GroupSnapshot::default()
        };
        view.update(|s| s.group = Some(group));
        tracing::info!(
            application = %config.application_id, instance = %config.member(), guarantee = ?config.guarantee,
            inputs = ?config.inputs, stages = stages.len(), group_protocol = plan.protocol.as_str(),
            assignor = plan.assignor, "pipeline started"
        );
        let txn = txn::for_guarantee(&config, changelogs, shared.clone(), producer, view.clone());
        let work = Work {
            health: Health::new(view.clone(), &config),
            config,
            stages,
            txn,
            shared,
            table_feed: self.table_feed.take(),
            batch: Batch::new("", "", 0),
            stats: Stats::default(),
            last_wall_clock: Instant::now(),
            metrics,
            view,
            consumed: HashMap::new(),
            paused: false,
            poisoned: dead_letter::Poisoned::default(),
            batch_cap: None,
            dead_letter: self.dead_letter.clone(),
        };
        Ok(Pipeline {
            consumer,
            work,
            last_commit: Instant::now(),
            want_paused: paused,
            pending_swap: None,
            status_line,
            rewind_owed: false,
            _membership: None,
        })
    }
}

/// The keeper of the query stage's standby stores, when the file asks for standby replicas.
fn start_standbys(
    config: &PipelineConfig,
    changelog: &str,
    registry: bool,
    view: &Arc<View>,
) -> anyhow::Result<Option<Standbys>> {
    if config.standby_replicas == 0 {
        return Ok(None);
    }
    if config.state_dir.is_none() {
        bail!("standby_replicas needs a state_dir: a standby is a store on disk, kept warm");
    }
    if !registry {
        bail!(
            "standby_replicas needs the instance registry, to know where each partition is: run the pipeline \
             under `weir serve`, or `weir run` with --admin"
        );
    }
    let keeper = Keeper {
        config: config.clone(),
        changelog: changelog.to_owned(),
        replicas: config.standby_replicas as usize,
        queryable: view.queryable.clone(),
        view: view.clone(),
    };
    Ok(Some(Standbys::start(keeper)?))
}

/// Creates the repartition topic of every stage that stages lead to: as many partitions as the
/// stage says, else as the widest input of the stages that read topics. Settings as Kafka
/// Streams gives its own: kept until weir deletes what was consumed (see [`super::stage`]).
fn ensure_repartition_topics(config: &PipelineConfig, specs: &[StageSpec]) -> anyhow::Result<()> {
    if specs.iter().all(|s| s.repartition.is_none()) {
        return Ok(());
    }
    let mut widest = None;
    for spec in specs.iter().filter(|s| s.repartition.is_none()) {
        kafka::check_inputs(&spec.config)?;
        widest = widest.max(kafka::widest_input(&spec.config, kafka::KAFKA_TIMEOUT));
    }
    for spec in specs {
        let Some((topic, partitions)) = &spec.repartition else { continue };
        let partitions =
            partitions.or(widest).ok_or_else(|| anyhow!("cannot tell how many partitions the inputs have"))?;
        let spec = kafka::TopicSpec {
            replication_factor: config.changelog.replication_factor,
            min_insync_replicas: config.changelog.min_insync_replicas,
            settings: &[("retention.ms", "-1"), ("segment.bytes", "52428800")],
            ..kafka::TopicSpec::new("repartition", partitions, false, true)
        };
        kafka::ensure_topic(config, topic, spec).context(
            "a stage's state is kept per partition of its repartition topic, so an existing one must keep its \
             partition count (to change it, run the pipeline as a new application, another application_id)",
        )?;
    }
    Ok(())
}
