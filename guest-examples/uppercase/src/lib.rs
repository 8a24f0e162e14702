//! Uppercases every value; keys, headers and timestamps pass through.
use weir_sdk::{processor, Output, Record};

#[processor]
pub fn uppercase(record: &Record) -> Output {
    record.map_value(|value| value.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use weir_sdk::testing::TestBatch;

    #[test]
    fn values_are_uppercased_and_keys_kept() {
        let out = TestBatch::new("t").with(Some("k"), "Hello").run(super::uppercase).unwrap();
        assert_eq!((out[0].key(), out[0].value()), (Some(&b"k"[..]), Some(&b"HELLO"[..])));
    }
}
