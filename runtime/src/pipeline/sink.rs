//! The output side of the loop: every output a guest returns goes to the topic its name is
//! configured to, keyed and stamped; a name the pipeline does not configure stops it, naming
//! the record the output answers.

use std::time::Duration;

use anyhow::anyhow;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use super::failure::Failure;
use crate::config::PipelineConfig;
use crate::engine::Fired;
use crate::error::Domain;
use crate::kafka::Producer;
use crate::record::{Batch, Outputs};

/// What outputs answer: records of a batch, or timers that fired on a partition.
pub(super) enum Answering<'a> {
    Batch(&'a Batch),
    Timers(&'a Fired, i32),
}

impl Answering<'_> {
    fn timestamp(&self, source: usize) -> Option<i64> {
        match self {
            Answering::Batch(batch) => batch.timestamp(source),
            Answering::Timers(fired, _) => fired.timestamp(source),
        }
    }

    fn describe(&self, source: usize) -> String {
        match self {
            Answering::Batch(b) => {
                format!("topic `{}` partition {} offset {}", b.topic(), b.partition(), b.offset(source).unwrap_or(-1))
            }
            Answering::Timers(fired, partition) => match fired.timers.get(source) {
                Some(t) => format!("a {:?} timer at {} on partition {partition}", t.clock, t.at),
                None => format!("a timer on partition {partition}"),
            },
        }
    }
}

/// Produces every output to its topic, keyed, with the timestamp of what it answers unless the
/// guest set one.
pub(super) fn produce(
    producer: &Producer,
    config: &PipelineConfig,
    outputs: &Outputs,
    answering: &Answering<'_>,
) -> Result<(), Failure> {
    for o in outputs.iter() {
        let name = o.topic().unwrap_or("default");
        let topic = config.outputs.get(name).ok_or_else(|| {
            let known: Vec<&str> = config.outputs.keys().map(String::as_str).collect();
            Failure::Fatal(
                anyhow!(
                    "module `{}` routed a record (answering {}) to output `{name}`, \
                 which the pipeline does not configure (outputs: {})",
                    config.module.as_ref().map_or_else(|| config.store_name().into(), |m| m.path.display().to_string()),
                    answering.describe(o.source()),
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
                Domain::User,
            )
        })?;
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        let count = o.headers().count();
        if count > 0 {
            let mut headers = OwnedHeaders::new_with_capacity(count);
            for (k, v) in o.headers() {
                headers = headers.insert(Header { key: &String::from_utf8_lossy(k), value: Some(v) });
            }
            record = record.headers(headers);
        }
        if let Some(key) = o.key() {
            record = record.key(key);
        }
        if let Some(value) = o.value() {
            record = record.payload(value);
        }
        if let Some(ts) = o.timestamp().or_else(|| answering.timestamp(o.source())) {
            record = record.timestamp(ts);
        }
        send(producer, record)?;
    }
    Ok(())
}

/// Sends one record, waiting while the producer's queue is full.
pub(super) fn send<'a>(producer: &Producer, mut record: BaseRecord<'a, [u8], [u8]>) -> Result<(), Failure> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}
