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

use crate::kafka::{Setup, Weir, LONG};

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
        let url = format!("{}/v1/pipelines/{app}", self.url);
        let mut r = crate::serve::agent().get(&url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let text = r.body_mut().read_to_string().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"))
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

    /// The longest of [`Commits::longest_gaps`].
    pub fn longest_gap(&self, partitions: &BTreeSet<i64>, from: Instant, to: Instant) -> Duration {
        self.longest_gaps(partitions, from, to).into_values().max().unwrap_or_default()
    }
}
