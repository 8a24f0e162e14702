//! A processor written on the raw bindings, without `#[processor]`, for the bad-module tests: it
//! does what the SDK never would. Configured `init = trap | loop | sleep | alloc`, its `init`
//! panics, never returns, sleeps for ten minutes, or allocates without bound. Otherwise it answers each record with one output
//! holding its value, except that the value `outside` points the output past the data, `headers`
//! names headers beyond the list, and `ragged` returns columns that disagree.
// Exports are for the component; a native build of the workspace gets an empty library.
#![cfg(target_arch = "wasm32")]
use weir_sdk::bindings::exports::weir::processor::{processor, timer_handler};
use weir_sdk::bindings::weir::processor::types::{Batch, Outputs, ProcessingError, Timer};

struct Handmade;

impl processor::Guest for Handmade {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        match config.iter().find(|(k, _)| k == "init").map(|(_, v)| v.as_str()) {
            Some("trap") => panic!("init asked to trap"),
            Some("loop") => loop {
                std::hint::black_box(&config);
            },
            Some("sleep") => {
                std::thread::sleep(std::time::Duration::from_secs(600));
                Ok(())
            }
            Some("alloc") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            _ => Ok(()),
        }
    }

    fn process(batch: Batch) -> Result<Outputs, ProcessingError> {
        let mut out = Outputs { records: vec![], sources: vec![], timestamps: vec![], headers: vec![], data: vec![] };
        let u32_at =
            |column: &[u8], i: usize| u32::from_le_bytes(column[i * 4..i * 4 + 4].try_into().unwrap_or_default());
        for i in 0..batch.offsets.len() / 8 {
            let (at, len) = (u32_at(&batch.records, i * 6 + 2), u32_at(&batch.records, i * 6 + 3));
            let value = batch.data.get(at as usize..at.saturating_add(len) as usize).unwrap_or_default();
            let (mut value_at, mut first_header) = (out.data.len() as u32, 0u32);
            match value {
                b"outside" => value_at += 1_000_000,
                b"headers" => first_header = 7,
                b"ragged" => out.timestamps.push(0),
                _ => {}
            }
            out.data.extend_from_slice(value);
            // No topic, no key, the value, `first_header` and no headers.
            for n in [0, u32::MAX, 0, u32::MAX, value_at, len, first_header, 0] {
                out.records.extend_from_slice(&n.to_le_bytes());
            }
            out.sources.extend_from_slice(&(i as u32).to_le_bytes());
            out.timestamps.extend_from_slice(&(-1i64).to_le_bytes());
        }
        Ok(out)
    }
}

impl timer_handler::Guest for Handmade {
    fn on_timer(_: Vec<Timer>) -> Result<Outputs, ProcessingError> {
        Err(ProcessingError { record: None, message: "sets no timers".into() })
    }
}

weir_sdk::bindings::export!(Handmade with_types_in weir_sdk::bindings);
