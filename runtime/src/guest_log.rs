//! What a pipeline's guests log: their `log` calls and what they print to stdout and stderr,
//! kept in a ring of the latest [`KEPT`] lines with where each was logged (module, topic,
//! partition, the offsets of the batch being processed) and read by `weir logs` and
//! `GET /v1/pipelines/{name}/logs`, as `rpk transform logs` reads a transform's.
//!
//! A guest that floods its log is held to [`RATE`] lines per second (bursts up to [`BURST`]):
//! lines past that are dropped and counted, never waited for, so logging cannot slow the
//! pipeline; the next line kept after drops is preceded by one saying how many went. A line is
//! cut at [`MAX_LINE`] bytes. Lines kept also go to weir's own log (target `weir::guest`).

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Lines kept per pipeline.
pub const KEPT: usize = 1000;
/// Lines per second a pipeline's guests may log, on average.
pub const RATE: f64 = 200.0;
/// Lines they may log at once, after a quiet spell.
pub const BURST: f64 = 1000.0;
/// Longest line kept, in bytes; the rest is cut.
pub const MAX_LINE: usize = 4096;

/// How bad a line is, from the guest's `log` call, or where it printed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One line a guest logged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogLine {
    /// Counts the pipeline's lines kept since it started (a reader asks for those after one).
    pub seq: u64,
    /// When it was logged, in milliseconds since the epoch.
    pub at_ms: u64,
    pub level: Level,
    /// `log` for the SDKs' log calls, `stdout` or `stderr` for what the guest printed.
    pub source: String,
    pub module: String,
    pub topic: String,
    pub partition: i32,
    /// The offsets of the batch the guest was processing, first and last, when it was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsets: Option<(i64, i64)>,
    pub message: String,
}

/// Where a line was logged.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub module: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offsets: Option<(i64, i64)>,
}

/// The kept lines and the rate limit's bucket.
struct Ring {
    lines: VecDeque<LogLine>,
    next: u64,
    tokens: f64,
    refilled: Instant,
    /// Lines dropped since the last one kept, and since the pipeline started.
    dropped_lately: u64,
    dropped: u64,
}

/// The metrics a guest log counts into: kept lines by [`Level`] (in its order), and dropped.
#[derive(Clone)]
pub struct Counters {
    pub lines: [Counter; 5],
    pub dropped: Counter,
}

/// A pipeline's guest log.
pub struct GuestLog {
    ring: Mutex<Ring>,
    /// The seq of the next line: bumped when one is kept (what followers wait on).
    changed: watch::Sender<u64>,
    counters: std::sync::OnceLock<Counters>,
}

impl Default for GuestLog {
    fn default() -> Self {
        let ring = Ring {
            lines: VecDeque::with_capacity(64),
            next: 1,
            tokens: BURST,
            refilled: Instant::now(),
            dropped_lately: 0,
            dropped: 0,
        };
        Self { ring: Mutex::new(ring), changed: watch::Sender::new(1), counters: std::sync::OnceLock::new() }
    }
}

impl GuestLog {
    /// Counts into `counters` from now on (the first ones given, for a log kept across restarts).
    pub fn count_into(&self, counters: Counters) {
        let _ = self.counters.set(counters);
    }

    /// Keeps a line, unless the rate limit drops it; whether it was kept.
    pub fn push(&self, level: Level, source: &str, origin: &Origin<'_>, message: &str) -> bool {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let elapsed = now.duration_since(ring.refilled).as_secs_f64();
        ring.tokens = (ring.tokens + elapsed * RATE).min(BURST);
        ring.refilled = now;
        if ring.tokens < 1.0 {
            ring.dropped_lately += 1;
            ring.dropped += 1;
            if let Some(c) = self.counters.get() {
                c.dropped.inc();
            }
            return false;
        }
        if let Some(c) = self.counters.get() {
            c.lines[level as usize].inc();
        }
        ring.tokens -= 1.0;
        let at_ms = crate::now_ms();
        if ring.dropped_lately > 0 {
            let gone = std::mem::take(&mut ring.dropped_lately);
            let message = format!("weir dropped {gone} lines of this pipeline's guests (over {RATE} lines per second)");
            tracing::warn!(target: "weir::guest", module = origin.module, "{message}");
            let line = line_at(&mut ring, at_ms, Level::Warn, "weir", origin, message);
            keep(&mut ring, line);
        }
        let line = line_at(&mut ring, at_ms, level, source, origin, cut(message));
        emit(&line);
        keep(&mut ring, line);
        let next = ring.next;
        drop(ring);
        self.changed.send_replace(next);
        true
    }

    /// The kept lines after `after` at `level` or worse, the newest `limit` of them, oldest
    /// first.
    pub fn read(&self, after: u64, level: Level, limit: usize) -> Vec<LogLine> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let mut lines: Vec<LogLine> =
            ring.lines.iter().rev().filter(|l| l.seq > after && l.level >= level).take(limit).cloned().collect();
        lines.reverse();
        lines
    }

    /// Lines dropped by the rate limit since the pipeline started.
    pub fn dropped(&self) -> u64 {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner).dropped
    }

    /// Changes whenever a line is kept.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

fn line_at(ring: &mut Ring, at_ms: u64, level: Level, source: &str, origin: &Origin<'_>, message: String) -> LogLine {
    let seq = ring.next;
    ring.next += 1;
    LogLine {
        seq,
        at_ms,
        level,
        source: source.to_owned(),
        module: origin.module.to_owned(),
        topic: origin.topic.to_owned(),
        partition: origin.partition,
        offsets: origin.offsets,
        message,
    }
}

fn keep(ring: &mut Ring, line: LogLine) {
    if ring.lines.len() >= KEPT {
        ring.lines.pop_front();
    }
    ring.lines.push_back(line);
}

/// `message`, cut at [`MAX_LINE`] bytes (on a character boundary).
fn cut(message: &str) -> String {
    if message.len() <= MAX_LINE {
        return message.to_owned();
    }
    let mut end = MAX_LINE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes cut)", &message[..end], message.len() - end)
}

/// The line in weir's own log.
fn emit(line: &LogLine) {
    let (module, topic, partition, source) = (line.module.as_str(), line.topic.as_str(), line.partition, &line.source);
    let message = line.message.as_str();
    match line.level {
        Level::Trace => tracing::trace!(target: "weir::guest", module, topic, partition, source, "{message}"),
        Level::Debug => tracing::debug!(target: "weir::guest", module, topic, partition, source, "{message}"),
        Level::Info => tracing::info!(target: "weir::guest", module, topic, partition, source, "{message}"),
        Level::Warn => tracing::warn!(target: "weir::guest", module, topic, partition, source, "{message}"),
        Level::Error => tracing::error!(target: "weir::guest", module, topic, partition, source, "{message}"),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn origin() -> Origin<'static> {
        Origin { module: "m.wasm", topic: "in", partition: 2, offsets: Some((5, 9)) }
    }

    #[test]
    fn the_ring_keeps_the_latest_lines_and_reads_them_by_level_and_position() {
        let log = GuestLog::default();
        for i in 0..(KEPT + 10) {
            if i == KEPT {
                // The burst is spent: 10 more lines' worth of tokens come back in 50 ms.
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let level = if i % 2 == 0 { Level::Info } else { Level::Warn };
            assert!(log.push(level, "log", &origin(), &format!("line {i}")), "line {i}");
        }
        let all = log.read(0, Level::Trace, usize::MAX);
        assert_eq!(all.len(), KEPT);
        assert_eq!(all[0].message, "line 10");
        assert_eq!((all[0].partition, all[0].offsets), (2, Some((5, 9))));
        let warned = log.read(0, Level::Warn, 3);
        assert_eq!(
            warned.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
            ["line 1005", "line 1007", "line 1009"]
        );
        let after = all[all.len() - 2].seq;
        assert_eq!(log.read(after, Level::Trace, usize::MAX).len(), 1);
    }

    #[test]
    fn a_flood_is_dropped_past_the_burst_counted_and_said_once() {
        let log = GuestLog::default();
        let kept = (0..5000).filter(|i| log.push(Level::Info, "stdout", &origin(), &format!("flood {i}"))).count();
        assert!(kept >= BURST as usize && kept < BURST as usize + 100, "kept {kept}");
        assert_eq!(log.dropped(), 5000 - kept as u64);
        // Once tokens come back, a line says how many went before the next kept one.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(log.push(Level::Info, "log", &origin(), "after"));
        let last = log.read(0, Level::Trace, 2);
        assert!(last[0].message.starts_with(&format!("weir dropped {} lines", 5000 - kept)), "{:?}", last[0]);
        assert_eq!(last[1].message, "after");
    }

    #[test]
    fn a_long_line_is_cut_on_a_character_boundary() {
        let log = GuestLog::default();
        log.push(Level::Info, "log", &origin(), &"é".repeat(MAX_LINE));
        let line = &log.read(0, Level::Trace, 1)[0];
        assert!(line.message.len() < MAX_LINE + 40 && line.message.ends_with("bytes cut)"), "{}", line.message.len());
    }
}
