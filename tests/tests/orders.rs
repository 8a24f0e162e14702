//! The order-processing flow of `guest-examples/orders/`, as five weir pipelines on the real
//! broker: orders enriched with a customers table, three validators answering on one
//! `order-validations` topic (scatter), and an aggregator emitting one verdict per order
//! (gather), with the aggregator SIGKILLed mid-stream.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use weir_tests::guest;
use weir_tests::kafka::{bootstrap, create_topic, produce, read_committed, unique, TestRecord, Weir, LONG, QUIET};

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");
const ORDERS: usize = 3_000;
const ITEMS: [&str; 4] = ["book", "pen", "unicorn", "lamp"];

/// A pipeline file: `module` from `input` to `output`, with `extra` lines at the top level and
/// `config` for the module.
fn pipeline(dir: &Path, bootstrap: &str, module: &str, input: &str, output: &str, extra: &str, config: &str) -> PathBuf {
    let app = unique(module);
    let path = dir.join(format!("{app}.toml"));
    let text = format!(
        "application_id = \"{app}\"\nbootstrap_servers = \"{bootstrap}\"\ninputs = [\"{input}\"]\n{extra}\n\
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

#[test]
fn every_order_ends_in_exactly_one_verdict_across_an_aggregator_crash() {
    let bootstrap = bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let [customers, orders, enriched, validations, verdicts] =
        ["customers", "orders", "enriched", "validations", "verdicts"].map(unique);
    for topic in [&customers, &orders, &enriched, &validations, &verdicts] {
        create_topic(&bootstrap, topic, 4);
    }
    let table: Vec<TestRecord> = (0..100).map(|c| (format!("c{c}"), format!(r#"{{"name":"customer {c}"}}"#), vec![])).collect();
    produce(&bootstrap, &customers, &table, None);

    let at = |module: &str, input: &str, output: &str, extra: &str, config: &str| pipeline(dir.path(), &bootstrap, module, input, output, extra, config);
    let tables = format!("tables.customers = {{ topic = \"{customers}\" }}");
    let mut running = vec![Weir::start(Path::new(BIN), &at("orders-enrich", &orders, &enriched, &tables, ""), &[], dir.path())];
    for check in ["fraud", "inventory", "details"] {
        let config = format!("check = \"{check}\", out_of_stock = \"unicorn,dragon\"");
        running.push(Weir::start(Path::new(BIN), &at("orders-validate", &enriched, &validations, "", &config), &[], dir.path()));
    }
    let aggregator = at("orders-aggregate", &validations, &verdicts, "", "validators = \"fraud,inventory,details\"");
    let mut first = Weir::start(Path::new(BIN), &aggregator, &["--instance-id", "agg"], dir.path());
    first.wait_for_log("partitions assigned", LONG);

    let input: Vec<TestRecord> = (0..ORDERS)
        .map(|i| {
            let (customer, amount, item, _) = order(i);
            (customer, format!(r#"{{"order_id":"o{i}","amount":{amount},"item":"{item}"}}"#), vec![])
        })
        .collect();
    let (b, topic) = (bootstrap.clone(), orders.clone());
    let producer = std::thread::spawn(move || produce(&b, &topic, &input, Some(Duration::from_secs(12))));
    std::thread::sleep(Duration::from_secs(6));
    first.kill();
    let decided_at_kill = read_committed(&bootstrap, &verdicts, usize::MAX, Duration::from_secs(1), LONG).len();
    running.push(Weir::start(Path::new(BIN), &aggregator, &["--instance-id", "agg"], dir.path()));
    producer.join().unwrap();

    let out = read_committed(&bootstrap, &verdicts, ORDERS, QUIET, LONG);
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
}
