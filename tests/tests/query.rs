//! Interactive queries against real `weir serve` processes over real HTTP and the real broker:
//! a word count on two instances answers every word on either one, ranges page through every
//! key once, an aborted batch is never visible, a killed instance's partitions are answered
//! right or not at all, and bad requests are refused.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_runtime::query::partition_for;
use weir_tests::kafka::{end_offsets, produce, true_counts, unique, words, LONG};
use weir_tests::serve::{Server, Sidecar};

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");
const PARTITIONS: i32 = 4;

fn sidecar() -> Sidecar {
    Sidecar::new(Path::new(BIN))
}

/// Asks until the answer is not a 503 (allowed while partitions move); the status, body and
/// the instance that answered.
fn ask(server: &Server, path: &str) -> (u16, Value, Option<String>) {
    let started = Instant::now();
    loop {
        let (status, body, by) = server.query(path);
        if status != 503 {
            return (status, body, by);
        }
        assert!(started.elapsed() < LONG, "still 503 after {LONG:?}: {path}: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two instances, `a` and `b`, of word count `app` on a 4-partition input, each owning some
/// partitions and knowing who owns the others.
fn two_instances(s: &Sidecar, app: &str, input: &str, output: &str) -> (Server, Server) {
    two_instances_with(s, app, input, output, &[])
}

/// [`two_instances`], `a` started with `extra` arguments.
fn two_instances_with(s: &Sidecar, app: &str, input: &str, output: &str, extra: &[&str]) -> (Server, Server) {
    let a = s.serve_in("a", &[&["--instance-id", "a"], extra].concat());
    let b = s.serve_in("b", &["--instance-id", "b"]);
    let file = s.pipeline(app, "word-count", input, output, "");
    a.deploy(&file);
    b.deploy(&file);
    for server in [&a, &b] {
        let started = Instant::now();
        loop {
            let (_, map, _) = server.query(&format!("/v1/pipelines/{app}/instances"));
            let members = map["members"].as_array().cloned().unwrap_or_default();
            let claimed: Vec<i64> = members
                .iter()
                .flat_map(|m| m["partitions"].as_array().cloned().unwrap_or_default())
                .filter_map(|p| p.as_i64())
                .collect();
            let split =
                members.iter().filter(|m| m["partitions"].as_array().is_some_and(|p| !p.is_empty())).count() == 2;
            let mut sorted = claimed.clone();
            sorted.sort_unstable();
            if split && sorted == [0, 1, 2, 3] {
                break;
            }
            assert!(started.elapsed() < LONG, "the instances never split the partitions: {map}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    (a, b)
}

/// `min_offset` for every partition of `input`: its last record.
fn all_committed(s: &Sidecar, input: &str) -> String {
    let ends = end_offsets(&s.bootstrap, input, PARTITIONS);
    let parts: Vec<String> =
        ends.iter().enumerate().filter(|(_, e)| **e > 0).map(|(p, e)| format!("{input}:{p}:{}", e - 1)).collect();
    format!("min_offset={}&timeout_ms=30000", parts.join(","))
}

#[test]
fn every_word_is_answered_on_both_instances_with_its_true_count_including_words_the_other_owns() {
    let s = sidecar();
    let (input, output) = s.topics(PARTITIONS);
    let app = unique("query-count");
    let (a, b) = two_instances(&s, &app, &input, &output);
    let records = words(0, 4_000);
    produce(&s.bootstrap, &input, &records, None);
    let truth = true_counts(&records);
    let ends = end_offsets(&s.bootstrap, &input, PARTITIONS);
    let mut forwarded = HashMap::new();
    for (word, count) in &truth {
        let p = partition_for(word.as_bytes(), PARTITIONS) as usize;
        let path = format!("/v1/pipelines/{app}/state/{word}?min_offset={input}:{p}:{}&timeout_ms=30000", ends[p] - 1);
        for (me, server) in [("a", &a), ("b", &b)] {
            let (status, body, by) = ask(server, &path);
            assert_eq!(status, 200, "{me}: {word}: {body}");
            assert_eq!(body["value"].as_u64(), Some(*count), "{me}: {word}: {body}");
            assert_eq!(body["partition"], p, "{body}");
            let by = by.unwrap_or_else(|| panic!("no weir-instance header: {body}"));
            if by != me {
                *forwarded.entry(me).or_insert(0) += 1;
            }
        }
    }
    assert!(forwarded.get("a").is_some_and(|n| *n > 0) && forwarded.get("b").is_some_and(|n| *n > 0), "{forwarded:?}");
    a.stop();
    b.stop();
}

#[test]
fn prefix_and_range_queries_page_through_every_key_once_in_order_across_instances() {
    let s = sidecar();
    let (input, output) = s.topics(PARTITIONS);
    let app = unique("query-range");
    let (a, b) = two_instances(&s, &app, &input, &output);
    let records = words(0, 2_000);
    produce(&s.bootstrap, &input, &records, None);
    let truth: BTreeMap<String, u64> = true_counts(&records).into_iter().collect();
    let committed = all_committed(&s, &input);
    let page_through = |server: &Server, query: &str| {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/pipelines/{app}/state?{query}&limit=7&{committed}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, body, _) = ask(server, &path);
            assert_eq!(status, 200, "{path}: {body}");
            for e in body["entries"].as_array().unwrap() {
                seen.push((e["key"].as_str().unwrap().to_owned(), e["value"].as_u64().unwrap()));
            }
            match body["next"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return seen,
            }
        }
    };
    for server in [&a, &b] {
        let prefixed: Vec<(String, u64)> =
            truth.iter().filter(|(w, _)| w.starts_with("w1")).map(|(w, c)| (w.clone(), *c)).collect();
        assert_eq!(page_through(server, "prefix=w1"), prefixed);
        let ranged: Vec<(String, u64)> = truth
            .iter()
            .filter(|(w, _)| w.as_str() >= "w2" && w.as_str() < "w3")
            .map(|(w, c)| (w.clone(), *c))
            .collect();
        assert_eq!(page_through(server, "from=w2&to=w3"), ranged);
        let all: Vec<(String, u64)> = truth.iter().map(|(w, c)| (w.clone(), *c)).collect();
        assert_eq!(page_through(server, "from="), all, "every key once, in order");
    }
    a.stop();
    b.stop();
}

#[test]
fn a_batch_that_traps_after_writing_state_is_never_visible_only_what_committed_before_it() {
    let s = sidecar();
    let server = s.serve(&[]);
    let (input, output) = s.topics(1);
    let app = unique("query-trap");
    server.deploy(&s.pipeline(&app, "misbehave", &input, &output, ""));
    produce(&s.bootstrap, &input, &[("k".into(), "a".into(), Vec::new())], None);
    let before = format!("/v1/pipelines/{app}/state/seen%2F0?min_offset={input}:0:0&timeout_ms=30000");
    let (status, body, _) = ask(&server, &before);
    assert_eq!((status, &body["value"]), (200, &Value::Bool(true)), "{body}");

    // While the record that writes `seen/1` and then traps is processed, `seen/1` is never there.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (done, url, path) = (done.clone(), server.url.clone(), format!("/v1/pipelines/{app}/state/seen%2F1"));
        std::thread::spawn(move || {
            let agent = weir_tests::serve::agent();
            let mut answers: HashMap<u16, usize> = HashMap::new();
            while !done.load(Ordering::SeqCst) {
                let r = agent.get(format!("{url}{path}")).call().unwrap();
                *answers.entry(r.status().as_u16()).or_insert(0) += 1;
            }
            answers
        })
    };
    produce(&s.bootstrap, &input, &[("k".into(), "panic".into(), Vec::new())], None);
    server.wait_for(&app, "failed", LONG, |s| s["status"] == "failed");
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::SeqCst);
    let answers = watcher.join().unwrap();
    assert!(!answers.contains_key(&200), "the aborted write was visible: {answers:?}");
    assert!(answers.get(&404).is_some_and(|n| *n > 0), "{answers:?}");
    assert_eq!(
        server.query(&format!("/v1/pipelines/{app}/state/seen%2F0")).0,
        503,
        "a failed pipeline answers nothing"
    );

    // A fixed module over the same store: what committed before the failed batch is there, the
    // failed batch's write is not.
    server.deploy(&s.pipeline(&app, "word-count", &input, &output, ""));
    let (status, body, _) =
        ask(&server, &format!("/v1/pipelines/{app}/state/panic?min_offset={input}:0:1&timeout_ms=30000"));
    assert_eq!((status, body["value"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(ask(&server, &format!("/v1/pipelines/{app}/state/seen%2F0")).0, 200);
    assert_eq!(ask(&server, &format!("/v1/pipelines/{app}/state/seen%2F1")).0, 404);
    server.stop();
}

#[test]
fn while_an_instance_is_killed_and_its_partitions_move_every_answer_is_right_or_503() {
    let s = sidecar();
    let (input, output) = s.topics(PARTITIONS);
    let app = unique("query-kill");
    let (a, b) = two_instances(&s, &app, &input, &output);
    let records = words(0, 3_000);
    produce(&s.bootstrap, &input, &records, None);
    let truth = true_counts(&records);
    let committed = all_committed(&s, &input);
    let (status, body, _) = ask(&a, &format!("/v1/pipelines/{app}/state?from=&limit=1&{committed}"));
    assert_eq!(status, 200, "{body}");
    let b_owned = b.query(&format!("/v1/pipelines/{app}/instances")).1["owned"].clone();
    b.kill();

    let started = Instant::now();
    let mut unanswered: Vec<&String> = truth.keys().collect();
    let mut refused = 0;
    while !unanswered.is_empty() {
        assert!(started.elapsed() < LONG, "{} words never answered after the kill", unanswered.len());
        unanswered.retain(|word| {
            let (status, body, _) = a.query(&format!("/v1/pipelines/{app}/state/{word}"));
            match status {
                200 => {
                    assert_eq!(body["value"].as_u64(), Some(truth[*word]), "a wrong count for {word}: {body}");
                    false
                }
                503 => {
                    refused += 1;
                    true
                }
                other => panic!("{other} for {word}: {body}"),
            }
        });
        std::thread::sleep(Duration::from_millis(50));
    }
    let owned = a.query(&format!("/v1/pipelines/{app}/instances")).1["owned"].clone();
    assert_eq!(owned, serde_json::json!([0, 1, 2, 3]), "a took over {b_owned} ({refused} answers were 503 meanwhile)");
    a.stop();
}

#[test]
fn absent_keys_unknown_pipelines_and_tables_are_404_and_malformed_requests_400() {
    let s = sidecar();
    let server = s.serve(&[]);
    let (input, output) = s.topics(1);
    let app = unique("query-refuse");
    server.deploy(&s.pipeline(&app, "word-count", &input, &output, ""));
    produce(&s.bootstrap, &input, &[("hello".into(), "hello".into(), Vec::new())], None);
    let (status, body, _) = ask(&server, &format!("/v1/pipelines/{app}/state/hello?min_offset={input}:0:0"));
    assert_eq!((status, body["value"].as_u64()), (200, Some(1)), "{body}");
    let reserved = base64_of(b"\xff\xffweir/event-time");

    let customers = unique("customers");
    weir_tests::kafka::create_topic(&s.bootstrap, &customers, 1);
    produce(&s.bootstrap, &customers, &[("c1".into(), r#"{"name":"Ada"}"#.into(), Vec::new())], None);
    let (orders, enriched) = s.topics(1);
    let enrich = unique("query-enrich");
    let table = format!("tables.customers = {{ topic = \"{customers}\" }}");
    server.deploy(&s.pipeline(&enrich, "orders-enrich", &orders, &enriched, &table));

    let cases: Vec<(String, u16)> = vec![
        (format!("/v1/pipelines/{app}/state/absent"), 404),
        (format!("/v1/pipelines/{app}/state?key_base64={reserved}"), 404),
        (format!("/v1/pipelines/nope-{app}/state/hello"), 404),
        (format!("/v1/pipelines/{enrich}/state/c1"), 404),
        (format!("/v1/pipelines/{enrich}/tables/suppliers/c1"), 404),
        (format!("/v1/pipelines/{enrich}/tables/customers/c2"), 404),
        (format!("/v1/pipelines/{app}/state/%FF"), 400),
        (format!("/v1/pipelines/{app}/state?key_base64=%21%21"), 400),
        (format!("/v1/pipelines/{app}/state?from=a&limit=0"), 400),
        (format!("/v1/pipelines/{app}/state?from=a&limit=many"), 400),
        (format!("/v1/pipelines/{app}/state?prefix=a&from=b"), 400),
        (format!("/v1/pipelines/{app}/state?colour=blue"), 400),
        (format!("/v1/pipelines/{app}/state/hello?partition=7"), 400),
        (format!("/v1/pipelines/{app}/state/hello?min_offset=nonsense"), 400),
        (format!("/v1/pipelines/{app}/state/hello?min_offset={input}:0:99999&timeout_ms=200"), 504),
    ];
    for (path, want) in &cases {
        let (status, body, _) = ask(&server, path);
        assert_eq!(status, *want, "{path}: {body}");
        if status != 200 {
            assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: an error says why: {body}");
        }
    }
    let (status, body, _) = ask(&server, &format!("/v1/pipelines/{enrich}/tables/customers/c1"));
    assert_eq!((status, &body["value"]["name"]), (200, &Value::from("Ada")), "{body}");
    server.stop();
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn forwarded_queries_past_the_bound_are_answered_503_at_once_not_queued() {
    let s = sidecar();
    let (input, output) = s.topics(PARTITIONS);
    let app = unique("bounded");
    let (a, b) = two_instances_with(&s, &app, &input, &output, &["--max-heavy-queries", "1"]);
    let (_, map, _) = a.query(&format!("/v1/pipelines/{app}/instances"));
    let theirs = map["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["instance"] == "b"))
        .and_then(|m| m["partitions"].as_array()?.first()?.as_i64())
        .unwrap_or_else(|| panic!("b owns no partition: {map}"));
    // Forwarded to b, which waits for an offset that never comes: a's one permit is held.
    let waiting =
        format!("/v1/pipelines/{app}/state/x?partition={theirs}&min_offset={input}:{theirs}:999999&timeout_ms=5000");
    let quick = format!("/v1/pipelines/{app}/state/x?partition={theirs}");
    std::thread::scope(|scope| {
        let mut held = scope.spawn(|| a.query(&waiting));
        let started = Instant::now();
        loop {
            let (status, body, _) = a.query(&quick);
            let shed = status == 503;
            if held.is_finished() {
                // The quick query took the one permit first and the held one was shed: again.
                let (status, body, _) = held.join().unwrap();
                assert_eq!(status, 503, "the held query ended early: {body}");
                held = scope.spawn(|| a.query(&waiting));
            } else if shed {
                assert!(body["error"].as_str().unwrap_or_default().contains("as many forwarded queries"), "{body}");
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "never shed: {status} {body}");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(held.join().unwrap().0, 504, "the held query timed out at b as asked");
    });
    // Once it is done, the next one is forwarded again.
    let (status, _, by) = ask(&a, &quick);
    assert!(status == 200 || status == 404, "{status}");
    assert_eq!(by.as_deref(), Some("b"));
    let metrics = a.get_text("/metrics");
    assert!(metrics.lines().any(|l| l.starts_with("weir_queries_shed_total") && !l.ends_with(" 0")), "{metrics}");
    drop(b);
}
