//! Stages as the loop runs them: each stage its own module, its own tasks over its own stores
//! and changelog, reading its own topics; all of them under the loop's one consumer and one
//! transaction, as Kafka Streams runs the sub-topologies of a thread. A record polled from a
//! stage's input goes to that stage's task of its partition; what a stage routes to another
//! goes to that stage's repartition topic, keyed, and comes back through the same consumer
//! once committed (the consumer reads `read_committed`).
//!
//! Repartition topics are trimmed behind the committed offsets (Kafka's DeleteRecords, at most
//! every [`TRIM_EVERY`]), so they hold only what the next stage has not yet consumed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::{Offset, TopicPartitionList};

use super::control::View;
use super::failure::Failure;
use super::task::{Env, Tasks};
use crate::config::PipelineConfig;
use crate::error::Domain;
use crate::kafka::{self, Consumer, Producer, KAFKA_TIMEOUT};
use crate::metrics::PipelineMetrics;
use crate::query::Positions;

/// How often consumed records of the repartition topics are deleted.
pub const TRIM_EVERY: Duration = Duration::from_secs(5);

/// One stage: its name, the pipeline file as it sees it, and its tasks.
pub(super) struct Stage {
    pub name: String,
    /// The pipeline with this stage's module, inputs and outputs.
    pub config: PipelineConfig,
    pub tasks: Tasks,
    /// The topics it depends on, as they were at start.
    pub layout: kafka::Layout,
    /// Whether the status has said that a stateful stage reads records without keys.
    pub warned_unkeyed: bool,
}

/// The stages of a pipeline, in flow order, and which reads each topic.
pub(super) struct Stages {
    list: Vec<Stage>,
    by_topic: HashMap<String, usize>,
    /// Each stage's consumed and produced records, by index.
    counts: Vec<(u64, u64)>,
    /// The repartition topics.
    internal: Vec<String>,
    trim: Option<Trim>,
}

impl Stages {
    /// The stages, the repartition topics they read (what stages lead to), and the client that
    /// trims those.
    pub fn new(list: Vec<Stage>, internal: Vec<String>, admin: Option<AdminClient<DefaultClientContext>>) -> Self {
        let mut by_topic = HashMap::new();
        for (i, stage) in list.iter().enumerate() {
            for input in &stage.config.inputs {
                by_topic.insert(input.clone(), i);
            }
        }
        let counts = vec![(0, 0); list.len()];
        let trim = admin.map(|admin| Trim { admin, due: Positions::new(), last: Instant::now() });
        Self { list, by_topic, counts, internal, trim }
    }

    /// The repartition topics the stages read.
    pub fn internal(&self) -> &[String] {
        &self.internal
    }

    /// Every topic a stage reads: what the consumer subscribes to.
    pub fn inputs(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.by_topic.keys().cloned().collect();
        topics.sort();
        topics
    }

    /// Whether a stage reads several topics, whose partitions must stay together on one
    /// instance (the same partition of each).
    pub fn copartitioned(&self) -> bool {
        self.list.iter().any(|s| s.config.inputs.len() > 1)
    }

    /// The index of the stage that reads `topic`.
    pub fn reading(&self, topic: &str) -> Result<usize, Failure> {
        self.by_topic.get(topic).copied().ok_or_else(|| {
            Failure::Fatal(anyhow!("a record of topic `{topic}` arrived, which no stage reads"), Domain::Internal)
        })
    }

    /// The index of the stage named `name`.
    pub fn named(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|s| s.name == name)
    }

    pub fn get(&self, i: usize) -> &Stage {
        &self.list[i]
    }

    pub fn get_mut(&mut self, i: usize) -> &mut Stage {
        &mut self.list[i]
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Counts records a stage consumed and produced.
    pub fn count(&mut self, i: usize, consumed: u64, produced: u64) {
        let (c, p) = &mut self.counts[i];
        *c += consumed;
        *p += produced;
    }

    /// Each stage with its consumed and produced records.
    pub fn counts(&self) -> impl Iterator<Item = (&Stage, u64, u64)> {
        self.list.iter().zip(&self.counts).map(|(s, (c, p))| (s, *c, *p))
    }

    /// Whether a stage's module has timers.
    pub fn uses_timers(&self) -> bool {
        self.list.iter().any(|s| s.tasks.module().uses_timers())
    }

    /// Whether no task of any stage has a state change to commit.
    pub fn idle(&self) -> bool {
        self.list.iter().all(|s| s.tasks.idle())
    }

    /// Every stage's pending state changes to its changelog.
    pub fn write_changelog(&self, producer: &Producer) -> Result<(), Failure> {
        self.list.iter().try_for_each(|s| s.tasks.write_changelog(producer))
    }

    /// Once a commit holds: every stage's state changes to its stores; then the repartition
    /// topics are trimmed behind `committed`, when that is due.
    pub fn commit(&mut self, producer: &Producer, committed: &Positions) -> Result<(), Failure> {
        for stage in &mut self.list {
            stage.tasks.commit(producer)?;
        }
        if let Some(trim) = &mut self.trim {
            trim.committed(committed, &self.internal);
        }
        Ok(())
    }

    /// Trims the repartition topics behind the offsets committed so far, when that is due
    /// (called every step, so that the last commits before a quiet spell are trimmed too).
    pub fn trim_if_due(&mut self) {
        if let Some(trim) = &mut self.trim {
            trim.trim_if_due();
        }
    }

    pub fn rollback(&mut self) {
        self.list.iter_mut().for_each(|s| s.tasks.rollback());
    }

    /// Closes every task; how many there were.
    pub fn close_all(&mut self, view: &View) -> usize {
        self.list.iter_mut().map(|s| s.tasks.close_all(view)).sum()
    }

    /// Closes the tasks of the revoked `partitions` (each stage those of the topics it reads),
    /// after a commit; how many closed.
    pub fn close(&mut self, partitions: &[(String, i32)], view: &View) -> usize {
        let mut closed = 0;
        for stage in &mut self.list {
            let mine: Vec<i32> = partitions
                .iter()
                .filter(|(topic, _)| stage.config.inputs.contains(topic))
                .map(|(_, partition)| *partition)
                .collect();
            closed += stage.tasks.close(&mine, view);
        }
        closed
    }

    /// Opens the tasks of every assigned partition that has none, stage by stage (those of a
    /// stage with a changelog once their restore beside the loop is done); how many open.
    pub fn open_assigned(
        &mut self,
        view: &Arc<View>,
        metrics: &PipelineMetrics,
        consumer: &Consumer,
    ) -> Result<usize, Failure> {
        metrics.clear_partitions();
        let mut opened = 0;
        for stage in &mut self.list {
            let env = Env { config: &stage.config, view, metrics };
            opened += stage.tasks.open_assigned(&env, consumer, &stage.layout, &self.internal)?;
        }
        Ok(opened)
    }

    /// Opens the tasks whose restore is done, stage by stage, and lets their partitions' records
    /// come (unless the pipeline is `paused`); how many opened.
    pub fn finish_restores(
        &mut self,
        view: &Arc<View>,
        metrics: &PipelineMetrics,
        consumer: &Consumer,
        paused: bool,
    ) -> Result<usize, Failure> {
        let mut opened = 0;
        for stage in &mut self.list {
            let env = Env { config: &stage.config, view, metrics };
            opened += stage.tasks.finish_restores(&env, consumer, paused)?;
        }
        Ok(opened)
    }

    /// Whether a stage restores state beside the loop.
    pub fn restoring(&self) -> bool {
        self.list.iter().any(|s| s.tasks.restoring())
    }

    /// Whether `partition` of `topic` is held back by a restore: its records wait.
    pub fn holds(&self, topic: &str, partition: i32) -> bool {
        self.by_topic.get(topic).is_some_and(|i| self.list[*i].tasks.holds(topic, partition))
    }

    /// The input partitions held back by restores.
    pub fn held(&self) -> Vec<(String, i32)> {
        self.list.iter().flat_map(|s| s.tasks.held().cloned()).collect()
    }

    /// Whether a stage has assigned partitions with neither a task nor a restore.
    pub fn reopen_due(&self) -> bool {
        self.list.iter().any(|s| s.tasks.reopen_due())
    }

    /// What changed underneath a stage, if anything did (see [`kafka::Layout::changed`]).
    pub fn changed(&self) -> Option<String> {
        self.list.iter().find_map(|s| s.layout.changed(&s.config))
    }

    /// The size of each task's store, by stage and partition.
    pub fn state_sizes(&self) -> impl Iterator<Item = (&str, i32, u64)> + '_ {
        self.list.iter().flat_map(|s| s.tasks.state_sizes().map(move |(p, bytes)| (s.name.as_str(), p, bytes)))
    }
}

/// Deletes the records of the repartition topics that every stage has consumed and committed.
struct Trim {
    admin: AdminClient<DefaultClientContext>,
    /// The committed offsets of the repartition partitions, not yet trimmed to.
    due: Positions,
    last: Instant,
}

impl Trim {
    /// Books the committed offsets of the repartition topics (`internal`) to trim to.
    fn committed(&mut self, committed: &Positions, internal: &[String]) {
        for ((topic, partition), next) in committed {
            if internal.contains(topic) {
                self.due.insert((topic.clone(), *partition), *next);
            }
        }
    }

    fn trim_if_due(&mut self) {
        if self.due.is_empty() || self.last.elapsed() < TRIM_EVERY {
            return;
        }
        self.last = Instant::now();
        let due = std::mem::take(&mut self.due);
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &due {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                tracing::warn!(topic, partition, "cannot trim: {e}");
            }
        }
        let options = AdminOptions::new().request_timeout(Some(KAFKA_TIMEOUT));
        // A failed trim is retried at the next one: the records stay until then, nothing is lost.
        match futures_executor::block_on(self.admin.delete_records(&tpl, &options)) {
            Ok(result) => {
                for e in result.elements() {
                    if let Err(error) = e.error() {
                        tracing::warn!(topic = e.topic(), partition = e.partition(), "trimming failed: {error}");
                    }
                }
            }
            Err(e) => tracing::warn!("trimming the repartition topics failed: {e}"),
        }
    }
}
