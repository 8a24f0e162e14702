//! The gather of the scatter-gather: collects the verdicts on each order (keyed by order id) in
//! state and emits exactly one VALIDATED or FAILED event, when every validator in `validators`
//! (comma-separated) has passed it, or as soon as one fails it. Later verdicts are ignored. The
//! state of an order is `{"passed": [validators]}` until it is decided, then `{"status": ...}`,
//! which is what a UI reads through weir's queries.
use serde_json::{json, Value};
use weir_sdk::{config, processor, state, Error, Output, Record};

#[processor(config = ["validators"])]
pub fn aggregate(record: &Record) -> Result<Option<Output>, Error> {
    let order = record.key_str().ok_or_else(|| Error::msg("a verdict without an order id"))?;
    let verdict: Value = serde_json::from_str(record.value_str()?)?;
    let mut seen = state::get::<Value>(order)?.unwrap_or_else(|| json!({"passed": []}));
    // The validators that passed the order so far; none once it is decided.
    let Some(passed) = seen["passed"].as_array_mut() else { return Ok(None) };
    passed.push(verdict["validator"].clone());
    let failed = verdict["verdict"] == "FAIL";
    let expected = config("validators").unwrap_or("fraud,inventory,details");
    if !failed && !expected.split(',').all(|v| passed.iter().any(|p| p == v)) {
        return state::put(order, &seen).map(|()| None);
    }
    let status = if failed { "FAILED" } else { "VALIDATED" };
    state::put(order, &json!({"status": status}))?;
    Ok(Some(Output::new(json!({"order_id": order, "status": status}).to_string()).with_key(order)))
}

#[cfg(test)]
mod tests {
    use weir_sdk::testing::{reset_state, TestBatch};

    fn verdicts(list: &[(&str, &str, &str)]) -> Vec<String> {
        reset_state();
        let mut batch = TestBatch::new("order-validations");
        for (order, validator, verdict) in list {
            let value = format!(r#"{{"validator":"{validator}","verdict":"{verdict}"}}"#);
            batch.push(Some(order.as_bytes()), Some(value.as_bytes()), &[]);
        }
        let out = batch.run(super::aggregate).unwrap();
        out.iter().map(|o| String::from_utf8(o.value().unwrap().to_vec()).unwrap()).collect()
    }

    #[test]
    fn one_verdict_per_order_when_all_pass_or_at_the_first_fail() {
        let out = verdicts(&[
            ("o1", "fraud", "PASS"),
            ("o2", "fraud", "FAIL"),
            ("o1", "inventory", "PASS"),
            ("o2", "inventory", "PASS"),
            ("o1", "details", "PASS"),
            ("o2", "details", "FAIL"),
        ]);
        assert_eq!(out, [r#"{"order_id":"o2","status":"FAILED"}"#, r#"{"order_id":"o1","status":"VALIDATED"}"#]);
    }
}
