//! A fleet of `weir run` instances of one application, as the fleet tests and benchmark drive
//! them: each with its admin API, and a watch on the group's committed offsets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::kafka::{produce, read_committed, unique, Setup, TestRecord, Weir, LONG, QUIET};

/// One running instance: the process and its admin URL.
pub struct Member {
    pub weir: Weir,
    pub url: String,
}

impl Member {
    pub fn start(s: &Setup, pipeline: &Path, id: &str) -> Self {
        let dir = s.dir.path().join(format!("state-{id}"));
        let dir = dir.to_string_lossy();
        let args = ["--instance-id", id, "--state-dir", dir.as_ref(), "--admin", "127.0.0.1:0"];
        // Instances of one application share the secret their registry claims are signed with.
        let mut weir = s.start_with(pipeline, &args, &[("WEIR_CLAIM_SECRET", "the fleet's shared claim secret")]);
        let url = weir.admin_url();
        Self { weir, url }
    }

    /// The pipeline's status, as its admin API answers it.
    pub fn status(&self, app: &str) -> Value {
        self.get(&format!("/v1/pipelines/{app}")).1
    }

    /// The status code and JSON body of `GET path` on its admin API.
    pub fn get(&self, path: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let mut r = crate::serve::agent().get(&url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let text = r.body_mut().read_to_string().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        (r.status().as_u16(), serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}")))
    }

    /// The input partitions it holds, once it runs with every one of them open.
    pub fn partitions(&self, app: &str) -> Option<BTreeSet<i64>> {
        let status = self.status(app);
        let settled = status["status"] == "running" && status["restored"] == true;
        settled.then(|| {
            status["partitions"].as_array().into_iter().flatten().filter_map(|p| p["partition"].as_i64()).collect()
        })
    }

    pub fn group(&self, app: &str, field: &str) -> u64 {
        let status = self.status(app);
        status["group"][field].as_u64().unwrap_or_else(|| panic!("no group.{field} in {status}"))
    }
}

/// What [`failover`] saw.
pub struct Failover {
    pub app: String,
    /// The instance that took the partition over, still running.
    pub survivor: Member,
    /// The records produced: one per key, and then the survivor's own partition's feed.
    pub input: Vec<TestRecord>,
    /// From the SIGKILL until the survivor ran the partition.
    pub took: Duration,
    /// The longest the survivor's own partition, fed all along, went without a commit from the
    /// SIGKILL until it ran both (its restore of the other runs beside its loop).
    pub kept_gap: Duration,
    /// Changelog records the survivor restored to take it over.
    pub restored: u64,
    /// The survivor's answers to queries of 200 keys from before the SIGKILL until it ran
    /// both partitions (503s left out).
    pub answers: Vec<Answer>,
}

/// Two instances of a word count over the 2 partitions of `s`, with `standby_replicas`;
/// `keys` distinct keys counted (half in each partition's store); then the owner of one
/// partition is SIGKILLed, once the other keeps it warm (with a standby), and the other takes it
/// over after the session timeout, while records keep coming to its own partition (one word
/// each, for 16 s from just before the SIGKILL).
pub fn failover(s: &Setup, keys: usize, standby_replicas: u32) -> Failover {
    let app = unique("fleet-standby");
    let pipeline = s.pipeline("word-count", &app, &format!("standby_replicas = {standby_replicas}"));
    let a = Member::start(s, &pipeline, "a");
    let b = Member::start(s, &pipeline, "b");
    wait_until("a and b hold a partition each", || {
        a.partitions(&app).is_some_and(|p| p.len() == 1) && b.partitions(&app).is_some_and(|p| p.len() == 1)
    });
    let input: Vec<TestRecord> = (0..keys).map(|i| (format!("k{i}"), format!("k{i}"), Vec::new())).collect();
    produce(&s.bootstrap, &s.input, &input, None);
    let out = read_committed(&s.bootstrap, &s.output, keys, QUIET, LONG);
    assert_eq!(out.len(), keys, "every key counted before the failover");
    let moving = a.partitions(&app).and_then(|p| p.into_iter().next());
    if standby_replicas > 0 {
        // The standby's lag is as of its last catch-up, maybe before the counts were written:
        // wait for its checkpoint to reach the changelog's end (all but the last commit marker).
        let changelog = format!("{app}-state-changelog");
        let end = high_watermark(&s.bootstrap, &changelog, moving.unwrap_or_default() as i32);
        wait_until("b keeps a's partition warm, caught up", || {
            let status = b.status(&app);
            let standbys = status["standbys"].as_array().cloned().unwrap_or_default();
            let caught_up = |s: &Value| s["checkpoint"].as_i64().is_some_and(|c| c >= end - 1);
            standbys.iter().any(|s| s["partition"].as_i64() == moving && caught_up(s))
        });
        // Asked to, b answers a key of a's partition from its standby, saying so.
        let key = (0..keys)
            .map(|i| format!("k{i}"))
            .find(|k| Some(i64::from(weir_runtime::query::partition_for(k.as_bytes(), 2))) == moving)
            .unwrap_or_default();
        let (status, body) = b.get(&format!("/v1/pipelines/{app}/state/{key}?allow_standby=true"));
        let answered = (status, &body["standby"], &body["value"]) == (200, &Value::Bool(true), &Value::from(1));
        assert!(answered, "b answered {status} {body}\nb's status: {}\nb's log:\n{}", b.status(&app), b.weir.log());
    } else {
        assert_eq!(b.status(&app)["standbys"], serde_json::json!([]), "no standby unless asked");
    }
    let restored = |m: &Member| m.status(&app)["restored_records"].as_u64().unwrap_or_default();
    let before = restored(&b);
    let queries = QueryWatch::start(&b, &app, (0..200).map(|i| format!("k{}", i * (keys / 200).max(1))).collect());
    let own = b.partitions(&app).unwrap_or_default();
    let feed: Vec<TestRecord> = (0..20_000)
        .map(|i| format!("f{i}"))
        .filter(|w| own.contains(&i64::from(weir_runtime::query::partition_for(w.as_bytes(), 2))))
        .map(|w| (w.clone(), w, Vec::new()))
        .collect();
    let commits = CommitWatch::start(&s.bootstrap, &app, &s.input, 2);
    let (bootstrap, topic, fed) = (s.bootstrap.clone(), s.input.clone(), feed.clone());
    let producer = std::thread::spawn(move || produce(&bootstrap, &topic, &fed, Some(Duration::from_secs(16))));
    std::thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    a.weir.kill();
    wait_until("b holds both partitions", || b.partitions(&app).is_some_and(|p| p.len() == 2));
    let took = killed.elapsed();
    let settled = Instant::now();
    let (answers, _) = queries.stop();
    let restored = restored(&b) - before;
    producer.join().unwrap_or_else(|_| panic!("the feed of b's partition panicked"));
    let kept_gap = commits.stop().longest_gap(&own, killed, settled);
    let input = input.into_iter().chain(feed).collect();
    Failover { app, survivor: b, input, took, kept_gap, restored, answers }
}

/// The high watermark of `partition` of `topic`.
pub fn high_watermark(bootstrap: &str, topic: &str, partition: i32) -> i64 {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap_or_else(|e| panic!("consumer: {e}"));
    let (_, high) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("the offsets of {topic} partition {partition}: {e}"));
    high
}

/// Waits until `ready` holds, or panics with `what` after `LONG`.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < LONG, "{what}: not within {LONG:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls the group's committed offsets every 50 ms: when each partition's offset last moved,
/// and the longest it stood still while records were waiting, from `from` on.
pub struct CommitWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<BTreeMap<i32, Vec<(Instant, i64)>>>,
}

impl CommitWatch {
    pub fn start(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap_or_else(|e| panic!("consumer: {e}"));
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut moves: BTreeMap<i32, Vec<(Instant, i64)>> = BTreeMap::new();
            while !stopped.load(Ordering::SeqCst) {
                if let Ok(committed) = consumer.committed_offsets(tpl.clone(), Duration::from_secs(5)) {
                    for e in committed.elements() {
                        if let Offset::Offset(o) = e.offset() {
                            let seen = moves.entry(e.partition()).or_default();
                            if seen.last().is_none_or(|(_, last)| *last != o) {
                                seen.push((Instant::now(), o));
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            moves
        });
        Self { stop, thread }
    }

    /// Stops watching: what it saw.
    pub fn stop(self) -> Commits {
        self.stop.store(true, Ordering::SeqCst);
        Commits(self.thread.join().unwrap_or_else(|_| panic!("the commit watch panicked")))
    }
}

/// When each partition's committed offset was seen to move, and to what.
pub struct Commits(BTreeMap<i32, Vec<(Instant, i64)>>);

impl Commits {
    /// The longest time between two commits of each partition in `partitions`, within
    /// `[from, to]`.
    pub fn longest_gaps(&self, partitions: &BTreeSet<i64>, from: Instant, to: Instant) -> BTreeMap<i32, Duration> {
        let mut gaps = BTreeMap::new();
        for p in partitions {
            let times = self.0.get(&(*p as i32)).into_iter().flatten().map(|(t, _)| *t);
            let mut points: Vec<Instant> = times.filter(|t| *t >= from && *t <= to).collect();
            points.insert(0, from);
            points.push(to);
            let longest = points.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
            gaps.insert(*p as i32, longest);
        }
        gaps
    }

    /// Records committed in each second from `from` to `to`, over every partition.
    pub fn per_second(&self, from: Instant, to: Instant) -> Vec<i64> {
        let at = |seen: &Vec<(Instant, i64)>, t: Instant| {
            seen.iter().take_while(|(when, _)| *when <= t).last().map(|(_, o)| *o)
        };
        let seconds = (to - from).as_secs();
        (0..seconds)
            .map(|i| {
                let (start, end) = (from + Duration::from_secs(i), from + Duration::from_secs(i + 1));
                self.0.values().map(|seen| at(seen, end).unwrap_or(0) - at(seen, start).unwrap_or(0)).sum()
            })
            .collect()
    }

    /// The longest of [`Commits::longest_gaps`].
    pub fn longest_gap(&self, partitions: &BTreeSet<i64>, from: Instant, to: Instant) -> Duration {
        self.longest_gaps(partitions, from, to).into_values().max().unwrap_or_default()
    }
}

/// One answer of a query for a word's count: the partition, the input offset its position
/// names (the records before it are counted), and the count.
#[derive(Debug, Clone)]
pub struct Answer {
    pub word: String,
    pub partition: i32,
    pub offset: i64,
    pub count: u64,
}

/// Asks an instance, over and over, for the count of words in turn, while a fleet changes: what
/// it answered with a value, and how many times it answered 503 (the partition moving).
pub struct QueryWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Vec<Answer>, usize)>,
}

impl QueryWatch {
    pub fn start(member: &Member, app: &str, words: Vec<String>) -> Self {
        let (base, app) = (member.url.clone(), app.to_owned());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let agent = crate::serve::agent();
            let (mut answers, mut unavailable) = (Vec::new(), 0);
            for word in words.iter().cycle() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let url = format!("{base}/v1/pipelines/{app}/state/{word}");
                let mut r = agent.get(&url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
                let text = r.body_mut().read_to_string().unwrap_or_else(|e| panic!("GET {url}: {e}"));
                let status = r.status().as_u16();
                if status == 503 {
                    unavailable += 1;
                    continue;
                }
                let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"));
                assert!(status == 200 || status == 404, "GET {url}: {status} {text}");
                let partition = body["partition"].as_i64().unwrap_or_else(|| panic!("no partition: {text}")) as i32;
                let offset = body["position"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["partition"].as_i64() == Some(i64::from(partition)))
                    .and_then(|p| p["offset"].as_i64())
                    .unwrap_or_else(|| panic!("no position for partition {partition}: {text}"));
                let count = body["value"].as_u64().unwrap_or(0);
                answers.push(Answer { word: word.clone(), partition, offset, count });
            }
            (answers, unavailable)
        });
        Self { stop, thread }
    }

    /// Stops asking: the answers with a value, and the count of 503s.
    pub fn stop(self) -> (Vec<Answer>, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_else(|_| panic!("the query watch panicked"))
    }
}

/// The answers that are not the true count as of their position, from `topic` read back: a
/// word's count as of offset `o` of its partition is how many of its records come before `o`.
pub fn wrong_answers(bootstrap: &str, topic: &str, partitions: i32, answers: &[Answer]) -> Vec<(Answer, u64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("fleet-answers"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap_or_else(|e| panic!("{e}"));
    }
    consumer.assign(&tpl).unwrap_or_else(|e| panic!("assign: {e}"));
    // Each partition's keys in offset order.
    let mut keys: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    let mut ended = BTreeSet::new();
    let start = Instant::now();
    while ended.len() < partitions as usize {
        assert!(start.elapsed() < LONG, "reading {topic} back: not within {LONG:?}");
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                use rdkafka::message::Message as _;
                let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
                keys.entry(m.partition()).or_default().push((m.offset(), key));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic} back: {e}"),
            None => {}
        }
    }
    answers
        .iter()
        .filter_map(|a| {
            let before = keys.get(&a.partition).into_iter().flatten().take_while(|(o, _)| *o < a.offset);
            let truth = before.filter(|(_, k)| *k == a.word).count() as u64;
            (truth != a.count).then(|| (a.clone(), truth))
        })
        .collect()
}
