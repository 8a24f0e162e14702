//! Starting a pipeline: wait for (or probe) Kafka, check and create the topics it needs, read
//! its tables to their end, join the membership topic, and make the clients and the transaction
//! its guarantee calls for. Nothing is consumed yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::control::{channel, Phase, View};
use super::health::{await_kafka, Health};
use super::table_feed::TableFeed;
use super::task::Tasks;
use super::work::{Pipeline, Stats, Work};
use super::{dead_letter, txn};
use crate::changelog;
use crate::config::PipelineConfig;
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

impl Pipeline {
    /// Loads the module the file names and connects to Kafka, reporting nowhere in particular
    /// (the demo and the benchmarks).
    pub fn new(config: PipelineConfig, engine: &Engine) -> anyhow::Result<Self> {
        let module = engine.load(&config.module.path)?;
        let (_, inbox) = channel(Arc::default());
        let attach = Attach {
            metrics: Metrics::new().pipeline(&config.application_id),
            view: inbox.view,
            version: None,
            paused: false,
            status_line: true,
            advertise: None,
            wait_for_kafka: false,
        };
        Self::start(config, module, attach)
    }

    /// Connects to Kafka with `module` (under the file's limits); nothing is consumed yet.
    pub fn start(config: PipelineConfig, module: Module, attach: Attach) -> anyhow::Result<Self> {
        let module = module.with_limits(Limits::of(&config))?;
        let view = attach.view;
        view.update(|s| {
            s.status = Phase::Starting;
            (s.version, s.digest) = attach.version.clone().map_or((None, None), |(v, d)| (Some(v), Some(d)));
        });
        attach.metrics.set_status(Phase::Starting.as_str());
        await_kafka(&config, &view, attach.wait_for_kafka)?;
        kafka::check_topics(&config)?;
        let dead_letter = config.dead_letter_topic();
        if let Some(topic) = &dead_letter {
            dead_letter::ensure_topic(&config, topic)?;
        }
        let changelog = match module.uses_state() {
            true => Some(changelog::ensure(&config, config.store_name())?),
            false => None,
        };
        let layout = kafka::Layout { changelog: changelog.clone(), dead_letter: dead_letter.clone() };
        let changelog = changelog.map(|(name, _)| name);
        // Tables are read to their end before the inputs are subscribed to.
        let tables = Tables::new(&TableSpec::of(&config));
        let table_feed = TableFeed::start(&config, &tables)?;
        view.queryable.started(&config.instance(), tables.clone(), module.uses_state());
        let membership = match (&attach.advertise, module.uses_state()) {
            (Some(at), true) => Some(Publisher::start(&config, &at.url, at.key.clone(), view.queryable.clone())?),
            _ => None,
        };
        let shared = Shared::new(view.queryable.clone());
        let producer = kafka::producer(&config, changelog.as_deref())?;
        shared.set_producer(producer.clone());
        let consumer = kafka::consumer(&config, shared.clone())?;
        tracing::info!(
            application = %config.application_id, instance = %config.instance(), guarantee = ?config.guarantee,
            inputs = ?config.inputs, module = %module.name(), store = config.store_name(), "pipeline started"
        );
        let txn = txn::for_guarantee(&config, changelog.clone(), shared.clone(), producer, view.clone());
        let work = Work {
            health: Health::new(view.clone(), &config),
            config,
            tasks: Tasks::new(module, changelog, tables),
            txn,
            shared,
            table_feed,
            batch: Batch::new("", "", 0),
            stats: Stats::default(),
            last_wall_clock: Instant::now(),
            metrics: attach.metrics,
            view,
            consumed: HashMap::new(),
            paused: false,
            poisoned: dead_letter::Poisoned::default(),
            dead_letter,
            layout,
        };
        Ok(Self {
            consumer,
            work,
            last_commit: Instant::now(),
            want_paused: attach.paused,
            pending_swap: None,
            status_line: attach.status_line,
            rewind_owed: false,
            _membership: membership,
        })
    }
}
