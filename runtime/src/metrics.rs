//! Prometheus metrics of every pipeline a process hosts, through `prometheus-client`.
//!
//! One [`Metrics`] per process holds the registry; each pipeline takes a [`PipelineMetrics`]
//! of handles labelled with its name (and topic and partition where it matters), which the data
//! path bumps with atomic adds. `GET /metrics` encodes the registry in the text exposition
//! format.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The phases a pipeline goes through, as `weir_pipeline_status` labels them.
pub const PHASES: &[&str] = &["starting", "restoring", "running", "paused", "failed", "stopped"];

/// Every metric family, shared by all pipelines of the process.
#[derive(Clone)]
struct Families {
    consumed: Family<Labels, Counter>,
    produced: Family<Labels, Counter>,
    batches: Family<Labels, Counter>,
    commits: Family<Labels, Counter>,
    commit_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    aborted: Family<Labels, Counter>,
    guest_errors: Family<Labels, Counter>,
    failed_records: Family<Labels, Counter>,
    guest_call_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    lag: Family<Labels, Gauge>,
    restored: Family<Labels, Counter>,
    status: Family<Labels, Gauge>,
    state_bytes: Family<Labels, Gauge>,
    guest_log_lines: Family<Labels, Counter>,
    guest_log_dropped: Family<Labels, Counter>,
}

/// The process's registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    families: Families,
    /// HTTP connections closed at once because the API had as many open as it takes.
    pub http_refused: Counter,
    /// Queries answered 503 because as many forwarded or scanning queries ran as are allowed.
    pub queries_shed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let families = Families {
            consumed: Family::default(),
            produced: Family::default(),
            batches: Family::default(),
            commits: Family::default(),
            commit_seconds: Family::new_with_constructor(histogram as fn() -> Histogram),
            aborted: Family::default(),
            guest_errors: Family::default(),
            failed_records: Family::default(),
            guest_call_seconds: Family::new_with_constructor(histogram as fn() -> Histogram),
            lag: Family::default(),
            restored: Family::default(),
            status: Family::default(),
            state_bytes: Family::default(),
            guest_log_lines: Family::default(),
            guest_log_dropped: Family::default(),
        };
        let mut r = Registry::with_prefix("weir");
        let f = families.clone();
        r.register("records_consumed", "Records consumed, per input partition", f.consumed);
        r.register("records_produced", "Records produced to the outputs", f.produced);
        r.register("batches", "Batches handed to the module", f.batches);
        r.register("commits", "Commits (Kafka transactions under exactly-once)", f.commits);
        r.register("commit_duration_seconds", "How long a commit took", f.commit_seconds);
        r.register("aborted_transactions", "Transactions aborted after a Kafka error or a guest error", f.aborted);
        r.register(
            "guest_errors",
            "Guest errors by kind (trap, deadline, memory, fuel, rejected, output, state)",
            f.guest_errors,
        );
        r.register(
            "failed_records",
            "Records a guest error was about, by what was done (dead-letter, skip)",
            f.failed_records,
        );
        r.register("guest_call_duration_seconds", "How long one call into the module took", f.guest_call_seconds);
        r.register("consumer_lag", "Records between the consumer's position and the end of the partition", f.lag);
        r.register("restored_records", "Changelog records restored into state stores", f.restored);
        r.register("pipeline_status", "1 for the pipeline's current status, 0 for the others", f.status);
        r.register("state_store_bytes", "About how many bytes a partition's state store holds", f.state_bytes);
        r.register("guest_log_lines", "Lines guests logged or printed, kept, by level", f.guest_log_lines);
        r.register(
            "guest_log_dropped",
            "Lines guests logged or printed past the rate limit, dropped",
            f.guest_log_dropped,
        );
        let (http_refused, queries_shed) = (Counter::default(), Counter::default());
        r.register(
            "http_connections_refused",
            "HTTP connections closed at once: the API had as many open as it takes",
            http_refused.clone(),
        );
        r.register(
            "queries_shed",
            "Queries answered 503 because as many forwarded or scanning queries ran as are allowed",
            queries_shed.clone(),
        );
        Self { registry: Arc::new(Mutex::new(r)), families, http_refused, queries_shed }
    }

    /// The handles of pipeline `name`.
    pub fn pipeline(&self, name: &str) -> PipelineMetrics {
        let labels = vec![("pipeline".to_owned(), name.to_owned())];
        let f = &self.families;
        PipelineMetrics {
            name: name.to_owned(),
            produced: f.produced.get_or_create(&labels).clone(),
            batches: f.batches.get_or_create(&labels).clone(),
            commits: f.commits.get_or_create(&labels).clone(),
            commit_seconds: f.commit_seconds.get_or_create(&labels).clone(),
            aborted: f.aborted.get_or_create(&labels).clone(),
            guest_call_seconds: f.guest_call_seconds.get_or_create(&labels).clone(),
            restored: f.restored.get_or_create(&labels).clone(),
            families: f.clone(),
            made: Arc::new(Mutex::new(std::collections::HashSet::from([labels]))),
        }
    }

    /// Drops every series of a pipeline (after it was undeployed).
    pub fn forget(&self, pipeline: &PipelineMetrics) {
        let f = &self.families;
        let made = pipeline.made.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for labels in made.iter() {
            for family in [
                &f.consumed,
                &f.produced,
                &f.batches,
                &f.commits,
                &f.aborted,
                &f.guest_errors,
                &f.failed_records,
                &f.restored,
                &f.guest_log_lines,
                &f.guest_log_dropped,
            ] {
                family.remove(labels);
            }
            for family in [&f.lag, &f.status, &f.state_bytes] {
                family.remove(labels);
            }
            for family in [&f.commit_seconds, &f.guest_call_seconds] {
                family.remove(labels);
            }
        }
    }

    /// The text exposition of everything.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

/// One pipeline's handles.
#[derive(Clone)]
pub struct PipelineMetrics {
    name: String,
    pub produced: Counter,
    pub batches: Counter,
    pub commits: Counter,
    pub commit_seconds: Histogram,
    pub aborted: Counter,
    pub guest_call_seconds: Histogram,
    pub restored: Counter,
    families: Families,
    /// Every label set this pipeline's series use, so they can all be dropped.
    made: Arc<Mutex<std::collections::HashSet<Labels>>>,
}

impl PipelineMetrics {
    fn labels(&self, more: &[(&str, String)]) -> Labels {
        let mut labels = vec![("pipeline".to_owned(), self.name.clone())];
        labels.extend(more.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        self.made.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(labels.clone());
        labels
    }

    /// The counters of the pipeline's guest log: kept lines by level, and dropped ones.
    pub fn guest_log(&self) -> crate::guest_log::Counters {
        let level = |l: crate::guest_log::Level| {
            let labels = self.labels(&[("level", l.as_str().to_owned())]);
            self.families.guest_log_lines.get_or_create(&labels).clone()
        };
        use crate::guest_log::Level;
        let lines = [Level::Trace, Level::Debug, Level::Info, Level::Warn, Level::Error].map(level);
        let dropped = self.families.guest_log_dropped.get_or_create(&self.labels(&[])).clone();
        crate::guest_log::Counters { lines, dropped }
    }

    /// The consumed-records counter of one input partition.
    pub fn consumed(&self, topic: &str, partition: i32) -> Counter {
        let labels = self.labels(&[("topic", topic.to_owned()), ("partition", partition.to_string())]);
        self.families.consumed.get_or_create(&labels).clone()
    }

    pub fn guest_error(&self, kind: &str) {
        self.families.guest_errors.get_or_create(&self.labels(&[("kind", kind.to_owned())])).inc();
    }

    /// A record a guest error was about was dead-lettered or skipped (`action`).
    pub fn failed_record(&self, action: &str) {
        self.families.failed_records.get_or_create(&self.labels(&[("action", action.to_owned())])).inc();
    }

    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        let labels = self.labels(&[("topic", topic.to_owned()), ("partition", partition.to_string())]);
        self.families.lag.get_or_create(&labels).set(lag);
    }

    /// The size of a store: `store` names the stage it belongs to (its state's name).
    pub fn set_state_bytes(&self, store: &str, partition: i32, bytes: u64) {
        let labels = self.labels(&[("store", store.to_owned()), ("partition", partition.to_string())]);
        self.families.state_bytes.get_or_create(&labels).set(bytes as i64);
    }

    /// Drops the per-partition series (lag, store size) of partitions no longer assigned.
    pub fn clear_partitions(&self) {
        let made = self.made.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for labels in made.iter().filter(|l| l.iter().any(|(k, _)| k == "partition")) {
            self.families.lag.remove(labels);
            self.families.state_bytes.remove(labels);
        }
    }

    pub fn set_status(&self, phase: &str) {
        for p in PHASES {
            let gauge = self.families.status.get_or_create(&self.labels(&[("status", (*p).to_owned())])).clone();
            gauge.set(i64::from(*p == phase));
        }
    }
}
