//! Tables against the real broker: an enrichment join sees every customer, including ones
//! written after the stream started; a table written in transactions loads only what they
//! committed; co-partitioning is checked at start; a global table serves every partition.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]
use std::collections::HashMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use weir_tests::kafka::{create_topic, produce, read_committed, setup, unique, Setup, TestRecord, LONG, QUIET};

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");

fn customers(ids: std::ops::Range<usize>, name: &str) -> Vec<TestRecord> {
    ids.map(|i| (format!("c{i}"), format!(r#"{{"name":"{name} {i}"}}"#), Vec::new())).collect()
}

/// Orders keyed by customer id, for customers `0..customers`.
fn orders(from: usize, n: usize, customers: usize) -> Vec<TestRecord> {
    (from..from + n).map(|i| (format!("c{}", i % customers), format!(r#"{{"order_id":"o{i}"}}"#), Vec::new())).collect()
}

/// order id -> the customer name it was enriched with (None for a null customer).
fn enriched(s: &Setup, want: usize) -> HashMap<String, Option<String>> {
    read_committed(&s.bootstrap, &s.output, want, QUIET, LONG)
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(r.value.as_deref().unwrap()).unwrap();
            (r.key.clone().unwrap(), v["customer"]["name"].as_str().map(str::to_owned))
        })
        .collect()
}

fn table_pipeline(s: &Setup, customers_topic: &str, global: bool) -> std::path::PathBuf {
    let extra = format!("tables.customers = {{ topic = \"{customers_topic}\", global = {global} }}");
    s.pipeline("orders-enrich", &unique("enrich"), &extra)
}

#[test]
fn every_order_carries_its_customer_including_customers_written_after_the_stream_started() {
    let s = setup(BIN, 4);
    let topic = unique("customers");
    create_topic(&s.bootstrap, &topic, 4);
    produce(&s.bootstrap, &topic, &customers(0..100, "first"), None);
    produce(&s.bootstrap, &s.input, &orders(0, 1_000, 100), None);
    let mut weir = s.start(&table_pipeline(&s, &topic, false), &[]);
    weir.wait_for_log("table caught up", LONG);
    let first = enriched(&s, 1_000);
    assert_eq!(first.len(), 1_000);
    for i in 0..1_000 {
        assert_eq!(first[&format!("o{i}")].as_deref(), Some(format!("first {}", i % 100).as_str()), "order o{i}");
    }

    // Customers renamed and added while weir runs reach the orders that follow.
    produce(&s.bootstrap, &topic, &customers(0..150, "second"), None);
    std::thread::sleep(Duration::from_secs(2));
    produce(&s.bootstrap, &s.input, &orders(1_000, 1_500, 150), None);
    let all = enriched(&s, 2_500);
    weir.stop();
    for i in 1_000..2_500 {
        assert_eq!(all[&format!("o{i}")].as_deref(), Some(format!("second {}", i % 150).as_str()), "order o{i}");
    }
}

/// Writes `records` to `topic` in one transaction, committed or aborted.
fn in_a_transaction(bootstrap: &str, topic: &str, records: &[TestRecord], commit: bool) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", unique("table-writer"))
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    producer.init_transactions(LONG).unwrap();
    producer.begin_transaction().unwrap();
    for (key, value, _) in records {
        producer.send(BaseRecord::to(topic).key(key.as_str()).payload(value.as_str())).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(LONG).unwrap();
    match commit {
        true => producer.commit_transaction(LONG).unwrap(),
        false => producer.abort_transaction(LONG).unwrap(),
    }
}

#[test]
fn a_table_written_in_transactions_loads_what_they_committed_up_to_the_markers_at_its_end() {
    let s = setup(BIN, 4);
    let topic = unique("customers");
    create_topic(&s.bootstrap, &topic, 4);
    in_a_transaction(&s.bootstrap, &topic, &customers(0..100, "committed"), true);
    // The topic ends with the aborted records and their markers: no committed record follows.
    in_a_transaction(&s.bootstrap, &topic, &customers(0..100, "aborted"), false);
    produce(&s.bootstrap, &s.input, &orders(0, 1_000, 100), None);
    let mut weir = s.start(&table_pipeline(&s, &topic, false), &[]);
    weir.wait_for_log("table caught up", LONG);
    let out = enriched(&s, 1_000);
    weir.stop();
    assert_eq!(out.len(), 1_000);
    for i in 0..1_000 {
        assert_eq!(out[&format!("o{i}")].as_deref(), Some(format!("committed {}", i % 100).as_str()), "order o{i}");
    }
}

#[test]
fn an_order_whose_customer_is_unknown_joins_as_null() {
    let s = setup(BIN, 2);
    let topic = unique("customers");
    create_topic(&s.bootstrap, &topic, 2);
    produce(&s.bootstrap, &topic, &customers(0..1, "only"), None);
    produce(&s.bootstrap, &s.input, &orders(0, 2, 2), None);
    let weir = s.start(&table_pipeline(&s, &topic, false), &[]);
    let out = enriched(&s, 2);
    weir.stop();
    assert_eq!((out["o0"].as_deref(), out["o1"].as_deref()), (Some("only 0"), None));
}

#[test]
fn a_global_table_serves_every_partition_whatever_its_partition_count() {
    let s = setup(BIN, 4);
    let topic = unique("customers");
    create_topic(&s.bootstrap, &topic, 1);
    produce(&s.bootstrap, &topic, &customers(0..50, "global"), None);
    produce(&s.bootstrap, &s.input, &orders(0, 500, 50), None);
    let weir = s.start(&table_pipeline(&s, &topic, true), &[]);
    let out = enriched(&s, 500);
    weir.stop();
    assert_eq!(out.len(), 500);
    assert!(out.iter().all(|(order, name)| name.is_some() || panic!("{order} has no customer")));
}

#[test]
fn a_co_partitioned_table_with_another_partition_count_is_refused_at_start() {
    let s = setup(BIN, 4);
    let topic = unique("customers");
    create_topic(&s.bootstrap, &topic, 3);
    let mut weir = s.start(&table_pipeline(&s, &topic, false), &[]);
    let status = weir.wait();
    let log = weir.log();
    assert!(!status.success(), "weir started with mismatched partitions:\n{log}");
    assert!(
        log.contains("table `customers` is co-partitioned")
            && log.contains("3 partitions")
            && log.contains("global = true"),
        "{log}"
    );
}
