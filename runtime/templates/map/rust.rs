//! Uppercases every value; keys, headers and timestamps pass through.
use weir_sdk::{processor, Output, Record};

#[processor]
pub fn uppercase(record: &Record) -> Output {
    record.map_value(|value| value.to_ascii_uppercase())
}
