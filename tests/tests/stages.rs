//! Pipelines of several stages against the real broker, read back by an independent
//! read_committed reader: a word count of unkeyed sentences (split, then count behind a
//! repartition hop) counts every word once whatever partition its sentences came from, and
//! answers every word's query; it stays exactly once when SIGKILLed mid-stream; and the
//! repartition topic is trimmed behind the committed offsets.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use weir_tests::kafka::{
    crash_repeatedly, produce, produce_unkeyed, read_committed, setup, unique, Setup, TestRecord, LONG, QUIET,
};

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");
const PARTITIONS: i32 = 4;

/// The two-stage word count (split keyed by word, then count) from the input to the output.
fn word_count(s: &Setup, app: &str, extra: &str) -> PathBuf {
    let path = s.dir.path().join(format!("{app}.toml"));
    let text = format!(
        "application_id = \"{app}\"\nbootstrap_servers = \"{}\"\ninputs = [\"{}\"]\n{extra}\n\
         [stages.split.module]\npath = \"{}\"\n[stages.split.outputs]\ndefault = {{ stage = \"count\" }}\n\
         [stages.count.module]\npath = \"{}\"\n[stages.count.outputs]\ndefault = \"{}\"\n",
        s.bootstrap,
        s.input,
        weir_tests::guest("word_split").display(),
        weir_tests::guest("word_count").display(),
        s.output,
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `n` sentences of 3 to 7 words over a vocabulary of 300.
fn sentences(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| (0..3 + i % 5).map(|j| format!("w{}", (i * 31 + j * 7919) % 300)).collect::<Vec<_>>().join(" "))
        .collect()
}

/// The sentences keyed `s<i>`: keyed, but not by word, so a sentence's words still belong to
/// every partition.
fn keyed_by_number(sentences: &[String]) -> Vec<TestRecord> {
    sentences.iter().enumerate().map(|(i, text)| (format!("s{i}"), text.clone(), Vec::new())).collect()
}

/// How often each word occurs.
fn truth(sentences: &[String]) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for word in sentences.iter().flat_map(|s| s.split_whitespace()) {
        *counts.entry(word.to_owned()).or_insert(0) += 1;
    }
    counts
}

/// Each word's counts in the order they were output (one word's outputs share a partition).
fn counts_by_word(out: &[weir_tests::kafka::ReadRecord]) -> HashMap<String, Vec<u64>> {
    let mut by_word: HashMap<String, Vec<u64>> = HashMap::new();
    for r in out {
        let word = r.key.clone().unwrap_or_else(|| panic!("an output without a key: {r:?}"));
        let count = r.value.as_deref().and_then(|v| v.parse().ok());
        by_word.entry(word).or_default().push(count.unwrap_or_else(|| panic!("not a count: {r:?}")));
    }
    by_word
}

/// Every word's outputs are exactly 1, 2, ... up to its true count: nothing lost, nothing twice.
fn assert_counted_once(out: &[weir_tests::kafka::ReadRecord], truth: &HashMap<String, u64>) {
    let by_word = counts_by_word(out);
    let mut wrong: Vec<String> = Vec::new();
    for (word, n) in truth {
        let seen = by_word.get(word).cloned().unwrap_or_default();
        if seen != (1..=*n).collect::<Vec<_>>() {
            wrong.push(format!("{word}: {} outputs ending {:?}, truth {n}", seen.len(), seen.last()));
        }
    }
    wrong.sort();
    assert!(
        wrong.is_empty(),
        "{} of {} words miscounted, e.g. {:?}",
        wrong.len(),
        truth.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(by_word.len(), truth.len(), "words that never occurred were output");
}

#[test]
fn a_word_count_of_unkeyed_sentences_on_four_partitions_counts_every_word_once_and_answers_each() {
    let s = setup(BIN, PARTITIONS);
    let app = unique("stages-count");
    let pipeline = word_count(&s, &app, "");
    let sentences = sentences(3_000);
    produce_unkeyed(&s.bootstrap, &s.input, PARTITIONS, &sentences);
    let truth = truth(&sentences);
    let words: u64 = truth.values().sum();
    let mut weir = s.start(&pipeline, &["--admin", "127.0.0.1:0"]);
    let url = weir.admin_url();
    let out = read_committed(&s.bootstrap, &s.output, words as usize, QUIET, LONG);
    assert_counted_once(&out, &truth);

    // Every output is committed, so the count stage's stores hold the final counts.
    let agent = weir_tests::serve::agent();
    let get = |path: &str| {
        let mut r = agent.get(format!("{url}{path}")).call().unwrap();
        let text = r.body_mut().read_to_string().unwrap();
        (
            r.status().as_u16(),
            serde_json::from_str::<serde_json::Value>(&text).unwrap_or(serde_json::Value::String(text)),
        )
    };
    for (word, count) in &truth {
        for path in
            [format!("/v1/pipelines/{app}/state/{word}"), format!("/v1/pipelines/{app}/stages/count/state/{word}")]
        {
            let (status, body) = get(&path);
            assert_eq!((status, body["value"].as_u64()), (200, Some(*count)), "{path}: {body}");
        }
    }
    let (status, body) = get(&format!("/v1/pipelines/{app}/stages/split/state/w1"));
    assert_eq!(status, 404, "the split stage keeps no state: {body}");
    assert!(body.to_string().contains("count"), "the refusal names the stage queries read: {body}");

    // The status shows each stage; once it is published after the last records, the count stage
    // has consumed every word and its lag (of its repartition topic) is at most a transaction
    // marker per partition.
    let started = Instant::now();
    loop {
        let (_, status) = get(&format!("/v1/pipelines/{app}"));
        let stages = status["stages"].as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = stages.iter().filter_map(|s| s["name"].as_str()).collect();
        // Empty until the loop first publishes its progress (about a second after it starts).
        let published = !stages.is_empty();
        if published {
            assert_eq!(names, ["split", "count"], "{status}");
        }
        let drained = published && stages[1]["lag"].as_i64().is_some_and(|lag| lag <= i64::from(PARTITIONS));
        if published && stages[1]["consumed"].as_u64() == Some(words) && drained {
            break;
        }
        assert!(started.elapsed() < LONG, "the count stage never showed every word consumed: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    weir.stop();
}

#[test]
fn exactly_once_holds_across_the_repartition_hop_under_sigkill_crashes() {
    let s = setup(BIN, PARTITIONS);
    let app = unique("stages-eos");
    let pipeline = word_count(&s, &app, "guarantee = \"exactly-once\"");
    let sentences = sentences(40_000);
    let truth = truth(&sentences);
    let words: u64 = truth.values().sum();
    let out = crash_repeatedly(&s, &pipeline, keyed_by_number(&sentences), 5, words as usize);
    assert_counted_once(&out, &truth);
    assert_eq!(out.len() as u64, words, "one output per word occurrence");
}

#[test]
fn the_repartition_topic_is_trimmed_behind_the_committed_offsets() {
    let s = setup(BIN, PARTITIONS);
    let app = unique("stages-trim");
    let pipeline = word_count(&s, &app, "");
    let sentences = sentences(60_000);
    let words: u64 = truth(&sentences).values().sum();
    let weir = s.start(&pipeline, &[]);
    // Spread over 20 s, so that several trims fall while records flow.
    produce(&s.bootstrap, &s.input, &keyed_by_number(&sentences), Some(Duration::from_secs(20)));
    let out = read_committed(&s.bootstrap, &s.output, words as usize, QUIET, LONG);
    assert_eq!(out.len() as u64, words);
    let topic = format!("{app}-count-repartition");
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &s.bootstrap).create().unwrap();
    // Trims run at most every 5 s and only after a commit: wait for one after the last records.
    let started = Instant::now();
    let (kept, written) = loop {
        let (mut kept, mut written) = (0, 0);
        for p in 0..PARTITIONS {
            let (low, high) = consumer.fetch_watermarks(&topic, p, Duration::from_secs(10)).unwrap();
            kept += high - low;
            written += high;
        }
        if kept * 10 < written || started.elapsed() > Duration::from_secs(60) {
            break (kept, written);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    weir.stop();
    println!("repartition topic: {kept} of {written} records kept");
    // Each record produced once, plus the transaction markers of every commit.
    assert!(written as u64 >= words, "{written} written for {words} words");
    assert!(kept * 10 < written, "the repartition topic keeps {kept} of {written} records: not trimmed");
}

#[test]
fn a_stateful_module_reading_unkeyed_records_is_warned_about_in_the_status() {
    let s = setup(BIN, PARTITIONS);
    let app = unique("stages-unkeyed");
    let pipeline = s.pipeline("word-count", &app, "");
    produce_unkeyed(&s.bootstrap, &s.input, PARTITIONS, &sentences(100));
    let mut weir = s.start(&pipeline, &["--admin", "127.0.0.1:0"]);
    let url = weir.admin_url();
    let agent = weir_tests::serve::agent();
    let started = Instant::now();
    let notice = loop {
        let mut r = agent.get(format!("{url}/v1/pipelines/{app}")).call().unwrap();
        let status: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        if let Some(notice) = status["notice"].as_str() {
            break notice.to_owned();
        }
        assert!(started.elapsed() < LONG, "no notice: {status}");
        std::thread::sleep(Duration::from_millis(200));
    };
    weir.stop();
    assert!(notice.contains("have no key") && notice.contains(&s.input), "{notice}");
}

#[test]
fn under_weir_serve_a_swap_of_the_count_stage_under_load_keeps_its_state_and_loses_nothing() {
    let sidecar = weir_tests::serve::Sidecar::new(std::path::Path::new(BIN));
    let (input, output) = sidecar.topics(PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let app = unique("stages-serve");
    // Version 2 counts with `word-count-v2`: the same state, outputs `word=count`.
    let file = |count: &str| {
        let path = dir.path().join(format!("{count}.toml"));
        let text = format!(
            "application_id = \"{app}\"\nbootstrap_servers = \"{}\"\ninputs = [\"{input}\"]\n\
             [stages.split.module]\npath = \"{}\"\n[stages.split.outputs]\ndefault = {{ stage = \"count\" }}\n\
             [stages.count.module]\npath = \"{}\"\n[stages.count.outputs]\ndefault = \"{output}\"\n",
            sidecar.bootstrap,
            weir_tests::guest("word_split").display(),
            weir_tests::guest(count).display(),
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let server = sidecar.serve(&[]);
    let deployed = server.deploy(&file("word_count"));
    assert!(deployed.contains("version 1"), "{deployed}");
    let sentences = sentences(20_000);
    let truth = truth(&sentences);
    let words: u64 = truth.values().sum();
    let (bootstrap, topic, records) = (sidecar.bootstrap.clone(), input.clone(), keyed_by_number(&sentences));
    let producer = std::thread::spawn(move || produce(&bootstrap, &topic, &records, Some(Duration::from_secs(15))));
    // Once counting is under way, swap the count stage's module.
    read_committed(&sidecar.bootstrap, &output, 1_000, LONG, LONG);
    let swapped = server.deploy(&file("word_count_v2"));
    assert!(swapped.contains("version 2 (swapped)"), "{swapped}");
    producer.join().unwrap();
    let out = read_committed(&sidecar.bootstrap, &output, words as usize, QUIET, LONG);
    let (old, new) = out.iter().partition::<Vec<_>, _>(|r| !r.value.as_deref().unwrap_or("").contains('='));
    assert!(!old.is_empty() && !new.is_empty(), "both versions answered: {} and {}", old.len(), new.len());
    // Version 2 counts on from version 1's state: every word's counts still run 1, 2, ...
    let counts: Vec<weir_tests::kafka::ReadRecord> = out
        .into_iter()
        .map(|mut r| {
            r.value = r.value.map(|v| v.rsplit('=').next().unwrap_or_default().to_owned());
            r
        })
        .collect();
    assert_counted_once(&counts, &truth);
    assert_eq!(counts.len() as u64, words);
    let status = server.status(&app);
    let names: Vec<&str> = status["stages"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!((names, status["version"].as_u64()), (vec!["split", "count"], Some(2)), "{status}");
    let rolled = server.cli(&["rollback", &app]);
    assert!(rolled.ok, "{rolled:?}");
    server.wait_for(&app, "version 1 again", LONG, |s| s["version"].as_u64() == Some(1));
    server.stop();
}

#[test]
fn a_deploy_whose_modules_do_not_fit_its_stages_is_refused_by_name() {
    let s = setup(BIN, 1);
    let app = unique("stages-refused");
    let pipeline = word_count(&s, &app, "");
    let sidecar = weir_tests::serve::Sidecar::new(std::path::Path::new(BIN));
    let server = sidecar.serve(&[]);
    let token = std::fs::read_to_string(server.token_file()).unwrap();
    let text = std::fs::read_to_string(&pipeline).unwrap();
    for (body, says) in [
        (serde_json::json!({ "pipeline": text, "module": { "name": "m.wasm", "base64": "AA==" } }), "not one module"),
        (
            serde_json::json!({ "pipeline": text, "stages": { "splitt": { "name": "m.wasm", "base64": "AA==" } } }),
            "splitt",
        ),
        (serde_json::json!({ "pipeline": text, "stages": {} }), "stage `count`: no module was uploaded"),
    ] {
        let (status, answer) = server.send("PUT", &format!("/v1/pipelines/{app}"), Some(&body), Some(token.trim()));
        assert_eq!(status, 400, "{answer}");
        assert!(answer.to_string().contains(says), "{says}: {answer}");
    }
    server.stop();
}
