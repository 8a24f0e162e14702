//! Feeding a pipeline's tables from their topics: every partition from offset 0, read to its
//! end before the first input record is processed, then kept current between batches.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use super::config::PipelineConfig;
use crate::kafka::{self, input_partitions, partition_count, CatchUpCtx};
use crate::tables::Tables;

/// Most table records applied between two batches, so a busy table cannot starve the inputs.
const PER_STEP: usize = 10_000;

/// One consumer per table topic (so a partition's end-of-partition event names its topic), and
/// the tables they fill.
pub struct TableFeed {
    consumers: Vec<(String, BaseConsumer<CatchUpCtx>)>,
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
            let consumer: BaseConsumer<CatchUpCtx> = kafka::catch_up(config, "tables")
                .create_with_context(CatchUpCtx)
                .context("cannot create a Kafka consumer for the tables")?;
            let partitions = partition_count(&consumer, &table.topic, &format!("table `{name}`"))?;
            if !table.global {
                let inputs = match inputs {
                    Some(n) => n,
                    None => *inputs.insert(input_partitions(config, &consumer)?),
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
            let mut assignment = TopicPartitionList::new();
            let mut ends = Vec::new();
            for p in 0..partitions {
                assignment.add_partition_offset(&table.topic, p, Offset::Beginning)?;
                let (_, high) =
                    consumer.fetch_watermarks(&table.topic, p, Duration::from_secs(30)).with_context(|| {
                        format!("cannot read the offsets of table topic `{}` partition {p}", table.topic)
                    })?;
                ends.push((p, high));
            }
            consumer.assign(&assignment)?;
            read_to_end(&consumer, &feed.tables, &table.topic, ends)?;
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

/// Reads `topic` until every partition reached the end it had at start, or, under
/// read_committed, the last committed record before an open transaction.
fn read_to_end(
    consumer: &BaseConsumer<CatchUpCtx>,
    tables: &Tables,
    topic: &str,
    ends: Vec<(i32, i64)>,
) -> anyhow::Result<()> {
    let mut open: Vec<(i32, i64)> = ends.into_iter().filter(|(_, high)| *high > 0).collect();
    let mut logged = Instant::now();
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                tables.apply(m.topic(), m.partition(), m.key(), m.payload());
                let next = m.offset() + 1;
                open.retain(|(p, high)| !(*p == m.partition() && next >= *high));
            }
            Some(Err(KafkaError::PartitionEOF(p))) => open.retain(|(q, _)| *q != p),
            Some(Err(e)) => bail!("reading table topic `{topic}`: {e}"),
            None => {}
        }
        if logged.elapsed() > Duration::from_secs(5) {
            tracing::info!(topic, partitions_left = open.len(), "reading a table");
            logged = Instant::now();
        }
    }
    Ok(())
}
