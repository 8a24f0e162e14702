//! `weir run` against the real Apache Kafka broker (`scripts/kafka.sh start`): records in and
//! out, each delivery guarantee under SIGKILL crashes, offset reset, and two instances sharing
//! a group.

use std::time::Duration;

use weir_tests::kafka::{
    counts, crash_repeatedly, last_assignment, numbered, produce, read_committed, setup, unique, LONG, QUIET,
};

fn expected_value(i: usize) -> String {
    format!("RECORD {i}")
}

#[test]
fn a_stateless_pipeline_uppercases_every_record_keeping_keys_and_headers() {
    let s = setup(env!("CARGO_BIN_EXE_weir-e2e"), 2);
    let pipeline = s.pipeline("uppercase", &unique("upper"), "");
    produce(&s.bootstrap, &s.input, &numbered(0..1000), None);
    let weir = s.start(&pipeline, &[]);
    let out = read_committed(&s.bootstrap, &s.output, 1000, QUIET, LONG);
    weir.stop();
    assert_eq!(out.len(), 1000);
    for r in &out {
        let i: usize = r.key.as_deref().unwrap().trim_start_matches('k').parse().unwrap();
        assert_eq!(r.value.as_deref(), Some(expected_value(i).as_str()));
        assert_eq!(r.headers, [("seq".to_owned(), i.to_string())]);
    }
}

#[test]
fn exactly_once_survives_sigkill_crashes_without_loss_or_duplicates() {
    let s = setup(env!("CARGO_BIN_EXE_weir-e2e"), 4);
    let records = 100_000;
    let pipeline = s.pipeline("uppercase", &unique("eos"), "guarantee = \"exactly-once\"");
    let out = crash_repeatedly(&s, &pipeline, numbered(0..records), 5, records);
    let seen = counts(&out);
    let missing = (0..records).filter(|i| !seen.contains_key(&expected_value(*i))).count();
    let duplicated = seen.values().filter(|&&c| c > 1).count();
    assert_eq!((out.len(), missing, duplicated), (records, 0, 0), "exactly once: every output once, none missing");
}

#[test]
fn at_least_once_loses_nothing_under_sigkill_crashes() {
    let s = setup(env!("CARGO_BIN_EXE_weir-e2e"), 4);
    let records = 100_000;
    let pipeline = s.pipeline("uppercase", &unique("alo"), "guarantee = \"at-least-once\"\ncommit_interval_ms = 200");
    let out = crash_repeatedly(&s, &pipeline, numbered(0..records), 5, usize::MAX);
    let seen = counts(&out);
    let missing = (0..records).filter(|i| !seen.contains_key(&expected_value(*i))).count();
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    println!(
        "at-least-once under 5 crashes: {} outputs for {records} inputs, {duplicates} duplicates, {missing} missing",
        out.len()
    );
    assert_eq!(missing, 0, "at-least-once must not lose records");
}

#[test]
fn at_most_once_never_duplicates_under_sigkill_crashes() {
    let s = setup(env!("CARGO_BIN_EXE_weir-e2e"), 4);
    let records = 100_000;
    let pipeline = s.pipeline("uppercase", &unique("amo"), "guarantee = \"at-most-once\"");
    let out = crash_repeatedly(&s, &pipeline, numbered(0..records), 5, usize::MAX);
    let seen = counts(&out);
    let duplicated = seen.values().filter(|&&c| c > 1).count();
    let lost = records - seen.len();
    println!(
        "at-most-once under 5 crashes: {} outputs for {records} inputs, {lost} lost, {duplicated} duplicated",
        out.len()
    );
    assert_eq!(duplicated, 0, "at-most-once must not duplicate records");
}

#[test]
fn offset_reset_earliest_sees_the_history_and_latest_only_new_records() {
    for (reset, want) in [("earliest", 20), ("latest", 10)] {
        let s = setup(env!("CARGO_BIN_EXE_weir-e2e"), 1);
        produce(&s.bootstrap, &s.input, &numbered(0..10), None);
        let pipeline = s.pipeline("uppercase", &unique(reset), &format!("auto_offset_reset = \"{reset}\""));
        let mut weir = s.start(&pipeline, &[]);
        weir.wait_for_log("partitions assigned", LONG);
        // Let the consumer settle on its starting position before the new records arrive.
        std::thread::sleep(Duration::from_secs(3));
        produce(&s.bootstrap, &s.input, &numbered(10..20), None);
        let out = read_committed(&s.bootstrap, &s.output, 21, Duration::from_secs(10), Duration::from_secs(60));
        weir.stop();
        assert_eq!(out.len(), want, "auto_offset_reset = {reset}");
        if reset == "latest" {
            assert!(out
                .iter()
                .all(|r| r.key.as_deref().unwrap().trim_start_matches('k').parse::<usize>().unwrap() >= 10));
        }
    }
}

#[test]
fn two_instances_split_the_partitions_and_the_survivor_takes_over_exactly_once() {
    let s = setup(env!("CARGO_BIN_EXE_weir-e2e"), 4);
    let records = 40_000;
    let pipeline = s.pipeline("uppercase", &unique("pair"), "");
    let mut a = s.start(&pipeline, &["--instance-id", "a"]);
    let mut b = s.start(&pipeline, &["--instance-id", "b"]);
    a.wait_for_log("assignment now partitions=2", LONG);
    b.wait_for_log("assignment now partitions=2", LONG);
    let (bootstrap, input) = (s.bootstrap.clone(), s.input.clone());
    let producer =
        std::thread::spawn(move || produce(&bootstrap, &input, &numbered(0..records), Some(Duration::from_secs(8))));
    std::thread::sleep(Duration::from_secs(3));
    a.kill();
    producer.join().unwrap();
    let out = read_committed(&s.bootstrap, &s.output, records, QUIET, LONG);
    assert_eq!(last_assignment(&b.log()), Some(4), "b did not take over all partitions:\n{}", b.log());
    b.stop();
    let seen = counts(&out);
    let missing = (0..records).filter(|i| !seen.contains_key(&expected_value(*i))).count();
    assert_eq!((out.len(), missing), (records, 0), "exactly once across the takeover");
}
