//! Progress: a live status line on a terminal (records/s in and out, lag), a log line otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::Offset;

use crate::kafka::Consumer;

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
    terminal: bool,
    every: Duration,
    last: Instant,
    last_stats: Stats,
}

impl Status {
    pub fn new() -> Self {
        let terminal = std::io::stderr().is_terminal();
        let every = if terminal { Duration::from_secs(1) } else { Duration::from_secs(30) };
        Self { terminal, every, last: Instant::now(), last_stats: Stats::default() }
    }

    pub fn tick(&mut self, stats: &Stats, consumer: &Consumer) {
        let elapsed = self.last.elapsed();
        if elapsed < self.every {
            return;
        }
        let secs = elapsed.as_secs_f64();
        let rate_in = (stats.consumed - self.last_stats.consumed) as f64 / secs;
        let rate_out = (stats.produced - self.last_stats.produced) as f64 / secs;
        let lag = lag(consumer);
        if self.terminal {
            let lag = lag.map_or("?".to_owned(), |l| l.to_string());
            eprint!(
                "\r\x1b[2Kin {rate_in:>9.0}/s  out {rate_out:>9.0}/s  lag {lag:>9}  total in {}  out {}",
                stats.consumed, stats.produced
            );
            let _ = std::io::stderr().flush();
        } else {
            tracing::info!(
                rate_in = rate_in as u64,
                rate_out = rate_out as u64,
                lag,
                consumed = stats.consumed,
                produced = stats.produced,
                "progress"
            );
        }
        self.last = Instant::now();
        self.last_stats = *stats;
    }

    pub fn finish(&self, _stats: &Stats) {
        if self.terminal {
            eprintln!();
        }
    }
}

/// Records between the consumer's position and the end of each assigned partition.
fn lag(consumer: &Consumer) -> Option<i64> {
    let position = consumer.position().ok()?;
    let mut total = 0;
    for e in position.elements() {
        let (_, high) = consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_millis(500)).ok()?;
        if let Offset::Offset(at) = e.offset() {
            total += (high - at).max(0);
        }
    }
    Some(total)
}
