//! Timers and event time, kept in the processor's own state store.
//!
//! Timers live next to the guest's state under a reserved key prefix, so they are changelogged,
//! restored and moved with their partition like any other state, and a fired timer's deletion
//! commits together with the outputs it caused (exactly once under exactly-once). The guest
//! cannot read or write that prefix through `state`; its scans skip it.
//!
//! A timer's key is `RESERVED ++ "timer/" ++ clock ++ time ++ key`, the time as 8 big-endian
//! bytes with the sign bit flipped, so byte order is time order and a range scan finds the due
//! timers oldest first. The partition's event time (the largest record timestamp processed) is
//! kept under `RESERVED ++ "event-time"`, so lateness is judged the same way after a restart.

use weir_abi::time_key;

use crate::contract::weir::processor::types::{Clock, Timer};
use crate::error::StateError;
use crate::state::StateView;

/// The prefix of weir's own keys in a processor's store.
pub const RESERVED: &[u8] = b"\xff\xffweir/";
/// The first key after every key starting with [`RESERVED`].
pub const RESERVED_END: &[u8] = b"\xff\xffweir0";

const TIMERS: &[u8] = b"\xff\xffweir/timer/";
const EVENT_TIME: &[u8] = b"\xff\xffweir/event-time";

/// Most timers handed to the guest in one call.
pub const FIRE_BATCH: usize = 1000;

/// Per clock, the time up to which every timer has fired (`None`: not known), so the next
/// search for due timers starts after it.
#[derive(Debug, Default, Clone, Copy)]
pub struct FiredThrough {
    event_time: Option<i64>,
    wall_clock: Option<i64>,
}

impl FiredThrough {
    pub fn through(&self, clock: Clock) -> Option<i64> {
        match clock {
            Clock::EventTime => self.event_time,
            Clock::WallClock => self.wall_clock,
        }
    }

    pub fn set(&mut self, clock: Clock, through: Option<i64>) {
        match clock {
            Clock::EventTime => self.event_time = through,
            Clock::WallClock => self.wall_clock = through,
        }
    }

    /// A timer was set for `at`: if that is not after what has fired, search from before it.
    pub fn timer_set(&mut self, clock: Clock, at: i64) {
        if self.through(clock).is_some_and(|t| at <= t) {
            self.set(clock, Some(at.saturating_sub(1)));
        }
    }
}

/// Whether the guest may not use `key` through `state`.
pub fn is_reserved(key: &[u8]) -> bool {
    key.starts_with(RESERVED)
}

fn clock_prefix(clock: Clock) -> Vec<u8> {
    let mut k = TIMERS.to_vec();
    k.push(match clock {
        Clock::EventTime => b'e',
        Clock::WallClock => b'w',
    });
    k
}

/// The store key of the timer for `key` at `at` on `clock`.
pub fn timer_key(clock: Clock, at: i64, key: &[u8]) -> Vec<u8> {
    let mut k = clock_prefix(clock);
    k.extend_from_slice(&time_key::encode(at));
    k.extend_from_slice(key);
    k
}

/// The timers on `clock` due at `now` (time at or before it), oldest first, at most `limit`;
/// with `after`, only those set for a later time than it. Passing the time everything was
/// fired up to keeps the scan clear of the deleted timers before it, which RocksDB would
/// otherwise step over one by one until it compacts them away.
pub fn due(
    state: &StateView,
    clock: Clock,
    after: Option<i64>,
    now: i64,
    limit: usize,
) -> Result<Vec<Timer>, StateError> {
    let prefix = clock_prefix(clock);
    let mut start = prefix.clone();
    if let Some(from) = after.and_then(|a| a.checked_add(1)) {
        start.extend_from_slice(&time_key::encode(from));
    }
    let mut end = prefix.clone();
    match now.checked_add(1) {
        Some(after) => end.extend_from_slice(&time_key::encode(after)),
        // Everything is due at the end of time: end at the next clock's prefix.
        None => *end.last_mut().unwrap_or(&mut 0) += 1,
    }
    let entries = state.scan(&start, Some(&end), limit)?;
    Ok(entries
        .into_iter()
        .filter_map(|(k, _)| {
            let rest = k.get(prefix.len()..)?;
            let (time, key) = rest.split_at_checked(8)?;
            let at = time_key::decode(time)?;
            Some(Timer { clock, at, key: key.to_vec() })
        })
        .collect())
}

/// The partition's event time as last committed, or -1 before its first timestamped record.
pub fn load_event_time(state: &mut StateView) -> Result<i64, StateError> {
    Ok(state.get(EVENT_TIME)?.and_then(|v| v.try_into().ok()).map(i64::from_le_bytes).unwrap_or(-1))
}

/// Records a new event time, to commit with the batch that moved it.
pub fn store_event_time(state: &mut StateView, event_time: i64) {
    state.put(EVENT_TIME.to_vec(), event_time.to_le_bytes().to_vec());
}

/// A guest's scan of `[start, end)` with weir's keys cut out: at most two ranges, below and
/// above the reserved prefix.
pub fn guest_ranges<'a>(start: &'a [u8], end: Option<&'a [u8]>) -> Vec<(&'a [u8], Option<&'a [u8]>)> {
    let mut ranges = Vec::with_capacity(2);
    if start < RESERVED {
        let below = match end {
            Some(e) if e <= RESERVED => e,
            _ => RESERVED,
        };
        if start < below {
            ranges.push((start, Some(below)));
        }
    }
    if end.is_none_or(|e| e > RESERVED_END) {
        ranges.push((start.max(RESERVED_END), end));
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    #[test]
    fn due_timers_come_oldest_first_including_negative_times_and_stop_at_now() {
        let mut state = StateView::new(Box::new(MemoryStore::new()));
        for (at, key) in [(50, "b"), (-7, "a"), (10, "c"), (51, "late"), (10, "d")] {
            state.put(timer_key(Clock::EventTime, at, key.as_bytes()), Vec::new());
        }
        state.put(timer_key(Clock::WallClock, 0, b"wall"), Vec::new());
        let due = due(&state, Clock::EventTime, None, 50, 100).unwrap();
        let seen: Vec<(i64, &[u8])> = due.iter().map(|t| (t.at, t.key.as_slice())).collect();
        assert_eq!(seen, [(-7, &b"a"[..]), (10, b"c"), (10, b"d"), (50, b"b")]);
        assert_eq!(super::due(&state, Clock::EventTime, None, i64::MAX, 100).unwrap().len(), 5);
        assert_eq!(super::due(&state, Clock::EventTime, Some(10), i64::MAX, 100).unwrap().len(), 2);
        assert_eq!(super::due(&state, Clock::WallClock, None, 0, 100).unwrap()[0].key, b"wall");
    }

    #[test]
    fn guest_scans_skip_the_reserved_prefix_whatever_their_bounds() {
        let all = guest_ranges(b"", None);
        assert_eq!(all, [(&b""[..], Some(RESERVED)), (RESERVED_END, None)]);
        assert_eq!(guest_ranges(b"a", Some(b"b")), [(&b"a"[..], Some(&b"b"[..]))]);
        assert_eq!(guest_ranges(b"\xff\xffweir/x", Some(b"\xff\xffweir/y")), []);
        assert_eq!(guest_ranges(b"\xff\xffz", None), [(&b"\xff\xffz"[..], None)]);
    }
}
