//! Counts records per key in 10-second tumbling windows of event time, waiting 5 seconds for
//! late records; emits each window's count once, when the window closes. Later records are
//! left out (and logged).
use weir_sdk::timers::Timer;
use weir_sdk::window::Windows;
use weir_sdk::{log, processor, Error, Output, Record};

pub const WINDOWS: Windows = Windows::tumbling("counts", 10_000).grace(5_000);

#[processor(on_timer = emit)]
pub fn count(record: &Record) -> Result<(), Error> {
    if WINDOWS.aggregate(record, record.key().unwrap_or_default(), |n: &mut u64| *n += 1)? == 0 {
        log::warn(format!("late record at offset {} left out", record.offset()));
    }
    Ok(())
}

pub fn emit(timer: &Timer) -> Result<Option<Output>, Error> {
    let Some(w) = WINDOWS.close::<u64>(timer)? else { return Ok(None) };
    let value = format!(r#"{{"start":{},"end":{},"count":{}}}"#, w.start, w.end, w.value);
    Ok(Some(Output::new(value).with_key(w.key)))
}

