//! A broker that is not there at start, then SIGKILLed mid-stream and restarted on its data:
//! one `weir serve` rides it out, says what it waits for, and loses and repeats nothing.
//!
//! On a broker of its own (port 19192), and in a test binary of its own so that it runs alone:
//! in `faults.rs`, beside the policy tests that SIGKILL their sidecars, it failed in two of
//! three clean-clone runs, the pipeline showing no notice for 180 s after the broker died (cause
//! not found yet; it passed in every run alone).

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::path::Path;
use std::time::Duration;

use weir_tests::kafka::{numbered, produce, read_committed, unique, OwnBroker, LONG};
use weir_tests::serve::Sidecar;

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");

#[test]
fn with_no_broker_at_start_and_a_broker_sigkilled_mid_stream_one_weir_waits_rides_it_out_and_loses_and_repeats_nothing()
{
    // A broker of this test's own, so the others' is not disturbed.
    let broker = OwnBroker::start(19192);
    let s = Sidecar::on(Path::new(BIN), broker.bootstrap.clone());
    let (input, output) = s.topics(1);
    let app = unique("broker-restart");
    let file = s.pipeline(&app, "uppercase", &input, &output, "guarantee = \"exactly-once\"");

    // No broker at start: the pipeline waits, says why, and is not ready; then it starts.
    broker.kill();
    let mut server = s.serve(&[]);
    let pid = server.pid();
    let deployed = server.cli(&["deploy", &file.to_string_lossy(), "--timeout", "1"]);
    assert!(!deployed.ok, "{deployed:?}");
    let waiting = server.wait_for(&app, "a notice that it waits for Kafka", LONG, |s| {
        s["notice"].as_str().is_some_and(|n| n.contains("waiting for Kafka"))
    });
    assert_eq!(waiting["status"], "starting", "{waiting}");
    let (ready, why) = server.get("/readyz");
    assert!(ready == 503 && why.to_string().contains("waiting for Kafka"), "{ready} {why}");
    broker.resume();
    server.wait_phase(&app, "running");

    // The broker SIGKILLed mid-stream, down 8 s, and restarted on its data.
    let records = numbered(0..20_000);
    let producer = {
        let (bootstrap, input, records) = (s.bootstrap.clone(), input.clone(), records.clone());
        std::thread::spawn(move || produce(&bootstrap, &input, &records, Some(Duration::from_secs(8))))
    };
    server.wait_for(&app, "some records processed", LONG, |s| s["consumed"].as_u64().is_some_and(|n| n > 1_000));
    broker.kill();
    let waiting = server.wait_for(&app, "a notice that it waits for Kafka", LONG, |s| {
        s["notice"].as_str().is_some_and(|n| n.contains("waiting for Kafka"))
    });
    assert_eq!(waiting["status"], "running", "{waiting}");
    std::thread::sleep(Duration::from_secs(8));
    broker.resume();
    producer.join().unwrap();

    let out = read_committed(&s.bootstrap, &output, records.len(), Duration::from_secs(20), LONG);
    let mut seen = std::collections::HashMap::new();
    for r in &out {
        *seen.entry(r.key.clone().unwrap()).or_insert(0) += 1;
    }
    let why = || format!("status {}\n{}", server.status(&app), server.log());
    assert_eq!(seen.len(), records.len(), "lost records; {}", why());
    assert!(seen.values().all(|n| *n == 1), "duplicated records; {}", why());
    assert!(server.alive() && server.pid() == pid, "one weir process throughout");
    let status = server.wait_for(&app, "the notice cleared", LONG, |s| s["notice"].is_null());
    assert_eq!(status["status"], "running");
    // Retries back off: over the outage (8 s and the broker's restart) a few, not one each
    // 200 ms.
    let log = server.stop();
    let retries = log.lines().filter(|l| l.contains("resuming from the last commit after the wait")).count();
    assert!(retries <= 25, "{retries} retries:\n{log}");
    drop(broker);
}
