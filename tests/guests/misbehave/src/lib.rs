//! A processor that misbehaves on request, for the bad-input tests: the value `panic` traps,
//! `loop` never returns, `alloc` allocates without bound, `reject` returns an error, `state`
//! writes to state first; anything else passes through.
use weir_sdk::{processor, state, Error, Output, Record};

#[processor(config = ["note"])]
pub fn misbehave(record: &Record) -> Result<Output, Error> {
    state::put(format!("seen/{}", record.offset()), &true)?;
    match record.value_str()? {
        "panic" => panic!("asked to panic at offset {}", record.offset()),
        "loop" => loop {
            std::hint::black_box(record.offset());
        },
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "reject" => Err(Error::msg("asked to reject")),
        _ => Ok(record.forward()),
    }
}
