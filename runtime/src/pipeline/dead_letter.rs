//! What a guest error on one record does, as `[errors] on_guest_error` says.
//!
//! `stop` (the default) stops the pipeline at the record. Under `dead-letter` and `skip` the
//! record is marked as poisoned, the work since the last commit is dropped (the transaction
//! aborted, state rolled back, the consumer rewound), and the same records are processed again
//! with the poisoned one set aside: written to the dead-letter topic with why (`dead-letter`),
//! or only counted and logged (`skip`). So the other records of its batch keep their outputs and
//! state changes, those of the failed record are gone, and under exactly-once the dead-letter
//! record commits in the same transaction as everything else: once.

use std::collections::HashMap;

use rdkafka::message::{BorrowedMessage, Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use crate::config::{OnGuestError, PipelineConfig};
use crate::error::{Offsets, ProcessError};
use crate::query::Positions;

/// Headers a dead-letter record carries, beside the original ones.
pub const KIND: &str = "weir.error.kind";
pub const MESSAGE: &str = "weir.error.message";
pub const SOURCE_TOPIC: &str = "weir.source.topic";
pub const SOURCE_PARTITION: &str = "weir.source.partition";
pub const SOURCE_OFFSET: &str = "weir.source.offset";
pub const DIGEST: &str = "weir.module.digest";
/// The stage the record failed in, in a pipeline of several.
pub const STAGE: &str = "weir.stage";
pub const FAILED_AT: &str = "weir.failed.at";
/// Set on a record `weir dlq replay` sent back: where in the dead-letter topic it came from.
pub const REPLAYED_FROM: &str = "weir.replayed.from";
/// The prefix of weir's headers, and what a record's own headers with that prefix are renamed
/// to in its dead-letter copy (`weir.x` becomes `weir.original.x`), so that weir's headers there
/// are weir's alone: a producer cannot choose where its record is replayed to.
const OURS: &str = "weir.";
const ORIGINAL: &str = "weir.original.";

/// Why a record was set aside.
#[derive(Debug, Clone)]
pub struct Poison {
    pub kind: &'static str,
    pub message: String,
    pub at_ms: u64,
}

/// The records to set aside when they come again, by (topic, partition, offset).
#[derive(Debug, Default)]
pub struct Poisoned {
    records: HashMap<(String, i32, i64), Poison>,
}

impl Poisoned {
    /// Marks the record `error` is about; false when the error names no single record (a
    /// timer, a whole batch) or the record was set aside already and failed again.
    pub fn mark(&mut self, error: &ProcessError) -> bool {
        let location = error.location();
        let Offsets::One(offset) = location.offsets else { return false };
        let key = (location.topic.clone(), location.partition, offset);
        if self.records.contains_key(&key) {
            return false;
        }
        let poison = Poison { kind: error.kind(), message: error.to_string(), at_ms: crate::now_ms() };
        self.records.insert(key, poison);
        true
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn get(&self, topic: &str, partition: i32, offset: i64) -> Option<&Poison> {
        if self.records.is_empty() {
            return None;
        }
        self.records.get(&(topic.to_owned(), partition, offset))
    }

    /// Forgets the records a commit has moved past.
    pub fn committed(&mut self, positions: &Positions) {
        self.records.retain(|(topic, partition, offset), _| {
            positions.get(&(topic.clone(), *partition)).is_none_or(|next| *offset >= *next)
        });
    }

    /// Forgets everything (the partitions may have moved).
    pub fn clear(&mut self) {
        self.records.clear();
    }
}

/// What the policy does with a poisoned record, as metrics and logs name it.
pub fn action(policy: OnGuestError) -> &'static str {
    match policy {
        OnGuestError::Stop => "stop",
        OnGuestError::DeadLetter => "dead-letter",
        OnGuestError::Skip => "skip",
    }
}

/// The dead-letter copy of `m`: its key, value, timestamp and headers, and why.
pub fn dead_letter<'a>(
    topic: &'a str,
    m: &'a BorrowedMessage<'a>,
    poison: &Poison,
    digest: &str,
    stage: Option<&str>,
) -> BaseRecord<'a, [u8], [u8]> {
    let mut headers = OwnedHeaders::new();
    let mut renamed = Vec::new();
    for h in m.headers().into_iter().flat_map(|hs| hs.iter()) {
        match h.key.strip_prefix(OURS) {
            Some(rest) => renamed.push((format!("{ORIGINAL}{rest}"), h.value)),
            None => headers = headers.insert(Header { key: h.key, value: h.value }),
        }
    }
    for (key, value) in &renamed {
        headers = headers.insert(Header { key, value: *value });
    }
    let (partition, offset, at) = (m.partition().to_string(), m.offset().to_string(), poison.at_ms.to_string());
    for (key, value) in [
        (KIND, poison.kind),
        (MESSAGE, poison.message.as_str()),
        (SOURCE_TOPIC, m.topic()),
        (SOURCE_PARTITION, partition.as_str()),
        (SOURCE_OFFSET, offset.as_str()),
        (DIGEST, digest),
        (FAILED_AT, at.as_str()),
    ] {
        headers = headers.insert(Header { key, value: Some(value.as_bytes()) });
    }
    if let Some(stage) = stage {
        headers = headers.insert(Header { key: STAGE, value: Some(stage.as_bytes()) });
    }
    copy_of(topic, m, headers)
}

/// The headers a dead letter goes back with: the record's own (`weir.original.x` again as
/// `weir.x`), without weir's, and with [`REPLAYED_FROM`] set to `from`.
fn replayed_headers(m: &BorrowedMessage<'_>, from: &str) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    let mut restored = Vec::new();
    for h in m.headers().into_iter().flat_map(|hs| hs.iter()) {
        if let Some(rest) = h.key.strip_prefix(ORIGINAL) {
            let key = format!("{OURS}{rest}");
            // An earlier replay's mark gives way to this one's.
            if key != REPLAYED_FROM {
                restored.push((key, h.value));
            }
        } else if !h.key.starts_with(OURS) {
            headers = headers.insert(Header { key: h.key, value: h.value });
        }
    }
    for (key, value) in &restored {
        headers = headers.insert(Header { key, value: *value });
    }
    headers.insert(Header { key: REPLAYED_FROM, value: Some(from.as_bytes()) })
}

/// A record to `topic` with `m`'s key, value and timestamp, and `headers`.
fn copy_of<'a>(topic: &'a str, m: &'a BorrowedMessage<'a>, headers: OwnedHeaders) -> BaseRecord<'a, [u8], [u8]> {
    let mut record: BaseRecord<'a, [u8], [u8]> = BaseRecord::to(topic).headers(headers);
    if let Some(key) = m.key() {
        record = record.key(key);
    }
    if let Some(value) = m.payload() {
        record = record.payload(value);
    }
    if let Some(ts) = m.timestamp().to_millis() {
        record = record.timestamp(ts);
    }
    record
}

/// Creates the dead-letter topic (one partition) unless it exists, with however many.
pub fn ensure_topic(config: &PipelineConfig, topic: &str) -> anyhow::Result<()> {
    let spec = crate::kafka::TopicSpec::new("dead-letter", 1, false, false);
    crate::kafka::ensure_topic(config, topic, spec)
}

/// Sends the records of `config`'s dead-letter topic back to the topics and partitions they
/// came from (offsets `from` up to, not including, `until`, in every partition; all by
/// default), each marked with [`REPLAYED_FROM`] so that a second failure shows. Only the
/// pipeline's own inputs are sent to: a dead letter naming another topic (written to the
/// dead-letter topic by someone else) is left there and logged. Returns how many were sent.
pub fn replay(config: &PipelineConfig, from: Option<i64>, until: Option<i64>) -> anyhow::Result<u64> {
    use std::time::{Duration, Instant};

    use anyhow::Context as _;
    use rdkafka::consumer::Consumer as _;
    use rdkafka::producer::{BaseProducer, Producer as _};

    use crate::catchup::{self, Span};

    let topic = config.errors.dead_letter_topic.clone().unwrap_or_else(|| format!("{}-dlq", config.application_id));
    let consumer = catchup::reader(config, "dlq-replay")?;
    let partitions = crate::kafka::partition_count(&consumer, &topic, "dead-letter")?;
    let mut spans = Vec::new();
    for partition in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, crate::kafka::KAFKA_TIMEOUT)
            .with_context(|| format!("cannot read the offsets of `{topic}` partition {partition}"))?;
        let span = Span { partition, start: from.unwrap_or(low).max(low), end: until.unwrap_or(high).min(high) };
        if span.start < span.end {
            spans.push(span);
        }
    }
    if spans.is_empty() {
        return Ok(0);
    }
    catchup::assign(&consumer, &topic, &spans)?;
    let producer: BaseProducer = crate::kafka::base(config)
        .set("enable.idempotence", "true")
        .create()
        .context("cannot create a Kafka producer to replay dead letters")?;
    let mut sent = 0u64;
    let send_back = |i: Option<usize>, m: &BorrowedMessage<'_>| {
        let (partition, offset) = (m.partition(), m.offset());
        // Records from `until` on are not this replay's.
        if i.is_none_or(|i| offset >= spans[i].end) {
            return Ok(());
        }
        let header = |name: &str| {
            m.headers()
                .and_then(|hs| hs.iter().find(|h| h.key == name).and_then(|h| h.value))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let source = header(SOURCE_TOPIC)
            .with_context(|| format!("`{topic}` partition {partition} offset {offset} has no {SOURCE_TOPIC} header"))?;
        if !config.inputs.contains(&source) {
            tracing::warn!(
                topic, partition, offset, source = %source,
                "not replaying a dead letter whose source is not one of the pipeline's inputs"
            );
            return Ok(());
        }
        let source_partition = header(SOURCE_PARTITION).and_then(|p| p.parse::<i32>().ok());
        let from = format!("{topic}:{partition}:{offset}");
        let mut record = copy_of(&source, m, replayed_headers(m, &from));
        if let Some(p) = source_partition {
            record = record.partition(p);
        }
        producer.send(record).map_err(|(e, _)| anyhow::anyhow!("cannot send to `{source}`: {e}"))?;
        // Serves delivery reports, so the producer's queue does not fill up.
        producer.poll(Duration::ZERO);
        sent += 1;
        Ok(())
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let in_time = || {
        anyhow::ensure!(Instant::now() < deadline, "replaying `{topic}` took longer than 5 minutes");
        Ok(true)
    };
    catchup::read_to_end(&consumer, &topic, &spans, "replaying dead letters", send_back, in_time)?;
    producer.flush(crate::kafka::KAFKA_TIMEOUT).context("the replayed records were not all delivered")?;
    tracing::info!(application = %config.application_id, topic, sent, "replayed dead letters");
    Ok(sent)
}
