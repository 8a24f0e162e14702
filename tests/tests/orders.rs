//! The order-processing flow of `guest-examples/orders/`, as six weir pipelines on the real
//! broker: orders enriched with a customers table, three validators answering on one
//! `order-validations` topic (scatter), an aggregator emitting one verdict per order (gather),
//! with the aggregator SIGKILLed mid-stream, and a notification step joining each validated
//! order with its payment within a window of event time.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir_tests::guest;
use weir_tests::kafka::{
    bootstrap, create_topic, produce, produce_at, read_committed, unique, ReadRecord, TestRecord, Weir, LONG, QUIET,
};

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");
const ORDERS: usize = 3_000;
const ITEMS: [&str; 4] = ["book", "pen", "unicorn", "lamp"];

/// A pipeline file: `module` from `inputs` to `output`, with `extra` lines at the top level and
/// `config` for the module.
fn pipeline(
    dir: &Path,
    bootstrap: &str,
    module: &str,
    inputs: &[&str],
    output: &str,
    extra: &str,
    config: &str,
) -> PathBuf {
    let app = unique(module);
    let path = dir.join(format!("{app}.toml"));
    let inputs = inputs.join("\", \"");
    let text = format!(
        "application_id = \"{app}\"\nbootstrap_servers = \"{bootstrap}\"\ninputs = [\"{inputs}\"]\n{extra}\n\
         [outputs]\ndefault = \"{output}\"\n\n[module]\npath = \"{}\"\nconfig = {{ {config} }}\n",
        guest(module).display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Order `i`: customer, amount, item, and the verdict it must get.
fn order(i: usize) -> (String, usize, &'static str, &'static str) {
    let customer = i % 105; // c100..c104 are not in the table
    let (amount, item) = (i * 37 % 1_200, ITEMS[i % ITEMS.len()]);
    let valid = customer < 100 && amount < 1_000 && item != "unicorn";
    (format!("c{customer}"), amount, item, if valid { "VALIDATED" } else { "FAILED" })
}

/// Whether order `i` is paid (a payment 500 ms of event time after the order).
fn paid(i: usize) -> bool {
    !i.is_multiple_of(3)
}

/// Emails by order id.
fn emails(out: &[ReadRecord]) -> HashMap<String, Vec<String>> {
    let mut by_order: HashMap<String, Vec<String>> = HashMap::new();
    for r in out {
        let v: serde_json::Value = serde_json::from_str(r.value.as_deref().unwrap()).unwrap();
        by_order.entry(r.key.clone().unwrap()).or_default().push(v["email"].as_str().unwrap().to_owned());
    }
    by_order
}

#[test]
fn every_order_ends_in_exactly_one_verdict_across_an_aggregator_crash_and_one_email_if_validated() {
    let bootstrap = bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let [customers, orders, enriched, validations, verdicts, payments, mail] =
        ["customers", "orders", "enriched", "validations", "verdicts", "payments", "emails"].map(unique);
    for topic in [&customers, &orders, &enriched, &validations, &verdicts, &payments, &mail] {
        create_topic(&bootstrap, topic, 4);
    }
    let table: Vec<TestRecord> =
        (0..100).map(|c| (format!("c{c}"), format!(r#"{{"name":"customer {c}"}}"#), vec![])).collect();
    produce(&bootstrap, &customers, &table, None);
    // Event time starts half an hour ago, 10 ms per order; payments come first, so every
    // payment is read before the clock is moved past the join windows at the end.
    let base = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64 - 1_800_000;
    let order_time = |i: usize| base + i as i64 * 10;
    let paid_orders: Vec<usize> = (0..ORDERS).filter(|&i| paid(i)).collect();
    let payment_records: Vec<TestRecord> =
        paid_orders.iter().map(|i| (format!("o{i}"), format!(r#"{{"order_id":"o{i}"}}"#), vec![])).collect();
    let payment_times: Vec<i64> = paid_orders.iter().map(|&i| order_time(i) + 500).collect();
    produce_at(&bootstrap, &payments, &payment_records, Some(&payment_times), None);

    let at = |module: &str, inputs: &[&str], output: &str, extra: &str, config: &str| {
        pipeline(dir.path(), &bootstrap, module, inputs, output, extra, config)
    };
    let tables = format!("tables.customers = {{ topic = \"{customers}\" }}");
    let mut running =
        vec![Weir::start(Path::new(BIN), &at("orders-enrich", &[&orders], &enriched, &tables, ""), &[], dir.path())];
    for check in ["fraud", "inventory", "details"] {
        let config = format!("check = \"{check}\", out_of_stock = \"unicorn,dragon\"");
        running.push(Weir::start(
            Path::new(BIN),
            &at("orders-validate", &[&enriched], &validations, "", &config),
            &[],
            dir.path(),
        ));
    }
    let notify = at("orders-notify", &[&verdicts, &payments], &mail, "", &format!("payments = \"{payments}\""));
    running.push(Weir::start(Path::new(BIN), &notify, &[], dir.path()));
    let aggregator = at("orders-aggregate", &[&validations], &verdicts, "", "validators = \"fraud,inventory,details\"");
    let mut first = Weir::start(Path::new(BIN), &aggregator, &["--instance-id", "agg"], dir.path());
    first.wait_for_log("partitions assigned", LONG);

    let input: Vec<TestRecord> = (0..ORDERS)
        .map(|i| {
            let (customer, amount, item, _) = order(i);
            (customer, format!(r#"{{"order_id":"o{i}","amount":{amount},"item":"{item}"}}"#), vec![])
        })
        .collect();
    let (b, topic) = (bootstrap.clone(), orders.clone());
    let times: Vec<i64> = (0..ORDERS).map(order_time).collect();
    let producer =
        std::thread::spawn(move || produce_at(&b, &topic, &input, Some(&times), Some(Duration::from_secs(12))));
    std::thread::sleep(Duration::from_secs(6));
    first.kill();
    let decided_at_kill = read_committed(&bootstrap, &verdicts, usize::MAX, Duration::from_secs(1), LONG).len();
    running.push(Weir::start(Path::new(BIN), &aggregator, &["--instance-id", "agg"], dir.path()));
    producer.join().unwrap();

    let out = read_committed(&bootstrap, &verdicts, ORDERS, QUIET, LONG);
    // Once every paid, validated order is confirmed, every verdict before it has been read:
    // move event time past the windows on all four partitions (64 keys), so the unpaid ones
    // are reported.
    let validated: Vec<usize> = (0..ORDERS).filter(|&i| order(i).3 == "VALIDATED").collect();
    let confirmed = validated.iter().filter(|&&i| paid(i)).count();
    read_committed(&bootstrap, &mail, confirmed, QUIET, LONG);
    let ticks: Vec<TestRecord> =
        (0..64).map(|t| (format!("tick-{t}"), r#"{"status":"TICK"}"#.to_owned(), vec![])).collect();
    let tick_time = vec![order_time(ORDERS) + 12 * 60_000; ticks.len()];
    produce_at(&bootstrap, &verdicts, &ticks, Some(&tick_time), None);
    let mail_out = read_committed(&bootstrap, &mail, validated.len(), QUIET, LONG);
    let extra_mail =
        read_committed(&bootstrap, &mail, validated.len() + 1, Duration::from_secs(3), Duration::from_secs(3));
    let enriched_out = read_committed(&bootstrap, &enriched, ORDERS, QUIET, LONG);
    for weir in running {
        weir.stop();
    }
    println!("verdicts committed when the aggregator was killed: {decided_at_kill} of {ORDERS}");
    assert!(decided_at_kill > 0 && decided_at_kill < ORDERS, "the kill must land mid-stream: {decided_at_kill}");
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for r in &out {
        let v: serde_json::Value = serde_json::from_str(r.value.as_deref().unwrap()).unwrap();
        seen.entry(r.key.clone().unwrap()).or_default().push(v["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(out.len(), ORDERS, "one verdict per order, no more");
    for i in 0..ORDERS {
        let want = order(i).3;
        assert_eq!(seen[&format!("o{i}")], [want], "order o{i}");
    }

    for r in &enriched_out {
        let v: serde_json::Value = serde_json::from_str(r.value.as_deref().unwrap()).unwrap();
        let i: usize = v["order_id"].as_str().unwrap()[1..].parse().unwrap();
        let customer = order(i).0;
        let want = if customer[1..].parse::<usize>().unwrap() < 100 {
            format!("customer {}", &customer[1..])
        } else {
            String::new()
        };
        assert_eq!(v["customer"]["name"].as_str().unwrap_or_default(), want, "order o{i} of {customer}");
    }
    assert_eq!(enriched_out.len(), ORDERS);

    let by_order = emails(&mail_out);
    println!("emails: {} confirmed, {} payment missing", confirmed, validated.len() - confirmed);
    assert_eq!(extra_mail.len(), validated.len(), "one email per validated order, no more");
    for i in &validated {
        let want = if paid(*i) { "confirmed" } else { "payment missing" };
        assert_eq!(by_order.get(&format!("o{i}")), Some(&vec![want.to_owned()]), "email for order o{i}");
    }
}
