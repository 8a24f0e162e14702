//! A second version of `word-count` for the hot-swap tests: the same state (a JSON count per
//! word), another output format, `word=count`.
use weir_sdk::{processor, state, Error, Output, Record};

#[processor]
pub fn word_count_v2(record: &Record) -> Result<Vec<Output>, Error> {
    let mut outputs = Vec::new();
    for word in record.value_str()?.split_whitespace() {
        let word = word.to_lowercase();
        let count = state::get::<u64>(&word)?.unwrap_or(0) + 1;
        state::put(&word, &count)?;
        outputs.push(Output::new(format!("{word}={count}")).with_key(word));
    }
    Ok(outputs)
}
