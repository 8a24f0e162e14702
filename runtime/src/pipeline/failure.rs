//! What a failed step was, whose fault, and how long to wait before trying again.

use std::time::Duration;

use anyhow::anyhow;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::control::View;
use crate::error::Domain;
use crate::error::ProcessError;

/// Why a step failed.
pub(super) enum Failure {
    /// The broker is away or refused a call; retried from the last commit.
    Kafka(anyhow::Error),
    /// The transactional producer failed fatally; a new one takes over, then as [`Failure::Kafka`].
    ProducerLost(anyhow::Error),
    /// Another producer of the same transactional id took over, or the broker aborted a
    /// transaction that outlived its timeout.
    Fenced(KafkaError),
    /// The group moved on while the work was open (a rebalance the offsets' generation missed):
    /// its partitions may be another's; retried from the last commit, as [`Failure::Kafka`].
    Rebalanced(anyhow::Error),
    /// The consumer was fenced out of its group as a static member (a broker failover can do
    /// it, as can another process with the same instance id): a new consumer joins, a few times
    /// at most (see [`super::recovery`]).
    ConsumerLost(anyhow::Error),
    /// The guest failed on a record or a timer.
    Guest(ProcessError),
    /// The guest failed on a batch of `records` as a whole and on none of them alone (see
    /// [`ProcessError::smaller_batch`]): redone in batches of at most `most`.
    WholeBatch { error: ProcessError, records: usize, most: usize },
    /// Nothing to retry: the configuration, a topic, the disk or weir itself is wrong, as the
    /// domain says.
    Fatal(anyhow::Error, Domain),
}

impl Failure {
    /// Whose fault the failure is.
    pub fn domain(&self) -> Domain {
        match self {
            Failure::Kafka(_)
            | Failure::ProducerLost(_)
            | Failure::Fenced(_)
            | Failure::Rebalanced(_)
            | Failure::ConsumerLost(_) => Domain::External,
            Failure::Guest(_) | Failure::WholeBatch { .. } => Domain::User,
            Failure::Fatal(_, domain) => *domain,
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
        let moved = |code| {
            matches!(
                code,
                RDKafkaErrorCode::IllegalGeneration
                    | RDKafkaErrorCode::RebalanceInProgress
                    | RDKafkaErrorCode::UnknownMemberId
                    | RDKafkaErrorCode::FencedInstanceId
            )
        };
        let rebalanced = e.rdkafka_error_code().is_some_and(moved)
            || matches!(&e, KafkaError::Transaction(t) if moved(t.code()))
            || e.to_string().contains("group generation id is not valid");
        if fenced {
            Failure::Fenced(e)
        } else if rebalanced && !fatal {
            Failure::Rebalanced(anyhow!("Kafka: {e}: the group rebalanced while the work was open"))
        } else if fatal {
            Failure::ProducerLost(anyhow!("Kafka: {e}: the transactional producer failed fatally"))
        } else {
            Failure::Kafka(anyhow!("Kafka: {e}"))
        }
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
        let disk = Failure::Fatal(anyhow!("state commit failed"), Domain::External);
        assert_eq!(disk.domain(), Domain::External, "a fatal failure keeps the fault it was made with");
    }

    #[test]
    fn the_group_moving_on_under_the_open_work_is_told_apart_from_other_kafka_trouble() {
        for code in [RDKafkaErrorCode::IllegalGeneration, RDKafkaErrorCode::RebalanceInProgress] {
            let moved = Failure::from(KafkaError::ConsumerCommit(code));
            assert!(matches!(moved, Failure::Rebalanced(_)), "{code:?}");
            assert_eq!(moved.domain(), Domain::External);
        }
        let away = Failure::from(KafkaError::ConsumerCommit(RDKafkaErrorCode::RequestTimedOut));
        assert!(matches!(away, Failure::Kafka(_)));
    }
}
