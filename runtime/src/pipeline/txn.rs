//! The transaction, in one place: one type per guarantee behind one interface.
//!
//! - [`ExactlyOnce`]: every commit interval is one Kafka transaction holding the outputs, the
//!   changelog records and the consumed offsets (sent with the consumer's group metadata,
//!   KIP-447); the state writes of the interval are applied to the stores when it commits. On a
//!   Kafka error the transaction is aborted, state rolled back, and the partitions rewound to
//!   their committed offsets.
//! - [`AtLeastOnce`]: offsets are committed after every output before them is acknowledged.
//! - [`AtMostOnce`]: offsets are committed before the records are processed.
//!
//! The guarantee is matched once, in [`for_guarantee`]. The rebalance callback aborts through
//! the narrow [`kafka::Shared`] handle, which this module and the callback both hold.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};

use super::control::View;
use super::failure::Failure;
use super::health::Health;
use crate::config::{Guarantee, PipelineConfig};
use crate::kafka::{self, Consumer, Producer, Shared, KAFKA_TIMEOUT};
use crate::query::Positions;

/// How long a Kafka call may wait before the status says that it waits.
const SAY_WAITING: Duration = Duration::from_secs(2);

/// What every guarantee does with the work since the last commit.
pub(super) trait Transaction: Send {
    /// Where outputs and changelog records go.
    fn producer(&self) -> &Arc<Producer>;
    /// Before a poll's records are processed.
    fn before_processing(&mut self, _consumer: &Consumer, _messages: &[BorrowedMessage<'_>]) -> Result<(), Failure> {
        Ok(())
    }
    /// Before the first output of the work: opens a transaction where the guarantee has them.
    fn begin(&mut self) -> Result<(), Failure> {
        Ok(())
    }
    /// Books the next offset to consume of a partition, for the next commit.
    fn add_offset(&self, topic: &str, partition: i32, next: i64) {
        self.shared().book().offsets.insert((topic.to_owned(), partition), next);
    }
    /// Whether there is nothing to commit: no offset booked, no transaction open.
    fn is_empty(&self) -> bool {
        let book = self.shared().book();
        book.offsets.is_empty() && book.txn.is_none()
    }
    /// Commits the outputs sent (changelog records included) and the booked offsets; returns
    /// the offsets committed.
    fn commit(&mut self, consumer: &Consumer, health: &mut Health) -> Result<Positions, Failure>;
    /// Drops the work since the last commit; true when a transaction was aborted.
    fn abort(&mut self) -> bool {
        let shared = self.shared();
        let mut book = shared.book();
        let aborted = shared.abort(&mut book);
        book.offsets.clear();
        aborted
    }
    /// The producer failed fatally or was fenced for a transaction's length: the next
    /// [`Transaction::begin`] starts a new one.
    fn lose_producer(&self) {
        self.shared().producer_lost.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    /// Why the producer was fenced, and whether a new one may resume (the broker aborted a
    /// transaction that outlived its timeout) or not (another instance took over).
    fn fenced(&self, e: KafkaError) -> (anyhow::Error, bool) {
        (anyhow!("Kafka: {e}"), false)
    }
    fn shared(&self) -> &Shared;
}

/// The transaction of `config`'s guarantee, over `producer`.
pub(super) fn for_guarantee(
    config: &PipelineConfig,
    changelogs: Vec<String>,
    shared: Arc<Shared>,
    producer: Arc<Producer>,
    view: Arc<View>,
) -> Box<dyn Transaction> {
    match config.guarantee {
        Guarantee::ExactlyOnce => Box::new(ExactlyOnce { config: config.clone(), changelogs, shared, producer, view }),
        Guarantee::AtLeastOnce => Box::new(AtLeastOnce { shared, producer }),
        Guarantee::AtMostOnce => Box::new(AtMostOnce { shared, producer }),
    }
}

/// Outputs, changelog records and offsets in one Kafka transaction per commit interval.
pub(super) struct ExactlyOnce {
    /// What a new producer is made from (the transactional id), and the timeout it runs under.
    config: PipelineConfig,
    /// Every stage's changelog.
    changelogs: Vec<String>,
    shared: Arc<Shared>,
    producer: Arc<Producer>,
    view: Arc<View>,
}

impl ExactlyOnce {
    /// Replaces a producer that failed fatally (not fenced) with a new one of the same
    /// transactional id, whose start aborts whatever the old one left open.
    fn renew_producer(&mut self) -> Result<(), Failure> {
        tracing::info!(application = %self.config.application_id, "starting a new transactional producer");
        self.producer = kafka::producer(&self.config, &self.changelogs).map_err(Failure::Kafka)?;
        self.shared.set_producer(self.producer.clone());
        Ok(())
    }

    /// Adds the booked offsets to the open transaction, saying so in the status when the group
    /// coordinator is slow to take them.
    fn send_offsets(
        &self,
        consumer: &Consumer,
        offsets: TopicPartitionList,
        health: &mut Health,
    ) -> Result<(), Failure> {
        let metadata = consumer
            .group_metadata()
            .ok_or_else(|| Failure::Kafka(anyhow!("the consumer has no group metadata yet")))?;
        let view = &self.view;
        let mut said = false;
        let sent = kafka::send_offsets(&self.producer, offsets, metadata, KAFKA_TIMEOUT, |waited| {
            view.beat();
            if waited >= SAY_WAITING && !said {
                said = true;
                tracing::warn!(
                    "the group coordinator has not taken this transaction's offsets for {} ms",
                    waited.as_millis()
                );
                view.update(|s| {
                    s.notice = Some(format!(
                        "waiting for Kafka: the group coordinator has not taken this transaction's offsets since \
                         {} s ago; it is given {} s before a new producer takes over",
                        waited.as_secs(),
                        KAFKA_TIMEOUT.as_secs()
                    ))
                });
            }
            !view.stopping()
        });
        // Cleared once records come again or a broker answers the idle probe.
        health.trouble |= said;
        match sent {
            kafka::Sent::Returned(result) => Ok(result?),
            kafka::Sent::Abandoned(waited) => Err(Failure::ProducerLost(anyhow!(
                "Kafka: the consumed offsets were not added to the transaction after {} ms (the group \
                 coordinator is away, and librdkafka does not time this call out: librdkafka #5456); a new \
                 producer takes over, which aborts the transaction",
                waited.as_millis()
            ))),
        }
    }
}

impl Transaction for ExactlyOnce {
    fn producer(&self) -> &Arc<Producer> {
        &self.producer
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn begin(&mut self) -> Result<(), Failure> {
        if self.shared.producer_lost.load(std::sync::atomic::Ordering::SeqCst) {
            self.renew_producer()?;
        }
        let mut book = self.shared.book();
        if book.txn.is_none() {
            self.producer.begin_transaction()?;
            book.txn = Some(Instant::now());
        }
        Ok(())
    }

    fn commit(&mut self, consumer: &Consumer, health: &mut Health) -> Result<Positions, Failure> {
        let offsets = {
            let book = self.shared.book();
            (!book.offsets.is_empty()).then(|| book.positions()).transpose()?
        };
        if let Some(offsets) = offsets {
            self.send_offsets(consumer, offsets, health)?;
        }
        kafka::flush(&self.producer, KAFKA_TIMEOUT)?;
        self.producer.commit_transaction(KAFKA_TIMEOUT)?;
        let mut book = self.shared.book();
        book.txn = None;
        Ok(std::mem::take(&mut book.offsets))
    }

    fn fenced(&self, e: KafkaError) -> (anyhow::Error, bool) {
        let limit = self.config.transaction_timeout();
        match self.shared.book().txn.map(|began| began.elapsed()) {
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
}

/// Waits for every output sent to be acknowledged, failing when a delivery did.
fn flush_outputs(producer: &Producer) -> Result<(), Failure> {
    kafka::flush(producer, KAFKA_TIMEOUT)?;
    if let Some((count, last)) = producer.context().take_failures() {
        return Err(Failure::Kafka(anyhow!("{count} records were not delivered (last: {last})")));
    }
    Ok(())
}

/// Offsets committed once the outputs before them are acknowledged.
pub(super) struct AtLeastOnce {
    shared: Arc<Shared>,
    producer: Arc<Producer>,
}

impl Transaction for AtLeastOnce {
    fn producer(&self) -> &Arc<Producer> {
        &self.producer
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn commit(&mut self, consumer: &Consumer, _: &mut Health) -> Result<Positions, Failure> {
        flush_outputs(&self.producer)?;
        let positions = self.shared.book().positions()?;
        consumer.commit(&positions, CommitMode::Sync)?;
        Ok(std::mem::take(&mut self.shared.book().offsets))
    }
}

/// Offsets committed before the records are processed.
pub(super) struct AtMostOnce {
    shared: Arc<Shared>,
    producer: Arc<Producer>,
}

impl Transaction for AtMostOnce {
    fn producer(&self) -> &Arc<Producer> {
        &self.producer
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn before_processing(&mut self, consumer: &Consumer, messages: &[BorrowedMessage<'_>]) -> Result<(), Failure> {
        let mut tpl = TopicPartitionList::new();
        for m in messages {
            tpl.add_partition_offset(m.topic(), m.partition(), Offset::Offset(m.offset() + 1))?;
        }
        consumer.commit(&tpl, CommitMode::Sync)?;
        Ok(())
    }

    fn commit(&mut self, _: &Consumer, _: &mut Health) -> Result<Positions, Failure> {
        flush_outputs(&self.producer)?;
        Ok(std::mem::take(&mut self.shared.book().offsets))
    }
}
