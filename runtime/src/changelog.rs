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

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{BorrowedMessage, Message as _};

use crate::catchup::{self, Span};
use crate::config::PipelineConfig;
use crate::kafka::{base, ensure_topic, input_partitions, TopicSpec};
use crate::state::StateStore;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Changelog records per RocksDB batch while restoring, and most bytes.
const RESTORE_CHUNK: usize = 50_000;
const RESTORE_CHUNK_BYTES: usize = 64 << 20;

/// A chunk of changelog records read for one store, their keys and values in one buffer: a
/// restore reads millions, and an allocation for each key and value, freed on the other
/// thread, cost more than the reading. Chunks go back to the reader once applied, to be
/// filled again.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    /// Per record: where its key starts in `bytes`, the key's length, and the value's (none: a
    /// tombstone); the value follows the key.
    records: Vec<(usize, usize, Option<usize>)>,
}

impl Chunk {
    fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.records.push((self.bytes.len(), key.len(), value.map(<[u8]>::len)));
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value.unwrap_or_default());
    }

    fn full(&self) -> bool {
        self.records.len() >= RESTORE_CHUNK || self.bytes.len() >= RESTORE_CHUNK_BYTES
    }

    fn key(&self, (start, len, _): (usize, usize, Option<usize>)) -> &[u8] {
        &self.bytes[start..start + len]
    }

    /// The last write of each key, in key order.
    fn last_writes(&self) -> Vec<(&[u8], Option<&[u8]>)> {
        let mut order: Vec<usize> = (0..self.records.len()).collect();
        // A stable sort keeps each key's writes in log order; keep the last of each run.
        order.sort_by(|a, b| self.key(self.records[*a]).cmp(self.key(self.records[*b])));
        let mut last: Vec<(&[u8], Option<&[u8]>)> = Vec::with_capacity(order.len());
        for i in order {
            let record @ (start, len, value) = self.records[i];
            let key = self.key(record);
            let value = value.map(|n| &self.bytes[start + len..start + len + n]);
            match last.last_mut() {
                Some(prev) if prev.0 == key => prev.1 = value,
                _ => last.push((key, value)),
            }
        }
        last
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
    }
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
    let spec = TopicSpec {
        replication_factor: config.changelog.replication_factor,
        min_insync_replicas: config.changelog.min_insync_replicas,
        ..TopicSpec::new("changelog", partitions, true, true)
    };
    ensure_topic(config, &name, spec).context(
        "the state of each input partition lives in the changelog partition with its number, \
         so the changelog needs as many partitions as the inputs (were partitions added to an input? \
         then run the processor as a new application, another application_id, from the earliest offsets)",
    )?;
    warn_if_unreplicated(&consumer, &name);
    Ok((name, partitions))
}

/// Warns when the changelog has a single replica: a lost disk then loses the state for good.
fn warn_if_unreplicated(consumer: &BaseConsumer, name: &str) {
    let replicas = consumer
        .fetch_metadata(Some(name), crate::kafka::KAFKA_TIMEOUT)
        .ok()
        .and_then(|m| m.topics().first().and_then(|t| t.partitions().iter().map(|p| p.replicas().len()).min()));
    if replicas == Some(1) {
        tracing::warn!(
            topic = name,
            "the changelog has one replica: a broker's lost disk loses this state for good; \
             set [changelog] replication_factor (and min_insync_replicas) on a cluster of several brokers"
        );
    }
}

/// What a restore did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Restored {
    pub records: u64,
    pub elapsed: Duration,
    /// Whether local state was thrown away and rebuilt from the beginning.
    pub rebuilt: bool,
}

/// One store to bring up to the end of its changelog partition.
pub struct Target<'a> {
    pub partition: i32,
    pub store: &'a mut dyn StateStore,
}

/// Where a partition's restore stands.
struct Reading {
    /// The partition, from where, and up to where (the high watermark when it began).
    span: Span,
    /// Which of the targets (stores) it fills.
    target: usize,
    /// The offset after the last record read.
    next: i64,
    chunk: Chunk,
}

/// A chunk read for a target, with the offset after its last record, from one of the readers.
struct Filled {
    reader: usize,
    target: usize,
    chunk: Chunk,
    next: i64,
}

/// Brings every target's store up to the end of its partition of `topic` (read_committed),
/// telling `progress` the records restored so far and how many there are to restore in all,
/// at least every 100 ms; when `progress` answers false the restore stops where it is (each
/// store's checkpoint says how far it got) and fails with [`CalledOff`].
///
/// [`catchup::READERS`] consumers read the partitions side by side (one consumer per partition in turn
/// spent most of its time waiting for its first records); this thread writes
/// what they read into the stores, a chunk at a time, so reading and writing overlap.
pub fn restore(
    config: &PipelineConfig,
    topic: &str,
    targets: Vec<Target<'_>>,
    progress: &dyn Fn(u64, u64) -> bool,
) -> anyhow::Result<Restored> {
    let restored = read_into(config, topic, targets, progress)?;
    let Restored { records, elapsed, rebuilt } = restored;
    tracing::info!(topic, records, elapsed_ms = elapsed.as_millis() as u64, rebuilt, "state restored");
    Ok(restored)
}

/// Like [`restore`], quietly: for stores kept warm (standby replicas), caught up over and over.
pub fn catch_up(config: &PipelineConfig, topic: &str, targets: Vec<Target<'_>>) -> anyhow::Result<Restored> {
    read_into(config, topic, targets, &|_, _| true)
}

/// A restore stopped because its caller no longer wanted it (its partitions were revoked, the
/// pipeline stops).
#[derive(Debug, thiserror::Error)]
#[error("the restore was called off")]
pub struct CalledOff;

/// How long to wait before asking a changelog's offsets again, when they say a store's
/// checkpoint is one the changelog cannot have written.
const RECHECK_AFTER: Duration = Duration::from_millis(500);

/// The low and high watermarks of `partition` of `topic`; an error for offsets no partition
/// can have (librdkafka answers -1001, "unset", for some it could not learn), so that nothing
/// is cleared on their word.
fn watermarks(reader: &catchup::Reader, topic: &str, partition: i32) -> anyhow::Result<(i64, i64)> {
    let (low, high) = reader
        .fetch_watermarks(topic, partition, TIMEOUT)
        .with_context(|| format!("cannot read the offsets of changelog `{topic}` partition {partition}"))?;
    if low < 0 || high < low {
        return Err(anyhow!(
            "the broker answered offsets {low}..{high} for changelog `{topic}` partition {partition}, which no \
             partition has; trying again later"
        ));
    }
    Ok((low, high))
}

/// What [`restore`] does, unlogged.
fn read_into(
    config: &PipelineConfig,
    topic: &str,
    targets: Vec<Target<'_>>,
    progress: &dyn Fn(u64, u64) -> bool,
) -> anyhow::Result<Restored> {
    let started = Instant::now();
    let first = catchup::reader(config, "restore")?;
    let mut rebuilt = false;
    let mut readings = Vec::new();
    let mut stores = Vec::new();
    for Target { partition, store } in targets {
        let (mut low, mut high) = watermarks(&first, topic, partition)?;
        let mut from = store.checkpoint()?;
        let outside = |c: &i64, low: i64, high: i64| *c > high || *c < low;
        if from.is_some_and(|c| outside(&c, low, high)) {
            // Clearing throws the store away: ask again before believing it.
            std::thread::sleep(RECHECK_AFTER);
            (low, high) = watermarks(&first, topic, partition)?;
        }
        if let Some(checkpoint) = from.filter(|c| outside(c, low, high)) {
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
        let start = from.unwrap_or(low);
        if start < high {
            let span = Span { partition, start, end: high };
            readings.push(Reading { span, target: stores.len(), next: start, chunk: Chunk::default() });
            stores.push(store);
        }
    }
    let total: u64 = readings.iter().map(|r| (r.span.end - r.span.start) as u64).sum();
    if !progress(0, total) {
        catchup::close_aside(first);
        return Err(CalledOff.into());
    }
    if readings.is_empty() {
        catchup::close_aside(first);
        return Ok(Restored { records: 0, elapsed: started.elapsed(), rebuilt });
    }

    // Partitions dealt to the readers in turn, each reader with a consumer of its own.
    let (consumers, groups) = catchup::spread(config, "restore", topic, first, readings, |r| &r.span)?;
    let (filled, chunks) = std::sync::mpsc::sync_channel::<Filled>(groups.len());
    let mut recycle = Vec::new();
    let mut jobs = Vec::new();
    for (reader, (consumer, group)) in consumers.iter().zip(groups).enumerate() {
        let (spent, recycled) = std::sync::mpsc::channel::<Chunk>();
        recycle.push(spent);
        jobs.push(Job { reader, consumer, readings: group, chunks: filled.clone(), recycled });
    }
    // The readers hold the only senders: the writer is done when they all are.
    drop(filled);
    let read = std::sync::atomic::AtomicU64::new(0);
    let count = |n: u64| read.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    let ((), counts) = catchup::side_by_side(
        jobs,
        |job, stop| read_chunks(topic, job, &count, stop),
        // Readers blocked on a full channel see it gone once the writer returns.
        |_| write_chunks(&mut stores, chunks, &recycle, || progress(count(0), total)),
    )?;
    let records = counts.iter().sum();
    progress(records, total);
    let elapsed = started.elapsed();
    consumers.into_iter().for_each(catchup::close_aside);
    Ok(Restored { records, elapsed, rebuilt })
}

/// Writes the chunks the readers fill into their stores until every reader is done, calling
/// `progress` at least every 100 ms meanwhile; stops with [`CalledOff`] when it answers false.
fn write_chunks(
    stores: &mut [&mut dyn StateStore],
    chunks: std::sync::mpsc::Receiver<Filled>,
    recycle: &[std::sync::mpsc::Sender<Chunk>],
    progress: impl Fn() -> bool,
) -> anyhow::Result<()> {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        match chunks.recv_timeout(Duration::from_millis(100)) {
            Ok(Filled { reader, target, mut chunk, next }) => {
                stores[target].bulk_load(&chunk.last_writes(), next)?;
                chunk.clear();
                let _ = recycle[reader].send(chunk);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        if !progress() {
            return Err(CalledOff.into());
        }
    }
}

/// One reader of a restore: its consumer, its partitions, where it sends the chunks it fills
/// and where they come back empty.
struct Job<'a> {
    reader: usize,
    consumer: &'a catchup::Reader,
    readings: Vec<Reading>,
    chunks: std::sync::mpsc::SyncSender<Filled>,
    recycled: std::sync::mpsc::Receiver<Chunk>,
}

/// Reads a job's partitions from their starts to their high watermarks into chunks of
/// [`RESTORE_CHUNK`] writes per partition, each sent with the offset after its last record;
/// each partition's last chunk carries the consumer's position there (past the control records
/// of committed transactions, so the next restore does not read them again). Adds what it reads
/// to `count` as it goes, and returns it; stops early, with what it has, at `stop` (another
/// reader or the writer failed, and its error is the restore's).
fn read_chunks(topic: &str, job: Job<'_>, count: &dyn Fn(u64) -> u64, stop: &AtomicBool) -> anyhow::Result<u64> {
    let Job { reader, consumer, mut readings, chunks, recycled } = job;
    let send = |target: usize, chunk: Chunk, next: i64| {
        chunks
            .send(Filled { reader, target, chunk, next })
            .map_err(|_| anyhow!("restoring `{topic}`: the restore stopped"))
    };
    let spans: Vec<Span> = readings.iter().map(|r| r.span).collect();
    let (mut records, mut counted) = (0u64, 0u64);
    let each = |i: Option<usize>, m: &BorrowedMessage<'_>| {
        let Some(r) = i.map(|i| &mut readings[i]) else { return Ok(()) };
        r.next = m.offset() + 1;
        if let Some(key) = m.key() {
            r.chunk.push(key, m.payload());
            records += 1;
            if r.chunk.full() {
                let next = recycled.try_recv().unwrap_or_default();
                send(r.target, std::mem::replace(&mut r.chunk, next), r.next)?;
            }
        }
        if records - counted >= 10_000 {
            count(records - counted);
            counted = records;
        }
        Ok(())
    };
    let go_on = || Ok(!stop.load(std::sync::atomic::Ordering::Relaxed));
    let finished = catchup::read_to_end(consumer, topic, &spans, "restoring state", each, go_on)
        .with_context(|| format!("restoring from `{topic}`"))?;
    count(records - counted);
    if !finished {
        return Ok(records);
    }
    let positions = consumer.position()?;
    for r in &mut readings {
        let at = positions.find_partition(topic, r.span.partition).and_then(|e| e.offset().to_raw());
        let end = at.unwrap_or(r.next).max(r.next);
        send(r.target, std::mem::take(&mut r.chunk), end)?;
    }
    Ok(records)
}
