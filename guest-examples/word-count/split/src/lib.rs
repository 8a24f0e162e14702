//! The first stage of the word count: splits each sentence into its words, one output per
//! word, keyed by the word. Its pipeline routes the outputs to the `count` stage, so each word
//! reaches the partition that holds its count, whatever partition its sentence came from.
use weir_sdk::{processor, Error, Output, Record};

#[processor]
pub fn split(record: &Record) -> Result<Vec<Output>, Error> {
    let words = record.value_str()?.split_whitespace().map(str::to_lowercase);
    Ok(words.map(|word| Output::new(word.clone()).with_key(word)).collect())
}

#[cfg(test)]
mod tests {
    use weir_sdk::testing::TestBatch;

    #[test]
    fn each_word_becomes_an_output_keyed_by_itself() {
        let out = TestBatch::new("t").with(None, "The sea  is wide").run(super::split).unwrap();
        let pairs: Vec<_> = out.iter().map(|o| (o.key().unwrap(), o.value().unwrap())).collect();
        assert_eq!(pairs, [(&b"the"[..], &b"the"[..]), (b"sea", b"sea"), (b"is", b"is"), (b"wide", b"wide")]);
    }
}
