//! Counts words across all records; for every word seen, emits the word as key and its
//! running count as value.
//!
//! Its counts are kept per input partition, so they are right when every occurrence of a word
//! arrives in one partition: input keyed by word, or the `split` stage before it, as in
//! `../pipeline.toml`.
use weir_sdk::{processor, state, Error, Output, Record};

#[processor]
pub fn word_count(record: &Record) -> Result<Vec<Output>, Error> {
    let mut outputs = Vec::new();
    for word in record.value_str()?.split_whitespace() {
        let word = word.to_lowercase();
        let count = state::get::<u64>(&word)?.unwrap_or(0) + 1;
        state::put(&word, &count)?;
        outputs.push(Output::new(count.to_string()).with_key(word));
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use weir_sdk::testing::{reset_state, TestBatch};

    #[test]
    fn counts_run_on_across_records() {
        reset_state();
        let out = TestBatch::new("t").with(None, "a b").with(None, "A").run(super::word_count).unwrap();
        let pairs: Vec<_> = out.iter().map(|o| (o.key().unwrap(), o.value().unwrap())).collect();
        assert_eq!(pairs, [(&b"a"[..], &b"1"[..]), (b"b", b"1"), (b"a", b"2")]);
    }
}
