//! The notification step: joins each validated order with its payment (both keyed by order id)
//! when they are at most 10 minutes apart in event time (1 minute of grace), and emails once per
//! order: "confirmed" when it is paid, "payment missing" when its window closes unpaid. The
//! input named by `payments` carries payments; the other carries the aggregator's verdicts.
use weir_sdk::join::{Join, Side};
use weir_sdk::timers::Timer;
use weir_sdk::{config, processor, Error, Output, Record};

const PAID: Join = Join::new("order-payment", 600_000).grace(60_000);

#[processor(config = ["payments"], on_timer = expire)]
pub fn notify(record: &Record) -> Result<Vec<Output>, Error> {
    let side = if record.input() == config("payments").unwrap_or("payments") { Side::Right } else { Side::Left };
    if side == Side::Left && !record.value_str()?.contains(r#""status":"VALIDATED""#) {
        return Ok(Vec::new());
    }
    let matches = PAID.add(side, record)?.unwrap_or_default();
    Ok(matches.iter().map(|_| email(record.key().unwrap_or_default(), "confirmed")).collect())
}

pub fn expire(timer: &Timer) -> Result<Vec<Output>, Error> {
    let unpaid = PAID.expire(timer)?.unwrap_or_default().into_iter().filter(|e| e.side == Side::Left && !e.matched);
    Ok(unpaid.map(|e| email(&e.key, "payment missing")).collect())
}

fn email(order: &[u8], status: &str) -> Output {
    let order = String::from_utf8_lossy(order);
    Output::new(format!(r#"{{"order_id":"{order}","email":"{status}"}}"#)).with_key(order.as_bytes())
}

#[cfg(test)]
mod tests {
    use weir_sdk::testing::{reset_state, TestBatch};

    #[test]
    fn a_paid_order_is_confirmed_and_an_unpaid_one_reported_when_its_window_closes() {
        reset_state();
        let verdicts = TestBatch::new("verdicts")
            .with_at(Some("o1"), r#"{"status":"VALIDATED"}"#, 0)
            .with_at(Some("o2"), r#"{"status":"VALIDATED"}"#, 0)
            .with_at(Some("o3"), r#"{"status":"FAILED"}"#, 0);
        assert!(verdicts.run_with_timers(super::notify, super::expire).unwrap().is_empty());
        let payments = TestBatch::new("payments").with_at(Some("o1"), "{}", 1_000).with_at(Some("o9"), "{}", 700_000);
        let out = payments.run_with_timers(super::notify, super::expire).unwrap();
        let values: Vec<_> = out.iter().map(|o| String::from_utf8_lossy(o.value().unwrap()).into_owned()).collect();
        assert_eq!(
            values,
            [r#"{"order_id":"o1","email":"confirmed"}"#, r#"{"order_id":"o2","email":"payment missing"}"#]
        );
    }
}
