//! The pipeline and the work its loop feeds, as values: the consumer beside everything that
//! processes what it returns (apart, so that borrowed messages and the work can be used
//! together). The loop ([`super::Pipeline::run`]) and the modules it drives all reach these
//! from here, below them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::control::{Phase, Prepared, SwapOutcome, View};
use super::dead_letter::Poisoned;
use super::health::Health;
use super::stage::Stages;
use super::table_feed::TableFeed;
use super::txn::Transaction;
use crate::config::PipelineConfig;
use crate::engine::Module;
use crate::kafka::{Consumer, Shared};
use crate::metrics::PipelineMetrics;
use crate::query::membership::Publisher;
use crate::record::Batch;

/// A running pipeline: the consumer, and the work it feeds.
pub struct Pipeline {
    pub(super) consumer: Consumer,
    pub(super) work: Work,
    pub(super) last_commit: Instant,
    /// What the loop was asked to do at the next commit boundary.
    pub(super) want_paused: bool,
    pub(super) pending_swap: Option<(Box<Prepared>, std::sync::mpsc::Sender<SwapOutcome>)>,
    /// Whether to draw the status line on a terminal (`weir run`, not `weir serve`).
    pub(super) status_line: bool,
    /// Set while a rewind to the committed offsets is owed (it failed: the broker was away). No
    /// record is processed before it is done, or those after the last commit would be skipped.
    pub(super) rewind_owed: bool,
    /// Writes this instance's partitions to the membership topic, for queries across instances.
    pub(super) _membership: Option<Publisher>,
}

impl Drop for Pipeline {
    /// However the loop ended, the consumer's close (when it drops next) must not wait on the
    /// loop for a revocation: partitions revoked from here on are released at once, and those
    /// revoked and not yet released are released now.
    fn drop(&mut self) {
        self.work.shared.closing.store(true, std::sync::atomic::Ordering::SeqCst);
        let revoked = self.work.shared.take_revoked();
        if !revoked.is_empty() {
            if let Err(e) = crate::kafka::release(&self.consumer, &revoked) {
                tracing::warn!("releasing the revoked partitions failed: {e}");
            }
        }
    }
}

/// Everything that processes what the consumer returns (apart from the consumer, so that the
/// borrowed messages and the work can be used together).
pub(super) struct Work {
    /// The pipeline file (what each stage sees of it is in its stage).
    pub(super) config: PipelineConfig,
    pub(super) stages: Stages,
    pub(super) txn: Box<dyn Transaction>,
    /// What the rebalance callback tells the loop.
    pub(super) shared: Arc<Shared>,
    pub(super) table_feed: Option<TableFeed>,
    pub(super) batch: Batch,
    pub(super) stats: Stats,
    pub(super) last_wall_clock: Instant,
    pub(super) metrics: PipelineMetrics,
    pub(super) view: Arc<View>,
    /// The consumed-records counter of each input partition.
    pub(super) consumed: HashMap<(String, i32), prometheus_client::metrics::counter::Counter>,
    pub(super) paused: bool,
    pub(super) health: Health,
    /// Records a guest error was about, to set aside when they come again.
    pub(super) poisoned: Poisoned,
    /// Where set-aside records go, under `dead-letter`.
    pub(super) dead_letter: Option<String>,
    /// Most records a guest call gets, below `batch_size` once a batch failed as a whole and
    /// none of its records alone.
    pub(super) batch_cap: Option<usize>,
}

impl Work {
    /// Most records a poll gathers for the guest.
    pub(super) fn batch_size(&self) -> usize {
        self.batch_cap.map_or(self.config.batch_size, |cap| cap.min(self.config.batch_size))
    }

    /// Publishes a new phase.
    pub(super) fn set_phase(&self, phase: Phase) {
        let mut changed = false;
        self.view.update(|s| {
            changed = s.status != phase;
            s.status = phase;
            if phase != Phase::Restoring {
                s.restore = None;
            }
        });
        if changed {
            self.metrics.set_status(phase.as_str());
        }
    }

    /// Restoring while a restore is under way beside the loop; else running or paused, as asked.
    pub(super) fn settled_phase(&self) -> Phase {
        match self.paused {
            _ if self.stages.restoring() => Phase::Restoring,
            true => Phase::Paused,
            false => Phase::Running,
        }
    }

    /// Swaps the guest of every task of each stage the prepared version changes, and says how
    /// it went: all of them swap, or none (those already swapped go back).
    pub(super) fn swap(&mut self, prepared: Prepared) -> SwapOutcome {
        let version = prepared.version;
        let mut swapped: Vec<(usize, Module)> = Vec::new();
        let mut refused = None;
        for part in &prepared.stages {
            let Some(i) = self.stages.named(&part.stage) else {
                refused = Some(format!("the pipeline has no stage `{}`", part.stage));
                break;
            };
            let stage = self.stages.get_mut(i);
            let running = stage.config.module_config();
            match stage.tasks.swap(part, &running) {
                Ok(old) => swapped.push((i, old)),
                Err(reason) => {
                    refused = Some(format!("stage `{}`: {reason}", part.stage));
                    break;
                }
            }
        }
        if let Some(reason) = refused {
            for (i, old) in swapped {
                let stage = self.stages.get_mut(i);
                let running = stage.config.module_config();
                stage.tasks.swap_back(old, &running);
            }
            tracing::warn!(application = %self.config.application_id, version, "swap refused: {reason}");
            let notice = format!("the swap to version {version} was refused: {reason}");
            self.view.update(|s| s.notice = Some(notice));
            return SwapOutcome::RolledBack(reason);
        }
        for part in prepared.stages {
            let Some(i) = self.stages.named(&part.stage) else { continue };
            let stage = self.stages.get_mut(i);
            tracing::info!(
                application = %self.config.application_id, stage = %stage.name, version, digest = %prepared.digest,
                partitions = stage.tasks.len(), "swapped the module at a commit boundary"
            );
            if let Some(module) = &mut stage.config.module {
                module.config = part.config.into_iter().collect();
            }
            stage.config.outputs = part.outputs;
        }
        // The new module (and its limits) starts with whole batches again.
        self.batch_cap = None;
        self.view.update(|s| {
            (s.version, s.digest) = (Some(version), Some(prepared.digest));
            s.notice = None;
        });
        SwapOutcome::Swapped
    }
}

/// Counts since the pipeline started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub consumed: u64,
    pub produced: u64,
    /// When the first record arrived (after the group join), and when the last commit ended.
    pub first_record: Option<Instant>,
    pub finished: Option<Instant>,
    /// Polled batches with records, commits, and the time spent committing.
    pub batches: u64,
    pub commits: u64,
    pub commit_time: Duration,
}

impl Stats {
    /// Adds what another worker thread did.
    pub fn add(&mut self, other: &Stats) {
        self.consumed += other.consumed;
        self.produced += other.produced;
        self.batches += other.batches;
        self.commits += other.commits;
        self.commit_time += other.commit_time;
        self.first_record = self.first_record.into_iter().chain(other.first_record).min();
        self.finished = self.finished.into_iter().chain(other.finished).max();
    }

    /// Records consumed per second between the first record and the end.
    pub fn throughput(&self) -> Option<f64> {
        let secs = self.finished?.duration_since(self.first_record?).as_secs_f64();
        (secs > 0.0).then(|| self.consumed as f64 / secs)
    }
}
