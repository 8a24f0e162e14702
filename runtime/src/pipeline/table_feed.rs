//! Feeding a pipeline's tables from their topics: every partition from offset 0, read to its
//! end before the first input record is processed, then kept current between batches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};

use crate::catchup::{self, Span};
use crate::config::PipelineConfig;
use crate::kafka::{input_partitions, partition_count};
use crate::tables::Tables;

/// Table records applied under one lock while a table loads.
const BATCH: usize = 1024;

/// Most table records applied between two batches, so a busy table cannot starve the inputs.
const PER_STEP: usize = 10_000;

/// One consumer per table topic (so a partition's end-of-partition event names its topic), and
/// the tables they fill.
pub struct TableFeed {
    consumers: Vec<(String, catchup::Reader)>,
    tables: Tables,
}

impl TableFeed {
    /// Checks the tables' topics (co-partitioned ones must have as many partitions as the
    /// inputs) and reads every table to its end. `None` when the pipeline declares no tables.
    pub fn start(config: &PipelineConfig, tables: &Tables) -> anyhow::Result<Option<Self>> {
        if config.tables.is_empty() {
            return Ok(None);
        }
        let started = Instant::now();
        let mut feed = Self { consumers: Vec::new(), tables: tables.clone() };
        // The inputs' partition count, asked for once, when a co-partitioned table needs it.
        let mut inputs = None;
        for (name, table) in &config.tables {
            if feed.consumers.iter().any(|(t, _)| *t == table.topic) {
                continue;
            }
            let first = catchup::reader(config, "tables")?;
            let partitions = partition_count(&first, &table.topic, &format!("table `{name}`"))?;
            if !table.global {
                let inputs = match inputs {
                    Some(n) => n,
                    None => *inputs.insert(input_partitions(config, &first)?),
                };
                if partitions != inputs {
                    bail!(
                        "table `{name}` is co-partitioned with the inputs, but its topic `{}` has {partitions} partitions \
                         and input `{}` has {inputs}; give them the same count and keying, or declare it `global = true`",
                        table.topic,
                        config.inputs[0]
                    );
                }
            }
            let mut spans = Vec::new();
            for partition in 0..partitions {
                let (start, end) =
                    first.fetch_watermarks(&table.topic, partition, Duration::from_secs(30)).with_context(|| {
                        format!("cannot read the offsets of table topic `{}` partition {partition}", table.topic)
                    })?;
                spans.push(Span { partition, start, end });
            }
            let consumer = load(config, &feed.tables, &table.topic, first, spans)?;
            feed.consumers.push((table.topic.clone(), consumer));
        }
        for (name, keys, records, keyless) in feed.tables.sizes() {
            tracing::info!(table = %name, keys, records, keyless, elapsed_ms = started.elapsed().as_millis() as u64, "table caught up");
        }
        Ok(Some(feed))
    }

    /// Applies what the table topics have received since, up to a bound; never waits.
    pub fn poll(&mut self) -> Result<usize, KafkaError> {
        let mut applied = 0;
        for (_, consumer) in &self.consumers {
            while applied < PER_STEP {
                match consumer.poll(Duration::ZERO) {
                    Some(Ok(m)) => {
                        self.tables.apply(m.topic(), m.partition(), m.key(), m.payload());
                        applied += 1;
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => {}
                    Some(Err(e)) => return Err(e),
                    None => break,
                }
            }
        }
        Ok(applied)
    }
}

/// Reads `spans` of `topic` into `tables` with up to [`catchup::READERS`] consumers side by side, `first`
/// one of them, each applying what it reads. Returns a new consumer, assigned every partition
/// from where the reading left it, to keep the tables current.
fn load(
    config: &PipelineConfig,
    tables: &Tables,
    topic: &str,
    first: catchup::Reader,
    spans: Vec<Span>,
) -> anyhow::Result<catchup::Reader> {
    let open: Vec<Span> = spans.iter().copied().filter(|s| s.start < s.end).collect();
    let (readers, shares) = catchup::spread(config, "tables", topic, first, open, |s| s)?;
    let read = |(reader, share): (&catchup::Reader, Vec<Span>), stop: &AtomicBool| {
        // Copied out of the messages here, and applied a batch at a time: the two readers share
        // the tables' lock.
        let mut batch = Vec::with_capacity(BATCH);
        let collect = |_, m: &BorrowedMessage<'_>| {
            batch.push((m.partition(), m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)));
            if batch.len() >= BATCH {
                tables.apply_all(topic, batch.drain(..));
            }
            Ok(())
        };
        let done = catchup::read_to_end(reader, topic, &share, "loading a table", collect, || {
            Ok(!stop.load(Ordering::Relaxed))
        });
        tables.apply_all(topic, batch);
        done
    };
    catchup::side_by_side(readers.iter().zip(shares).collect(), read, |_| Ok(()))
        .with_context(|| format!("reading table topic `{topic}`"))?;
    // Where each partition's reading ended: the records before are in the tables.
    let mut reached = HashMap::new();
    for reader in &readers {
        for e in reader.position()?.elements() {
            if let Some(at) = e.offset().to_raw() {
                reached.insert(e.partition(), at);
            }
        }
    }
    let mut live = TopicPartitionList::new();
    for span in &spans {
        let at = reached.get(&span.partition).copied().unwrap_or(span.start);
        live.add_partition_offset(topic, span.partition, Offset::Offset(at))?;
    }
    readers.into_iter().for_each(catchup::close_aside);
    // A fresh consumer follows the topic: librdkafka up to 2.15 can abort the process when an
    // assignment replaces one whose partitions are still being stopped (it stops a partition
    // twice, then asserts that it was started: librdkafka issue 5573). Reassigning the first
    // reader did so once in CI (the restore benchmark's table load).
    let follower = catchup::reader(config, "tables")?;
    follower.assign(&live).with_context(|| format!("cannot follow table topic `{topic}`"))?;
    Ok(follower)
}
