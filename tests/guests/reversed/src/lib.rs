//! A second version for the hot-swap tests: reverses every value (where `uppercase` uppercases
//! it), so each output says which version answered it.
use weir_sdk::{processor, Output, Record};

#[processor]
pub fn reversed(record: &Record) -> Output {
    record.map_value(|value| value.iter().rev().copied().collect::<Vec<u8>>())
}
