//! Word count's Kafka traffic without its state, for the benchmark that prices state: for
//! every word, the two records a word count produces (its output and a changelog record, here
//! both outputs), with the word's length standing in for its count.
use weir_sdk::{processor, Error, Output, Record};

#[processor]
pub fn twice(record: &Record) -> Result<Vec<Output>, Error> {
    let mut outputs = Vec::new();
    for word in record.value_str()?.split_whitespace() {
        let word = word.to_lowercase();
        let count = word.len().to_string();
        outputs.push(Output::new(count.clone()).with_key(word.clone()));
        outputs.push(Output::new(count).with_key(word));
    }
    Ok(outputs)
}
