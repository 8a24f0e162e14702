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

/// One store to bring up to the end of its changelog partition.
pub struct Target<'a> {
    pub partition: i32,
    pub store: &'a mut dyn StateStore,
}

/// Where a partition's restore stands.
struct Reading {
    partition: i32,
    /// Which of the targets (stores) it fills.
    target: usize,
    /// From where, and up to where (the high watermark when it began).
    start: i64,
    high: i64,
    /// The offset after the last record read.
    next: i64,
    chunk: Chunk,
    done: bool,
}

impl Reading {
    /// Marks the partition read to its end; true the first time.
    fn finish(&mut self) -> bool {
        !std::mem::replace(&mut self.done, true)
    }
}

/// A chunk read for a target, with the offset after its last record, from one of the readers.
struct Filled {
    reader: usize,
    target: usize,
    chunk: Chunk,
    next: i64,
}

/// Consumers that read a restore's partitions side by side. One consumer's fetches are answered
/// one after the other, and in between the broker and the reader wait for each other: reading a
/// million records from four partitions, one consumer read 0.9 to 1.1 million records/s, two
/// consumers of two partitions each 2.2 to 3.4 million, on this machine's two cores.
const READERS: usize = 2;

/// Brings every target's store up to the end of its partition of `topic` (read_committed),
/// telling `progress` the records restored so far and how many there are to restore in all,
/// at least every 100 ms.
///
/// [`READERS`] consumers read the partitions (a consumer per partition in turn, as before stop
/// 19, spent most of its time waiting for its first records); this thread writes what they read
/// into the stores, a chunk at a time, so reading and writing overlap.
pub fn restore(
    config: &PipelineConfig,
    topic: &str,
    targets: Vec<Target<'_>>,
    progress: &dyn Fn(u64, u64),
) -> anyhow::Result<Restored> {
    let started = Instant::now();
    // Fetches of librdkafka's default size (1 MiB per partition), not bigger: the broker answers
    // a fetch as a whole, and one 16 MiB fetch per partition held back the first record for 90
    // to 140 ms while nothing else could run, and made the rest no faster (a million records
    // restored at 0.62 to 0.75 million records/s against 1.06 to 1.29 million with 1 MiB).
    let consumer = || -> anyhow::Result<BaseConsumer<CatchUpCtx>> {
        Ok(catch_up(config, "restore").set("queued.min.messages", "1000000").create_with_context(CatchUpCtx)?)
    };
    let first = consumer()?;
    let mut rebuilt = false;
    let mut readings = Vec::new();
    let mut stores = Vec::new();
    for Target { partition, store } in targets {
        let (low, high) = first
            .fetch_watermarks(topic, partition, TIMEOUT)
            .with_context(|| format!("cannot read the offsets of changelog `{topic}` partition {partition}"))?;
        let mut from = store.checkpoint()?;
        if let Some(checkpoint) = from.filter(|c| *c > high || *c < low) {
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
            let target = stores.len();
            readings.push(Reading {
                partition,
                target,
                start,
                high,
                next: start,
                chunk: Chunk::default(),
                done: false,
            });
            stores.push(store);
        }
    }
    let total: u64 = readings.iter().map(|r| (r.high - r.start) as u64).sum();
    progress(0, total);
    if readings.is_empty() {
        close_aside(first);
        return Ok(Restored { records: 0, elapsed: started.elapsed(), rebuilt });
    }

    // Partitions dealt to the readers in turn, each reader with a consumer of its own.
    let readers = READERS.min(readings.len());
    let mut groups: Vec<Vec<Reading>> = (0..readers).map(|_| Vec::new()).collect();
    for (i, reading) in readings.into_iter().enumerate() {
        groups[i % readers].push(reading);
    }
    let mut consumers = vec![first];
    while consumers.len() < readers {
        consumers.push(consumer()?);
    }
    for (consumer, group) in consumers.iter().zip(&groups) {
        let mut tpl = TopicPartitionList::new();
        for r in group {
            tpl.add_partition_offset(topic, r.partition, Offset::Offset(r.start))?;
        }
        consumer.assign(&tpl)?;
    }

    let (filled, chunks) = std::sync::mpsc::sync_channel::<Filled>(readers);
    let read = std::sync::atomic::AtomicU64::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let records = std::thread::scope(|scope| -> anyhow::Result<u64> {
        let mut recycle = Vec::new();
        let mut running = Vec::new();
        for (reader, (consumer, group)) in consumers.iter().zip(groups).enumerate() {
            let (spent, recycled) = std::sync::mpsc::channel::<Chunk>();
            recycle.push(spent);
            let reading = Shared { topic, read: &read, stop: &stop };
            let filled = filled.clone();
            running.push(scope.spawn(move || {
                let result = read_chunks(consumer, reader, group, &reading, (&filled, &recycled));
                if result.is_err() {
                    reading.stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                result
            }));
        }
        drop(filled);
        let written = write_chunks(&mut stores, &chunks, &recycle, || {
            progress(read.load(std::sync::atomic::Ordering::Relaxed), total)
        });
        if written.is_err() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        // Readers blocked on a full channel see it gone once this thread stops receiving.
        drop(chunks);
        let mut records = 0;
        let mut failed = None;
        for reader in running {
            match reader.join().map_err(|_| anyhow!("restoring `{topic}`: a reader panicked"))? {
                Ok(n) => records += n,
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        // The writer's own error says more than a reader's "the restore stopped".
        written?;
        match failed {
            Some(e) => Err(e),
            None => Ok(records),
        }
    })?;
    progress(records, total);
    let elapsed = started.elapsed();
    for consumer in consumers {
        close_aside(consumer);
    }
    tracing::info!(topic, readers, records, elapsed_ms = elapsed.as_millis() as u64, rebuilt, "state restored");
    Ok(Restored { records, elapsed, rebuilt })
}

/// Writes the chunks the readers fill into their stores until every reader is done, calling
/// `progress` at least every 100 ms meanwhile.
fn write_chunks(
    stores: &mut [&mut dyn StateStore],
    chunks: &std::sync::mpsc::Receiver<Filled>,
    recycle: &[std::sync::mpsc::Sender<Chunk>],
    progress: impl Fn(),
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
        progress();
    }
}

/// What a restore's readers share: the topic, the records read so far, and whether to stop
/// (another reader or the writer failed).
struct Shared<'a> {
    topic: &'a str,
    read: &'a std::sync::atomic::AtomicU64,
    stop: &'a std::sync::atomic::AtomicBool,
}

/// Closes a consumer on a thread of its own: librdkafka took 30 to 130 ms to close the
/// restore's, time the pipeline would otherwise wait before its first record.
fn close_aside<C: Send + 'static>(consumer: C) {
    let closing = std::thread::Builder::new().name("weir-restore-close".into()).spawn(move || drop(consumer));
    if let Err(e) = closing {
        tracing::debug!("closing the restore's consumer on this thread: {e}");
    }
}

/// Reads the partitions assigned to `consumer` from their starts to their high watermarks into
/// chunks of [`RESTORE_CHUNK`] writes per partition, each sent with the offset after its last
/// record; each partition's last chunk carries the consumer's position there (past the control
/// records of committed transactions, so the next restore does not read them again). Returns
/// the records read.
fn read_chunks(
    consumer: &BaseConsumer<CatchUpCtx>,
    reader: usize,
    mut readings: Vec<Reading>,
    shared: &Shared<'_>,
    (chunks, recycled): (&std::sync::mpsc::SyncSender<Filled>, &std::sync::mpsc::Receiver<Chunk>),
) -> anyhow::Result<u64> {
    use std::sync::atomic::Ordering::Relaxed;
    let topic = shared.topic;
    let gone = || anyhow!("restoring `{topic}`: the restore stopped");
    let send = |target: usize, chunk: Chunk, next: i64| {
        chunks.send(Filled { reader, target, chunk, next }).map_err(|_| gone())
    };
    // Which reading a partition number is.
    let mut index = vec![None; readings.iter().map(|r| r.partition as usize + 1).max().unwrap_or(0)];
    for (i, r) in readings.iter().enumerate() {
        index[r.partition as usize] = Some(i);
    }
    let slot = |partition: i32| index.get(partition as usize).copied().flatten();
    let mut left = readings.len();
    let (mut records, mut counted, mut logged) = (0u64, 0u64, Instant::now());
    while left > 0 {
        if shared.stop.load(Relaxed) {
            // Another reader or the writer failed, and its error is the restore's.
            return Ok(records);
        }
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let Some(i) = slot(m.partition()) else { continue };
                let r = &mut readings[i];
                r.next = m.offset() + 1;
                if let Some(key) = m.key() {
                    r.chunk.push(key, m.payload());
                    records += 1;
                    if r.chunk.full() {
                        let next = recycled.try_recv().unwrap_or_default();
                        send(r.target, std::mem::replace(&mut r.chunk, next), r.next)?;
                    }
                }
                if r.next >= r.high && r.finish() {
                    left -= 1;
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if slot(p).is_some_and(|i| readings[i].finish()) {
                    left -= 1;
                }
            }
            Some(Err(e)) => return Err(anyhow!("restoring from `{topic}`: {e}")),
            None => {
                // Past the last record, control records (transaction markers) may end a partition.
                for e in consumer.position()?.elements() {
                    let Some(r) = slot(e.partition()).map(|i| &mut readings[i]) else { continue };
                    if e.offset().to_raw().is_some_and(|at| at >= r.high) && r.finish() {
                        left -= 1;
                    }
                }
            }
        }
        if records - counted >= 10_000 {
            shared.read.fetch_add(records - counted, Relaxed);
            counted = records;
        }
        if logged.elapsed() > Duration::from_secs(5) {
            let partitions: Vec<i32> = readings.iter().map(|r| r.partition).collect();
            tracing::info!(topic, ?partitions, read = records, "restoring state");
            logged = Instant::now();
        }
    }
    shared.read.fetch_add(records - counted, Relaxed);
    let positions = consumer.position()?;
    for r in &mut readings {
        let at = positions.find_partition(topic, r.partition).and_then(|e| e.offset().to_raw());
        let end = at.unwrap_or(r.next).max(r.next);
        send(r.target, std::mem::take(&mut r.chunk), end)?;
    }
    Ok(records)
}
