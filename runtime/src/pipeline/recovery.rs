//! What the loop does at a commit boundary and when a step fails.
//!
//! A commit writes the tasks' state changes to the changelog, commits the transaction (outputs,
//! changelog records and offsets, as the guarantee says), and then applies the state changes to
//! the stores. A failed step drops the work since the last commit (abort, roll back, rewind).
//!
//! Kafka trouble is retried from the last commit, with backoff (a new producer when the old one
//! failed fatally). A guest error stops the pipeline, or sets its record aside as the pipeline's
//! `[errors]` policy says; a batch that fails as a whole though each of its records passes
//! alone is redone in smaller batches. A fenced producer stops, unless the broker fenced it for
//! a transaction that outlived its timeout (a broker away that long), a few times in a row at
//! most. A topic deleted or repartitioned underneath is not retried: the error says which.

use std::time::Instant;

use anyhow::anyhow;

use super::failure::{backoff, pause, Failure};
use super::work::Pipeline;
use super::{dead_letter, source};
use crate::config::OnGuestError;
use crate::error::{Domain, ProcessError};

/// How many transactions in a row the broker may abort for their length before the pipeline
/// stops, saying so.
const TIMED_OUT_RETRIES: u32 = 3;

/// How many times in [`CONSUMER_RENEWAL_WINDOW`] a consumer fenced out of its group is replaced
/// before the pipeline stops: a broker failover may fence it once; another live process with
/// the same instance id fences it again and again (and its transactional producer fences this
/// one's, which stops it too).
const CONSUMER_RENEWALS: usize = 3;
const CONSUMER_RENEWAL_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// Kafka errors in a row, and what the loop had done when the last one came.
#[derive(Default)]
pub(super) struct Retries {
    attempt: u32,
    commits_then: u64,
    /// Transactions the broker aborted for outliving `transaction.timeout.ms`, in a row.
    timed_out: u32,
    /// When consumers fenced out of the group were replaced.
    consumers: Vec<Instant>,
}

impl Pipeline {
    /// After a step that went well: if retries were under way and a commit has gone through
    /// since, Kafka answers again.
    pub(super) fn succeeded(&mut self, retries: &mut Retries) {
        if retries.attempt > 0 && self.work.stats.commits > retries.commits_then {
            tracing::info!(application = %self.work.config.application_id, retries = retries.attempt, "Kafka answers again");
            *retries = Retries { consumers: std::mem::take(&mut retries.consumers), ..Retries::default() };
            self.work.view.update(|s| s.notice = None);
        }
    }

    /// Handles a failed step: sets a record aside, or recovers and waits before the next try,
    /// or returns the error the pipeline stops with (published in its status).
    pub(super) fn failed(&mut self, failure: Failure, retries: &mut Retries) -> anyhow::Result<()> {
        let domain = failure.domain();
        if let Failure::Kafka(e) | Failure::ProducerLost(e) | Failure::Rebalanced(e) = &failure {
            if let Some(changed) = self.work.stages.changed() {
                return Err(self.fail(anyhow!("{changed} (the Kafka error was: {e:#})"), Domain::User));
            }
        }
        let e = match failure {
            Failure::Kafka(e) | Failure::Rebalanced(e) => e,
            Failure::ConsumerLost(e) => {
                retries.consumers.retain(|at| at.elapsed() < CONSUMER_RENEWAL_WINDOW);
                if retries.consumers.len() >= CONSUMER_RENEWALS {
                    let e = e.context(format!(
                        "the consumer was fenced out of its group {CONSUMER_RENEWALS} times in {} minutes",
                        CONSUMER_RENEWAL_WINDOW.as_secs() / 60
                    ));
                    return Err(self.fail(e, domain));
                }
                retries.consumers.push(Instant::now());
                if let Err(renewal) = self.renew_consumer() {
                    return Err(self.fail(renewal.context(format!("{e:#}")), domain));
                }
                e
            }
            Failure::ProducerLost(e) => {
                self.work.txn.lose_producer();
                e
            }
            Failure::WholeBatch { error, records, most } => {
                self.smaller_batches(&error, records, most);
                return Ok(());
            }
            Failure::Guest(e) if self.set_aside(&e) => return Ok(()),
            Failure::Guest(e) => return Err(self.fail(e.into(), domain)),
            // A broker that was away longer than the timeout aborts the transaction too: a new
            // producer resumes, unless it keeps happening (a slow module).
            Failure::Fenced(e) => match self.work.txn.fenced(e) {
                (e, true) if retries.timed_out < TIMED_OUT_RETRIES => {
                    retries.timed_out += 1;
                    self.work.txn.lose_producer();
                    e
                }
                (e, _) => return Err(self.fail(e, domain)),
            },
            Failure::Fatal(e, _) => return Err(self.fail(e, domain)),
        };
        retries.attempt += 1;
        retries.commits_then = self.work.stats.commits;
        let wait = backoff(retries.attempt);
        let attempt = retries.attempt;
        tracing::warn!(
            attempt,
            wait_ms = wait.as_millis() as u64,
            "{e:#}; aborting, and resuming from the last commit after the wait"
        );
        self.work.view.update(|s| {
            s.notice = Some(format!(
                "waiting for Kafka: attempt {attempt} failed ({e:#}); retrying from the last commit in {} ms",
                wait.as_millis()
            ))
        });
        self.recover();
        pause(&self.work.view, wait);
        Ok(())
    }

    /// Stops on `e`, whose fault is `domain`: drops the open work and publishes the failure.
    pub(super) fn fail(&mut self, e: anyhow::Error, domain: Domain) -> anyhow::Error {
        self.abandon();
        self.work.set_phase(super::control::Phase::Failed);
        let view = &self.work.view;
        view.update(|s| (s.error, s.fault) = (Some(format!("{e:#}")), Some(domain)));
        view.queryable.close("the pipeline failed (see its status)");
        e
    }

    /// After a batch of `records` failed as a whole though none of them fails alone: from now
    /// on the guest gets at most `most` records a call, and the work since the last commit is
    /// redone so. Nothing is skipped, whatever the policy: no record is at fault.
    fn smaller_batches(&mut self, e: &ProcessError, records: usize, most: usize) {
        self.work.batch_cap = Some(most);
        let message = format!(
            "{e}; none of its {records} records fails alone, so together they were too much for the module's \
             limits: redoing the work since the last commit in batches of at most {most} records (lower \
             batch_size, or raise memory_limit_mib, deadline_ms or fuel)"
        );
        tracing::warn!(application = %self.work.config.application_id, "{message}");
        self.work.view.update(|s| s.notice = Some(message));
        self.recover();
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
            application = %self.work.config.application_id, action = dead_letter::action(policy),
            "{e}; redoing the work since the last commit without this record"
        );
        self.recover();
        true
    }
}

impl Pipeline {
    /// Commits when the interval has passed since the last commit ended (a commit itself can
    /// take as long as the interval; counting from its start would commit back to back).
    pub(super) fn commit_if_due(&mut self) -> Result<(), Failure> {
        if self.last_commit.elapsed() >= self.work.config.commit_interval() {
            self.commit_now()?;
        }
        self.work.stages.trim_if_due();
        Ok(())
    }

    /// Commits, counting it.
    pub(super) fn commit_now(&mut self) -> Result<(), Failure> {
        let started = Instant::now();
        let result = self.commit();
        self.last_commit = Instant::now();
        if result.is_ok() {
            let work = &mut self.work;
            work.stats.commits += 1;
            work.stats.commit_time += started.elapsed();
            work.metrics.commits.inc();
            work.metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
        }
        result
    }

    /// Commits the work since the last commit: state changes to the changelog, outputs and
    /// offsets to Kafka as the guarantee says, then state to the local stores.
    pub(super) fn commit(&mut self) -> Result<(), Failure> {
        let work = &mut self.work;
        if work.txn.is_empty() && work.stages.idle() {
            return Ok(());
        }
        work.stages.write_changelog(work.txn.producer())?;
        let committed = work.txn.commit(&self.consumer, &mut work.health)?;
        let (stages, producer) = (&mut work.stages, work.txn.producer());
        work.view.queryable.commit(&committed, || stages.commit(producer, &committed))?;
        work.poisoned.committed(&committed);
        Ok(())
    }

    /// After a Kafka error or a record set aside: abort, roll back, and rewind to the committed
    /// offsets.
    pub(super) fn recover(&mut self) {
        self.abandon();
        self.rewind_owed = true;
        match source::rewind(&self.consumer, self.work.config.auto_offset_reset, self.work.stages.internal(), None) {
            Ok(()) => self.rewind_owed = false,
            Err(e) => tracing::warn!(
                "rewinding to the committed offsets failed: {e}; no record is processed before it is done"
            ),
        }
    }

    /// Replaces a consumer fenced out of its group: the open work is dropped and every task
    /// closed (the partitions may be another's), and a new consumer joins; the partitions it is
    /// given reopen from their committed offsets.
    fn renew_consumer(&mut self) -> anyhow::Result<()> {
        self.abandon();
        let closed = self.work.stages.close_all(&self.work.view);
        self.work.poisoned.clear();
        self.work.view.update(|s| s.restored = false);
        let shared = self.work.shared.clone();
        let (_, _, _) = (shared.take_lost(), shared.take_assigned(), shared.take_revoked());
        tracing::warn!(
            application = %self.work.config.application_id, tasks = closed,
            "the consumer was fenced out of its group; a new one joins"
        );
        let plan = crate::kafka::GroupPlan::of(&self.work.config, self.work.stages.copartitioned());
        let consumer = crate::kafka::consumer(&self.work.config, &self.work.stages.inputs(), plan, shared.clone())?;
        // The old consumer's close must not wait on the loop for a revocation.
        shared.closing.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(std::mem::replace(&mut self.consumer, consumer));
        shared.closing.store(false, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Drops the work since the last commit.
    pub(super) fn abandon(&mut self) {
        if self.work.txn.abort() {
            self.work.metrics.aborted.inc();
        }
        self.work.stages.rollback();
    }
}
