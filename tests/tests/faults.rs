//! Kafka faults and outputs Kafka would refuse, against the real broker: each is a clear error
//! that names the topic or the record, never a retry loop or a wrong diagnosis.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::path::Path;
use std::time::Duration;

use weir_tests::kafka::{
    add_partitions, delete_topic, last_counts, numbered, produce, read_committed, true_counts, unique, words,
    TestRecord, LONG,
};
use weir_tests::serve::Sidecar;

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");

#[test]
fn a_pipeline_whose_output_topic_does_not_exist_fails_at_start_naming_the_topic() {
    let s = Sidecar::new(Path::new(BIN));
    let server = s.serve(&[]);
    let (input, _) = s.topics(1);
    let missing = unique("never-created");
    let app = unique("no-output");
    let deployed = server.cli(&["deploy", &s.pipeline(&app, "uppercase", &input, &missing, "").to_string_lossy()]);
    assert!(!deployed.ok, "{deployed:?}");
    let status = server.wait_for(&app, "failed", LONG, |s| s["status"] == "failed");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(error.contains(&format!("`{missing}` does not exist")) && error.contains("output `default`"), "{error}");
    // And one whose input does not exist.
    let app = unique("no-input");
    let (_, output) = s.topics(1);
    let absent = unique("no-such-input");
    let deployed = server.cli(&["deploy", &s.pipeline(&app, "uppercase", &absent, &output, "").to_string_lossy()]);
    assert!(!deployed.ok, "{deployed:?}");
    let status = server.wait_for(&app, "failed", LONG, |s| s["status"] == "failed");
    assert!(status["error"].as_str().unwrap_or_default().contains(&format!("input topic `{absent}` does not exist")));
    server.stop();
}

#[test]
fn an_output_over_the_producers_message_max_bytes_stops_at_its_record_and_blames_no_fencing() {
    let s = Sidecar::new(Path::new(BIN));
    let server = s.serve(&[]);
    let (input, output) = s.topics(1);
    let app = unique("too-large");
    let big = "x".repeat(3_000);
    let records: Vec<_> = [("k0", "small"), ("k1", big.as_str()), ("k2", "after")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string(), Vec::new()))
        .collect();
    produce(&s.bootstrap, &input, &records, None);
    let extra = "guarantee = \"exactly-once\"\n[kafka]\n\"message.max.bytes\" = \"2000\"";
    let _ = server.cli(&["deploy", &s.pipeline(&app, "uppercase", &input, &output, extra).to_string_lossy()]);
    let status = server.wait_for(&app, "failed", LONG, |s| s["status"] == "failed");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("message.max.bytes (2000)") && error.contains("offset 1") && error.contains("\"k1\""),
        "{error}"
    );
    assert!(!error.contains("took over") && !error.contains("fenced"), "{error}");
    // Nothing from the failed record on was committed (the one before it may have been, in a
    // batch of its own).
    let out = read_committed(&s.bootstrap, &output, 3, Duration::from_secs(3), Duration::from_secs(10));
    assert!(out.iter().all(|r| r.key.as_deref() == Some("k0")) && out.len() <= 1, "{out:?}");
    server.stop();
}

/// A pipeline running `module` under exactly-once from a new input (`partitions` partitions)
/// to a new output, with `extra` in its file, that has processed `records`.
struct Running {
    server: weir_tests::serve::Server,
    app: String,
    input: String,
    output: String,
}

fn running(s: &Sidecar, module: &str, partitions: i32, extra: &str, records: &[TestRecord]) -> Running {
    let server = s.serve(&[]);
    let (input, output) = s.topics(partitions);
    let app = unique(module);
    server.deploy(&s.pipeline(&app, module, &input, &output, &format!("guarantee = \"exactly-once\"\n{extra}")));
    produce(&s.bootstrap, &input, records, None);
    let n = records.len() as u64;
    server.wait_for(&app, "the first records processed", LONG, |s| s["consumed"].as_u64() == Some(n));
    Running { server, app, input, output }
}

impl Running {
    /// The error the pipeline failed with.
    fn failure(&self) -> String {
        let status = self.server.wait_for(&self.app, "failed", LONG, |s| s["status"] == "failed");
        status["error"].as_str().unwrap_or_default().to_owned()
    }
}

#[test]
fn an_output_topic_deleted_while_the_pipeline_runs_fails_it_naming_the_topic() {
    let s = Sidecar::new(Path::new(BIN));
    let run = running(&s, "uppercase", 1, "", &numbered(0..200));
    delete_topic(&s.bootstrap, &run.output);
    produce(&s.bootstrap, &run.input, &numbered(200..400), None);
    let error = run.failure();
    let named = format!("output `default`: topic `{}` was deleted while the pipeline ran", run.output);
    assert!(error.contains(&named) && error.contains("recreate it"), "{error}");
    run.server.stop();
}

#[test]
fn an_input_topic_deleted_while_the_pipeline_runs_fails_it_naming_the_topic() {
    let s = Sidecar::new(Path::new(BIN));
    let run = running(&s, "uppercase", 1, "", &numbered(0..200));
    delete_topic(&s.bootstrap, &run.input);
    let error = run.failure();
    assert!(error.contains(&format!("input topic `{}` was deleted while the pipeline ran", run.input)), "{error}");
    run.server.stop();
}

#[test]
fn a_changelog_deleted_while_the_pipeline_runs_fails_it_saying_the_state_is_no_longer_durable() {
    let s = Sidecar::new(Path::new(BIN));
    let run = running(&s, "word-count", 1, "", &words(0, 200));
    let changelog = format!("{}-state-changelog", run.app);
    delete_topic(&s.bootstrap, &changelog);
    produce(&s.bootstrap, &run.input, &words(200, 200), None);
    let error = run.failure();
    let named = format!("changelog topic `{changelog}` was deleted while the pipeline ran");
    assert!(error.contains(&named) && error.contains("no longer durable"), "{error}");
    run.server.stop();
}

#[test]
fn partitions_added_to_a_stateful_pipelines_input_stop_it_before_any_record_of_the_new_layout() {
    let s = Sidecar::new(Path::new(BIN));
    // The consumer notices new partitions at its next metadata refresh (5 minutes by default).
    let extra = "[kafka]\n\"topic.metadata.refresh.interval.ms\" = \"1000\"";
    let before = words(0, 2_000);
    let run = running(&s, "word-count", 2, extra, &before);
    add_partitions(&s.bootstrap, &run.input, 4);
    let after = words(2_000, 2_000);
    produce(&s.bootstrap, &run.input, &after, None);
    let error = run.failure();
    let named = format!("input topic `{}` now has 4 partitions, but the state is kept in 2", run.input);
    assert!(error.contains(&named) && error.contains("another application_id"), "{error}");
    // No wrong count: a word whose new records went to a new partition still has the count of
    // its old records, and no word counts more than it occurred.
    let landed = read_committed(&s.bootstrap, &run.input, 4_000, Duration::from_secs(5), LONG);
    let moved: std::collections::HashSet<String> =
        landed.iter().filter(|r| r.partition >= 2).filter_map(|r| r.key.clone()).collect();
    assert!(!moved.is_empty(), "no word reached a new partition");
    let counts = last_counts(&read_committed(&s.bootstrap, &run.output, 4_000, Duration::from_secs(5), LONG));
    let (old, all) = (true_counts(&before), true_counts(&[before.clone(), after].concat()));
    for word in &moved {
        assert_eq!(counts.get(word), old.get(word), "{word} was counted on a partition that does not hold its state");
    }
    assert!(counts.iter().all(|(w, n)| all.get(w).is_some_and(|t| n <= t)), "a count above the truth");
    run.server.stop();
}

#[test]
fn a_batch_too_slow_together_for_its_deadline_is_redone_in_smaller_batches_and_each_record_comes_out_once() {
    // Each record sleeps 150 ms, within the 500 ms deadline alone; twenty in one batch take 3 s.
    // Under `stop`: no record is at fault, so none may stop the pipeline or be set aside.
    let s = Sidecar::new(Path::new(BIN));
    let server = s.serve(&[]);
    let (input, output) = s.topics(1);
    let records: Vec<TestRecord> = (0..20).map(|i| (format!("k{i}"), "sleep 150".to_owned(), Vec::new())).collect();
    produce(&s.bootstrap, &input, &records, None);
    let app = unique("slow-batch");
    let extra = "guarantee = \"exactly-once\"\nbatch_size = 20\nlinger_ms = 2000\n";
    let file = s.pipeline(&app, "misbehave", &input, &output, extra);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("deadline_ms = 500\n");
    std::fs::write(&file, text).unwrap();
    server.deploy(&file);
    let status = server.wait_for(&app, "all 20 records processed", LONG, |s| {
        s["consumed"].as_u64() == Some(20) || s["status"] == "failed"
    });
    assert_eq!(status["status"], "running", "{status}");
    let notice = status["notice"].as_str().unwrap_or_default();
    assert!(notice.contains("deadline of 500 ms") && notice.contains("batches of at most"), "{status}");
    // One more than expected: a duplicate would show.
    let out = read_committed(&s.bootstrap, &output, 21, Duration::from_secs(3), LONG);
    assert_eq!(out.len(), 20, "one output per record, each once");
    assert!(out.iter().all(|r| r.value.as_deref() == Some("slept")));
    server.stop();
}

/// 10,000 records `k<i>`; every 500th is poisoned, in turn with a trap, a blown deadline, a
/// rejection and a 2 MiB output. The records, and the indices of the poisoned ones.
fn poisoned_stream() -> (Vec<weir_tests::kafka::TestRecord>, Vec<usize>) {
    let kinds = ["panic", "loop", "reject", "big"];
    let poisoned: Vec<usize> = (0..10_000).filter(|i| i % 500 == 499).collect();
    let records = (0..10_000)
        .map(|i| {
            let value = if i % 500 == 499 { kinds[(i / 500) % 4].to_owned() } else { format!("v{i}") };
            (format!("k{i}"), value, Vec::new())
        })
        .collect();
    (records, poisoned)
}

/// A misbehave pipeline under exactly-once with `policy`, a 300 ms deadline, one partition.
fn policy_pipeline(s: &Sidecar, app: &str, input: &str, output: &str, policy: &str) -> std::path::PathBuf {
    let extra = format!("guarantee = \"exactly-once\"\n[errors]\non_guest_error = \"{policy}\"");
    let file = s.pipeline(app, "misbehave", input, output, &extra);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("deadline_ms = 300\n");
    std::fs::write(&file, text).unwrap();
    file
}

/// Deploys `file`, produces the stream over 6 s, and SIGKILLs the sidecar twice meanwhile,
/// restarting it on its data dir; returns the running sidecar and every log.
fn through_two_sigkills(s: &Sidecar, file: &Path, input: &str) -> (weir_tests::serve::Server, Vec<usize>, String) {
    let (records, poisoned) = poisoned_stream();
    let server = s.serve(&[]);
    let _ = server.cli(&["deploy", &file.to_string_lossy()]);
    let producer = {
        let (bootstrap, input) = (s.bootstrap.clone(), input.to_owned());
        std::thread::spawn(move || produce(&bootstrap, &input, &records, Some(Duration::from_secs(6))))
    };
    let mut logs = String::new();
    let mut server = server;
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(2));
        logs.push_str(&server.kill());
        server = s.serve(&[]);
    }
    producer.join().unwrap();
    (server, poisoned, logs)
}

/// `out` holds one output for each of the `good` records and none for a poisoned one.
fn every_good_record_once(out: &[weir_tests::kafka::ReadRecord], good: usize, poisoned: &[usize]) {
    let mut counts = std::collections::HashMap::new();
    for r in out {
        *counts.entry(r.key.clone().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), good, "every good record's output");
    assert!(counts.values().all(|n| *n == 1), "exactly once");
    assert!(poisoned.iter().all(|i| !counts.contains_key(&format!("k{i}"))), "no output of a poisoned record");
}

/// A policy test's run: the misbehave pipeline under `policy`, fed the poisoned stream
/// through two SIGKILLs of its sidecar.
struct PolicyRun {
    s: Sidecar,
    server: weir_tests::serve::Server,
    input: String,
    output: String,
    app: String,
    poisoned: Vec<usize>,
    /// The logs of the killed sidecars.
    logs: String,
}

fn policy_run(policy: &str, prefix: &str) -> PolicyRun {
    let s = Sidecar::new(Path::new(BIN));
    let (input, output) = s.topics(1);
    let app = unique(prefix);
    let file = policy_pipeline(&s, &app, &input, &output, policy);
    let (server, poisoned, logs) = through_two_sigkills(&s, &file, &input);
    PolicyRun { s, server, input, output, app, poisoned, logs }
}

/// Under dead-letter or skip: every good record's output came out once; returns how many
/// good records there are.
fn good_records_came_out_once(run: &PolicyRun) -> usize {
    let good = 10_000 - run.poisoned.len();
    let out = read_committed(&run.s.bootstrap, &run.output, good, Duration::from_secs(20), LONG);
    every_good_record_once(&out, good, &run.poisoned);
    good
}

fn header<'a>(r: &'a weir_tests::kafka::ReadRecord, name: &str) -> Option<&'a str> {
    r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn under_stop_the_first_poisoned_record_stops_the_pipeline_and_nothing_past_it_commits() {
    let PolicyRun { s, server, output, app, poisoned, .. } = policy_run("stop", "policy-stop");
    let status = server.wait_for(&app, "failed", LONG, |s| s["status"] == "failed");
    let error = status["error"].as_str().unwrap_or_default();
    let first = poisoned[0];
    assert!(error.contains(&format!("offset {first}")) && error.contains(&format!("\"k{first}\"")), "{error}");
    // The batch that holds the poisoned record commits nothing either: what came out is a
    // prefix of the records before it, each once.
    let out = read_committed(&s.bootstrap, &output, first, Duration::from_secs(5), LONG);
    let keys: Vec<String> = out.iter().filter_map(|r| r.key.clone()).collect();
    let expected: Vec<String> = (0..keys.len()).map(|i| format!("k{i}")).collect();
    assert!(keys.len() < first, "{} outputs, the first poisoned record is {first}", keys.len());
    assert_eq!(keys, expected, "the records before the first poisoned one, in order, once; nothing after");
    server.stop();
}

#[test]
fn under_dead_letter_every_good_record_comes_out_once_and_every_poisoned_one_is_dead_lettered_once() {
    let run = policy_run("dead-letter", "policy-dlq");
    let good = good_records_came_out_once(&run);
    let PolicyRun { s, server, input, output, app, poisoned, .. } = run;

    let dlq = format!("{app}-dlq");
    let dead = read_committed(&s.bootstrap, &dlq, poisoned.len(), Duration::from_secs(10), LONG);
    let keys: Vec<String> = dead.iter().filter_map(|r| r.key.clone()).collect();
    let expected: Vec<String> = poisoned.iter().map(|i| format!("k{i}")).collect();
    assert_eq!(keys, expected, "each poisoned record once, in order");
    let kinds = ["trap", "deadline", "rejected", "output"];
    for (r, i) in dead.iter().zip(&poisoned) {
        assert_eq!(header(r, "weir.error.kind"), Some(kinds[(i / 500) % 4]), "{r:?}");
        assert_eq!(header(r, "weir.source.topic"), Some(input.as_str()));
        assert_eq!(header(r, "weir.source.partition"), Some("0"));
        assert_eq!(header(r, "weir.source.offset"), Some(i.to_string().as_str()));
        assert!(header(r, "weir.error.message").is_some_and(|m| m.contains(&format!("offset {i}"))), "{r:?}");
        assert!(header(r, "weir.module.digest").is_some_and(|d| d.len() == 64), "{r:?}");
        assert!(header(r, "weir.failed.at").is_some_and(|t| t.parse::<u64>().is_ok()));
    }

    // A fixed module (hot swap), then the dead letters replayed: they come out processed.
    server.deploy(&s.pipeline(
        &app,
        "uppercase",
        &input,
        &output,
        "guarantee = \"exactly-once\"\n[errors]\non_guest_error = \"dead-letter\"",
    ));
    let replayed = server.cli(&["dlq", "replay", &app]);
    assert!(replayed.ok && replayed.stdout.contains(&format!("replayed {}", poisoned.len())), "{replayed:?}");
    let all = read_committed(&s.bootstrap, &output, good + poisoned.len(), Duration::from_secs(20), LONG);
    let fixed: Vec<&weir_tests::kafka::ReadRecord> =
        all.iter().filter(|r| header(r, "weir.replayed.from").is_some()).collect();
    assert_eq!(fixed.len(), poisoned.len(), "every dead letter came out processed");
    assert!(fixed.iter().all(|r| ["PANIC", "LOOP", "REJECT", "BIG"].contains(&r.value.as_deref().unwrap_or(""))));
    server.stop();
}

#[test]
fn under_skip_every_good_record_comes_out_once_and_every_poisoned_one_is_logged_as_skipped() {
    let run = policy_run("skip", "policy-skip");
    good_records_came_out_once(&run);
    let PolicyRun { server, app, poisoned, mut logs, .. } = run;
    let status = server.status(&app);
    assert_eq!(status["dead_lettered"], 0);
    logs.push_str(&server.stop());
    for i in &poisoned {
        let named = format!("offset {i} key \"k{i}\"");
        assert!(
            logs.lines().any(|l| l.contains("skipped the record") && l.contains(&named)),
            "no skip logged for offset {i}"
        );
    }
}
