//! Progress, published about once a second: the pipeline's [`Snapshot`](super::Snapshot)
//! (rates, lag per partition, time since the last commit), its gauges (lag, state store size),
//! and on a terminal a live status line (records/s in and out, lag); a log line otherwise.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};

use super::control::{PartitionSnapshot, StageSnapshot};
use super::work::{Stats, Work};
use crate::config::PipelineConfig;
use crate::kafka::Consumer;

/// How often the snapshot is refreshed.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Progress {
    /// Draw the status line (a terminal, and asked for).
    terminal: bool,
    /// How often to log progress when not on a terminal.
    log_every: Duration,
    last: Instant,
    last_logged: Instant,
    last_stats: Stats,
    offsets: Offsets,
}

impl Progress {
    pub fn new(status_line: bool, config: &PipelineConfig) -> Self {
        let terminal = status_line && std::io::stderr().is_terminal();
        let now = Instant::now();
        let offsets = Offsets::start(config);
        Self {
            terminal,
            log_every: Duration::from_secs(30),
            last: now,
            last_logged: now,
            last_stats: Stats::default(),
            offsets,
        }
    }

    /// Publishes the snapshot and the gauges when a second has passed.
    pub fn tick(&mut self, work: &mut Work, consumer: &Consumer, last_commit: Instant) {
        let elapsed = self.last.elapsed();
        if elapsed < PUBLISH_EVERY {
            return;
        }
        let stats = work.stats;
        let secs = elapsed.as_secs_f64();
        let rate_in = (stats.consumed - self.last_stats.consumed) as f64 / secs;
        let rate_out = (stats.produced - self.last_stats.produced) as f64 / secs;
        let mut partitions = self.offsets.lags(consumer, work.config.thread);
        for p in &mut partitions {
            p.restoring = work.stages.holds(&p.topic, p.partition);
            if let Some(lag) = p.lag {
                work.metrics.set_lag(&p.topic, p.partition, lag);
            }
        }
        for (stage, partition, bytes) in work.stages.state_sizes() {
            work.metrics.set_state_bytes(stage, partition, bytes);
        }
        let total_lag: Option<i64> = partitions.iter().map(|p| p.lag).sum();
        let committed = (stats.commits > 0).then(|| last_commit.elapsed().as_millis() as u64);
        work.view.update(|s| {
            (s.consumed, s.produced, s.rate_in, s.rate_out) = (stats.consumed, stats.produced, rate_in, rate_out);
            s.partitions = partitions;
            s.stages = work
                .stages
                .counts()
                .map(|(stage, consumed, produced)| {
                    let reads = |p: &&PartitionSnapshot| stage.config.inputs.contains(&p.topic);
                    let lag = s.partitions.iter().filter(reads).map(|p| p.lag).sum();
                    StageSnapshot { name: stage.name.clone(), consumed, produced, lag }
                })
                .collect();
            s.since_last_commit_ms = committed;
        });
        if self.terminal {
            let lag = total_lag.map_or("?".to_owned(), |l| l.to_string());
            eprint!(
                "\r\x1b[2Kin {rate_in:>9.0}/s  out {rate_out:>9.0}/s  lag {lag:>9}  total in {}  out {}",
                stats.consumed, stats.produced
            );
            let _ = std::io::stderr().flush();
        } else if self.last_logged.elapsed() >= self.log_every {
            tracing::info!(
                application = %work.config.application_id, rate_in = rate_in as u64, rate_out = rate_out as u64,
                lag = total_lag, consumed = stats.consumed, produced = stats.produced, "progress"
            );
            self.last_logged = Instant::now();
        }
        self.last = Instant::now();
        self.last_stats = stats;
    }

    pub fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

/// What a partition's lag is measured against, as last fetched.
#[derive(Debug, Clone, Copy)]
struct Marks {
    low: i64,
    high: i64,
    committed: Option<i64>,
}

type Partition = (String, i32);

/// The partitions' watermarks and committed offsets, fetched every second on a thread of their
/// own with a client of their own: asking on the pipeline's consumer would queue behind its
/// fetches and hold up the data path.
struct Offsets {
    wanted: Arc<Mutex<Vec<Partition>>>,
    marks: Arc<Mutex<HashMap<Partition, Marks>>>,
    stop: Arc<AtomicBool>,
}

impl Offsets {
    fn start(config: &PipelineConfig) -> Self {
        let wanted: Arc<Mutex<Vec<Partition>>> = Arc::default();
        let marks: Arc<Mutex<HashMap<Partition, Marks>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        // In the application's group, to read its committed offsets; it never joins it.
        let client: Result<BaseConsumer, _> = crate::kafka::base(config)
            .set("group.id", &config.application_id)
            .set("enable.auto.commit", "false")
            .create();
        match client {
            Ok(client) => {
                let (wanted, marks, stop) = (wanted.clone(), marks.clone(), stop.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("weir-lag-{}", config.application_id))
                    .spawn(move || fetch_marks(&client, &wanted, &marks, &stop));
                if let Err(e) = spawned {
                    tracing::warn!("cannot start the thread that measures lag: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot create the client that measures lag: {e}"),
        }
        Self { wanted, marks, stop }
    }

    /// Every assigned partition (of worker thread `thread`), with the records between the consumer's position (or the
    /// committed offset, or the start) and its end.
    fn lags(&self, consumer: &Consumer, thread: Option<u32>) -> Vec<PartitionSnapshot> {
        let Ok(position) = consumer.position() else { return Vec::new() };
        let marks = self.marks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut partitions = Vec::new();
        let mut wanted = Vec::new();
        for e in position.elements() {
            let key = (e.topic().to_owned(), e.partition());
            let lag = marks.get(&key).map(|m| {
                let at = match e.offset() {
                    Offset::Offset(at) => at,
                    _ => m.committed.unwrap_or(m.low),
                };
                (m.high - at).max(0)
            });
            partitions.push(PartitionSnapshot {
                topic: key.0.clone(),
                partition: key.1,
                lag,
                thread,
                restoring: false,
            });
            wanted.push(key);
        }
        *self.wanted.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = wanted;
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        partitions
    }
}

impl Drop for Offsets {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn fetch_marks(
    client: &BaseConsumer,
    wanted: &Mutex<Vec<Partition>>,
    marks: &Mutex<HashMap<Partition, Marks>>,
    stop: &AtomicBool,
) {
    let timeout = Duration::from_secs(5);
    while !stop.load(Ordering::SeqCst) {
        let partitions = wanted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in &partitions {
            tpl.add_partition(topic, *partition);
        }
        let committed = if partitions.is_empty() { None } else { client.committed_offsets(tpl, timeout).ok() };
        let mut fetched = HashMap::new();
        for (topic, partition) in partitions {
            if let Ok((low, high)) = client.fetch_watermarks(&topic, partition, timeout) {
                let committed = committed
                    .as_ref()
                    .and_then(|c| c.find_partition(&topic, partition))
                    .and_then(|e| e.offset().to_raw())
                    .filter(|o| *o >= 0);
                fetched.insert((topic, partition), Marks { low, high, committed });
            }
        }
        *marks.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = fetched;
        std::thread::sleep(Duration::from_secs(1));
    }
}
