//! The input side of the loop: polling a batch from the consumer, and seeking it back (to the
//! committed offsets after an abort, or to what a paused pipeline had already fetched).

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};

use super::failure::Failure;
use crate::config::OffsetReset;
use crate::error::Domain;
use crate::kafka::{Consumer, KAFKA_TIMEOUT};

/// Up to `max` messages: waits up to 100 ms for the first, then up to `linger` for the rest,
/// but no longer once `revoking` says partitions were revoked (the group waits for them).
/// A broker connection lost or refused comes back beside them, not as a failure: the consumer
/// reconnects by itself, and nothing needs redoing for it (what the loss breaks, a commit or a
/// send, fails and is retried on its own).
pub(super) fn poll_batch(
    consumer: &Consumer,
    max: usize,
    linger: Duration,
    revoking: impl Fn() -> bool,
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
            Some(Err(KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::FencedInstanceId))) => {
                return Err(Failure::ConsumerLost(anyhow::anyhow!(fatal_consumer(RDKafkaErrorCode::FencedInstanceId))))
            }
            Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                return Err(Failure::Fatal(anyhow::anyhow!(fatal_consumer(code)), Domain::User))
            }
            Some(Err(e)) => {
                if messages.is_empty() {
                    return Err(e.into());
                }
                tracing::warn!("consumer: {e}");
                break;
            }
            None => break,
        }
        if (!messages.is_empty() && Instant::now() >= deadline) || revoking() {
            break;
        }
    }
    Ok((messages, None))
}

/// Why the consumer cannot go on: a fatal error ends its membership, and this pipeline stops,
/// saying what to do (a supervisor's restart, such as Kubernetes', then joins anew).
fn fatal_consumer(code: RDKafkaErrorCode) -> String {
    match code {
        RDKafkaErrorCode::UnreleasedInstanceId => format!(
            "Kafka: {code}: the group still counts this instance id as another member's (a process of it that \
             did not leave cleanly, or one running now). Under group_protocol = \"consumer\" a restart is \
             refused until the broker's session timeout (the group's group.consumer.session.timeout.ms, 45 s by \
             default) has passed; restart after it, or use group_protocol = \"classic\", whose static members \
             take their place back at once. Two running instances must not share an instance_id"
        ),
        RDKafkaErrorCode::FencedInstanceId => format!(
            "Kafka: {code}: the group gave this instance id's place to another member (after a broker \
             failover, or another process joined with the same id: two running instances must not share an \
             instance_id). Nothing past the last commit was written"
        ),
        _ => format!("Kafka: the consumer failed fatally: {code}; nothing past the last commit was written"),
    }
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

/// Seeks each partition in `messages` back to its first message there (a paused pipeline
/// received them), and pauses it again.
pub(super) fn rewind_to(consumer: &Consumer, messages: &[BorrowedMessage<'_>]) -> Result<(), Failure> {
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

/// Seeks every assigned partition (or those in `only`) to its committed offset, or to the reset
/// position (the start, for the repartition topics in `internal`).
pub(super) fn rewind(
    consumer: &Consumer,
    reset: OffsetReset,
    internal: &[String],
    only: Option<&[(String, i32)]>,
) -> Result<(), KafkaError> {
    let assignment = match only {
        None => consumer.assignment()?,
        Some(only) => {
            let mut tpl = TopicPartitionList::new();
            for (topic, partition) in only {
                tpl.add_partition(topic, *partition);
            }
            tpl
        }
    };
    let committed = consumer.committed_offsets(assignment, KAFKA_TIMEOUT)?;
    let reset = match reset {
        OffsetReset::Earliest => Offset::Beginning,
        OffsetReset::Latest => Offset::End,
    };
    let mut seek = TopicPartitionList::new();
    for e in committed.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            // What an earlier stage wrote is never skipped, whatever the inputs' reset.
            _ if internal.iter().any(|t| t == e.topic()) => Offset::Beginning,
            _ => reset,
        };
        seek.add_partition_offset(e.topic(), e.partition(), offset)?;
    }
    if seek.count() > 0 {
        consumer.seek_partitions(seek, KAFKA_TIMEOUT)?;
    }
    Ok(())
}

/// Where each of `partitions` is to be read from once a restore lets it go: its committed
/// offset in `committed`, else the reset position as it is now (the start for the repartition
/// topics in `internal`; for `latest`, the partition's end now, not when the restore is done, so
/// that what arrives meanwhile is read).
pub(super) fn resume_points(
    consumer: &Consumer,
    reset: OffsetReset,
    internal: &[String],
    partitions: &[(String, i32)],
    committed: &crate::query::Positions,
) -> Result<TopicPartitionList, KafkaError> {
    let mut points = TopicPartitionList::new();
    for (topic, partition) in partitions {
        let offset = match committed.get(&(topic.clone(), *partition)) {
            Some(next) => Offset::Offset(*next),
            None if internal.contains(topic) || reset == OffsetReset::Earliest => Offset::Beginning,
            None => Offset::Offset(consumer.fetch_watermarks(topic, *partition, KAFKA_TIMEOUT)?.1),
        };
        points.add_partition_offset(topic, *partition, offset)?;
    }
    Ok(points)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_lost_connection_is_told_apart_from_a_consumer_error() {
        for code in [RDKafkaErrorCode::AllBrokersDown, RDKafkaErrorCode::BrokerTransportFailure] {
            assert!(connection_lost(&KafkaError::MessageConsumption(code)), "{code:?}");
        }
        assert!(!connection_lost(&KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)));
    }
}
