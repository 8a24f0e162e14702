//! Timers and windows on the real broker: a windowed count per key (tumbling windows of 10 s
//! with 5 s of grace, `guest-examples/windowed-count`) with late records inside and outside the
//! grace period, and its window results (each a timer firing) exactly once across SIGKILLs.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir_tests::kafka::{
    crash_repeatedly_at, produce_at, read_committed, setup, unique, ReadRecord, TestRecord, LONG, QUIET,
};

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");
const SIZE: i64 = 10_000;
const GRACE: i64 = 5_000;

/// Half an hour ago, on a window boundary: old enough that no timestamp runs into the future
/// (the broker refuses records more than an hour ahead).
fn base() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    (now - 1_800_000) / SIZE * SIZE
}

/// (key, window start) -> count, from the guest's JSON results.
fn results(out: &[ReadRecord]) -> Vec<(String, i64, u64)> {
    out.iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(r.value.as_deref().unwrap()).unwrap();
            assert_eq!(v["end"].as_i64().unwrap() - v["start"].as_i64().unwrap(), SIZE, "{v}");
            (r.key.clone().unwrap(), v["start"].as_i64().unwrap(), v["count"].as_u64().unwrap())
        })
        .collect()
}

/// What the windows must say, worked out record by record in order on one partition: event
/// time is the largest timestamp so far; a record whose window closed (end + grace at or
/// before event time) is left out; windows closed by the last event time are emitted.
fn expected(keys: &[String], timestamps: &[i64]) -> BTreeMap<(String, i64), u64> {
    let mut now = i64::MIN;
    let mut counts: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for (key, &ts) in keys.iter().zip(timestamps) {
        now = now.max(ts);
        let start = ts.div_euclid(SIZE) * SIZE;
        if start + SIZE + GRACE > now {
            *counts.entry((key.clone(), start)).or_default() += 1;
        }
    }
    counts.retain(|(_, start), _| start + SIZE + GRACE <= now);
    counts
}

#[test]
fn a_windowed_count_takes_late_records_within_the_grace_period_and_leaves_out_later_ones() {
    let s = setup(BIN, 1);
    let pipeline = s.pipeline("windowed-count", &unique("windows"), "");
    let mut weir = s.start(&pipeline, &[]);
    weir.wait_for_log("partitions assigned", LONG);
    let b = base();
    // a@3 s comes after event time 14 s: window [0, 10) closes at 15 s, so it counts. a@4 s
    // comes after event time 15 s: too late. b@40 s closes [10, 20) of a.
    let sent = [("a", 1_000), ("b", 2_000), ("a", 14_000), ("a", 3_000), ("a", 15_000), ("a", 4_000), ("b", 40_000)];
    let records: Vec<TestRecord> = sent.iter().map(|(k, _)| (k.to_string(), "click".to_owned(), vec![])).collect();
    let timestamps: Vec<i64> = sent.iter().map(|(_, t)| b + t).collect();
    produce_at(&s.bootstrap, &s.input, &records, Some(&timestamps), None);

    let out = read_committed(&s.bootstrap, &s.output, 3, QUIET, LONG);
    let extra = read_committed(&s.bootstrap, &s.output, 4, Duration::from_secs(3), Duration::from_secs(3));
    weir.wait_for_log("late record at offset 5 left out", LONG);
    weir.stop();
    let want = [("a".to_owned(), b, 2), ("b".to_owned(), b, 1), ("a".to_owned(), b + SIZE, 2)];
    assert_eq!(results(&out), want);
    assert_eq!(extra.len(), 3, "no other window closed: {extra:?}");
    assert_eq!(expected(&records.iter().map(|r| r.0.clone()).collect::<Vec<_>>(), &timestamps).len(), 3);
}

#[test]
fn window_results_fire_exactly_once_across_sigkill_crashes() {
    let s = setup(BIN, 1);
    let state = s.dir.path().join("state");
    let pipeline =
        s.pipeline("windowed-count", &unique("windows-crash"), &format!("state_dir = \"{}\"", state.display()));
    let b = base();
    let n = 20_000;
    let keys: Vec<String> = (0..n).map(|i| format!("k{}", i % 20)).collect();
    // 10 ms apart: 200 s of event time, 20 windows per key. Every 10th record is 20 s late (left
    // out), every 7th 3 s late (within the grace period).
    let timestamps: Vec<i64> = (0..n as i64)
        .map(|i| {
            let late = if i % 10 == 0 {
                20_000
            } else if i % 7 == 0 {
                3_000
            } else {
                0
            };
            b + i * 10 - late
        })
        .collect();
    let want = expected(&keys, &timestamps);
    let records: Vec<TestRecord> = keys.iter().map(|k| (k.clone(), "click".to_owned(), vec![])).collect();
    let out = crash_repeatedly_at(&s, &pipeline, records, Some(timestamps), 5, want.len());

    let mut seen: HashMap<(String, i64), Vec<u64>> = HashMap::new();
    for (key, start, count) in results(&out) {
        seen.entry((key, start)).or_default().push(count);
    }
    println!("{} window results, {} expected", out.len(), want.len());
    for ((key, start), count) in &want {
        assert_eq!(
            seen.get(&(key.clone(), *start)),
            Some(&vec![*count]),
            "window {key}@{start}: exactly once, right count"
        );
    }
    assert_eq!(out.len(), want.len(), "no window twice, no window that should not have closed");
}

#[test]
fn wall_clock_timers_fire_once_each_after_a_sigkill_with_no_new_records() {
    let s = setup(BIN, 2);
    let state = s.dir.path().join("state");
    let extra = format!("state_dir = \"{}\"", state.display());
    let pipeline = s.pipeline("reminders", &unique("reminders"), &extra);
    let config = "\n[module.config]\ndelay_ms = \"4000\"\n";
    std::fs::write(&pipeline, std::fs::read_to_string(&pipeline).unwrap() + config).unwrap();
    let mut first = s.start(&pipeline, &["--instance-id", "remind"]);
    first.wait_for_log("partitions assigned", LONG);
    let records: Vec<TestRecord> = (0..200).map(|i| (format!("r{i}"), format!("reminder {i}"), vec![])).collect();
    produce_at(&s.bootstrap, &s.input, &records, None, None);
    // The timers are set and committed within the commit interval (100 ms), due 4 s later:
    // kill in between, then restart with no new record coming.
    std::thread::sleep(Duration::from_millis(1_500));
    first.kill();
    let before = read_committed(&s.bootstrap, &s.output, usize::MAX, Duration::from_secs(1), LONG).len();
    let second = s.start(&pipeline, &["--instance-id", "remind"]);
    let out = read_committed(&s.bootstrap, &s.output, records.len(), QUIET, LONG);
    let extra =
        read_committed(&s.bootstrap, &s.output, records.len() + 1, Duration::from_secs(3), Duration::from_secs(3));
    let log = second.stop();
    println!("reminders committed before the SIGKILL: {before}");
    assert!(
        log.contains("consumed=0"),
        "the restarted instance must fire what the killed one set, with no record to read:\n{log}"
    );
    let mut values: Vec<String> = out.iter().map(|r| r.value.clone().unwrap()).collect();
    values.sort();
    let mut want: Vec<String> = records.iter().map(|r| r.1.clone()).collect();
    want.sort();
    assert_eq!(values, want, "every reminder, once");
    assert_eq!(extra.len(), records.len(), "no reminder twice");
}
