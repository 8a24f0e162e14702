//! What `#[processor]` expands to calls into: init with config checks, and the loops that turn a
//! batch into calls of the user's function and its results into outputs.

use std::sync::OnceLock;

use crate::bindings::weir::processor::types as wit;
use crate::output::OutputSink;
use crate::timers::{self, Timer};
use crate::{Batch, IntoOutputs, Record};

static CONFIG: OnceLock<Vec<(String, String)>> = OnceLock::new();

pub(crate) fn config(key: &str) -> Option<&'static str> {
    CONFIG.get()?.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Checks the configuration against the keys the processor declared, keeps it, and routes
/// panics to the host's log so a trap comes with its message.
pub fn init(config: Vec<(String, String)>, accepted: &[&str]) -> Result<(), String> {
    std::panic::set_hook(Box::new(|info| crate::log::error(info.to_string())));
    if let Some((key, _)) = config.iter().find(|(k, _)| !accepted.contains(&k.as_str())) {
        let expected = if accepted.is_empty() {
            "this processor takes no configuration".to_owned()
        } else {
            format!("this processor accepts: {}", accepted.join(", "))
        };
        return Err(format!("unknown config key `{key}`; {expected}"));
    }
    // A fresh instance has fresh memory, so this is the first set; a second is ignored.
    let _ = CONFIG.set(config);
    Ok(())
}

/// Calls `f` on every record, in order; an error names the record it came from.
pub fn process_each<R: IntoOutputs>(
    batch: &wit::Batch,
    f: impl Fn(&Record<'_>) -> R,
) -> Result<wit::Outputs, wit::ProcessingError> {
    let mut sink = OutputSink::for_batch(batch);
    timers::begin_call();
    for record in Batch::new(batch).records() {
        sink.source = record.index() as u32;
        timers::saw(record.timestamp().unwrap_or(-1));
        f(&record)
            .emit(&mut sink)
            .map_err(|e| wit::ProcessingError { record: Some(e.record.unwrap_or(sink.source)), message: e.message })?;
    }
    Ok(sink.finish())
}

/// Calls `f` once with the whole batch.
pub fn process_batch<R: IntoOutputs>(
    batch: &wit::Batch,
    f: impl Fn(&Batch<'_>) -> R,
) -> Result<wit::Outputs, wit::ProcessingError> {
    let mut sink = OutputSink::for_batch(batch);
    sink.source = (batch.offsets.len() / 8).saturating_sub(1) as u32;
    timers::begin_call();
    let batch_view = Batch::new(batch);
    batch_view.records().for_each(|r| timers::saw(r.timestamp().unwrap_or(-1)));
    f(&batch_view).emit(&mut sink).map_err(|e| wit::ProcessingError { record: e.record, message: e.message })?;
    Ok(sink.finish())
}

/// Calls `f` on every timer that fired, in order; an error names the timer it came from.
pub fn on_timer_each<R: IntoOutputs>(
    fired: Vec<wit::Timer>,
    f: impl Fn(&Timer) -> R,
) -> Result<wit::Outputs, wit::ProcessingError> {
    let mut sink = OutputSink::with_capacity(fired.len());
    timers::begin_call();
    for (i, t) in fired.into_iter().enumerate() {
        sink.source = i as u32;
        f(&Timer { clock: t.clock.into(), at: t.at, key: t.key })
            .emit(&mut sink)
            .map_err(|e| wit::ProcessingError { record: Some(e.record.unwrap_or(sink.source)), message: e.message })?;
    }
    Ok(sink.finish())
}

/// The timer handler of a processor that declared none: a timer it set fired.
pub fn no_timer_handler(fired: Vec<wit::Timer>) -> Result<wit::Outputs, wit::ProcessingError> {
    Err(wit::ProcessingError {
        record: (!fired.is_empty()).then_some(0),
        message: "a timer fired, but the processor has no timer handler: name one with \
                  `#[processor(on_timer = function)]`"
            .to_owned(),
    })
}
