//! The HTTP API's bodies, as serde types: what `weir serve` answers and takes, what the CLI
//! (`weir deploy`, `ps`, `status`, ...) reads and sends, and what the tests check, all one
//! definition. Errors are [`ApiError`], with a status code by whose fault they are.

use serde::{Deserialize, Serialize};

use crate::error::Domain;

/// Where a pipeline is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Connecting, joining the group, reading tables.
    #[default]
    Starting,
    /// Bringing a newly assigned partition's state up to the end of its changelog.
    Restoring,
    Running,
    Paused,
    /// Stopped by an error (see `error`); the records it failed on are still in Kafka.
    Failed,
    /// Stopped on request.
    Stopped,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Restoring => "restoring",
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Failed => "failed",
            Phase::Stopped => "stopped",
        }
    }
}

/// What is known of one assigned input partition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    /// Records between the consumer's position and the partition's end, when known.
    pub lag: Option<i64>,
    /// The worker thread whose task it is (1 to `threads`), when the pipeline has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<u32>,
    /// Whether its state is being restored (its records wait until its task opens).
    #[serde(default)]
    pub restoring: bool,
}

/// One stage of a pipeline: records it consumed and produced since the pipeline started, and
/// its lag.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StageSnapshot {
    pub name: String,
    pub consumed: u64,
    pub produced: u64,
    /// Records of the stage's assigned input partitions not yet consumed (for a stage that
    /// others lead to, of its repartition topic), when known.
    #[serde(default)]
    pub lag: Option<i64>,
}

/// How a pipeline takes part in its consumer group, and what rebalances did to it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct GroupSnapshot {
    /// `classic` or `consumer` (KIP-848).
    pub protocol: String,
    /// The partition assignor: `cooperative-sticky` or `range` (classic), `uniform` or `range`
    /// (consumer, on the broker).
    pub assignor: String,
    /// Whether a rebalance touches only the partitions that move (else every task closes).
    pub incremental: bool,
    /// The consumer's `group.instance.id`, for a static member (of the first worker thread,
    /// when there are several: the others' end in their own number).
    pub instance_id: Option<String>,
    /// Worker threads, each a member of the group.
    #[serde(default)]
    pub threads: u32,
    /// Assignments and revocations this instance took part in since it started.
    pub rebalances: u64,
    /// Tasks opened and closed since the pipeline started (one per stage and partition).
    pub tasks_opened: u64,
    pub tasks_closed: u64,
}

/// A partition's store kept warm here for when the partition comes to this instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StandbySnapshot {
    pub partition: i32,
    /// The changelog offset the store reflects.
    pub checkpoint: Option<i64>,
    /// Changelog records it has not yet applied, at its last catch-up, when known.
    pub lag: Option<i64>,
}

/// Lines a pipeline's guests logged, oldest first (`GET /v1/pipelines/{name}/logs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestLogPage {
    pub lines: Vec<crate::guest_log::LogLine>,
    /// Lines dropped by the rate limit since the pipeline started.
    pub dropped: u64,
    /// The `seq` to ask for lines after, to read on.
    pub next: u64,
}

/// A restore in progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestoreProgress {
    /// The partitions being restored together.
    pub partitions: Vec<i32>,
    pub restored: u64,
    pub total: u64,
}

/// A pipeline as its loop last published it.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Snapshot {
    pub status: Phase,
    /// Why it failed, with the module, topic, partition, offset and key at fault.
    pub error: Option<String>,
    /// Whose fault the failure was: `user` (the module, its config or the input), `external`
    /// (the broker, the disk) or `internal` (weir).
    pub fault: Option<Domain>,
    /// The module version the loop runs, and its SHA-256.
    pub version: Option<u32>,
    pub digest: Option<String>,
    pub partitions: Vec<PartitionSnapshot>,
    /// Each stage, in flow order (one, named as its state, for a pipeline of one module).
    #[serde(default)]
    pub stages: Vec<StageSnapshot>,
    /// The consumer group, once the pipeline has joined it.
    #[serde(default)]
    pub group: Option<GroupSnapshot>,
    /// The partitions kept warm here as standby replicas (`standby_replicas`).
    #[serde(default)]
    pub standbys: Vec<StandbySnapshot>,
    pub consumed: u64,
    pub produced: u64,
    /// Records per second, over the last second or so.
    pub rate_in: f64,
    pub rate_out: f64,
    /// Milliseconds since the last commit ended, once one did.
    pub since_last_commit_ms: Option<u64>,
    pub restore: Option<RestoreProgress>,
    /// Changelog records restored since the pipeline started.
    pub restored_records: u64,
    /// Whether every assigned partition's state has been restored.
    pub restored: bool,
    /// Records a guest error was about, sent to the dead-letter topic or skipped, since the
    /// pipeline started.
    pub dead_lettered: u64,
    pub skipped: u64,
    /// Something the operator should know that is not an error (a swap that was refused, a
    /// restart for a change that could not apply in place).
    pub notice: Option<String>,
}

impl Snapshot {
    /// A pipeline of several worker threads as one: `self` (what the pipeline as a whole
    /// published: its version, its standbys, a failure its supervisor saw) with `threads`, what
    /// each thread's loop published. Counts add up, partitions are listed together, and the
    /// status is the least settled of the threads'.
    pub fn with_threads(mut self, threads: Vec<Snapshot>) -> Snapshot {
        if threads.is_empty() {
            return self;
        }
        let rank = |p: Phase| match p {
            Phase::Failed => 0,
            Phase::Starting => 1,
            Phase::Restoring => 2,
            Phase::Running => 3,
            Phase::Paused => 4,
            Phase::Stopped => 5,
        };
        let least = threads.iter().map(|t| t.status).min_by_key(|p| rank(*p)).unwrap_or(self.status);
        if self.status != Phase::Failed {
            self.status = least;
        }
        let failed = threads.iter().find(|t| t.error.is_some());
        if self.error.is_none() {
            (self.error, self.fault) = failed.map_or((None, None), |t| (t.error.clone(), t.fault));
        }
        self.notice = self.notice.take().or_else(|| threads.iter().find_map(|t| t.notice.clone()));
        self.partitions = threads.iter().flat_map(|t| t.partitions.iter().cloned()).collect();
        self.partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        self.stages = Vec::new();
        for stage in threads.iter().flat_map(|t| &t.stages) {
            match self.stages.iter_mut().find(|s| s.name == stage.name) {
                Some(s) => {
                    s.consumed += stage.consumed;
                    s.produced += stage.produced;
                    s.lag = s.lag.zip(stage.lag).map(|(a, b)| a + b);
                }
                None => self.stages.push(stage.clone()),
            }
        }
        self.group = threads.iter().filter_map(|t| t.group.clone()).reduce(|mut a, b| {
            a.rebalances += b.rebalances;
            a.tasks_opened += b.tasks_opened;
            a.tasks_closed += b.tasks_closed;
            a
        });
        self.consumed = threads.iter().map(|t| t.consumed).sum();
        self.produced = threads.iter().map(|t| t.produced).sum();
        self.rate_in = threads.iter().map(|t| t.rate_in).sum();
        self.rate_out = threads.iter().map(|t| t.rate_out).sum();
        self.since_last_commit_ms = threads.iter().filter_map(|t| t.since_last_commit_ms).max();
        self.restore = threads.iter().filter_map(|t| t.restore.clone()).reduce(|mut a, b| {
            a.partitions.extend(b.partitions);
            a.restored += b.restored;
            a.total += b.total;
            a
        });
        self.restored_records = threads.iter().map(|t| t.restored_records).sum();
        self.restored = threads.iter().all(|t| t.restored);
        self.dead_lettered = threads.iter().map(|t| t.dead_lettered).sum();
        self.skipped = threads.iter().map(|t| t.skipped).sum();
        self
    }
}

/// What a deploy or rollback did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployed {
    pub name: String,
    pub version: u32,
    pub digest: String,
    pub action: Action,
    pub notice: Option<String>,
}

/// A pipeline's status, for the API and the CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub name: String,
    /// What the pipeline's loop last published (status, error, version, partitions, counts, ...).
    #[serde(flatten)]
    pub snapshot: Snapshot,
    /// When the live version was deployed, ms since the epoch.
    pub deployed_at: Option<u64>,
    /// The versions kept for rollbacks.
    pub versions: Vec<u32>,
    /// The sum of the partitions' lags, when all are known.
    pub lag: Option<i64>,
}

/// A pipeline that is not ready, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotReady {
    pub name: String,
    pub status: Phase,
    pub reason: String,
}

/// What a deploy or rollback did with the running pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// It did not run, and now does.
    Started,
    /// In place at a commit boundary, over the same state and offsets.
    Swapped,
    /// Stopped and started again, since the change could not apply in place (the notice says
    /// which fields).
    Restarted,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Started => "started",
            Action::Swapped => "swapped",
            Action::Restarted => "restarted",
        }
    }
}

/// `POST /v1/pipelines/{name}/{action}`: what it asks, applied at the next commit boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineAction {
    Pause,
    Resume,
    Rollback,
}

impl std::str::FromStr for PipelineAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pause" => Ok(PipelineAction::Pause),
            "resume" => Ok(PipelineAction::Resume),
            "rollback" => Ok(PipelineAction::Rollback),
            other => Err(format!("no action `{other}`; there are pause, resume and rollback")),
        }
    }
}

/// `PUT /v1/pipelines/{name}`: a pipeline file, and the module it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The pipeline file's text.
    pub pipeline: String,
    /// The module of a pipeline of one module; absent keeps the live one (a change of the file
    /// alone).
    pub module: Option<ModuleUpload>,
    /// The modules of a pipeline of stages, by stage name; a stage left out keeps its live one.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub stages: std::collections::BTreeMap<String, ModuleUpload>,
}

/// A module in a deploy: its file name and its bytes in base64.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleUpload {
    pub name: String,
    pub base64: String,
}

/// `GET /v1/pipelines`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pipelines {
    pub pipelines: Vec<Status>,
}

/// The answer to a pause or a resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    pub name: String,
    pub paused: bool,
}

/// The answer to `DELETE /v1/pipelines/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undeployed {
    pub name: String,
    pub undeployed: bool,
    pub purged: bool,
}

/// The answer to a dead-letter replay: how many records went back to their source topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    pub name: String,
    pub replayed: u64,
}

/// `GET /readyz` (`status` is `ready` or `not ready`) and `GET /healthz` (`alive` or `dead`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe<T> {
    pub status: String,
    /// What is not ready, or the pipelines whose loops died or are stuck.
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub pipelines: Vec<T>,
}

/// Every error answer: what was wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_status_reads_back_as_it_was_written() {
        let status = Status {
            name: "p".into(),
            snapshot: Snapshot {
                status: Phase::Failed,
                error: Some("guest trapped".into()),
                fault: Some(Domain::User),
                version: Some(2),
                partitions: vec![PartitionSnapshot {
                    topic: "in".into(),
                    partition: 3,
                    lag: Some(7),
                    thread: None,
                    restoring: false,
                }],
                ..Snapshot::default()
            },
            deployed_at: Some(1),
            versions: vec![1, 2],
            lag: Some(7),
        };
        let text = serde_json::to_string(&status).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!((&json["status"], &json["fault"], &json["version"]), (&"failed".into(), &"user".into(), &2.into()));
        let back: Status = serde_json::from_str(&text).unwrap();
        assert_eq!(back.snapshot.partitions, status.snapshot.partitions);
        assert_eq!(
            (back.snapshot.status, back.snapshot.fault, back.versions),
            (Phase::Failed, Some(Domain::User), vec![1, 2])
        );
    }

    #[test]
    fn a_pipeline_of_threads_reports_their_partitions_and_counts_as_one_at_the_least_settled_status() {
        let partition =
            |p, thread| PartitionSnapshot { topic: "in".into(), partition: p, lag: Some(1), thread, restoring: false };
        let group = GroupSnapshot { rebalances: 1, tasks_opened: 2, threads: 2, ..GroupSnapshot::default() };
        let one = Snapshot {
            status: Phase::Running,
            partitions: vec![partition(2, Some(1)), partition(0, Some(1))],
            consumed: 10,
            restored: true,
            group: Some(group.clone()),
            ..Snapshot::default()
        };
        let two = Snapshot {
            status: Phase::Restoring,
            partitions: vec![partition(1, Some(2))],
            consumed: 5,
            restored: false,
            group: Some(group),
            ..Snapshot::default()
        };
        let whole = Snapshot { version: Some(3), ..Snapshot::default() }.with_threads(vec![one.clone(), two]);
        let partitions: Vec<(i32, Option<u32>)> = whole.partitions.iter().map(|p| (p.partition, p.thread)).collect();
        assert_eq!(partitions, [(0, Some(1)), (1, Some(2)), (2, Some(1))]);
        assert_eq!(
            (whole.status, whole.consumed, whole.restored, whole.version),
            (Phase::Restoring, 15, false, Some(3))
        );
        let group = whole.group.unwrap_or_default();
        assert_eq!((group.rebalances, group.tasks_opened, group.threads), (2, 4, 2));
        let failed = Snapshot { status: Phase::Failed, error: Some("x".into()), ..Snapshot::default() };
        let whole = Snapshot::default().with_threads(vec![one, failed]);
        assert_eq!((whole.status, whole.error.as_deref()), (Phase::Failed, Some("x")));
    }

    #[test]
    fn actions_are_the_three_the_api_names() {
        assert_eq!("pause".parse(), Ok(PipelineAction::Pause));
        assert_eq!("rollback".parse(), Ok(PipelineAction::Rollback));
        assert!("purge".parse::<PipelineAction>().unwrap_err().contains("`purge`"));
        assert_eq!(serde_json::to_value(Action::Swapped).unwrap(), "swapped");
    }
}
