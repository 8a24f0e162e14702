//! One validator of the scatter-gather: answers every enriched order with a PASS or FAIL verdict
//! keyed by order id. `check` picks which: `fraud` (amount under 1000), `inventory` (item not in
//! `out_of_stock`, a comma-separated list) or `details` (a known customer and an item).
use serde_json::{json, Value};
use weir_sdk::{config, processor, Error, Output, Record};

#[processor(config = ["check", "out_of_stock"])]
pub fn validate(record: &Record) -> Result<Output, Error> {
    let order: Value = serde_json::from_str(record.value_str()?)?;
    let check = config("check").unwrap_or_default();
    let pass = match check {
        "fraud" => order["amount"].as_f64().is_some_and(|a| a < 1000.0),
        "inventory" => !config("out_of_stock").unwrap_or_default().split(',').any(|i| order["item"] == i),
        "details" => order["customer"].is_object() && order["item"].is_string(),
        other => return Err(Error::msg(format!("check must be fraud, inventory or details, not `{other}`"))),
    };
    let verdict = json!({"validator": check, "verdict": if pass { "PASS" } else { "FAIL" }});
    Ok(Output::new(verdict.to_string()).with_key(order["order_id"].as_str().unwrap_or_default()))
}
