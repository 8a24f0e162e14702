//! `weir topic`: create a topic, produce JSONL records to it, read it back as JSONL. Enough to
//! feed and watch pipelines from a script without other Kafka tools.
//!
//! Records are partitioned by key as weir partitions its own outputs (murmur2, as the Java
//! clients do), so a topic written here is co-partitioned with weir's outputs of the same keys.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::producer::{DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use crate::jsonl::bytes_value;
use crate::testrun::read_input;

const TIMEOUT: Duration = Duration::from_secs(30);

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Creates `name` with `partitions` partitions; an existing topic with that many is fine.
pub fn create(bootstrap: &str, name: &str, partitions: i32, configs: &[(String, String)]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create()?;
    let mut new = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let results = futures_executor::block_on(admin.create_topics([&new], &AdminOptions::new()))
        .with_context(|| format!("cannot create topic `{name}` at {bootstrap}"))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                let consumer: BaseConsumer = client(bootstrap).create()?;
                let existing = crate::kafka::partition_count(&consumer, name, "the")?;
                if existing != partitions {
                    bail!("topic `{name}` exists with {existing} partitions, not {partitions}");
                }
            }
            Err((_, code)) => bail!("cannot create topic `{name}`: {code}"),
        }
    }
    Ok(())
}

/// Produces the records of a JSONL file (as `weir test` reads them: key, value, headers,
/// timestamp; a `partition` is honoured) to `topic`, idempotently. Returns how many.
pub fn produce(bootstrap: &str, topic: &str, input: &Path) -> anyhow::Result<usize> {
    let records = read_input(input)?;
    let producer: ThreadedProducer<DefaultProducerContext> = client(bootstrap)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()?;
    for (n, r) in records.iter().enumerate() {
        let mut record = r.to_kafka(topic);
        if r.partition_given {
            record = record.partition(r.partition);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => bail!("{}:{}: cannot produce to `{topic}`: {e}", input.display(), n + 1),
            }
        }
    }
    producer.flush(TIMEOUT).with_context(|| format!("delivering to `{topic}`"))?;
    Ok(records.len())
}

/// Reads `topic` from its start (committed records only) and writes each record as a JSON
/// line, until `count` records were read or none came for `idle`. Returns how many.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    count: Option<usize>,
    idle: Duration,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let consumer: BaseConsumer = client(bootstrap)
        .set("group.id", format!("weir-topic-consume-{}", std::process::id()))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()?;
    let partitions = crate::kafka::partition_count(&consumer, topic, "the")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let (mut read, mut last) = (0, Instant::now());
    while count.is_none_or(|c| read < c) && last.elapsed() < idle {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else { continue };
        let m = m.with_context(|| format!("reading `{topic}`"))?;
        let headers: Vec<_> = m
            .headers()
            .map(|hs| hs.iter().map(|h| json!({"key": h.key, "value": bytes_value(h.value)})).collect())
            .unwrap_or_default();
        let line = json!({
            "partition": m.partition(), "offset": m.offset(), "timestamp": m.timestamp().to_millis(),
            "key": bytes_value(m.key()), "value": bytes_value(m.payload()), "headers": headers,
        });
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
        out.flush()?;
        read += 1;
        last = Instant::now();
    }
    Ok(read)
}
