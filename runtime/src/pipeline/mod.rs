//! `weir run`: consume, process, produce, commit.
//!
//! One loop per process: poll a batch, hand each partition's records to that partition's
//! instance, produce its outputs, and commit as the guarantee says:
//!
//! - exactly-once: every commit interval is one Kafka transaction holding the outputs and the
//!   consumed offsets (sent with the consumer's group metadata, KIP-447); the state writes of the
//!   interval are applied when it commits. On a Kafka error the transaction is aborted, state
//!   rolled back, and the partitions rewound to their committed offsets.
//! - at-least-once: offsets are committed after every output before them is acknowledged.
//! - at-most-once: offsets are committed before the records are processed.
//!
//! A guest error (trap, deadline, rejected record) stops the pipeline with the error, after
//! aborting or without committing, so nothing is lost: the record is still there on restart.
//!
//! For a processor with timers, each batch moves its partition's event time and fires the
//! event-time timers now due, and every [`WALL_CLOCK_TICK`] the due wall-clock timers of every
//! assigned partition fire. Their outputs and deletions join the open work like a batch's.
//!
//! A pipeline is a value driven from outside through [`control`]: between steps the loop takes
//! the commands waiting in its inbox (pause, resume, swap the module) and applies them at a
//! commit boundary, and it publishes a [`Snapshot`] that anyone may read. When a partition is
//! assigned, its task (instance and state store) opens at once, restoring its state, so a
//! pipeline is ready only when every assigned partition is.

pub mod config;
pub mod control;
pub mod errors;
mod status;
mod tables;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};

use crate::changelog;
use crate::engine::{Engine, Fired, Instance, Module};
use crate::error::ProcessError;
use crate::kafka::{self, Consumer, Producer, Shared, KAFKA_TIMEOUT};
use crate::metrics::{Metrics, PipelineMetrics};
use crate::query::membership::Publisher;
use crate::query::Positions;
use crate::record::{Batch, Outputs};
use crate::state::{MemoryStore, RocksStore, StateStore};
use crate::tables::{TableView, Tables};
use config::{Guarantee, OffsetReset, OnGuestError, PipelineConfig};
pub use control::{channel, Command, Handle, Inbox, Phase, Prepared, Snapshot, View};
pub use status::Stats;
pub use tables::TableFeed;

/// How often the wall-clock timers are checked.
pub const WALL_CLOCK_TICK: Duration = Duration::from_millis(100);

/// How long without records before the loop asks whether a broker answers, and how often then.
const IDLE_PROBE: Duration = Duration::from_secs(2);

/// How long a Kafka call may wait before the status says that it waits.
const SAY_WAITING: Duration = Duration::from_secs(2);

/// A running pipeline: the consumer, and the work it feeds.
pub struct Pipeline {
    consumer: Consumer,
    work: Work,
    last_commit: Instant,
    /// What the loop was asked to do at the next commit boundary.
    want_paused: bool,
    pending_swap: Option<Box<Prepared>>,
    /// Whether to draw the status line on a terminal (`weir run`, not `weir serve`).
    status_line: bool,
    /// Set while a rewind to the committed offsets is owed (it failed: the broker was away). No
    /// record is processed before it is done, or those after the last commit would be skipped.
    rewind_owed: bool,
    /// Writes this instance's partitions to the membership topic, for queries across instances.
    _membership: Option<Publisher>,
}

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
    pub advertise: Option<crate::query::membership::Advertise>,
    /// Wait, with backoff, for a broker that does not answer at start (`weir serve`), rather
    /// than fail (`weir run`).
    pub wait_for_kafka: bool,
}

/// Everything that processes what the consumer returns (apart from the consumer, so that the
/// borrowed messages and the work can be used together).
struct Work {
    config: PipelineConfig,
    module: Module,
    /// The changelog topic, for a processor that keeps state.
    changelog: Option<String>,
    producer: Arc<Producer>,
    shared: Arc<Shared>,
    instances: HashMap<i32, Instance>,
    /// The tables the module looks up, and what keeps them current.
    tables: Tables,
    table_feed: Option<tables::TableFeed>,
    batch: Batch,
    stats: Stats,
    last_wall_clock: Instant,
    metrics: PipelineMetrics,
    view: Arc<View>,
    /// The consumed-records counter of each input partition.
    consumed: HashMap<(String, i32), prometheus_client::metrics::counter::Counter>,
    paused: bool,
    /// The committed offsets of the assignment, as it began (what a newly opened store reflects).
    positions: Positions,
    /// Whether the consumer last said a broker connection is down (and the notice says so).
    kafka_trouble: bool,
    /// Records a guest error was about, to set aside when they come again.
    poisoned: errors::Poisoned,
    /// Where set-aside records go, under `dead-letter`.
    dead_letter: Option<String>,
    /// The topics as they were at start, to tell when one changes underneath the pipeline.
    layout: kafka::Layout,
    /// Since when no record came, and when a broker was last asked whether it answers (the
    /// consumer does not always report a broker that went away while it had nothing to read).
    idle_since: Instant,
    last_probe: Instant,
    /// A client of the pipeline's own for that question, made on first use.
    prober: Option<rdkafka::consumer::BaseConsumer>,
}

/// What outputs answer: records of a batch, or timers that fired on a partition.
enum Answering<'a> {
    Batch(&'a Batch),
    Timers(&'a Fired, i32),
}

impl Answering<'_> {
    fn timestamp(&self, source: usize) -> Option<i64> {
        match self {
            Answering::Batch(batch) => batch.timestamp(source),
            Answering::Timers(fired, _) => fired.timestamp(source),
        }
    }

    fn describe(&self, source: usize) -> String {
        match self {
            Answering::Batch(b) => {
                format!("topic `{}` partition {} offset {}", b.topic(), b.partition(), b.offset(source).unwrap_or(-1))
            }
            Answering::Timers(fired, partition) => match fired.timers.get(source) {
                Some(t) => format!("a {:?} timer at {} on partition {partition}", t.clock, t.at),
                None => format!("a timer on partition {partition}"),
            },
        }
    }
}

/// Why a step failed: Kafka trouble is retried from the last commit (with a new producer when
/// the old one failed fatally); a guest error stops, or sets its record aside as the
/// pipeline's error policy says; a fenced producer and anything else stops.
enum Failure {
    Kafka(anyhow::Error),
    ProducerLost(anyhow::Error),
    Fenced(KafkaError),
    Guest(ProcessError),
    Fatal(anyhow::Error),
}

impl From<KafkaError> for Failure {
    fn from(e: KafkaError) -> Self {
        let fenced = matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
        ) || matches!(&e, KafkaError::Transaction(t)
            if matches!(t.code(), RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch));
        let fatal = matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
        if fenced {
            Failure::Fenced(e)
        } else if fatal {
            Failure::ProducerLost(anyhow!("Kafka: {e}: the transactional producer failed fatally"))
        } else {
            Failure::Kafka(anyhow!("Kafka: {e}"))
        }
    }
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
        let module = module.with_limits(config.limits())?;
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
            errors::ensure_topic(&config, topic)?;
        }
        let changelog = match module.uses_state() {
            true => Some(changelog::ensure(&config, config.store_name())?),
            false => None,
        };
        let layout = kafka::Layout { changelog: changelog.clone(), dead_letter: dead_letter.clone() };
        let changelog = changelog.map(|(name, _)| name);
        // Tables are read to their end before the inputs are subscribed to.
        let tables = Tables::new(&config.table_specs());
        let table_feed = tables::TableFeed::start(&config, &tables)?;
        view.queryable.started(&config.instance(), tables.clone(), module.uses_state());
        let membership = match (&attach.advertise, module.uses_state()) {
            (Some(at), true) => Some(Publisher::start(&config, &at.url, at.key.clone(), view.queryable.clone())?),
            _ => None,
        };
        let shared = Shared::new(config.guarantee, view.queryable.clone());
        let producer = kafka::producer(&config, changelog.as_deref())?;
        shared.set_producer(producer.clone());
        let consumer = kafka::consumer(&config, shared.clone())?;
        tracing::info!(
            application = %config.application_id, instance = %config.instance(), guarantee = ?config.guarantee,
            inputs = ?config.inputs, module = %module.name(), store = config.store_name(), "pipeline started"
        );
        let work = Work {
            config,
            module,
            changelog,
            producer,
            shared,
            instances: HashMap::new(),
            tables,
            table_feed,
            batch: Batch::new("", "", 0),
            stats: Stats::default(),
            last_wall_clock: Instant::now(),
            metrics: attach.metrics,
            view,
            consumed: HashMap::new(),
            paused: false,
            positions: Positions::new(),
            kafka_trouble: false,
            poisoned: errors::Poisoned::default(),
            dead_letter,
            layout,
            idle_since: Instant::now(),
            last_probe: Instant::now(),
            prober: None,
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

    /// Runs until the view's stop flag is set (or, with `max_records`, until that many records
    /// were consumed), then commits what is done and leaves the group. Commands from `inbox`
    /// apply at commit boundaries.
    pub fn run(mut self, inbox: &Inbox, max_records: Option<u64>) -> anyhow::Result<Stats> {
        let mut status = status::Status::new(self.status_line, &self.work.config);
        let done = |stats: &Stats| max_records.is_some_and(|max| stats.consumed >= max);
        let view = inbox.view.clone();
        // Kafka errors in a row, and the commit count when the last one came.
        let mut retries = 0u32;
        let mut commits_then = 0u64;
        // Transactions the broker aborted for outliving transaction.timeout.ms, in a row.
        let mut timed_out = 0u32;
        while !view.stopping() && !done(&self.work.stats) {
            view.beat();
            while let Some(command) = inbox.next() {
                self.take(command);
            }
            let step = self.step();
            let result = step.and_then(|()| self.commit_if_due()).and_then(|()| self.apply_commands());
            if result.is_ok() && retries > 0 && self.work.stats.commits > commits_then {
                tracing::info!(application = %self.work.config.application_id, retries, "Kafka answers again");
                (retries, timed_out) = (0, 0);
                view.update(|s| s.notice = None);
            }
            if let Err(failure) = result {
                // A topic deleted or repartitioned underneath is not retried: say which.
                if let Failure::Kafka(e) | Failure::ProducerLost(e) = &failure {
                    if let Some(changed) = self.work.layout.changed(&self.work.config) {
                        return Err(self.fail(anyhow!("{changed} (the Kafka error was: {e:#})")));
                    }
                }
                let e = match failure {
                    Failure::Kafka(e) => e,
                    Failure::ProducerLost(e) => {
                        self.work.shared.producer_lost.store(true, Ordering::SeqCst);
                        e
                    }
                    Failure::Guest(e) if self.set_aside(&e) => continue,
                    Failure::Guest(e) => return Err(self.fail(e.into())),
                    // A broker that was away longer than the timeout aborts the transaction too:
                    // a new producer resumes, unless it keeps happening (a slow module).
                    Failure::Fenced(e) => match self.fenced(e) {
                        (e, true) if timed_out < TIMED_OUT_RETRIES => {
                            timed_out += 1;
                            self.work.shared.producer_lost.store(true, Ordering::SeqCst);
                            e
                        }
                        (e, _) => return Err(self.fail(e)),
                    },
                    Failure::Fatal(e) => return Err(self.fail(e)),
                };
                retries += 1;
                commits_then = self.work.stats.commits;
                let wait = backoff(retries);
                tracing::warn!(
                    attempt = retries,
                    wait_ms = wait.as_millis() as u64,
                    "{e:#}; aborting, and resuming from the last commit after the wait"
                );
                view.update(|s| {
                    s.notice = Some(format!(
                        "waiting for Kafka: attempt {retries} failed ({e:#}); retrying from the last commit in {} ms",
                        wait.as_millis()
                    ))
                });
                self.recover();
                pause(&view, wait);
            }
            status.tick(&mut self.work, &self.consumer, self.last_commit);
        }
        status.finish();
        view.queryable.close("the pipeline is stopping");
        let last = match self.commit() {
            Err(Failure::Fenced(e)) => Some(self.fenced(e).0),
            Err(Failure::Kafka(e) | Failure::ProducerLost(e) | Failure::Fatal(e)) => Some(e),
            Err(Failure::Guest(_)) | Ok(()) => None,
        };
        if let Some(e) = last {
            self.abandon();
            self.work.set_phase(Phase::Failed);
            let e = e.context("the final commit failed; the open work will be redone on restart");
            view.update(|s| s.error = Some(format!("{e:#}")));
            return Err(e);
        }
        self.work.stats.finished = Some(Instant::now());
        self.consumer.unsubscribe();
        self.work.set_phase(Phase::Stopped);
        let stats = self.work.stats;
        tracing::info!(
            application = %self.work.config.application_id,
            consumed = stats.consumed, produced = stats.produced, batches = stats.batches, commits = stats.commits,
            commit_ms = stats.commit_time.as_millis() as u64, "pipeline stopped"
        );
        Ok(stats)
    }

    /// Says why the producer was fenced: the open transaction outlived `transaction.timeout.ms`
    /// (the broker aborted it; true), or another instance with the same transactional id
    /// started.
    fn fenced(&self, e: KafkaError) -> (anyhow::Error, bool) {
        let limit = self.work.config.transaction_timeout();
        match self.work.shared.book().txn.map(|began| began.elapsed()) {
            Some(open) if open >= limit => (
                anyhow!(
                    "Kafka: {e}: the transaction was open {} ms, longer than transaction.timeout.ms ({} ms), and the \
                 broker aborted it (a broker away that long, or a slow module: make it faster, or lower \
                 commit_interval_ms or deadline_ms, or raise kafka.\"transaction.timeout.ms\")",
                    open.as_millis(),
                    limit.as_millis()
                ),
                true,
            ),
            _ => (
                anyhow!(
                    "Kafka: {e}: this producer was fenced: another instance with the same transactional id \
                 (application_id and instance_id) took over"
                ),
                false,
            ),
        }
    }

    /// Stops on `e`: drops the open work and publishes the failure.
    fn fail(&mut self, e: anyhow::Error) -> anyhow::Error {
        self.abandon();
        self.work.set_phase(Phase::Failed);
        let view = &self.work.view;
        view.update(|s| s.error = Some(format!("{e:#}")));
        view.queryable.close("the pipeline failed (see its status)");
        e
    }

    /// Under `dead-letter` or `skip`: marks the record `e` is about and drops the work since
    /// the last commit, to redo it without that record. False when the policy is `stop`, or
    /// `e` names no single record, or the record failed again after being set aside.
    fn set_aside(&mut self, e: &ProcessError) -> bool {
        let policy = self.work.config.errors.on_guest_error;
        if policy == OnGuestError::Stop || !self.work.poisoned.mark(e) {
            return false;
        }
        tracing::warn!(
            application = %self.work.config.application_id, action = errors::action(policy),
            "{e}; redoing the work since the last commit without this record"
        );
        self.recover();
        true
    }

    /// Takes a command in; it applies at the next commit boundary.
    fn take(&mut self, command: Command) {
        match command {
            Command::Pause => self.want_paused = true,
            Command::Resume => self.want_paused = false,
            Command::Swap(prepared) => self.pending_swap = Some(prepared),
        }
    }

    /// Commits, then pauses, resumes or swaps the module as asked.
    fn apply_commands(&mut self) -> Result<(), Failure> {
        if self.want_paused == self.work.paused && self.pending_swap.is_none() {
            return Ok(());
        }
        self.commit_now()?;
        if let Some(prepared) = self.pending_swap.take() {
            self.work.swap(*prepared);
        }
        if self.want_paused != self.work.paused {
            let assignment = self.consumer.assignment()?;
            if self.want_paused {
                self.consumer.pause(&assignment)?;
                self.work.paused = true;
                tracing::info!(application = %self.work.config.application_id, "paused");
            } else {
                self.consumer.resume(&assignment)?;
                self.work.paused = false;
                tracing::info!(application = %self.work.config.application_id, "resumed");
            }
        }
        self.work.set_phase(self.work.settled_phase());
        Ok(())
    }

    /// Polls one batch and processes it.
    fn step(&mut self) -> Result<(), Failure> {
        if self.rewind_owed {
            self.rewind()?;
            self.rewind_owed = false;
        }
        let (consumer, work) = (&self.consumer, &mut self.work);
        if let Some(feed) = &mut work.table_feed {
            feed.poll()?;
        }
        let (messages, trouble) =
            poll_batch(consumer, work.config.batch_size, Duration::from_millis(work.config.linger_ms))?;
        if let Some(e) = trouble {
            work.kafka_away(&format!("consumer: {e}"));
        } else if !messages.is_empty() {
            work.idle_since = Instant::now();
            if work.kafka_trouble {
                work.kafka_back("the consumer reads again");
            }
        } else if work.idle_since.elapsed() >= IDLE_PROBE && work.last_probe.elapsed() >= IDLE_PROBE {
            work.probe_kafka();
        }
        if work.shared.rebalanced.swap(false, Ordering::SeqCst) {
            // The revoke callback closed the open work; what this poll returned may belong to
            // partitions that are no longer ours, and is read again by their owner.
            work.after_rebalance();
            return Ok(());
        }
        if work.shared.assigned.swap(false, Ordering::SeqCst) {
            if work.paused {
                consumer.pause(&consumer.assignment()?)?;
            }
            // Every assigned partition's task opens now, restoring its state, so the pipeline
            // is ready once all are (and wall-clock timers fire with no record arriving).
            work.open_assigned(consumer)?;
            work.view.update(|s| s.restored = true);
            work.set_phase(work.settled_phase());
        }
        if work.paused {
            // Fetched before the pause took hold: read again after the resume.
            rewind_to(consumer, &messages)?;
            return Ok(());
        }
        if work.module.uses_timers() && work.last_wall_clock.elapsed() >= WALL_CLOCK_TICK {
            work.last_wall_clock = Instant::now();
            work.fire_wall_clock()?;
        }
        if messages.is_empty() {
            return Ok(());
        }
        work.stats.first_record.get_or_insert_with(Instant::now);
        if work.config.guarantee == Guarantee::AtMostOnce {
            let mut tpl = TopicPartitionList::new();
            for m in &messages {
                tpl.add_partition_offset(m.topic(), m.partition(), Offset::Offset(m.offset() + 1))?;
            }
            consumer.commit(&tpl, CommitMode::Sync)?;
        }
        work.begin()?;
        let mut start = 0;
        while start < messages.len() {
            let (topic, partition) = (messages[start].topic(), messages[start].partition());
            let len = messages[start..].iter().take_while(|m| m.topic() == topic && m.partition() == partition).count();
            work.process(&messages[start..start + len])?;
            start += len;
        }
        work.stats.consumed += messages.len() as u64;
        work.stats.batches += 1;
        work.metrics.batches.inc();
        Ok(())
    }

    /// Commits when the interval has passed since the last commit ended (a commit itself can
    /// take as long as the interval; counting from its start would commit back to back).
    fn commit_if_due(&mut self) -> Result<(), Failure> {
        if self.last_commit.elapsed() >= self.work.config.commit_interval() {
            self.commit_now()?;
        }
        Ok(())
    }

    /// Commits, counting it.
    fn commit_now(&mut self) -> Result<(), Failure> {
        let started = Instant::now();
        let result = self.commit();
        self.last_commit = Instant::now();
        if result.is_ok() {
            self.work.stats.commits += 1;
            self.work.stats.commit_time += started.elapsed();
            self.work.metrics.commits.inc();
            self.work.metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
        }
        result
    }

    /// Commits the work since the last commit, as the guarantee says: state changes to the
    /// changelog, outputs and offsets to Kafka, then state to the local stores.
    fn commit(&mut self) -> Result<(), Failure> {
        let mut book = self.work.shared.book();
        let idle = || self.work.instances.values().all(|i| !i.has_pending_writes());
        if book.offsets.is_empty() && book.txn.is_none() && idle() {
            return Ok(());
        }
        let t0 = Instant::now();
        self.work.write_changelog()?;
        let t1 = Instant::now();
        let producer = &self.work.producer;
        match self.work.config.guarantee {
            Guarantee::ExactlyOnce => {
                if !book.offsets.is_empty() {
                    let metadata = self
                        .consumer
                        .group_metadata()
                        .ok_or_else(|| Failure::Kafka(anyhow!("the consumer has no group metadata yet")))?;
                    let view = &self.work.view;
                    let mut said = false;
                    let sent = kafka::send_offsets(producer, book.positions()?, metadata, KAFKA_TIMEOUT, |waited| {
                        view.beat();
                        if waited >= SAY_WAITING && !said {
                            said = true;
                            tracing::warn!(
                                "the group coordinator has not taken this transaction's offsets for {} ms",
                                waited.as_millis()
                            );
                            view.update(|s| {
                                s.notice = Some(format!(
                                    "waiting for Kafka: the group coordinator has not taken this transaction's offsets \
                                     since {} s ago; it is given {} s before a new producer takes over",
                                    waited.as_secs(),
                                    KAFKA_TIMEOUT.as_secs()
                                ))
                            });
                        }
                        !view.stopping()
                    });
                    // Cleared once records come again or a broker answers the idle probe.
                    self.work.kafka_trouble |= said;
                    match sent {
                        kafka::Sent::Returned(result) => result?,
                        kafka::Sent::Abandoned(waited) => {
                            return Err(Failure::ProducerLost(anyhow!(
                                "Kafka: the consumed offsets were not added to the transaction after {} ms (the \
                                 group coordinator is away, and librdkafka does not time this call out: \
                                 librdkafka #5456); a new producer takes over, which aborts the transaction",
                                waited.as_millis()
                            )))
                        }
                    }
                }
                kafka::flush(producer, KAFKA_TIMEOUT)?;
                producer.commit_transaction(KAFKA_TIMEOUT)?;
                book.txn = None;
            }
            Guarantee::AtLeastOnce | Guarantee::AtMostOnce => {
                kafka::flush(producer, KAFKA_TIMEOUT)?;
                if let Some((count, last)) = producer.context().take_failures() {
                    return Err(Failure::Kafka(anyhow!("{count} records were not delivered (last: {last})")));
                }
                if self.work.config.guarantee == Guarantee::AtLeastOnce {
                    self.consumer.commit(&book.positions()?, CommitMode::Sync)?;
                }
            }
        }
        let committed = std::mem::take(&mut book.offsets);
        drop(book);
        let t2 = Instant::now();
        for (partition, instance) in self.work.instances.iter_mut() {
            let checkpoint = producer.context().take_changelog_end(*partition);
            instance.commit_at(checkpoint).map_err(|e| Failure::Fatal(anyhow!("state commit failed: {e}")))?;
        }
        self.work.view.queryable.committed(&committed);
        self.work.poisoned.committed(&committed);
        tracing::debug!(
            changelog_us = (t1 - t0).as_micros() as u64,
            kafka_us = (t2 - t1).as_micros() as u64,
            state_us = t2.elapsed().as_micros() as u64,
            "committed"
        );
        Ok(())
    }

    /// After a Kafka error: abort, roll back, and rewind to the committed offsets.
    fn recover(&mut self) {
        self.abandon();
        self.rewind_owed = true;
        match self.rewind() {
            Ok(()) => self.rewind_owed = false,
            Err(e) => tracing::warn!(
                "rewinding to the committed offsets failed: {e}; no record is processed before it is done"
            ),
        }
    }

    /// Drops the work since the last commit.
    fn abandon(&mut self) {
        let mut book = self.work.shared.book();
        if self.work.shared.abort(&mut book) {
            self.work.metrics.aborted.inc();
        }
        book.offsets.clear();
        drop(book);
        for instance in self.work.instances.values_mut() {
            instance.rollback();
        }
    }

    /// Seeks every assigned partition to its committed offset, or to the reset position.
    fn rewind(&mut self) -> Result<(), KafkaError> {
        let assignment = self.consumer.assignment()?;
        let committed = self.consumer.committed_offsets(assignment, KAFKA_TIMEOUT)?;
        let reset = match self.work.config.auto_offset_reset {
            OffsetReset::Earliest => Offset::Beginning,
            OffsetReset::Latest => Offset::End,
        };
        let mut seek = TopicPartitionList::new();
        for e in committed.elements() {
            let offset = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => reset,
            };
            seek.add_partition_offset(e.topic(), e.partition(), offset)?;
        }
        self.consumer.seek_partitions(seek, KAFKA_TIMEOUT)?;
        Ok(())
    }
}

impl Work {
    /// Publishes a new phase.
    fn set_phase(&self, phase: Phase) {
        let changed = {
            let mut changed = false;
            self.view.update(|s| {
                changed = s.status != phase;
                s.status = phase;
                if phase != Phase::Restoring {
                    s.restore = None;
                }
            });
            changed
        };
        if changed {
            self.metrics.set_status(phase.as_str());
        }
    }

    /// Says that Kafka is away (`why`), in the log and the status; the clients reconnect by
    /// themselves.
    fn kafka_away(&mut self, why: &str) {
        tracing::warn!(application = %self.config.application_id, "{why}; the clients reconnect by themselves");
        self.view.update(|s| s.notice = Some(format!("waiting for Kafka: {why}; the clients reconnect by themselves")));
        self.kafka_trouble = true;
    }

    /// Clears what [`Work::kafka_away`] said.
    fn kafka_back(&mut self, how: &str) {
        tracing::info!(application = %self.config.application_id, "{how}");
        self.view.update(|s| s.notice = None);
        self.kafka_trouble = false;
    }

    /// While no record comes: asks whether a broker answers, at most every [`IDLE_PROBE`].
    fn probe_kafka(&mut self) {
        self.last_probe = Instant::now();
        if self.prober.is_none() {
            self.prober = kafka::base(&self.config).create().ok();
        }
        let Some(prober) = &self.prober else { return };
        let topic = self.config.inputs.first().map(String::as_str);
        match prober.fetch_metadata(topic, Duration::from_secs(1)) {
            Err(e) if !self.kafka_trouble => {
                let why = format!("no broker answers at {} ({e})", self.config.bootstrap_servers);
                self.kafka_away(&why);
            }
            Ok(_) if self.kafka_trouble => self.kafka_back("a broker answers again"),
            _ => {}
        }
        self.view.beat();
    }

    /// Running or paused, as asked.
    fn settled_phase(&self) -> Phase {
        if self.paused {
            Phase::Paused
        } else {
            Phase::Running
        }
    }

    /// Replaces every task's guest with the prepared module, over the same state stores; called
    /// right after a commit, so nothing is pending. If a partition's instance cannot start, the
    /// ones already swapped go back to the old module and the old version keeps running.
    fn swap(&mut self, prepared: Prepared) {
        let old_config: Vec<(String, String)> = self.config.module.config.clone().into_iter().collect();
        let mut swapped = Vec::new();
        let mut failure = None;
        for (partition, instance) in self.instances.iter_mut() {
            match instance.swap(prepared.module.clone(), prepared.config.clone()) {
                Ok(()) => swapped.push(*partition),
                Err(e) => {
                    failure = Some(format!("partition {partition}: {e}"));
                    break;
                }
            }
        }
        let version = prepared.version;
        if let Some(reason) = failure {
            for partition in swapped {
                if let Some(instance) = self.instances.get_mut(&partition) {
                    if let Err(e) = instance.swap(self.module.clone(), old_config.clone()) {
                        tracing::error!(partition, "swapping back to the running version failed: {e}");
                    }
                }
            }
            tracing::warn!(application = %self.config.application_id, version, "swap refused: {reason}");
            self.view.update(|s| s.notice = Some(format!("the swap to version {version} was refused: {reason}")));
            return;
        }
        tracing::info!(
            application = %self.config.application_id, version, digest = %prepared.digest,
            partitions = self.instances.len(), "swapped the module at a commit boundary"
        );
        self.module = prepared.module;
        self.config.module.config = prepared.config.into_iter().collect();
        self.config.outputs = prepared.outputs;
        self.view.update(|s| {
            (s.version, s.digest) = (Some(version), Some(prepared.digest));
            s.notice = None;
        });
    }

    /// Opens a transaction under exactly-once, unless one is open.
    fn begin(&mut self) -> Result<(), Failure> {
        if self.config.guarantee == Guarantee::ExactlyOnce {
            if self.shared.producer_lost.load(Ordering::SeqCst) {
                self.renew_producer()?;
            }
            let mut book = self.shared.book();
            if book.txn.is_none() {
                self.producer.begin_transaction()?;
                book.txn = Some(Instant::now());
            }
        }
        Ok(())
    }

    /// Replaces a producer that failed fatally (not fenced) with a new one of the same
    /// transactional id, whose start aborts whatever the old one left open.
    fn renew_producer(&mut self) -> Result<(), Failure> {
        tracing::info!(application = %self.config.application_id, "starting a new transactional producer");
        self.producer = kafka::producer(&self.config, self.changelog.as_deref()).map_err(Failure::Kafka)?;
        self.shared.set_producer(self.producer.clone());
        Ok(())
    }

    /// Opens the task of every assigned partition that has none (restoring its state).
    fn open_assigned(&mut self, consumer: &Consumer) -> Result<(), Failure> {
        self.metrics.clear_partitions();
        let assignment = consumer.assignment()?;
        if self.module.uses_state() {
            // What each store reflects once restored: the committed offsets of its inputs.
            self.positions = consumer
                .committed_offsets(assignment.clone(), KAFKA_TIMEOUT)?
                .elements()
                .iter()
                .filter_map(|e| {
                    e.offset().to_raw().filter(|o| *o >= 0).map(|o| ((e.topic().to_owned(), e.partition()), o))
                })
                .collect();
        }
        // Partitions added to an input would send keys away from their state: stop first.
        let partitions = kafka::input_partitions(&self.config, consumer).map_err(Failure::Kafka)?;
        if let Some((changelog, expected)) = &self.layout.changelog {
            if let Some(problem) = kafka::repartitioned(&self.config, changelog, *expected, |_| partitions) {
                return Err(Failure::Fatal(anyhow!(problem)));
            }
        }
        // Every partition's task at once, so their stores are restored together.
        let mut wanted: Vec<(String, i32)> = Vec::new();
        for e in assignment.elements() {
            if !self.instances.contains_key(&e.partition()) && !wanted.iter().any(|(_, p)| *p == e.partition()) {
                wanted.push((e.topic().to_owned(), e.partition()));
            }
        }
        if !wanted.is_empty() {
            let Self { module, config, changelog, tables, view, metrics, positions, .. } = &*self;
            let task = Task { module, config, changelog: changelog.as_deref(), tables, view, metrics, positions };
            config.within_instance_share(self.instances.len(), wanted.len()).map_err(Failure::Fatal)?;
            let opened = open_instances(&task, &wanted).map_err(Failure::Fatal)?;
            self.instances.extend(opened);
        }
        self.view.queryable.settle(partitions);
        Ok(())
    }

    /// Fires the due wall-clock timers of every open instance and produces their outputs.
    fn fire_wall_clock(&mut self) -> Result<(), Failure> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let mut partitions: Vec<i32> = self.instances.keys().copied().collect();
        partitions.sort_unstable();
        for partition in partitions {
            let Some(instance) = self.instances.get_mut(&partition) else { continue };
            // Under exactly-once the firing joins a transaction like a batch; open one only
            // when something is due, so an idle pipeline commits nothing.
            let fired = instance.fire_wall_clock(now).map_err(|e| guest_failure(&self.metrics, e))?;
            if !fired.is_empty() {
                self.begin()?;
            }
            self.produce_fired(&fired, partition)?;
        }
        Ok(())
    }

    fn produce_fired(&mut self, fired: &[Fired], partition: i32) -> Result<(), Failure> {
        for f in fired {
            produce(&self.producer, &self.config, &f.outputs, &Answering::Timers(f, partition))?;
            self.stats.produced += f.outputs.len() as u64;
            self.metrics.produced.inc_by(f.outputs.len() as u64);
        }
        Ok(())
    }

    /// Produces every instance's pending state writes to its changelog partition (a delete as
    /// a tombstone); under exactly-once they join the open transaction.
    fn write_changelog(&self) -> Result<(), Failure> {
        let Some(topic) = &self.changelog else { return Ok(()) };
        for (partition, instance) in &self.instances {
            for (key, value) in instance.pending_writes() {
                let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(*partition).key(key);
                if let Some(value) = value {
                    record = record.payload(value);
                }
                send(&self.producer, record)?;
            }
        }
        Ok(())
    }

    /// Runs one partition's run of messages through its instance, setting aside the records
    /// marked as poisoned.
    fn process(&mut self, messages: &[BorrowedMessage<'_>]) -> Result<(), Failure> {
        if self.poisoned.is_empty() {
            return self.process_run(messages);
        }
        let mut start = 0;
        for (i, m) in messages.iter().enumerate() {
            if let Some(poison) = self.poisoned.get(m.topic(), m.partition(), m.offset()).cloned() {
                if start < i {
                    self.process_run(&messages[start..i])?;
                }
                self.put_aside(m, &poison)?;
                start = i + 1;
            }
        }
        if start < messages.len() {
            self.process_run(&messages[start..])?;
        }
        Ok(())
    }

    /// A poisoned record: to the dead-letter topic (in the open transaction) or dropped, and
    /// counted, and consumed like any other.
    fn put_aside(&mut self, m: &BorrowedMessage<'_>, poison: &errors::Poison) -> Result<(), Failure> {
        let policy = self.config.errors.on_guest_error;
        match &self.dead_letter {
            Some(topic) => {
                let digest = self.view.snapshot().digest.unwrap_or_else(|| self.module.name().to_owned());
                send(&self.producer, errors::dead_letter(topic, m, poison, &digest))?;
                self.view.update(|s| s.dead_lettered += 1);
            }
            None => {
                tracing::warn!(application = %self.config.application_id, "skipped the record: {}", poison.message);
                self.view.update(|s| s.skipped += 1);
            }
        }
        self.metrics.failed_record(errors::action(policy));
        self.consumed_through(m.topic(), m.partition(), 1, m.offset());
        Ok(())
    }

    /// Counts `count` records of a partition consumed, the last at `last`, and books the offset
    /// after it for the next commit.
    fn consumed_through(&mut self, topic: &str, partition: i32, count: u64, last: i64) {
        let key = (topic.to_owned(), partition);
        let counter = self.consumed.entry(key.clone()).or_insert_with(|| self.metrics.consumed(topic, partition));
        counter.inc_by(count);
        self.shared.book().offsets.insert(key, last + 1);
    }

    /// Runs one partition's run of messages through its instance and produces the outputs.
    fn process_run(&mut self, messages: &[BorrowedMessage<'_>]) -> Result<(), Failure> {
        let first = &messages[0];
        let (topic, partition) = (first.topic(), first.partition());
        self.batch.reset(topic, topic, partition);
        for m in messages {
            let headers = m.headers();
            let pairs = headers.iter().flat_map(|h| h.iter()).map(|h| (h.key.as_bytes(), h.value.unwrap_or_default()));
            self.batch.push(m.offset(), m.timestamp().to_millis(), m.key(), m.payload(), pairs);
        }
        // Borrowing only the fields it needs, so the batch in `self.batch` can go to the instance.
        let Self { instances, module, config, changelog, tables, batch, view, metrics, positions, .. } = self;
        let task = Task { module, config, changelog: changelog.as_deref(), tables, view, metrics, positions };
        let instance = instance_of(instances, &task, topic, partition)?;
        let called = Instant::now();
        let outputs = instance.process(batch).map_err(|e| guest_failure(metrics, e))?;
        let fired = instance.advance(batch).map_err(|e| guest_failure(metrics, e))?;
        metrics.guest_call_seconds.observe(called.elapsed().as_secs_f64());
        produce(&self.producer, &self.config, &outputs, &Answering::Batch(&self.batch))?;
        self.stats.produced += outputs.len() as u64;
        self.metrics.produced.inc_by(outputs.len() as u64);
        self.produce_fired(&fired, partition)?;
        self.consumed_through(topic, partition, messages.len() as u64, messages[messages.len() - 1].offset());
        Ok(())
    }

    /// After a revocation: the work since the last commit is gone (see `Shared::on_revoke`),
    /// so is its state, and partitions may have moved.
    fn after_rebalance(&mut self) {
        for instance in self.instances.values_mut() {
            instance.rollback();
        }
        self.instances.clear();
        self.poisoned.clear();
        self.view.update(|s| s.restored = false);
    }
}

/// Until a broker answers at the pipeline's bootstrap servers. With `wait`, tries again with
/// backoff, the reason in the status' notice, until one does or the pipeline is told to stop;
/// without, the first failure is the error.
fn await_kafka(config: &PipelineConfig, view: &View, wait: bool) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        let e = match kafka::probe(config) {
            Ok(()) if attempt == 0 => return Ok(()),
            Ok(()) => {
                tracing::info!(application = %config.application_id, "Kafka answers");
                view.update(|s| s.notice = None);
                return Ok(());
            }
            Err(e) if !wait => return Err(e),
            Err(e) => e,
        };
        if view.stopping() {
            return Err(e.context("stopped while waiting for Kafka"));
        }
        attempt += 1;
        let delay = backoff(attempt);
        tracing::warn!(application = %config.application_id, attempt, "{e:#}; trying again in {} ms", delay.as_millis());
        view.update(|s| {
            s.notice = Some(format!("waiting for Kafka: {e:#}; attempt {attempt}, next in {} ms", delay.as_millis()))
        });
        pause(view, delay);
    }
}

/// Sleeps `how_long`, or less when told to stop, beating the heartbeat meanwhile.
fn pause(view: &View, how_long: Duration) {
    let until = Instant::now() + how_long;
    while Instant::now() < until && !view.stopping() {
        view.beat();
        std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
    }
}

/// How many transactions in a row the broker may abort for their length before the pipeline
/// stops, saying so.
const TIMED_OUT_RETRIES: u32 = 3;

/// How long to wait before retry `attempt` (from 1) after a Kafka error: 200 ms doubling up to
/// 10 s, each drawn between half and all of that (jitter, so instances do not retry in step).
fn backoff(attempt: u32) -> Duration {
    let ceiling =
        Duration::from_millis(200).saturating_mul(1 << attempt.saturating_sub(1).min(6)).min(Duration::from_secs(10));
    let noise = {
        use std::hash::{BuildHasher as _, Hasher as _};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(attempt);
        h.finish()
    };
    ceiling.mul_f64(0.5 + (noise % 1000) as f64 / 2000.0)
}

/// Up to `max` messages: waits up to 100 ms for the first, then up to `linger` for the rest.
/// A broker connection lost or refused comes back beside them, not as a failure: the consumer
/// reconnects by itself, and nothing needs redoing for it (what the loss breaks, a commit or a
/// send, fails and is retried on its own).
fn poll_batch(
    consumer: &Consumer,
    max: usize,
    linger: Duration,
) -> Result<(Vec<BorrowedMessage<'_>>, Option<KafkaError>), Failure> {
    let mut messages = Vec::new();
    let deadline = Instant::now() + linger;
    while messages.len() < max {
        let wait = if messages.is_empty() {
            Duration::from_millis(100)
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match consumer.poll(wait) {
            Some(Ok(m)) => messages.push(m),
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) if connection_lost(&e) => return Ok((messages, Some(e))),
            Some(Err(e)) => {
                if messages.is_empty() {
                    return Err(e.into());
                }
                tracing::warn!("consumer: {e}");
                break;
            }
            None => break,
        }
        if !messages.is_empty() && Instant::now() >= deadline {
            break;
        }
    }
    Ok((messages, None))
}

/// Whether a consumer error only says a broker connection is down (librdkafka retries it).
fn connection_lost(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::NetworkException
        )
    )
}

/// Produces every output to its topic, keyed, with the timestamp of what it answers unless the
/// guest set one.
fn produce(
    producer: &Producer,
    config: &PipelineConfig,
    outputs: &Outputs,
    answering: &Answering<'_>,
) -> Result<(), Failure> {
    for o in outputs.iter() {
        let name = o.topic().unwrap_or("default");
        let topic = config.outputs.get(name).ok_or_else(|| {
            let known: Vec<&str> = config.outputs.keys().map(String::as_str).collect();
            Failure::Fatal(anyhow!(
                "module `{}` routed a record (answering {}) to output `{name}`, \
                 which the pipeline does not configure (outputs: {})",
                config.module.path.display(),
                answering.describe(o.source()),
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            ))
        })?;
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        let count = o.headers().count();
        if count > 0 {
            let mut headers = OwnedHeaders::new_with_capacity(count);
            for (k, v) in o.headers() {
                headers = headers.insert(Header { key: &String::from_utf8_lossy(k), value: Some(v) });
            }
            record = record.headers(headers);
        }
        if let Some(key) = o.key() {
            record = record.key(key);
        }
        if let Some(value) = o.value() {
            record = record.payload(value);
        }
        if let Some(ts) = o.timestamp().or_else(|| answering.timestamp(o.source())) {
            record = record.timestamp(ts);
        }
        send(producer, record)?;
    }
    Ok(())
}

/// Sends one record, waiting while the producer's queue is full.
fn send<'a>(producer: &Producer, mut record: BaseRecord<'a, [u8], [u8]>) -> Result<(), Failure> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// A guest error, counted by kind.
fn guest_failure(metrics: &PipelineMetrics, e: ProcessError) -> Failure {
    metrics.guest_error(e.kind());
    Failure::Guest(e)
}

/// Seeks each partition in `messages` back to its first message there (a paused pipeline
/// received them), and pauses it again.
fn rewind_to(consumer: &Consumer, messages: &[BorrowedMessage<'_>]) -> Result<(), Failure> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut seek = TopicPartitionList::new();
    for m in messages {
        if seek.find_partition(m.topic(), m.partition()).is_none() {
            seek.add_partition_offset(m.topic(), m.partition(), Offset::Offset(m.offset()))?;
        }
    }
    consumer.seek_partitions(seek.clone(), KAFKA_TIMEOUT)?;
    consumer.pause(&seek)?;
    Ok(())
}

/// What opening a partition's task needs.
struct Task<'a> {
    module: &'a Module,
    config: &'a PipelineConfig,
    changelog: Option<&'a str>,
    tables: &'a Tables,
    view: &'a View,
    metrics: &'a PipelineMetrics,
    positions: &'a Positions,
}

/// The instance of `partition` in `instances`, opened (and its state restored) on first use.
fn instance_of<'a>(
    instances: &'a mut HashMap<i32, Instance>,
    task: &Task<'_>,
    topic: &str,
    partition: i32,
) -> Result<&'a mut Instance, Failure> {
    let open = instances.len();
    match instances.entry(partition) {
        std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
        std::collections::hash_map::Entry::Vacant(e) => {
            task.config.within_instance_share(open, 1).map_err(Failure::Fatal)?;
            let opened = open_instances(task, &[(topic.to_owned(), partition)]).map_err(Failure::Fatal)?;
            let Some((_, instance)) = opened.into_iter().next() else {
                return Err(Failure::Fatal(anyhow!("partition {partition}: no instance was opened")));
            };
            Ok(e.insert(instance))
        }
    }
}

/// Instances for input partitions (`topic`, `partition`), each with its state store brought up
/// to the end of its changelog first (all in one restore), its tables, and a reader of its
/// store for queries.
fn open_instances(task: &Task<'_>, wanted: &[(String, i32)]) -> anyhow::Result<Vec<(i32, Instance)>> {
    let mut stores = Vec::with_capacity(wanted.len());
    for (_, partition) in wanted {
        stores.push(open_store(task.config, task.changelog.is_some(), *partition)?);
    }
    if let Some(changelog) = task.changelog {
        restore(task, changelog, wanted, &mut stores)?;
    }
    let module_config: Vec<(String, String)> = task.config.module.config.clone().into_iter().collect();
    let mut opened = Vec::with_capacity(wanted.len());
    for ((topic, partition), store) in wanted.iter().zip(stores) {
        let partition = *partition;
        let reader = store.reader();
        let mut instance = task.module.instantiate(topic, partition, store, &module_config)?;
        instance.set_tables(TableView { tables: task.tables.clone(), partition });
        if task.module.uses_state() {
            let positions = task.positions.iter().filter(|((_, p), _)| *p == partition);
            task.view.queryable.open(partition, reader, positions.map(|(k, v)| (k.clone(), *v)).collect());
        }
        opened.push((partition, instance));
    }
    Ok(opened)
}

/// The state store of `partition`: RocksDB under the state directory (kept without a
/// write-ahead log when a changelog holds it), else memory.
fn open_store(config: &PipelineConfig, changelogged: bool, partition: i32) -> anyhow::Result<Box<dyn StateStore>> {
    Ok(match &config.state_dir {
        Some(dir) => {
            let path =
                dir.join(&config.application_id).join(config.store_name()).join(format!("partition-{partition}"));
            let store = match changelogged {
                true => RocksStore::open_changelog_backed(&path),
                false => RocksStore::open(&path),
            };
            Box::new(store.with_context(|| format!("state store {}", path.display()))?)
        }
        None => Box::new(MemoryStore::new()),
    })
}

/// Brings `stores` (of the partitions in `wanted`) up to the end of `changelog`, showing the
/// restore in the status meanwhile.
fn restore(
    task: &Task<'_>,
    changelog: &str,
    wanted: &[(String, i32)],
    stores: &mut [Box<dyn StateStore>],
) -> anyhow::Result<()> {
    let view = task.view;
    let partitions: Vec<i32> = wanted.iter().map(|(_, p)| *p).collect();
    let before = view.snapshot().status;
    view.update(|s| {
        s.status = Phase::Restoring;
        s.restore = Some(control::RestoreProgress { partitions: partitions.clone(), restored: 0, total: 0 });
    });
    task.metrics.set_status(Phase::Restoring.as_str());
    let progress = |restored: u64, total: u64| {
        view.beat();
        view.update(|s| s.restore = Some(control::RestoreProgress { partitions: partitions.clone(), restored, total }));
    };
    let targets = wanted
        .iter()
        .zip(stores.iter_mut())
        .map(|((_, partition), store)| changelog::Target { partition: *partition, store: store.as_mut() })
        .collect();
    let restored = changelog::restore(task.config, changelog, targets, &progress)?;
    task.metrics.restored.inc_by(restored.records);
    view.update(|s| {
        s.restored_records += restored.records;
        s.status = before;
        s.restore = None;
    });
    task.metrics.set_status(before.as_str());
    Ok(())
}
