//! Run processors natively in unit tests and benchmarks, through the same code paths as in
//! wasm: build a batch, call the processor glue, read the outputs.
//!
//! ```
//! use weir_sdk::testing::TestBatch;
//! use weir_sdk::{Output, Record};
//!
//! fn shout(record: &Record) -> Output {
//!     record.map_value(|v| v.to_ascii_uppercase())
//! }
//!
//! let batch = TestBatch::new("words").with(Some("k"), "hi");
//! let outputs = batch.run(shout).unwrap();
//! assert_eq!(outputs[0].value(), Some(&b"HI"[..]));
//! ```

use crate::bindings::weir::processor::types as wit;
use crate::record::{append, bytes, column, HEADER_STRIDE};
#[cfg(not(target_arch = "wasm32"))]
use crate::timers::{self, Clock, Timer};
use crate::{Batch, Error, IntoOutputs, Output, Record};

/// A batch built in memory.
#[derive(Debug, Clone)]
pub struct TestBatch {
    wit: wit::Batch,
}

impl TestBatch {
    /// An empty batch from partition 0 of `topic`.
    pub fn new(topic: &str) -> Self {
        let wit = wit::Batch {
            input: topic.to_owned(),
            topic: topic.to_owned(),
            partition: 0,
            offsets: Vec::new(),
            timestamps: Vec::new(),
            records: Vec::new(),
            headers: Vec::new(),
            data: Vec::new(),
        };
        Self { wit }
    }

    fn append(&mut self, bytes: Option<&[u8]>) -> [u32; 2] {
        append(&mut self.wit.data, bytes)
    }

    /// Appends a record with this key and value, the next offset, and the given headers.
    pub fn push(&mut self, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, &[u8])]) {
        let first_header = (self.wit.headers.len() / (4 * HEADER_STRIDE)) as u32;
        for (name, value) in headers {
            let [name_at, name_len] = self.append(Some(name.as_bytes()));
            let [value_at, value_len] = self.append(Some(value));
            column::push_u32s(&mut self.wit.headers, &[name_at, name_len, value_at, value_len]);
        }
        let [key_at, key_len] = self.append(key);
        let [value_at, value_len] = self.append(value);
        let offset = (self.wit.offsets.len() / 8) as i64;
        column::push_i64(&mut self.wit.offsets, offset);
        column::push_i64(&mut self.wit.timestamps, -1);
        column::push_u32s(
            &mut self.wit.records,
            &[key_at, key_len, value_at, value_len, first_header, headers.len() as u32],
        );
    }

    /// Appends a record with a UTF-8 key and value.
    pub fn with(mut self, key: Option<&str>, value: &str) -> Self {
        self.push(key.map(str::as_bytes), Some(value.as_bytes()), &[]);
        self
    }

    /// Appends a record with a UTF-8 key and value and this timestamp (ms since the epoch).
    pub fn with_at(mut self, key: Option<&str>, value: &str, timestamp: i64) -> Self {
        self.push(key.map(str::as_bytes), Some(value.as_bytes()), &[]);
        let at = self.wit.timestamps.len() - 8;
        self.wit.timestamps[at..].copy_from_slice(&timestamp.to_le_bytes());
        self
    }

    /// Reads records from input `name` (the topic name by default).
    pub fn from_input(mut self, name: &str) -> Self {
        name.clone_into(&mut self.wit.input);
        self
    }

    pub fn batch(&self) -> Batch<'_> {
        Batch::new(&self.wit)
    }

    /// Record `index`.
    pub fn record(&self, index: usize) -> Option<Record<'_>> {
        self.batch().get(index)
    }

    /// Runs a per-record processor over the batch, as `#[processor]` does in wasm.
    pub fn run<R: IntoOutputs>(&self, f: impl Fn(&Record<'_>) -> R) -> Result<Vec<Output>, Error> {
        let out = crate::glue::process_each(&self.wit, f).map_err(from_wit)?;
        Ok(decode(&out))
    }

    /// Runs a per-record processor, then does what weir does after a batch: moves this thread's
    /// event time to the batch's newest timestamp and fires the event-time timers now due
    /// through `on_timer`. Returns the processor's outputs, then the timers'.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_with_timers<R: IntoOutputs, T: IntoOutputs>(
        &self,
        f: impl Fn(&Record<'_>) -> R,
        on_timer: impl Fn(&Timer) -> T,
    ) -> Result<Vec<Output>, Error> {
        let mut outputs = self.run(f)?;
        let newest = (0..self.batch().len()).filter_map(|i| self.record(i)?.timestamp()).max().unwrap_or(-1);
        outputs.extend(advance_event_time(newest, on_timer)?);
        Ok(outputs)
    }

    /// Runs a per-record processor and counts its outputs without decoding them: the native
    /// side of the benchmark, doing exactly the work the wasm glue does.
    pub fn run_encoded<R: IntoOutputs>(&self, f: impl Fn(&Record<'_>) -> R) -> Result<usize, Error> {
        let out = crate::glue::process_each(&self.wit, f).map_err(from_wit)?;
        Ok(out.sources.len() / 4)
    }
}

fn from_wit(e: wit::ProcessingError) -> Error {
    Error { record: e.record, message: e.message }
}

fn decode(out: &wit::Outputs) -> Vec<Output> {
    let owned = |at: u32, len: u32| bytes(&out.data, at, len).map(<[u8]>::to_vec);
    let text = |at: u32, len: u32| owned(at, len).map(|b| String::from_utf8_lossy(&b).into_owned());
    out.records
        .chunks_exact(4 * 8)
        .map(column::row::<8>)
        .enumerate()
        .map(|(i, c)| Output {
            topic: text(c[0], c[1]),
            key: owned(c[2], c[3]),
            value: owned(c[4], c[5]),
            headers: (c[6] as usize..(c[6] + c[7]) as usize)
                .filter_map(|h| column::u32s::<HEADER_STRIDE>(&out.headers, h))
                .map(|h| (text(h[0], h[1]).unwrap_or_default(), owned(h[2], h[3]).unwrap_or_default()))
                .collect(),
            timestamp: column::i64_at(&out.timestamps, i).filter(|&t| t >= 0),
            source: column::u32s::<1>(&out.sources, i).map(|[s]| s),
        })
        .collect()
}

/// Sets `key` in table `name` of this thread's native table stub (what `table::get` reads off
/// wasm).
#[cfg(not(target_arch = "wasm32"))]
pub fn set_table(name: &str, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
    crate::table::backend::set(name, key.as_ref(), Some(value.as_ref()));
}

/// Moves this thread's event time up to `t` (never back) and fires the event-time timers due
/// by then through `on_timer`, oldest first, as weir does; timers they set that are already due
/// fire too. Returns their outputs.
#[cfg(not(target_arch = "wasm32"))]
pub fn advance_event_time<T: IntoOutputs>(t: i64, on_timer: impl Fn(&Timer) -> T) -> Result<Vec<Output>, Error> {
    timers::backend::set_event_time(t);
    fire(Clock::EventTime, timers::backend::event_time(), on_timer)
}

/// Fires the wall-clock timers due at `now` (ms since the epoch) through `on_timer`.
#[cfg(not(target_arch = "wasm32"))]
pub fn fire_wall_clock<T: IntoOutputs>(now: i64, on_timer: impl Fn(&Timer) -> T) -> Result<Vec<Output>, Error> {
    fire(Clock::WallClock, now, on_timer)
}

#[cfg(not(target_arch = "wasm32"))]
fn fire<T: IntoOutputs>(clock: Clock, now: i64, on_timer: impl Fn(&Timer) -> T) -> Result<Vec<Output>, Error> {
    let mut outputs = Vec::new();
    loop {
        let due = timers::backend::take_due(clock, now);
        if due.is_empty() {
            return Ok(outputs);
        }
        let wit_timers = due.into_iter().map(|t| wit::Timer { clock: t.clock.into(), at: t.at, key: t.key }).collect();
        let out = crate::glue::on_timer_each(wit_timers, &on_timer).map_err(from_wit)?;
        outputs.extend(decode(&out));
    }
}

/// Empties this thread's native state stub, with its timers and event time (weir keeps those
/// in the state store too).
#[cfg(not(target_arch = "wasm32"))]
pub fn reset_state() {
    crate::state::backend::clear();
    timers::backend::clear();
}

/// Everything in this thread's native state stub, in key order.
#[cfg(not(target_arch = "wasm32"))]
pub fn state_entries() -> Vec<(Vec<u8>, Vec<u8>)> {
    crate::state::backend::entries()
}
