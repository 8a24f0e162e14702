//! Passes on records whose value is JSON and drops the rest.
use weir_sdk::{processor, Output, Record};

#[processor]
pub fn filter_json(record: &Record) -> Option<Output> {
    let value = record.value()?;
    serde_json::from_slice::<serde::de::IgnoredAny>(value).ok()?;
    Some(record.forward())
}

#[cfg(test)]
mod tests {
    use weir_sdk::testing::TestBatch;

    #[test]
    fn only_json_values_pass() {
        let batch = TestBatch::new("t").with(None, r#"{"a": 1}"#).with(None, "{oops").with(None, "[1, 2]");
        let out = batch.run(super::filter_json).unwrap();
        assert_eq!(out.iter().map(|o| o.value().unwrap()).collect::<Vec<_>>(), [&br#"{"a": 1}"#[..], b"[1, 2]"]);
    }
}
