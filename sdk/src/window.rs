//! Aggregation over event-time windows, tumbling or hopping, with a grace period for late
//! records, built on [`state`](crate::state) and [`timers`](crate::timers).
//!
//! Each window `[start, end)` of a key keeps its aggregate in state until event time reaches
//! `end + grace`; then its timer fires, and [`Windows::close`] hands over the final value once and
//! forgets it. A record whose windows have all closed is late and left out (as in Kafka Streams,
//! where a window closes when stream time reaches its end plus the grace period).
//!
//! ```
//! use weir_sdk::window::Windows;
//! use weir_sdk::timers::Timer;
//! use weir_sdk::{processor, Error, Output, Record};
//!
//! const MINUTES: Windows = Windows::tumbling("clicks-per-minute", 60_000).grace(10_000);
//!
//! #[processor(on_timer = emit)]
//! fn count(record: &Record) -> Result<(), Error> {
//!     MINUTES.aggregate(record, record.key().unwrap_or_default(), |n: &mut u64| *n += 1)?;
//!     Ok(())
//! }
//!
//! fn emit(timer: &Timer) -> Result<Option<Output>, Error> {
//!     let Some(w) = MINUTES.close::<u64>(timer)? else { return Ok(None) };
//!     Ok(Some(Output::new(format!("{}@{}: {}", String::from_utf8_lossy(&w.key), w.start, w.value)).with_key(w.key)))
//! }
//! # let _ = (count, emit);
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_abi::time_key;

use crate::timers::{self, Clock, Timer};
use crate::{state, Error, Record};

/// A family of windows: their size, how far apart they start, and how long they wait for late
/// records. Times are in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    name: &'static str,
    size: i64,
    advance: i64,
    grace: i64,
}

/// A closed window and its final aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct Window<A> {
    pub key: Vec<u8>,
    /// Inclusive start, in ms since the epoch.
    pub start: i64,
    /// Exclusive end.
    pub end: i64,
    pub value: A,
}

impl Windows {
    /// Back-to-back windows of `size_ms`; every record falls in exactly one. `name` keeps this
    /// family's state and timers apart from others'.
    pub const fn tumbling(name: &'static str, size_ms: i64) -> Self {
        Self { name, size: size_ms, advance: size_ms, grace: 0 }
    }

    /// Windows of `size_ms` starting every `advance_ms`; a record falls in `size / advance` of
    /// them.
    pub const fn hopping(name: &'static str, size_ms: i64, advance_ms: i64) -> Self {
        Self { name, size: size_ms, advance: advance_ms, grace: 0 }
    }

    /// Keeps each window open for records up to `grace_ms` later than its end.
    pub const fn grace(mut self, grace_ms: i64) -> Self {
        self.grace = grace_ms;
        self
    }

    /// The starts of the windows that contain `timestamp`, oldest first.
    pub fn starts(&self, timestamp: i64) -> impl Iterator<Item = i64> {
        let (size, advance) = (self.size.max(1), self.advance.max(1));
        let last = timestamp.div_euclid(advance) * advance;
        let first = last - (size - 1).div_euclid(advance) * advance;
        (0..).map(move |i| first + i * advance).take_while(move |&s| s <= last).filter(move |&s| s + size > timestamp)
    }

    fn prefix(&self) -> Vec<u8> {
        format!("weir.window/{}/", self.name).into_bytes()
    }

    fn state_key(&self, start: i64, key: &[u8]) -> Vec<u8> {
        let mut k = self.prefix();
        k.extend_from_slice(&time_key::encode(start));
        k.extend_from_slice(key);
        k
    }

    /// Folds `record` into the aggregate of `key` in every window containing its timestamp that
    /// is still open, starting from `A::default()`. Returns how many windows took it: 0 means
    /// it came too late for all of them and was left out. A record without a timestamp is an
    /// error: windows need event time.
    pub fn aggregate<A>(&self, record: &Record<'_>, key: impl AsRef<[u8]>, f: impl Fn(&mut A)) -> Result<usize, Error>
    where
        A: Serialize + DeserializeOwned + Default,
    {
        let Some(timestamp) = record.timestamp() else {
            return Err(Error::msg(format!("window `{}`: the record has no timestamp", self.name)));
        };
        let now = timers::event_time().unwrap_or(timestamp);
        let mut taken = 0;
        for start in self.starts(timestamp) {
            let closes = start + self.size + self.grace;
            if closes <= now {
                continue;
            }
            let k = self.state_key(start, key.as_ref());
            let mut value: A = state::get(&k)?.unwrap_or_default();
            f(&mut value);
            state::put(&k, &value)?;
            timers::set(Clock::EventTime, closes, &k);
            taken += 1;
        }
        Ok(taken)
    }

    /// The final aggregate of the window `timer` closes, taken out of state; `None` when the
    /// timer is not one of this family's.
    pub fn close<A: DeserializeOwned>(&self, timer: &Timer) -> Result<Option<Window<A>>, Error> {
        let Some(rest) = timer.key().strip_prefix(self.prefix().as_slice()) else { return Ok(None) };
        let Some((start, key)) = rest.split_at_checked(8) else { return Ok(None) };
        let Some(start) = time_key::decode(start) else { return Ok(None) };
        let Some(value) = state::get::<A>(timer.key())? else { return Ok(None) };
        state::delete(timer.key());
        Ok(Some(Window { key: key.to_vec(), start, end: start + self.size, value }))
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, TestBatch};
    use crate::Output;

    const COUNTS: Windows = Windows::tumbling("counts", 10).grace(5);

    fn count(record: &Record<'_>) -> Result<(), Error> {
        COUNTS.aggregate(record, record.key().unwrap_or_default(), |n: &mut u64| *n += 1).map(|_| ())
    }

    fn emit(timer: &Timer) -> Result<Option<Output>, Error> {
        let Some(w) = COUNTS.close::<u64>(timer)? else { return Ok(None) };
        Ok(Some(Output::new(format!("{}:{}", w.start, w.value)).with_key(w.key)))
    }

    fn values(outputs: &[Output]) -> Vec<String> {
        outputs.iter().map(|o| String::from_utf8_lossy(o.value().unwrap_or_default()).into_owned()).collect()
    }

    #[test]
    fn hopping_windows_contain_a_timestamp_size_over_advance_times() {
        let w = Windows::hopping("h", 10, 5);
        assert_eq!(w.starts(12).collect::<Vec<_>>(), [5, 10]);
        assert_eq!(w.starts(-3).collect::<Vec<_>>(), [-10, -5]);
        assert_eq!(Windows::tumbling("t", 10).starts(19).collect::<Vec<_>>(), [10]);
    }

    #[test]
    fn a_window_emits_once_when_event_time_passes_its_end_plus_grace_and_late_records_are_left_out() {
        testing::reset_state();
        // Window [0, 10) closes at 15: the record at 3 arriving at event time 12 is in grace.
        let first =
            TestBatch::new("t").with_at(Some("a"), "x", 1).with_at(Some("a"), "x", 12).with_at(Some("a"), "x", 3);
        assert!(first.run_with_timers(count, emit).unwrap().is_empty());
        // Event time 15 closes [0, 10) with 2 records; the record at 4 is then too late.
        let second = TestBatch::new("t").with_at(Some("a"), "x", 15).with_at(Some("a"), "x", 4);
        assert_eq!(values(&second.run_with_timers(count, emit).unwrap()), ["0:2"]);
        let third = TestBatch::new("t").with_at(Some("a"), "x", 40);
        assert_eq!(values(&third.run_with_timers(count, emit).unwrap()), ["10:2"]);
    }
}
