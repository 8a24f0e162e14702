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
//! Run: `scripts/kafka.sh start` then `cargo bench -p weir-tests --bench fleet`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use weir_tests::fleet::{wait_until, CommitWatch, Member};
use weir_tests::kafka::{produce, setup, unique, words};

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");
const PARTITIONS: i32 = 12;

fn main() {
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
    let (bootstrap, topic) = (s.bootstrap.clone(), s.input.clone());
    let producer =
        std::thread::spawn(move || produce(&bootstrap, &topic, &words(0, 150_000), Some(Duration::from_secs(45))));
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
    producer.join().unwrap_or_else(|_| panic!("the producer panicked"));
    ((join_moved, join_gap), (leave_moved, leave_gap))
}
