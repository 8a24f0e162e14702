//! Enriches each order with its customer's name from the `customers` table (a topic weir keeps
//! as a local map, `[tables.customers]` in pipeline.toml). Orders are keyed by customer id.
use weir_sdk::{processor, table, Error, Output, Record};

#[processor]
pub fn enrich(record: &Record) -> Result<Output, Error> {
    let customer = match record.key() {
        Some(id) => table::get::<String>("customers", id)?,
        None => None,
    };
    let name = customer.unwrap_or_else(|| "an unknown customer".to_owned());
    Ok(record.map_value(|order| format!("{} for {name}", String::from_utf8_lossy(order)).into_bytes()))
}
