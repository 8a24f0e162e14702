//! Restores beside the loop: the stores of newly assigned partitions brought to the end of their
//! changelog on a thread of their own, while the loop goes on processing the partitions it has
//! open (Kafka Streams restores the same way, KIP-429's point: a rebalance touches only what
//! moves).
//!
//! The loop pauses the partitions a restore holds, drops any of their records a poll still
//! returns, and when the restore is done opens their tasks and seeks them back to where they
//! were when it began (their committed offsets) before it resumes them: nothing of them is
//! processed before their state is whole, and nothing is skipped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::anyhow;
use rdkafka::TopicPartitionList;

use super::control::{RestoreProgress, View};
use crate::changelog::{self, Restored};
use crate::config::PipelineConfig;
use crate::query::Positions;
use crate::state::StateStore;

/// What a restore's thread hands back: the stores, as far as they got, and how it went.
type Outcome = (Vec<Box<dyn StateStore>>, anyhow::Result<Restored>);

/// The stores a restore brought up to date, and what it did.
pub(super) type Done = (Vec<Box<dyn StateStore>>, Restored);

/// What a restore is for: the partitions whose tasks it opens, and what the loop holds back
/// for them meanwhile.
pub(super) struct Plan {
    /// The tasks to open when it is done: each partition with the input topic it was assigned
    /// under (a stage reading several topics has one task for a partition number of them all).
    pub wanted: Vec<(String, i32)>,
    /// Every assigned input partition it holds back (paused, its records dropped).
    pub held: Vec<(String, i32)>,
    /// The committed input offsets of those partitions (what the restored stores reflect).
    pub positions: Positions,
    /// Where each held partition is read from once its task is open.
    pub resume_at: TopicPartitionList,
}

/// One restore under way: some partitions of a stage, restored together.
pub(super) struct Restore {
    pub plan: Plan,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Outcome>>,
}

impl Restore {
    /// Starts bringing `stores` (one per partition the plan wants, in order) up to the end of
    /// `changelog`, showing its progress in the view's status.
    pub fn start(
        config: &PipelineConfig,
        changelog: &str,
        plan: Plan,
        mut stores: Vec<Box<dyn StateStore>>,
        view: Arc<View>,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let partitions: Vec<i32> = plan.wanted.iter().map(|(_, p)| *p).collect();
        let (config, changelog, called_off) = (config.clone(), changelog.to_owned(), stop.clone());
        view.update(|s| s.restore = Some(RestoreProgress { partitions: partitions.clone(), restored: 0, total: 0 }));
        let thread = std::thread::Builder::new()
            .name(format!("weir-restore-{}", config.application_id))
            .spawn(move || {
                let progress = |restored: u64, total: u64| {
                    let partitions = partitions.clone();
                    view.update(|s| s.restore = Some(RestoreProgress { partitions, restored, total }));
                    !called_off.load(Ordering::Relaxed)
                };
                let targets = partitions
                    .iter()
                    .zip(stores.iter_mut())
                    .map(|(partition, store)| changelog::Target { partition: *partition, store: store.as_mut() })
                    .collect();
                let result = changelog::restore(&config, &changelog, targets, &progress);
                (stores, result)
            })
            .map_err(|e| anyhow!("cannot start a thread to restore state: {e}"))?;
        Ok(Self { plan, stop, thread: Some(thread) })
    }

    /// Whether its thread is done (and [`Restore::join`] will not wait).
    pub fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Whether it holds `partition` of `topic` back.
    pub fn holds(&self, topic: &str, partition: i32) -> bool {
        self.plan.held.iter().any(|(t, p)| t == topic && *p == partition)
    }

    /// Whether it restores `partition`'s store.
    pub fn restores(&self, partition: i32) -> bool {
        self.plan.wanted.iter().any(|(_, p)| *p == partition)
    }

    /// Waits for its thread: the plan, and the restored stores and what the restore did.
    pub fn join(mut self) -> (Plan, anyhow::Result<Done>) {
        let outcome = self.wait().and_then(|(stores, result)| Ok((stores, result?)));
        let plan = std::mem::replace(&mut self.plan, Plan::empty());
        (plan, outcome)
    }

    /// Stops it where it is and waits: its stores are dropped (each keeps the checkpoint it
    /// reached, so the next restore goes on from there).
    pub fn call_off(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Err(e) = self.wait() {
            tracing::warn!("{e:#}");
        }
    }

    fn wait(&mut self) -> anyhow::Result<Outcome> {
        let thread = self.thread.take().ok_or_else(|| anyhow!("the restore was already joined"))?;
        thread.join().map_err(|_| anyhow!("the thread restoring partitions {:?} panicked", self.partitions()))
    }

    fn partitions(&self) -> Vec<i32> {
        self.plan.wanted.iter().map(|(_, p)| *p).collect()
    }
}

impl Plan {
    fn empty() -> Self {
        Self { wanted: Vec::new(), held: Vec::new(), positions: Positions::new(), resume_at: TopicPartitionList::new() }
    }
}

impl Drop for Restore {
    /// A pipeline that stops, or a task set dropped, calls its restores off.
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = self.wait();
        }
    }
}
