//! Changelog topics: the durable copy of every state store, as in Kafka Streams.
//!
//! Each stateful processor has one compacted topic, `<application_id>-<store>-changelog`, with one
//! partition per input partition. Every state write of a commit interval goes there inside the
//! same transaction as the outputs and the consumed offsets (a delete is a tombstone). The local
//! RocksDB store is written after the transaction commits, with a checkpoint: the changelog offset
//! it reflects. When a partition is assigned, its store is brought up to the end of its changelog
//! from that checkpoint before any record is processed. A checkpoint the log cannot have written
//! (past its end, or before its start) means the local store cannot be trusted: it is cleared and
//! rebuilt from the beginning.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{base, catch_up, ensure_topic, input_partitions, CatchUpCtx, TopicSpec};
use crate::pipeline::config::PipelineConfig;
use crate::state::{StateStore, WriteBatch};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Changelog records per RocksDB batch while restoring.
const RESTORE_CHUNK: usize = 50_000;

/// Applies a chunk of changelog records: the last write of each key wins, in key order (cheaper
/// inserts), with the checkpoint after the chunk.
fn apply_chunk(store: &mut dyn StateStore, writes: &mut WriteBatch, checkpoint: i64) -> anyhow::Result<()> {
    // A stable sort keeps each key's writes in log order; keep the last of each run.
    writes.sort_by(|a, b| a.0.cmp(&b.0));
    let mut last: WriteBatch = Vec::with_capacity(writes.len());
    for (key, value) in writes.drain(..) {
        match last.last_mut() {
            Some(prev) if prev.0 == key => prev.1 = value,
            _ => last.push((key, value)),
        }
    }
    store.bulk_load(&last, checkpoint)?;
    Ok(())
}

/// The changelog topic of `store` in `config`'s application.
pub fn topic(config: &PipelineConfig, store: &str) -> String {
    format!("{}-{store}-changelog", config.application_id)
}

/// Creates the changelog (compacted, one partition per input partition) if it is missing, and
/// refuses one whose partition count does not match the inputs. Returns its name and partition
/// count.
pub fn ensure(config: &PipelineConfig, store: &str) -> anyhow::Result<(String, i32)> {
    let name = topic(config, store);
    let consumer: BaseConsumer = base(config).create()?;
    let partitions = input_partitions(config, &consumer)?;
    let spec = TopicSpec { what: "changelog", partitions, compact: true, exact: true };
    ensure_topic(config, &name, spec).context(
        "the state of each input partition lives in the changelog partition with its number, \
         so the changelog needs as many partitions as the inputs (were partitions added to an input? \
         then run the processor as a new application, another application_id, from the earliest offsets)",
    )?;
    Ok((name, partitions))
}

/// What a restore did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Restored {
    pub records: u64,
    pub elapsed: Duration,
    /// Whether local state was thrown away and rebuilt from the beginning.
    pub rebuilt: bool,
}

/// Where the restore consumer (assigned one partition) will read next, once it knows.
fn position(consumer: &BaseConsumer<CatchUpCtx>) -> anyhow::Result<Option<i64>> {
    Ok(consumer.position()?.elements().first().and_then(|e| e.offset().to_raw()))
}

/// Brings `store` up to the end of partition `partition` of `topic` (read_committed), telling
/// `progress` the records restored so far and how many there are to restore, about every
/// 10,000 records.
pub fn restore(
    config: &PipelineConfig,
    topic: &str,
    partition: i32,
    store: &mut dyn StateStore,
    progress: &dyn Fn(u64, u64),
) -> anyhow::Result<Restored> {
    let started = Instant::now();
    let consumer: BaseConsumer<CatchUpCtx> = catch_up(config, "restore")
        // Big fetches: a restore reads whole partitions as fast as it can.
        .set("max.partition.fetch.bytes", "16777216")
        .set("queued.min.messages", "1000000")
        .create_with_context(CatchUpCtx)?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, TIMEOUT)
        .with_context(|| format!("cannot read the offsets of changelog `{topic}` partition {partition}"))?;
    let mut rebuilt = false;
    let mut from = store.checkpoint()?;
    if let Some(checkpoint) = from {
        if checkpoint > high || checkpoint < low {
            tracing::warn!(
                topic,
                partition,
                checkpoint,
                low,
                high,
                "local state does not match its changelog; rebuilding it from the changelog"
            );
            store.clear()?;
            from = None;
            rebuilt = true;
        }
    }
    let start = from.unwrap_or(low);
    let total = (high - start).max(0) as u64;
    progress(0, total);
    if start >= high {
        return Ok(Restored { records: 0, elapsed: started.elapsed(), rebuilt });
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
    consumer.assign(&tpl)?;

    // Reading and applying overlap: this thread reads the changelog into chunks while another
    // sorts and writes the previous chunk, so a restore runs at about the speed of the slower
    // of the two rather than their sum.
    let (chunks, applier) = std::sync::mpsc::sync_channel::<(WriteBatch, i64)>(1);
    let (records, _end) = std::thread::scope(|scope| -> anyhow::Result<(u64, i64)> {
        let applying = scope.spawn(move || -> anyhow::Result<()> {
            for (mut writes, checkpoint) in applier {
                apply_chunk(store, &mut writes, checkpoint)?;
            }
            Ok(())
        });
        let read = read_chunks(&consumer, topic, partition, (start, high, total), progress, &chunks);
        drop(chunks);
        let applied =
            applying.join().map_err(|_| anyhow!("restoring `{topic}` partition {partition}: the writer panicked"))?;
        // The writer's own error says more than the reader's "the writer stopped".
        applied?;
        read
    })?;
    progress(records, total);
    let elapsed = started.elapsed();
    tracing::info!(topic, partition, records, elapsed_ms = elapsed.as_millis() as u64, rebuilt, "state restored");
    Ok(Restored { records, elapsed, rebuilt })
}

/// Reads the assigned changelog partition from `start` to `high` into chunks of
/// [`RESTORE_CHUNK`] writes, each sent with the offset after its last record; the last chunk
/// carries the consumer's position (past the control records of committed transactions, so the
/// next restore does not read them again). Returns the records read and that position.
fn read_chunks(
    consumer: &BaseConsumer<CatchUpCtx>,
    topic: &str,
    partition: i32,
    (start, high, total): (i64, i64, u64),
    progress: &dyn Fn(u64, u64),
    chunks: &std::sync::mpsc::SyncSender<(WriteBatch, i64)>,
) -> anyhow::Result<(u64, i64)> {
    let gone = || anyhow!("restoring `{topic}` partition {partition}: the writer stopped");
    let mut writes: WriteBatch = Vec::with_capacity(RESTORE_CHUNK);
    let (mut records, mut next, mut logged) = (0u64, start, Instant::now());
    loop {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let Some(key) = m.key() else { continue };
                writes.push((key.to_vec(), m.payload().map(<[u8]>::to_vec)));
                next = m.offset() + 1;
                records += 1;
                if records.is_multiple_of(10_000) {
                    progress(records, total);
                }
                if writes.len() >= RESTORE_CHUNK {
                    let full = std::mem::replace(&mut writes, Vec::with_capacity(RESTORE_CHUNK));
                    chunks.send((full, next)).map_err(|_| gone())?;
                }
                if next >= high {
                    break;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(anyhow!("restoring from `{topic}` partition {partition}: {e}")),
            None => {
                let at = position(consumer)?.unwrap_or(start);
                if at >= high {
                    next = next.max(at);
                    break;
                }
            }
        }
        if logged.elapsed() > Duration::from_secs(5) {
            tracing::info!(topic, partition, restored = records, at = next, end = high, "restoring state");
            logged = Instant::now();
        }
    }
    let end = position(consumer)?.unwrap_or(next).max(next);
    chunks.send((writes, end)).map_err(|_| gone())?;
    Ok((records, end))
}
