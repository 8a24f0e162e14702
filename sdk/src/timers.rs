//! Timers: have weir call the processor's `on_timer` function at an event time or a wall-clock
//! time, for a key.
//!
//! weir keeps timers in the processor's state store, so they survive crashes and move with the
//! partition, and under exactly-once each fires exactly once, together with the outputs and
//! state changes of its handler. Event time is the partition's largest record timestamp so far;
//! an event-time timer fires once a record at or past its time has been processed.
//!
//! ```
//! use weir_sdk::timers::{self, Clock, Timer};
//! use weir_sdk::{processor, Output, Record};
//!
//! /// Says "expired" one minute (of event time) after a key was last seen.
//! #[processor(on_timer = expire)]
//! fn watch(record: &Record) {
//!     let at = record.timestamp().unwrap_or(0) + 60_000;
//!     timers::set(Clock::EventTime, at, record.key().unwrap_or_default());
//! }
//!
//! fn expire(timer: &Timer) -> Output {
//!     Output::new("expired").with_key(timer.key())
//! }
//! # let _ = (watch, expire);
//! ```

use std::cell::Cell;

use crate::bindings::weir::processor::types::Clock as WitClock;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Clock {
    /// The partition's event time (record timestamps).
    EventTime,
    /// The host's wall clock (checked about every 100 ms).
    WallClock,
}

impl From<Clock> for WitClock {
    fn from(clock: Clock) -> Self {
        match clock {
            Clock::EventTime => WitClock::EventTime,
            Clock::WallClock => WitClock::WallClock,
        }
    }
}

impl From<WitClock> for Clock {
    fn from(clock: WitClock) -> Self {
        match clock {
            WitClock::EventTime => Clock::EventTime,
            WitClock::WallClock => Clock::WallClock,
        }
    }
}

/// A timer that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub(crate) clock: Clock,
    pub(crate) at: i64,
    pub(crate) key: Vec<u8>,
}

impl Timer {
    pub fn new(clock: Clock, at: i64, key: impl Into<Vec<u8>>) -> Self {
        Self { clock, at, key: key.into() }
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The time it was set for, in milliseconds since the Unix epoch.
    pub fn at(&self) -> i64 {
        self.at
    }

    /// The key it was set for.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

/// Sets a timer for `key` at `at` (milliseconds since the Unix epoch) on `clock`. Setting the
/// same clock, time and key again keeps one timer. A time already passed fires right after
/// the current batch.
pub fn set(clock: Clock, at: i64, key: impl AsRef<[u8]>) {
    backend::set(clock, at, key.as_ref());
}

/// Removes the timer for `key` at `at` on `clock`, if there is one.
pub fn cancel(clock: Clock, at: i64, key: impl AsRef<[u8]>) {
    backend::cancel(clock, at, key.as_ref());
}

/// The partition's event time: the largest record timestamp processed so far, counting the
/// records of the current batch up to and including the one being processed. `None` before
/// any timestamped record.
pub fn event_time() -> Option<i64> {
    let host = HOST_TIME.get().unwrap_or_else(|| {
        let t = backend::event_time();
        HOST_TIME.set(Some(t));
        t
    });
    Some(host.max(BATCH_TIME.get())).filter(|&t| t >= 0)
}

thread_local! {
    /// The host's event time for the current call, asked for on first use.
    static HOST_TIME: Cell<Option<i64>> = const { Cell::new(None) };
    /// The largest timestamp among the records of the current batch seen so far.
    static BATCH_TIME: Cell<i64> = const { Cell::new(-1) };
}

/// A new call from the host: forget what the last one knew.
pub(crate) fn begin_call() {
    HOST_TIME.set(None);
    BATCH_TIME.set(-1);
}

/// The record about to be processed has this timestamp (-1: none).
#[inline]
pub(crate) fn saw(timestamp: i64) {
    if timestamp > BATCH_TIME.get() {
        BATCH_TIME.set(timestamp);
    }
}

#[cfg(target_arch = "wasm32")]
mod backend {
    use super::Clock;
    use crate::bindings::weir::processor::timers as host;

    pub fn set(clock: Clock, at: i64, key: &[u8]) {
        host::set(clock.into(), at, key);
    }

    pub fn cancel(clock: Clock, at: i64, key: &[u8]) {
        host::cancel(clock.into(), at, key);
    }

    pub fn event_time() -> i64 {
        host::event_time()
    }
}

/// Off wasm: per-thread timers and event time, driven by `testing::advance_event_time`.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod backend {
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeSet;

    use super::{Clock, Timer};

    thread_local! {
        static TIMERS: RefCell<BTreeSet<(Clock, i64, Vec<u8>)>> = const { RefCell::new(BTreeSet::new()) };
        static EVENT_TIME: Cell<i64> = const { Cell::new(-1) };
    }

    pub fn set(clock: Clock, at: i64, key: &[u8]) {
        TIMERS.with_borrow_mut(|t| t.insert((clock, at, key.to_vec())));
    }

    pub fn cancel(clock: Clock, at: i64, key: &[u8]) {
        TIMERS.with_borrow_mut(|t| t.remove(&(clock, at, key.to_vec())));
    }

    pub fn event_time() -> i64 {
        EVENT_TIME.get()
    }

    pub fn set_event_time(t: i64) {
        EVENT_TIME.set(EVENT_TIME.get().max(t));
    }

    /// Removes and returns the timers on `clock` due at `now`, oldest first.
    pub fn take_due(clock: Clock, now: i64) -> Vec<Timer> {
        TIMERS.with_borrow_mut(|t| {
            let due: Vec<_> = t.iter().filter(|(c, at, _)| *c == clock && *at <= now).cloned().collect();
            due.into_iter()
                .map(|entry| {
                    t.remove(&entry);
                    Timer { clock: entry.0, at: entry.1, key: entry.2 }
                })
                .collect()
        })
    }

    pub fn clear() {
        TIMERS.with_borrow_mut(BTreeSet::clear);
        EVENT_TIME.set(-1);
    }
}
