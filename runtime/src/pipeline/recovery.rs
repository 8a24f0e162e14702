//! What the loop does when a step fails: whose fault it was, whether to try again, and how long
//! to wait first.
//!
//! Kafka trouble is retried from the last commit, with backoff (a new producer when the old one
//! failed fatally). A guest error stops the pipeline, or sets its record aside as the pipeline's
//! `[errors]` policy says. A fenced producer stops, unless the broker fenced it for a transaction
//! that outlived its timeout (a broker away that long), a few times in a row at most. A topic
//! deleted or repartitioned underneath is not retried: the error says which.

use std::time::Duration;

use anyhow::anyhow;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::control::View;
use super::dead_letter;
use super::Pipeline;
use crate::config::OnGuestError;
use crate::error::{Domain, ProcessError};

/// Why a step failed.
pub(super) enum Failure {
    /// The broker is away or refused a call; retried from the last commit.
    Kafka(anyhow::Error),
    /// The transactional producer failed fatally; a new one takes over, then as [`Failure::Kafka`].
    ProducerLost(anyhow::Error),
    /// Another producer of the same transactional id took over, or the broker aborted a
    /// transaction that outlived its timeout.
    Fenced(KafkaError),
    /// The guest failed on a record or a timer.
    Guest(ProcessError),
    /// Nothing to retry: the configuration, a topic, or weir itself is wrong.
    Fatal(anyhow::Error),
}

impl Failure {
    /// Whose fault the failure is.
    pub fn domain(&self) -> Domain {
        match self {
            Failure::Kafka(_) | Failure::ProducerLost(_) | Failure::Fenced(_) => Domain::External,
            Failure::Guest(_) => Domain::User,
            Failure::Fatal(_) => Domain::User,
        }
    }
}

impl From<KafkaError> for Failure {
    fn from(e: KafkaError) -> Self {
        let fencing = |code| {
            matches!(
                code,
                RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch
            )
        };
        let fenced = e.rdkafka_error_code().is_some_and(fencing)
            || matches!(&e, KafkaError::Transaction(t) if fencing(t.code()));
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

/// How many transactions in a row the broker may abort for their length before the pipeline
/// stops, saying so.
const TIMED_OUT_RETRIES: u32 = 3;

/// Kafka errors in a row, and what the loop had done when the last one came.
#[derive(Default)]
pub(super) struct Retries {
    attempt: u32,
    commits_then: u64,
    /// Transactions the broker aborted for outliving `transaction.timeout.ms`, in a row.
    timed_out: u32,
}

impl Pipeline {
    /// After a step that went well: if retries were under way and a commit has gone through
    /// since, Kafka answers again.
    pub(super) fn succeeded(&mut self, retries: &mut Retries) {
        if retries.attempt > 0 && self.work.stats.commits > retries.commits_then {
            tracing::info!(application = %self.work.config.application_id, retries = retries.attempt, "Kafka answers again");
            *retries = Retries::default();
            self.work.view.update(|s| s.notice = None);
        }
    }

    /// Handles a failed step: sets a record aside, or recovers and waits before the next try,
    /// or returns the error the pipeline stops with (published in its status).
    pub(super) fn failed(&mut self, failure: Failure, retries: &mut Retries) -> anyhow::Result<()> {
        let domain = failure.domain();
        if let Failure::Kafka(e) | Failure::ProducerLost(e) = &failure {
            if let Some(changed) = self.work.layout.changed(&self.work.config) {
                return Err(self.fail(anyhow!("{changed} (the Kafka error was: {e:#})"), Domain::User));
            }
        }
        let e = match failure {
            Failure::Kafka(e) => e,
            Failure::ProducerLost(e) => {
                self.work.txn.lose_producer();
                e
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
            Failure::Fatal(e) => return Err(self.fail(e, domain)),
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
        self.work.set_phase(super::Phase::Failed);
        let view = &self.work.view;
        view.update(|s| (s.error, s.fault) = (Some(format!("{e:#}")), Some(domain)));
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
            application = %self.work.config.application_id, action = dead_letter::action(policy),
            "{e}; redoing the work since the last commit without this record"
        );
        self.recover();
        true
    }
}

/// How long to wait before retry `attempt` (from 1) after a Kafka error: 200 ms doubling up to
/// 10 s, each drawn between half and all of that (jitter, so instances do not retry in step).
pub(super) fn backoff(attempt: u32) -> Duration {
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

/// Sleeps `how_long`, or less when told to stop, beating the heartbeat meanwhile.
pub(super) fn pause(view: &View, how_long: Duration) {
    let until = std::time::Instant::now() + how_long;
    while std::time::Instant::now() < until && !view.stopping() {
        view.beat();
        std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(std::time::Instant::now())));
    }
}

#[cfg(test)]
mod test {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    use super::*;

    #[test]
    fn backoff_doubles_from_200_ms_to_a_ceiling_of_10_s_with_jitter_below_it() {
        for attempt in 1..=20u32 {
            let ceiling = Duration::from_millis(200 * (1u64 << (attempt - 1).min(6))).min(Duration::from_secs(10));
            for _ in 0..50 {
                let wait = backoff(attempt);
                assert!(
                    wait >= ceiling / 2 && wait <= ceiling,
                    "attempt {attempt}: {wait:?} outside {ceiling:?}/2..={ceiling:?}"
                );
            }
        }
        assert!(backoff(u32::MAX) <= Duration::from_secs(10));
    }

    #[test]
    fn backoff_draws_differ_so_instances_do_not_retry_in_step() {
        let draws: std::collections::BTreeSet<Duration> = (0..20).map(|_| backoff(5)).collect();
        assert!(draws.len() > 1, "twenty draws were all {draws:?}");
    }

    #[test]
    fn a_fencing_error_is_told_apart_from_trouble_worth_retrying() {
        let fenced = KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced);
        assert!(matches!(Failure::from(fenced), Failure::Fenced(_)));
        let epoch = KafkaError::MessageProduction(RDKafkaErrorCode::InvalidProducerEpoch);
        assert!(matches!(Failure::from(epoch), Failure::Fenced(_)));
        let away = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
        let failure = Failure::from(away);
        assert!(matches!(failure, Failure::Kafka(_)));
        assert_eq!(failure.domain(), Domain::External);
    }
}
