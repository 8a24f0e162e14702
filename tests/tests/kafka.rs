//! `weir run` against the real Apache Kafka broker (`scripts/kafka.sh start`): records in and
//! out, each delivery guarantee under SIGKILL crashes, offset reset, and two instances sharing
//! a group.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::time::Duration;

use rand::Rng;
use weir_tests::guest;
use weir_tests::kafka::{bootstrap, counts, create_topic, numbered, pipeline_file, produce, read_committed, unique, Weir};

const LONG: Duration = Duration::from_secs(180);
const QUIET: Duration = Duration::from_secs(20);

struct Setup {
    bootstrap: String,
    input: String,
    output: String,
    dir: tempfile::TempDir,
}

fn setup(partitions: i32) -> Setup {
    let bootstrap = bootstrap();
    let (input, output) = (unique("in"), unique("out"));
    create_topic(&bootstrap, &input, partitions);
    create_topic(&bootstrap, &output, partitions);
    Setup { bootstrap, input, output, dir: tempfile::tempdir().unwrap() }
}

impl Setup {
    fn pipeline(&self, app: &str, extra: &str) -> std::path::PathBuf {
        pipeline_file(self.dir.path(), app, &self.bootstrap, &self.input, &self.output, &guest("uppercase"), extra)
    }

    fn start(&self, pipeline: &std::path::Path, args: &[&str]) -> Weir {
        Weir::start(std::path::Path::new(env!("CARGO_BIN_EXE_weir-e2e")), pipeline, args, self.dir.path())
    }
}

/// Starts and SIGKILLs weir `crashes` times at random moments while `records` flow in, then
/// lets a last instance run until the output has `want` records (or goes quiet).
fn crash_repeatedly(s: &Setup, pipeline: &std::path::Path, records: usize, crashes: usize, want: usize) -> Vec<weir_tests::kafka::ReadRecord> {
    let (bootstrap, input) = (s.bootstrap.clone(), s.input.clone());
    let producer = std::thread::spawn(move || produce(&bootstrap, &input, &numbered(0..records), Some(Duration::from_secs(40))));
    let mut rng = rand::rng();
    let mut committed_at_kills = Vec::new();
    for _ in 0..crashes {
        let mut weir = s.start(pipeline, &["--instance-id", "crashy"]);
        weir.wait_for_log("partitions assigned", LONG);
        std::thread::sleep(Duration::from_millis(rng.random_range(300..2000)));
        weir.kill();
        let so_far = read_committed(&s.bootstrap, &s.output, usize::MAX, Duration::from_secs(1), LONG).len();
        committed_at_kills.push(so_far);
    }
    println!("outputs committed when each SIGKILL landed: {committed_at_kills:?} (of {records} inputs)");
    let mid_stream = committed_at_kills.iter().filter(|&&n| n > 0 && n < records).count();
    assert!(mid_stream >= 3, "the crashes must land while records flow: {committed_at_kills:?}");
    producer.join().unwrap();
    let last = s.start(pipeline, &["--instance-id", "crashy"]);
    let out = read_committed(&s.bootstrap, &s.output, want, QUIET, LONG);
    last.stop();
    out
}

fn expected_value(i: usize) -> String {
    format!("RECORD {i}")
}

#[test]
fn a_stateless_pipeline_uppercases_every_record_keeping_keys_and_headers() {
    let s = setup(2);
    let pipeline = s.pipeline(&unique("upper"), "");
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
    let s = setup(4);
    let records = 100_000;
    let pipeline = s.pipeline(&unique("eos"), "guarantee = \"exactly-once\"");
    let out = crash_repeatedly(&s, &pipeline, records, 5, records);
    let seen = counts(&out);
    let missing = (0..records).filter(|i| !seen.contains_key(&expected_value(*i))).count();
    let duplicated = seen.values().filter(|&&c| c > 1).count();
    assert_eq!((out.len(), missing, duplicated), (records, 0, 0), "exactly once: every output once, none missing");
}

#[test]
fn at_least_once_loses_nothing_under_sigkill_crashes() {
    let s = setup(4);
    let records = 100_000;
    let pipeline = s.pipeline(&unique("alo"), "guarantee = \"at-least-once\"\ncommit_interval_ms = 200");
    let out = crash_repeatedly(&s, &pipeline, records, 5, usize::MAX);
    let seen = counts(&out);
    let missing = (0..records).filter(|i| !seen.contains_key(&expected_value(*i))).count();
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    println!("at-least-once under 5 crashes: {} outputs for {records} inputs, {duplicates} duplicates, {missing} missing", out.len());
    assert_eq!(missing, 0, "at-least-once must not lose records");
}

#[test]
fn at_most_once_never_duplicates_under_sigkill_crashes() {
    let s = setup(4);
    let records = 100_000;
    let pipeline = s.pipeline(&unique("amo"), "guarantee = \"at-most-once\"");
    let out = crash_repeatedly(&s, &pipeline, records, 5, usize::MAX);
    let seen = counts(&out);
    let duplicated = seen.values().filter(|&&c| c > 1).count();
    let lost = records - seen.len();
    println!("at-most-once under 5 crashes: {} outputs for {records} inputs, {lost} lost, {duplicated} duplicated", out.len());
    assert_eq!(duplicated, 0, "at-most-once must not duplicate records");
}

#[test]
fn offset_reset_earliest_sees_the_history_and_latest_only_new_records() {
    for (reset, want) in [("earliest", 20), ("latest", 10)] {
        let s = setup(1);
        produce(&s.bootstrap, &s.input, &numbered(0..10), None);
        let pipeline = s.pipeline(&unique(reset), &format!("auto_offset_reset = \"{reset}\""));
        let mut weir = s.start(&pipeline, &[]);
        weir.wait_for_log("partitions assigned", LONG);
        // Let the consumer settle on its starting position before the new records arrive.
        std::thread::sleep(Duration::from_secs(3));
        produce(&s.bootstrap, &s.input, &numbered(10..20), None);
        let out = read_committed(&s.bootstrap, &s.output, 21, Duration::from_secs(10), Duration::from_secs(60));
        weir.stop();
        assert_eq!(out.len(), want, "auto_offset_reset = {reset}");
        if reset == "latest" {
            assert!(out.iter().all(|r| r.key.as_deref().unwrap().trim_start_matches('k').parse::<usize>().unwrap() >= 10));
        }
    }
}

#[test]
fn two_instances_split_the_partitions_and_the_survivor_takes_over_exactly_once() {
    let s = setup(4);
    let records = 40_000;
    let pipeline = s.pipeline(&unique("pair"), "");
    let mut a = s.start(&pipeline, &["--instance-id", "a"]);
    let mut b = s.start(&pipeline, &["--instance-id", "b"]);
    a.wait_for_log("partitions assigned partitions=2", LONG);
    b.wait_for_log("partitions assigned partitions=2", LONG);
    let (bootstrap, input) = (s.bootstrap.clone(), s.input.clone());
    let producer = std::thread::spawn(move || produce(&bootstrap, &input, &numbered(0..records), Some(Duration::from_secs(8))));
    std::thread::sleep(Duration::from_secs(3));
    a.kill();
    producer.join().unwrap();
    let out = read_committed(&s.bootstrap, &s.output, records, QUIET, LONG);
    assert!(b.log().contains("partitions assigned partitions=4"), "b did not take over all partitions:\n{}", b.log());
    b.stop();
    let seen = counts(&out);
    let missing = (0..records).filter(|i| !seen.contains_key(&expected_value(*i))).count();
    assert_eq!((out.len(), missing), (records, 0), "exactly once across the takeover");
}
