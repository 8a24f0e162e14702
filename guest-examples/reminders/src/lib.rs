//! Reminds: `delay_ms` (default 1000) of wall-clock time after a record, emits its value again,
//! keyed like it. A wall-clock timer per record; the value waits in state.
use std::time::{SystemTime, UNIX_EPOCH};

use weir_sdk::timers::{self, Clock, Timer};
use weir_sdk::{config, processor, state, Error, Output, Record};

#[processor(config = ["delay_ms"], on_timer = remind)]
pub fn schedule(record: &Record) -> Result<(), Error> {
    let delay: i64 = config("delay_ms").unwrap_or("1000").parse()?;
    let key = record.key().ok_or_else(|| Error::msg("a reminder needs a key"))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    state::put_bytes(key, record.value().unwrap_or_default());
    timers::set(Clock::WallClock, now + delay, key);
    Ok(())
}

pub fn remind(timer: &Timer) -> Option<Output> {
    let value = state::get_bytes(timer.key())?;
    state::delete(timer.key());
    Some(Output::new(value).with_key(timer.key()))
}

#[cfg(test)]
mod tests {
    use weir_sdk::testing::{fire_wall_clock, reset_state, TestBatch};

    #[test]
    fn a_reminder_goes_out_once_when_its_time_comes() {
        reset_state();
        assert!(TestBatch::new("t").with(Some("k"), "call mum").run(super::schedule).unwrap().is_empty());
        assert!(fire_wall_clock(0, super::remind).unwrap().is_empty());
        let out = fire_wall_clock(i64::MAX, super::remind).unwrap();
        assert_eq!(out[0].value(), Some(&b"call mum"[..]));
        assert!(fire_wall_clock(i64::MAX, super::remind).unwrap().is_empty());
    }
}
