//! Stream-stream joins within a time window, with a grace period, built on
//! [`state`](crate::state) and [`timers`](crate::timers).
//!
//! Each side's records are buffered by key for as long as a record of the other side could
//! still join them: a record at `t` joins the other side's records of the same key at `t ± within`,
//! and is dropped from the buffer when event time reaches `t + within + grace` (its timer; pass
//! the timers to [`Join::expire`], which also says whether the record ever found a partner, for
//! left or outer joins). A record older than that on arrival is late and joins nothing.
//!
//! ```
//! use weir_sdk::join::{Join, Side};
//! use weir_sdk::timers::Timer;
//! use weir_sdk::{processor, Error, Output, Record};
//!
//! const PAID: Join = Join::new("order-payment", 60_000).grace(5_000);
//!
//! #[processor(on_timer = expire)]
//! fn paid_orders(record: &Record) -> Result<Vec<Output>, Error> {
//!     let side = if record.input() == "payments" { Side::Right } else { Side::Left };
//!     let matches = PAID.add(side, record)?.unwrap_or_default();
//!     Ok(matches.into_iter().map(|m| record.map_value(|_| m.value)).collect())
//! }
//!
//! fn expire(timer: &Timer) -> Result<(), Error> {
//!     PAID.expire(timer).map(|_| ())
//! }
//! # let _ = (paid_orders, expire);
//! ```

use weir_abi::time_key;

use crate::timers::{self, Clock, Timer};
use crate::{state, Error, Record};

/// A join of two streams by key, within `within` ms of each other.
#[derive(Debug, Clone, Copy)]
pub struct Join {
    name: &'static str,
    within: i64,
    grace: i64,
}

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

impl Side {
    fn tag(self) -> u8 {
        match self {
            Side::Left => b'L',
            Side::Right => b'R',
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }
}

/// A buffered record of the other side that the new record joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub timestamp: i64,
    pub value: Vec<u8>,
}

/// A buffered record whose time to join is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub side: Side,
    pub key: Vec<u8>,
    pub timestamp: i64,
    pub value: Vec<u8>,
    /// Whether it joined any record of the other side.
    pub matched: bool,
}

/// The records buffered for one side, key and timestamp: (matched, value) each.
type Buffered = Vec<(bool, Vec<u8>)>;

impl Join {
    /// Joins records whose timestamps are at most `within_ms` apart. `name` keeps this join's
    /// state and timers apart from others'.
    pub const fn new(name: &'static str, within_ms: i64) -> Self {
        Self { name, within: within_ms, grace: 0 }
    }

    /// Keeps records buffered `grace_ms` longer, for partners that arrive late.
    pub const fn grace(mut self, grace_ms: i64) -> Self {
        self.grace = grace_ms;
        self
    }

    /// `weir.join/<name>/<side><key length: 4 bytes><key>`: one side's records of one key.
    fn prefix(&self, side: Side, key: &[u8]) -> Vec<u8> {
        let mut k = format!("weir.join/{}/", self.name).into_bytes();
        k.push(side.tag());
        k.extend_from_slice(&(key.len() as u32).to_be_bytes());
        k.extend_from_slice(key);
        k
    }

    fn state_key(&self, side: Side, key: &[u8], timestamp: i64) -> Vec<u8> {
        let mut k = self.prefix(side, key);
        k.extend_from_slice(&time_key::encode(timestamp));
        k
    }

    /// Buffers `record` (by its key and timestamp) on `side` and returns the other side's
    /// buffered records of its key within `within` of it, oldest first. `None` when the record
    /// came too late to join anything; it is then not buffered either. A record without a key
    /// or timestamp is an error.
    pub fn add(&self, side: Side, record: &Record<'_>) -> Result<Option<Vec<Match>>, Error> {
        let (Some(key), Some(timestamp)) = (record.key(), record.timestamp()) else {
            return Err(Error::msg(format!("join `{}`: the record needs a key and a timestamp", self.name)));
        };
        let expires = timestamp.saturating_add(self.within).saturating_add(self.grace);
        if timers::event_time().is_some_and(|now| expires <= now) {
            return Ok(None);
        }
        let other = self.prefix(side.other(), key);
        let bound = |t: i64| [other.as_slice(), &time_key::encode(t)].concat();
        let (from, to) = (bound(timestamp.saturating_sub(self.within)), bound(timestamp.saturating_add(self.within)));
        let mut matches = Vec::new();
        for (k, bytes) in state::scan_range(&from, None).take_while(|(k, _)| k.as_slice() <= to.as_slice()) {
            let at = time_key::decode(&k[other.len()..]).unwrap_or(timestamp);
            let mut buffered = decode(&bytes, &k)?;
            if buffered.iter().any(|(matched, _)| !matched) {
                buffered.iter_mut().for_each(|(matched, _)| *matched = true);
                state::put_bytes(&k, encode(&buffered));
            }
            matches.extend(buffered.into_iter().map(|(_, value)| Match { timestamp: at, value }));
        }
        let own = self.state_key(side, key, timestamp);
        let mut buffered = match state::get_bytes(&own) {
            Some(bytes) => decode(&bytes, &own)?,
            None => Vec::new(),
        };
        buffered.push((!matches.is_empty(), record.value().unwrap_or_default().to_vec()));
        state::put_bytes(&own, encode(&buffered));
        timers::set(Clock::EventTime, expires, &own);
        Ok(Some(matches))
    }

    /// The buffered records `timer` expires, taken out of state; `None` when the timer is not
    /// one of this join's.
    pub fn expire(&self, timer: &Timer) -> Result<Option<Vec<Expired>>, Error> {
        let head = format!("weir.join/{}/", self.name).into_bytes();
        let Some(rest) = timer.key().strip_prefix(head.as_slice()) else { return Ok(None) };
        let side = match rest.first() {
            Some(b'L') => Side::Left,
            Some(b'R') => Side::Right,
            _ => return Ok(None),
        };
        let Some(len) = rest.get(1..5).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes) else { return Ok(None) };
        let Some(key) = rest.get(5..5 + len as usize) else { return Ok(None) };
        let Some(timestamp) = rest.get(5 + len as usize..).and_then(time_key::decode) else { return Ok(None) };
        let Some(bytes) = state::get_bytes(timer.key()) else { return Ok(Some(Vec::new())) };
        let buffered = decode(&bytes, timer.key())?;
        state::delete(timer.key());
        let expired =
            buffered.into_iter().map(|(matched, value)| Expired { side, key: key.to_vec(), timestamp, value, matched });
        Ok(Some(expired.collect()))
    }
}

/// `[matched: 1 byte][length: 4 bytes][value]` for each buffered record.
fn encode(buffered: &Buffered) -> Vec<u8> {
    let mut out = Vec::new();
    for (matched, value) in buffered {
        out.push(u8::from(*matched));
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

fn decode(mut bytes: &[u8], key: &[u8]) -> Result<Buffered, Error> {
    let mut buffered = Vec::new();
    while let Some((&matched, rest)) = bytes.split_first() {
        let len = rest.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
        let Some(value) = len.and_then(|len| rest.get(4..4 + len as usize)) else {
            return Err(Error::msg(format!("join buffer under {:?} is corrupt", String::from_utf8_lossy(key))));
        };
        buffered.push((matched == 1, value.to_vec()));
        bytes = &rest[4 + value.len()..];
    }
    Ok(buffered)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{self, TestBatch};
    use crate::Output;

    const PAID: Join = Join::new("paid", 10).grace(5);

    fn join(record: &Record<'_>) -> Result<Vec<Output>, Error> {
        let side = if record.input() == "payments" { Side::Right } else { Side::Left };
        let matches = PAID.add(side, record)?.unwrap_or_default();
        Ok(matches.into_iter().map(|m| record.map_value(|v| [v, b"+", &m.value].concat())).collect())
    }

    fn unpaid(timer: &Timer) -> Result<Vec<Output>, Error> {
        let expired = PAID.expire(timer)?.unwrap_or_default();
        let unmatched = expired.into_iter().filter(|e| e.side == Side::Left && !e.matched);
        Ok(unmatched.map(|e| Output::new([b"unpaid ", e.value.as_slice()].concat()).with_key(e.key)).collect())
    }

    fn values(outputs: &[Output]) -> Vec<String> {
        outputs.iter().map(|o| String::from_utf8_lossy(o.value().unwrap_or_default()).into_owned()).collect()
    }

    #[test]
    fn records_join_within_the_window_and_unjoined_ones_expire_once() {
        testing::reset_state();
        let orders = TestBatch::new("orders").with_at(Some("o1"), "order1", 100).with_at(Some("o2"), "order2", 101);
        assert!(orders.run_with_timers(join, unpaid).unwrap().is_empty());
        // o1's payment is 9 ms later: it joins. o2's comes 11 ms later: too far apart.
        let payments = TestBatch::new("payments").with_at(Some("o1"), "pay1", 109).with_at(Some("o2"), "pay2", 112);
        assert_eq!(values(&payments.run_with_timers(join, unpaid).unwrap()), ["pay1+order1"]);
        // Event time 115 expires the orders (100 + 10 + 5): o2 never joined.
        let later = TestBatch::new("payments").with_at(Some("o9"), "pay9", 116);
        assert_eq!(values(&later.run_with_timers(join, unpaid).unwrap()), ["unpaid order2"]);
        // A payment for o1 at 100 is now too late to join anything.
        let late = TestBatch::new("payments").with_at(Some("o1"), "late", 100);
        assert!(late.run_with_timers(join, unpaid).unwrap().is_empty());
    }
}
