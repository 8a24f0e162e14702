//! A fleet of `weir run` instances of one stateful word count on 12 partitions under steady
//! load: what a join and a leave cost the partitions that do not move, under each group
//! protocol, the eager one as the baseline of the same run.
//!
//! Two instances run; a third joins; then it is SIGKILLed and its partitions go back after the
//! session timeout. For each, the partitions that stay with their owner and the longest time any
//! of them went without a commit (the group's committed offsets, polled every 50 ms), against
//! the same scenario under the classic protocol's eager `range` assignor, where every task
//! closes and reopens.
//!
//! Then failover against state size: two instances of the word count on 2 partitions, 100,000
//! and 1,000,000 distinct keys counted; the owner of one partition is SIGKILLed and the other
//! takes it over after the session timeout (10 s), with a standby replica of it and without: how
//! long until it runs the partition, how many changelog records it restored first, and the
//! longest its own partition (fed all along) went without a commit meanwhile: the restore runs
//! beside its loop.
//!
//! Then a rolling restart of three instances under load (each in turn stopped with SIGTERM and
//! started again), with static membership (the default) and without: how long it took, the
//! longest any partition went without a commit, and the records committed per second.
//!
//! Then worker threads: the word count on one instance, in process, with `threads = 1` and
//! `threads = 2`, for the Rust guest and the Python one: records consumed per second, 3 rounds
//! each, interleaved.
//!
//! Run: `scripts/kafka.sh start` then `cargo bench -p weir-tests --bench fleet` (`-- rebalance`,
//! `-- failover`, `-- rolling` or `-- threads` runs only that section).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_runtime::config::PipelineConfig;
use weir_runtime::engine::{Engine, EngineOptions};
use weir_runtime::pipeline::run_alone;
use weir_tests::fleet::{failover, wait_until, CommitWatch, Failover, Member};
use weir_tests::kafka::{produce, setup, unique, words, Setup};
use weir_tests::{guest, polyglot_guest};

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");
const PARTITIONS: i32 = 12;

fn main() {
    let only = |section: &str| std::env::args().skip(1).any(|a| a == section);
    let all = !["rebalance", "failover", "rolling", "threads"].iter().any(|s| only(s));
    if all || only("rebalance") {
        rebalances();
    }
    if all || only("failover") {
        failovers();
    }
    if all || only("rolling") {
        rolling_restarts();
    }
    if all || only("threads") {
        threads();
    }
}

/// Word count throughput on one instance, `threads = 1` against `threads = 2`, for the Rust
/// and the Python guest: records consumed per second, in process, exactly-once, the state in
/// RocksDB with its changelog.
fn threads() {
    let engine = Engine::new(EngineOptions::default()).unwrap_or_else(|e| panic!("engine: {e}"));
    println!("\nworker threads: word count on one instance, 4 partitions, exactly-once, RocksDB with a changelog");
    println!(
        "{:>8} {:>10} {:>18} {:>18} {:>7}   rounds (r/s)",
        "guest", "records", "threads = 1 r/s", "threads = 2 r/s", "ratio"
    );
    let guests =
        [("rust", guest("word-count"), 2_000_000), ("python", polyglot_guest("python", "word-count"), 300_000)];
    for (label, module, total) in guests {
        let s = setup(BIN, 4);
        produce(&s.bootstrap, &s.input, &words(0, total), None);
        let mut rates = [Vec::new(), Vec::new()];
        for _round in 0..3 {
            for (i, threads) in [1, 2].into_iter().enumerate() {
                let app = unique("bench-threads");
                let state = s.dir.path().join(&app);
                let extra = format!(
                    "threads = {threads}\ninstance_id = \"bench\"\nauto_offset_reset = \"earliest\"\nstate_dir = \"{}\"",
                    state.display()
                );
                let path = s.pipeline_of(&module, &app, &extra);
                let config = PipelineConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                let stats = run_alone(config, &engine, Some(total as u64)).unwrap_or_else(|e| panic!("{label}: {e:#}"));
                rates[i].push(stats.throughput().unwrap_or(0.0));
            }
        }
        let median = |r: &[f64]| {
            let mut r = r.to_vec();
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        };
        let (one, two) = (median(&rates[0]), median(&rates[1]));
        let rounds: Vec<String> =
            rates.iter().map(|r| r.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join("/")).collect();
        println!("{label:>8} {total:>10} {one:>18.0} {two:>18.0} {:>7.2}   {}", two / one, rounds.join("  "));
    }
}

/// A rolling restart of three instances under load, with static membership and without: how
/// long it took, the longest any partition went without a commit, and the records committed
/// per second throughout.
fn rolling_restarts() {
    println!("\nrolling restart of 3 instances (SIGTERM, start again), word count on 12 partitions under load");
    for (label, extra) in [("static members", ""), ("dynamic members", "static_membership = false")] {
        let s = setup(BIN, PARTITIONS);
        let app = unique("bench-rolling");
        let pipeline = s.pipeline("word-count", &app, extra);
        let ids = ["a", "b", "c"];
        let mut members: Vec<Member> = ids.iter().map(|id| Member::start(&s, &pipeline, id)).collect();
        let settled = |members: &[Member]| members.iter().all(|m| m.partitions(&app).is_some_and(|p| p.len() == 4));
        wait_until("three hold four each", || settled(&members));
        let load = Load::start(&s);
        let watch = CommitWatch::start(&s.bootstrap, &app, &s.input, PARTITIONS);
        std::thread::sleep(Duration::from_secs(5));
        let started = Instant::now();
        // Tasks the other instances opened meanwhile: partitions that moved to them.
        let mut moved = 0;
        for (i, id) in ids.iter().enumerate() {
            let opened = |members: &[Member]| -> u64 {
                members.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, m)| m.group(&app, "tasks_opened")).sum()
            };
            let before = opened(&members);
            members.remove(i).weir.stop();
            members.insert(i, Member::start(&s, &pipeline, id));
            wait_until("the fleet settles again", || settled(&members));
            moved += opened(&members) - before;
        }
        let took = started.elapsed();
        std::thread::sleep(Duration::from_secs(3));
        let commits = watch.stop();
        let all: BTreeSet<i64> = (0..i64::from(PARTITIONS)).collect();
        let gap = commits.longest_gap(&all, started, started + took);
        let rates = commits.per_second(started - Duration::from_secs(5), started + took + Duration::from_secs(3));
        println!(
            "{label:<16} took {:>6} ms, {moved:>2} partitions moved to another instance, longest commit gap {:>6} ms; \
             records committed per second from 5 s before: {rates:?}",
            took.as_millis(),
            gap.as_millis()
        );
        for m in members {
            m.weir.stop();
        }
        load.stop();
    }
}

/// The failover table: with a standby and without, at two state sizes.
fn failovers() {
    println!("\nfailover: the owner of half the keys SIGKILLed, session timeout 10 s");
    println!("(own gap: the longest the survivor's own partition, under load, went without a commit meanwhile)");
    println!(
        "{:>10} {:>14} {:>10} {:>12} {:>16} {:>10} {:>12}",
        "keys", "standby: ms", "restored", "own gap ms", "no standby: ms", "restored", "own gap ms"
    );
    for keys in [100_000, 1_000_000] {
        let mut row = Vec::new();
        for replicas in [1, 0] {
            let s = setup(BIN, 2);
            let Failover { survivor, took, restored, kept_gap, .. } = failover(&s, keys, replicas);
            survivor.weir.stop();
            row.push((took, restored, kept_gap));
        }
        println!(
            "{keys:>10} {:>14} {:>10} {:>12} {:>16} {:>10} {:>12}",
            row[0].0.as_millis(),
            row[0].1,
            row[0].2.as_millis(),
            row[1].0.as_millis(),
            row[1].1,
            row[1].2.as_millis()
        );
    }
}

/// The join and leave table, under each protocol.
fn rebalances() {
    println!("weir fleet benchmark: word count, {PARTITIONS} partitions, two instances under load, a third joins, then is SIGKILLed");
    println!(
        "{:<32} {:>6} {:>22} {:>6} {:>22}",
        "protocol (assignor)", "moved", "join: longest gap ms", "moved", "leave: longest gap ms"
    );
    for (label, extra) in [
        ("classic (cooperative-sticky)", ""),
        ("consumer, KIP-848 (uniform)", "group_protocol = \"consumer\""),
        ("classic eager (range)", "[kafka]\n\"partition.assignment.strategy\" = \"range\""),
    ] {
        let (join, leave) = join_and_leave(extra);
        println!("{label:<32} {:>6} {:>22} {:>6} {:>22}", join.0, join.1.as_millis(), leave.0, leave.1.as_millis());
    }
}

/// A join and a leave under `extra`: for each, how many partitions changed owner (4 must), and
/// the longest gap between two commits of those that did not.
fn join_and_leave(extra: &str) -> ((usize, Duration), (usize, Duration)) {
    let s = setup(BIN, PARTITIONS);
    let app = unique("bench-fleet");
    let pipeline = s.pipeline("word-count", &app, extra);
    let a = Member::start(&s, &pipeline, "a");
    let b = Member::start(&s, &pipeline, "b");
    let held = |m: &Member| m.partitions(&app);
    wait_until("a and b hold six each", || {
        held(&a).is_some_and(|p| p.len() == 6) && held(&b).is_some_and(|p| p.len() == 6)
    });
    let load = Load::start(&s);
    let watch = CommitWatch::start(&s.bootstrap, &app, &s.input, PARTITIONS);
    wait_until("both commit under load", || {
        a.status(&app)["consumed"].as_u64() > Some(1000) && b.status(&app)["consumed"].as_u64() > Some(1000)
    });
    let before = [held(&a).unwrap_or_default(), held(&b).unwrap_or_default()];

    let joined = Instant::now();
    let c = Member::start(&s, &pipeline, "c");
    wait_until("c holds four", || held(&c).is_some_and(|p| p.len() == 4));
    wait_until("a and b hold four each", || {
        held(&a).is_some_and(|p| p.len() == 4) && held(&b).is_some_and(|p| p.len() == 4)
    });
    let join_settled = Instant::now();
    let after_join = [held(&a).unwrap_or_default(), held(&b).unwrap_or_default()];
    let stayed = |was: &[BTreeSet<i64>; 2], now: &[BTreeSet<i64>; 2]| -> BTreeSet<i64> {
        was.iter().zip(now).flat_map(|(w, n)| w.intersection(n).copied().collect::<Vec<_>>()).collect()
    };
    let join_stayed = stayed(&before, &after_join);
    let join_moved = PARTITIONS as usize - join_stayed.len();

    let left = Instant::now();
    c.weir.kill();
    wait_until("a and b hold six each again", || {
        held(&a).is_some_and(|p| p.len() == 6) && held(&b).is_some_and(|p| p.len() == 6)
    });
    let leave_settled = Instant::now();
    let after_leave = [held(&a).unwrap_or_default(), held(&b).unwrap_or_default()];
    let leave_stayed = stayed(&after_join, &after_leave);
    let leave_moved = PARTITIONS as usize - leave_stayed.len();

    let commits = watch.stop();
    let settle = Duration::from_secs(2);
    let join_gap = commits.longest_gap(&join_stayed, joined, join_settled + settle);
    let leave_gap = commits.longest_gap(&leave_stayed, left, leave_settled + settle);
    a.weir.stop();
    b.weir.stop();
    load.stop();
    ((join_moved, join_gap), (leave_moved, leave_gap))
}

/// Words produced to the input at about 3,000 a second until stopped, so that every partition
/// always has records waiting (a commit gap is then the pipeline's, not the load's).
struct Load {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Load {
    fn start(s: &Setup) -> Self {
        let (bootstrap, topic) = (s.bootstrap.clone(), s.input.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut from = 0;
            while !stopped.load(Ordering::SeqCst) {
                produce(&bootstrap, &topic, &words(from, 3_000), Some(Duration::from_secs(1)));
                from += 3_000;
            }
        });
        Self { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_else(|_| panic!("the producer panicked"));
    }
}
