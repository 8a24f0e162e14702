//! Several `weir run` instances of one stateful word count in one consumer group, against the
//! real broker, read back by an independent read_committed reader: a third instance joining
//! under load takes only its share while the others keep their tasks and keep committing (under
//! both group protocols); a static member SIGKILLed and restarted at once gets its own partitions
//! back with no rebalance; a second live instance with the same id takes over and the first stops
//! saying why; a partition whose owner is SIGKILLed moves warm to the instance that kept its
//! standby, and cold without one; and one instance of two worker threads splits the partitions
//! between them and stays exactly-once across SIGKILLs. Through the join, the static restart and
//! the failover, an instance is queried throughout: every answer is the true count as of the
//! position it gives (the input read back), or 503.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use weir_tests::fleet::{failover, wait_until, wrong_answers, CommitWatch, Failover, Member, QueryWatch};
use weir_tests::kafka::{
    crash_repeatedly, last_counts, produce, read_committed, setup, true_counts, unique, words, LONG, QUIET,
};

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");

#[test]
fn a_third_instance_joining_under_load_takes_four_of_twelve_partitions_and_no_other_task_closes() {
    join_under_load("");
}

#[test]
fn under_the_consumer_protocol_a_joining_instance_moves_only_its_share_too() {
    join_under_load("group_protocol = \"consumer\"");
}

/// Two instances of a word count on 12 partitions under load, and a third joining: it takes
/// four; the other two lose two each and open or close no other task; every word is counted
/// exactly once; every query answered meanwhile is the true count as of its position (or 503).
/// Prints how long the partitions that stayed went without a commit.
fn join_under_load(extra: &str) {
    let s = setup(BIN, 12);
    let app = unique("fleet-join");
    let pipeline = s.pipeline("word-count", &app, extra);
    let a = Member::start(&s, &pipeline, "a");
    let b = Member::start(&s, &pipeline, "b");
    wait_until("a and b hold six partitions each", || {
        a.partitions(&app).is_some_and(|p| p.len() == 6) && b.partitions(&app).is_some_and(|p| p.len() == 6)
    });
    let input = words(0, 60_000);
    let truth = true_counts(&input);
    let (bootstrap, topic) = (s.bootstrap.clone(), s.input.clone());
    let feed = input.clone();
    let producer = std::thread::spawn(move || produce(&bootstrap, &topic, &feed, Some(Duration::from_secs(16))));
    let watch = CommitWatch::start(&s.bootstrap, &app, &s.input, 12);
    wait_until("both commit under load", || {
        a.status(&app)["consumed"].as_u64() > Some(1000) && b.status(&app)["consumed"].as_u64() > Some(1000)
    });
    let before: Vec<(BTreeSet<i64>, u64, u64)> = [&a, &b]
        .iter()
        .map(|m| (m.partitions(&app).unwrap(), m.group(&app, "tasks_opened"), m.group(&app, "tasks_closed")))
        .collect();

    // Queries of a, through the join: each answer true as of its position, or 503.
    let vocabulary: Vec<String> = (0..500).map(|i| format!("w{i}")).collect();
    let queries = QueryWatch::start(&a, &app, vocabulary);
    let joined = Instant::now();
    let c = Member::start(&s, &pipeline, "c");
    wait_until("c holds four partitions", || c.partitions(&app).is_some_and(|p| p.len() == 4));
    wait_until("a and b hold four each", || {
        a.partitions(&app).is_some_and(|p| p.len() == 4) && b.partitions(&app).is_some_and(|p| p.len() == 4)
    });
    let settled = Instant::now();
    let mut unmoved = BTreeSet::new();
    for (member, (held, opened, closed)) in [&a, &b].iter().zip(&before) {
        let now = member.partitions(&app).unwrap();
        assert!(now.is_subset(held), "an instance gained a partition while another joined: {held:?} -> {now:?}");
        assert_eq!(member.group(&app, "tasks_opened"), *opened, "no task of a partition that stayed was reopened");
        let moved = (held.len() - now.len()) as u64;
        assert_eq!(member.group(&app, "tasks_closed") - closed, moved, "only the tasks of moved partitions closed");
        unmoved.extend(now);
    }
    assert!(c.partitions(&app).unwrap().is_disjoint(&unmoved));

    producer.join().unwrap();
    let (answers, unavailable) = queries.stop();
    let out = read_committed(&s.bootstrap, &s.output, input.len(), QUIET, LONG);
    let gaps = watch.stop().longest_gaps(&unmoved, joined, settled + Duration::from_secs(2));
    let wrong = wrong_answers(&s.bootstrap, &s.input, 12, &answers);
    println!("queries through the join: {} answered, {unavailable} answered 503, {} wrong", answers.len(), wrong.len());
    assert!(answers.len() > 100, "queries were answered through the join: {}", answers.len());
    assert!(
        wrong.is_empty(),
        "answers not true as of their position (answer, truth): {:?}",
        &wrong[..wrong.len().min(5)]
    );
    let longest = gaps.values().max().copied().unwrap_or_default();
    println!(
        "{}: a third instance joined 12 partitions in {} ms; the longest gap between two commits of the 8 that \
         stayed was {} ms (per partition: {:?})",
        c.status(&app)["group"]["protocol"],
        (settled - joined).as_millis(),
        longest.as_millis(),
        gaps.values().map(Duration::as_millis).collect::<Vec<_>>()
    );
    for member in [a, b, c] {
        member.weir.stop();
    }
    assert_eq!(out.len(), input.len(), "one output per input, exactly once across the join");
    assert_eq!(last_counts(&out), truth, "every word's last count is its true count");
}

#[test]
fn a_static_member_killed_and_restarted_at_once_gets_its_partitions_back_with_no_rebalance() {
    let s = setup(BIN, 4);
    let app = unique("fleet-static");
    let pipeline = s.pipeline("word-count", &app, "");
    let a = Member::start(&s, &pipeline, "a");
    let b = Member::start(&s, &pipeline, "b");
    wait_until("a and b hold two partitions each", || {
        a.partitions(&app).is_some_and(|p| p.len() == 2) && b.partitions(&app).is_some_and(|p| p.len() == 2)
    });
    let first = words(0, 20_000);
    produce(&s.bootstrap, &s.input, &first, None);
    let out = read_committed(&s.bootstrap, &s.output, first.len(), QUIET, LONG);
    assert_eq!(out.len(), first.len());
    let (held_a, held_b) = (a.partitions(&app).unwrap(), b.partitions(&app).unwrap());
    let (rebalances_a, opened_a) = (a.group(&app, "rebalances"), a.group(&app, "tasks_opened"));

    // Queries of a while b is down and back: each answer true as of its position, or 503.
    let queries = QueryWatch::start(&a, &app, (0..500).map(|i| format!("w{i}")).collect());
    b.weir.kill();
    let b = Member::start(&s, &pipeline, "b");
    wait_until("b runs again", || b.partitions(&app).is_some_and(|p| !p.is_empty()));
    let (answers, unavailable) = queries.stop();
    let wrong = wrong_answers(&s.bootstrap, &s.input, 4, &answers);
    println!(
        "queries while b restarted: {} answered, {unavailable} answered 503, {} wrong",
        answers.len(),
        wrong.len()
    );
    assert!(!answers.is_empty(), "a answered queries while b restarted");
    assert!(
        wrong.is_empty(),
        "answers not true as of their position (answer, truth): {:?}",
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(b.partitions(&app).unwrap(), held_b, "the restarted static member got its own partitions back");
    assert_eq!(a.partitions(&app).unwrap(), held_a);
    assert_eq!(a.group(&app, "rebalances"), rebalances_a, "the other member saw no rebalance");
    assert_eq!(a.group(&app, "tasks_opened"), opened_a);
    let restored = b.status(&app)["restored_records"].as_u64().unwrap();
    println!("the restarted static member restored {restored} changelog records (its stores' tails)");

    let second = words(20_000, 5_000);
    produce(&s.bootstrap, &s.input, &second, None);
    let all: Vec<_> = first.into_iter().chain(second).collect();
    let out = read_committed(&s.bootstrap, &s.output, all.len(), QUIET, LONG);
    a.weir.stop();
    b.weir.stop();
    assert_eq!(out.len(), all.len(), "exactly once across the restart");
    assert_eq!(last_counts(&out), true_counts(&all));
}

#[test]
fn a_second_live_instance_with_the_same_id_takes_over_and_the_first_stops_saying_why() {
    let s = setup(BIN, 4);
    let app = unique("fleet-twin");
    let pipeline = s.pipeline("word-count", &app, "");
    let first = Member::start(&s, &pipeline, "twin");
    wait_until("the first holds every partition", || first.partitions(&app).is_some_and(|p| p.len() == 4));
    let input = words(0, 20_000);
    let (bootstrap, topic) = (s.bootstrap.clone(), s.input.clone());
    let feed = input.clone();
    let producer = std::thread::spawn(move || produce(&bootstrap, &topic, &feed, Some(Duration::from_secs(8))));
    wait_until("the first commits", || first.status(&app)["consumed"].as_u64() > Some(1000));
    let second = Member::start(&s, &pipeline, "twin");
    let mut first = first.weir;
    let status = first.wait();
    let log = first.log();
    assert!(!status.success(), "the first instance must stop:\n{log}");
    // Its producer is fenced by the second's, or its consumer by the group: either says so.
    let why = ["two running instances must not share an instance_id", "(application_id and instance_id) took over"];
    assert!(why.iter().any(|w| log.contains(w)), "the first says why it stopped:\n{log}");
    producer.join().unwrap();
    let out = read_committed(&s.bootstrap, &s.output, input.len(), QUIET, LONG);
    second.weir.stop();
    assert_eq!(out.len(), input.len(), "exactly once across the takeover");
    assert_eq!(last_counts(&out), true_counts(&input));
}

#[test]
fn a_partition_moves_warm_to_the_instance_that_kept_its_standby_and_cold_without_one() {
    let keys = 100_000;
    let mut restored = Vec::new();
    for replicas in [1, 0] {
        let s = setup(BIN, 2);
        let Failover { survivor: b, input, took, kept_gap, restored: records, answers, .. } =
            failover(&s, keys, replicas);
        let wrong = wrong_answers(&s.bootstrap, &s.input, 2, &answers);
        assert!(!answers.is_empty(), "b answered queries through the failover");
        assert!(
            wrong.is_empty(),
            "answers not true as of their position (answer, truth): {:?}",
            &wrong[..wrong.len().min(5)]
        );
        println!(
            "standby_replicas = {replicas}: the owner of {} keys SIGKILLed; the other instance ran its partition \
             {} ms later (session timeout 10 s), restoring {records} changelog records; its own partition went at \
             most {} ms without a commit meanwhile",
            keys / 2,
            took.as_millis(),
            kept_gap.as_millis()
        );
        restored.push(records);

        let more: Vec<_> = (0..1_000).map(|i| (format!("k{i}"), format!("k{i}"), Vec::new())).collect();
        produce(&s.bootstrap, &s.input, &more, None);
        let out = read_committed(&s.bootstrap, &s.output, input.len() + more.len(), QUIET, LONG);
        b.weir.stop();
        let all: Vec<_> = input.into_iter().chain(more).collect();
        assert_eq!(out.len(), all.len(), "exactly once across the failover");
        assert_eq!(last_counts(&out), true_counts(&all), "the moved partition's counts went on from its state");
    }
    let (warm, cold) = (restored[0], restored[1]);
    assert!(cold >= (keys / 4) as u64, "without a standby the whole partition is restored: {cold}");
    assert!(warm * 10 < cold, "with a standby only its tail is: {warm} against {cold}");
}

#[test]
fn with_two_threads_the_partitions_split_between_them_and_every_word_counts_once_across_sigkills() {
    let s = setup(BIN, 4);
    let app = unique("threads");
    let pipeline = s.pipeline("word-count", &app, "threads = 2");
    let a = Member::start(&s, &pipeline, "a");
    // Each partition's thread, once all run: the threads join the group one after the other.
    let split = |status: &serde_json::Value| {
        let mut per_thread = std::collections::BTreeMap::new();
        for p in status["partitions"].as_array().into_iter().flatten() {
            *per_thread.entry(p["thread"].as_u64()).or_insert(0) += 1;
        }
        per_thread.into_iter().collect::<Vec<(Option<u64>, i32)>>()
    };
    wait_until("a's two threads hold two partitions each", || {
        a.partitions(&app).is_some_and(|p| p.len() == 4) && split(&a.status(&app)) == [(Some(1), 2), (Some(2), 2)]
    });
    let status = a.status(&app);
    let group = &status["group"];
    assert_eq!((group["threads"].as_u64(), group["instance_id"].as_str()), (Some(2), Some("a-1")), "{status}");
    a.weir.stop();

    // Another application over the same topics, so that a's static members (which do not leave
    // their group on a stop) hold nothing of it.
    let pipeline = s.pipeline("word-count", &unique("threads-eos"), "threads = 2");
    let input = words(0, 100_000);
    let out = crash_repeatedly(&s, &pipeline, input.clone(), 5, input.len());
    assert_eq!(out.len(), input.len(), "one output per word, exactly once");
    assert_eq!(last_counts(&out), true_counts(&input), "the last count of every word is its true count");
}
