//! What the loop does when the group moves partitions (the consumer's callback only notes it,
//! see [`kafka::ConsumerCtx`]).
//!
//! - **Assigned**: the new partitions' stores are restored beside the loop ([`super::restore`]),
//!   their records held back meanwhile, and their tasks open when that is done; the tasks
//!   already open are not touched and go on processing.
//! - **Revoked**: the partitions stay this instance's until the open work is committed (their
//!   records with everyone else's, in one transaction under exactly-once); then their tasks
//!   close, queries stop reading them, and they are handed back. The other tasks keep their
//!   instances, stores and uncommitted nothing: they go on with the next poll.
//! - **Lost** (the session timed out, the member was fenced): the callback already aborted the
//!   open work, since the partitions may be another's; every task closes and the partitions
//!   still assigned reopen from their committed offsets.

use rdkafka::consumer::Consumer as _;

use super::failure::Failure;
use super::source;
use super::work::{Pipeline, Work};
use crate::config::OffsetReset;
use crate::kafka::{self, Consumer};

impl Work {
    /// After a poll: acts on partitions lost or assigned by the callbacks it served. True when
    /// the batch in hand must be dropped (it may hold records of lost partitions; they are read
    /// again from the committed offsets).
    pub(super) fn follow_assignment(&mut self, consumer: &Consumer) -> Result<bool, Failure> {
        let lost = self.shared.take_lost();
        if lost {
            let closed = self.stages.close_all(&self.view);
            self.count_rebalance(0, closed);
            self.poisoned.clear();
            self.view.update(|s| s.restored = false);
        }
        let assigned = self.shared.take_assigned();
        if !assigned.is_empty() || self.stages.reopen_due() {
            if self.paused {
                consumer.pause(&consumer.assignment()?)?;
            }
            let opened = self.stages.open_assigned(&self.view, &self.metrics, consumer)?;
            self.count_rebalance(opened, 0);
            let internal: Vec<&(String, i32)> =
                assigned.iter().filter(|(topic, _)| self.stages.internal().contains(topic)).collect();
            if self.config.auto_offset_reset == OffsetReset::Latest && !internal.is_empty() {
                // The consumer's reset applies to every topic; a repartition topic is read from
                // its start instead when nothing of it was committed. Only the new partitions
                // are sought: the others may have work in hand past their committed offsets.
                let only: Vec<(String, i32)> = internal.into_iter().cloned().collect();
                source::rewind(consumer, OffsetReset::Latest, self.stages.internal(), Some(&only))?;
            }
            let restoring = self.stages.restoring();
            self.view.update(|s| s.restored = !restoring);
            self.set_phase(self.settled_phase());
            say_assignment(consumer, &self.config.application_id);
        }
        Ok(lost)
    }

    /// Before a poll: opens the tasks whose restore is done and lets their records come.
    pub(super) fn finish_restores(&mut self, consumer: &Consumer) -> Result<(), Failure> {
        if !self.stages.restoring() {
            return Ok(());
        }
        let opened = self.stages.finish_restores(&self.view, &self.metrics, consumer, self.paused)?;
        if opened > 0 {
            let restoring = self.stages.restoring();
            self.view.update(|s| s.restored = !restoring);
            self.set_phase(self.settled_phase());
        }
        Ok(())
    }

    /// Counts a rebalance that opened and closed these many tasks, in the status.
    fn count_rebalance(&self, opened: usize, closed: usize) {
        self.view.update(|s| {
            if let Some(group) = &mut s.group {
                group.rebalances += 1;
                group.tasks_opened += opened as u64;
                group.tasks_closed += closed as u64;
            }
        });
    }
}

impl Pipeline {
    /// Hands back the partitions the group revoked, if it did: commits the open work, closes
    /// their tasks, and releases them. If the commit fails, the work since the last one is
    /// dropped (as after any failed commit) before they go, and the failure is returned.
    pub(super) fn release_revoked(&mut self) -> Result<(), Failure> {
        let revoked = self.work.shared.take_revoked();
        if revoked.is_empty() {
            return Ok(());
        }
        let committed = self.commit_now();
        if committed.is_err() {
            self.abandon();
        }
        let closed = self.work.stages.close(&revoked, &self.work.view);
        self.work.count_rebalance(0, closed);
        let released = kafka::release(&self.consumer, &revoked);
        tracing::info!(
            application = %self.work.config.application_id, partitions = revoked.len(), tasks = closed,
            committed = committed.is_ok(), "released the revoked partitions"
        );
        say_assignment(&self.consumer, &self.work.config.application_id);
        committed?;
        Ok(released?)
    }
}

/// Logs how many partitions (of every topic read) this instance holds after a rebalance.
fn say_assignment(consumer: &Consumer, application: &str) {
    let partitions = consumer.assignment().map(|a| a.count()).unwrap_or(0);
    tracing::info!(partitions, application, "assignment now");
}
