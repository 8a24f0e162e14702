//! Progress, published about once a second: the pipeline's [`Snapshot`](super::Snapshot)
//! (rates, lag per partition, time since the last commit), its gauges (lag, state store size),
//! and on a terminal a live status line (records/s in and out, lag); a log line otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::Offset;

use super::control::PartitionSnapshot;
use super::Work;
use crate::kafka::Consumer;

/// How often the snapshot is refreshed.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Counts since the pipeline started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub consumed: u64,
    pub produced: u64,
    /// When the first record arrived (after the group join), and when the last commit ended.
    pub first_record: Option<Instant>,
    pub finished: Option<Instant>,
    /// Polled batches with records, commits, and the time spent committing.
    pub batches: u64,
    pub commits: u64,
    pub commit_time: Duration,
}

impl Stats {
    /// Records consumed per second between the first record and the end.
    pub fn throughput(&self) -> Option<f64> {
        let secs = self.finished?.duration_since(self.first_record?).as_secs_f64();
        (secs > 0.0).then(|| self.consumed as f64 / secs)
    }
}

pub(super) struct Status {
    /// Draw the status line (a terminal, and asked for).
    terminal: bool,
    /// How often to log progress when not on a terminal.
    log_every: Duration,
    last: Instant,
    last_logged: Instant,
    last_stats: Stats,
}

impl Status {
    pub fn new(status_line: bool) -> Self {
        let terminal = status_line && std::io::stderr().is_terminal();
        let now = Instant::now();
        Self { terminal, log_every: Duration::from_secs(30), last: now, last_logged: now, last_stats: Stats::default() }
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
        let partitions = lags(consumer);
        for p in &partitions {
            if let Some(lag) = p.lag {
                work.metrics.set_lag(&p.topic, p.partition, lag);
            }
        }
        for (partition, instance) in &work.instances {
            if let Some(bytes) = instance.state_size() {
                work.metrics.set_state_bytes(*partition, bytes);
            }
        }
        let total_lag: Option<i64> = partitions.iter().map(|p| p.lag).sum();
        let committed = (stats.commits > 0).then(|| last_commit.elapsed().as_millis() as u64);
        work.view.update(|s| {
            (s.consumed, s.produced, s.rate_in, s.rate_out) = (stats.consumed, stats.produced, rate_in, rate_out);
            s.partitions = partitions;
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

/// Every assigned partition, with the records between the consumer's position and its end.
fn lags(consumer: &Consumer) -> Vec<PartitionSnapshot> {
    let Ok(position) = consumer.position() else { return Vec::new() };
    let mut partitions = Vec::new();
    for e in position.elements() {
        let high = consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_millis(500)).ok().map(|w| w.1);
        let lag = match (e.offset(), high) {
            (Offset::Offset(at), Some(high)) => Some((high - at).max(0)),
            // Nothing consumed yet: everything from the start (or the committed offset) is lag.
            (_, Some(high)) => committed_lag(consumer, e.topic(), e.partition(), high),
            _ => None,
        };
        partitions.push(PartitionSnapshot { topic: e.topic().to_owned(), partition: e.partition(), lag });
    }
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    partitions
}

/// The lag of a partition this consumer has not read from yet: from its committed offset, or
/// from its start.
fn committed_lag(consumer: &Consumer, topic: &str, partition: i32, high: i64) -> Option<i64> {
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer.committed_offsets(tpl, Duration::from_millis(500)).ok()?;
    match committed.elements().first()?.offset() {
        Offset::Offset(at) => Some((high - at).max(0)),
        _ => {
            let (low, _) = consumer.fetch_watermarks(topic, partition, Duration::from_millis(500)).ok()?;
            Some((high - low).max(0))
        }
    }
}
