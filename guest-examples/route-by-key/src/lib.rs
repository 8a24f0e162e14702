//! Routes each record to the output named by its key's prefix: `eu:42` goes to `eu`;
//! records whose key has no prefix go to the default output.
use weir_sdk::{processor, Output, Record};

#[processor]
pub fn route_by_key(record: &Record) -> Output {
    match record.key_str().and_then(|key| key.split_once(':')) {
        Some((route, _)) => record.forward().with_topic(route),
        None => record.forward(),
    }
}

#[cfg(test)]
mod tests {
    use weir_sdk::testing::TestBatch;

    #[test]
    fn the_key_prefix_names_the_output() {
        let out =
            TestBatch::new("t").with(Some("eu:1"), "a").with(Some("plain"), "b").run(super::route_by_key).unwrap();
        assert_eq!((out[0].topic(), out[1].topic()), (Some("eu"), None));
    }
}
