//! Counts records per key: for each record, emits its key and how many records with that key
//! came so far. The counts live in weir's state store, one per input partition, so input must
//! be keyed by what is counted (Kafka sends every record of a key to one partition).
use weir_sdk::{processor, state, Error, Output, Record};

#[processor]
pub fn count(record: &Record) -> Result<Option<Output>, Error> {
    let Some(key) = record.key() else { return Ok(None) };
    let count = state::get::<u64>(key)?.unwrap_or(0) + 1;
    state::put(key, &count)?;
    Ok(Some(Output::new(count.to_string()).with_key(key.to_vec())))
}
