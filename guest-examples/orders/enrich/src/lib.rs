//! Enriches each order with its customer from the `customers` table: a join with no window, for
//! if the customer exists, the join works. Orders arrive keyed by customer id (co-partitioned
//! with the table) and leave keyed by order id; an unknown customer joins as `null`.
use serde_json::Value;
use weir_sdk::{processor, table, Error, Output, Record};

#[processor]
pub fn enrich(record: &Record) -> Result<Output, Error> {
    let mut order: Value = serde_json::from_str(record.value_str()?)?;
    let customer = match record.key() {
        Some(id) => table::get::<Value>("customers", id)?,
        None => None,
    };
    order["customer"] = customer.unwrap_or(Value::Null);
    let order_id = order["order_id"].as_str().unwrap_or_default().to_owned();
    Ok(Output::new(serde_json::to_vec(&order)?).with_key(order_id))
}

#[cfg(test)]
mod tests {
    use weir_sdk::testing::{set_table, TestBatch};

    #[test]
    fn an_order_carries_its_customer_and_an_unknown_one_joins_as_null() {
        set_table("customers", "c1", r#"{"name":"Ada"}"#);
        let out = TestBatch::new("orders")
            .with(Some("c1"), r#"{"order_id":"o1","amount":5}"#)
            .with(Some("c9"), r#"{"order_id":"o2","amount":7}"#)
            .run(super::enrich)
            .unwrap();
        assert_eq!(out[0].key(), Some(&b"o1"[..]));
        assert_eq!(out[0].value(), Some(&br#"{"amount":5,"customer":{"name":"Ada"},"order_id":"o1"}"#[..]));
        assert_eq!(out[1].value(), Some(&br#"{"amount":7,"customer":null,"order_id":"o2"}"#[..]));
    }
}
