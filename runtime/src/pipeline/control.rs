//! How a pipeline is driven from outside its thread: commands in (applied by the loop at a
//! commit boundary), and a [`Snapshot`] out that anyone can read without touching the loop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::engine::Module;
use crate::error::Domain;
use crate::now_ms;
use crate::query::Queryable;

/// Where a pipeline is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
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
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    /// Records between the consumer's position and the partition's end, when known.
    pub lag: Option<i64>,
}

/// A restore in progress.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RestoreProgress {
    /// The partitions being restored together.
    pub partitions: Vec<i32>,
    pub restored: u64,
    pub total: u64,
}

/// A pipeline as its loop last published it.
#[derive(Debug, Clone, Serialize, Default)]
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

/// A module ready to replace the running one at the next commit boundary: loaded, compiled,
/// instantiated and initialised once already, so the swap itself cannot fail for those reasons.
pub struct Prepared {
    pub module: Module,
    pub config: Vec<(String, String)>,
    pub outputs: BTreeMap<String, String>,
    pub version: u32,
    pub digest: String,
}

/// How a swap went, as the loop answers it on the swap's reply channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapOutcome {
    /// Every task runs the new version, over the same state and offsets.
    Swapped,
    /// A task could not start the new version: those already swapped went back, and the
    /// running version goes on. The reason names the partition.
    RolledBack(String),
}

/// What the supervisor asks of a pipeline.
pub enum Command {
    Pause,
    Resume,
    /// Swap the module at the next commit boundary, and answer how it went. The sender is
    /// dropped unanswered when the pipeline stops or fails first.
    Swap(Box<Prepared>, Sender<SwapOutcome>),
}

/// The shared half: the snapshot, the stop flag, the loop's heartbeat, and what queries read.
#[derive(Default)]
pub struct View {
    /// The pipeline's state stores as queries read them.
    pub queryable: Arc<Queryable>,
    snapshot: Mutex<Snapshot>,
    /// Set to make the loop commit, leave the group and return.
    pub stop: Arc<AtomicBool>,
    /// When the loop last went round, in ms since the epoch (liveness).
    heartbeat: AtomicU64,
}

impl View {
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        f(&mut self.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    pub fn beat(&self) {
        self.heartbeat.store(now_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the loop last went round.
    pub fn silent_for_ms(&self) -> u64 {
        now_ms().saturating_sub(self.heartbeat.load(Ordering::Relaxed))
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// What a supervisor keeps of a pipeline.
#[derive(Clone)]
pub struct Handle {
    commands: Sender<Command>,
    pub view: Arc<View>,
}

impl Handle {
    /// Sends a command; false when the loop is gone.
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    pub fn stop(&self) {
        self.view.stop.store(true, Ordering::SeqCst);
    }
}

/// What the loop keeps: the receiving half.
pub struct Inbox {
    commands: Receiver<Command>,
    pub view: Arc<View>,
}

impl Inbox {
    /// The next command, if one is waiting.
    pub fn next(&self) -> Option<Command> {
        self.commands.try_recv().ok()
    }
}

/// A connected handle and inbox, the view's stop flag being `stop`.
pub fn channel(stop: Arc<AtomicBool>) -> (Handle, Inbox) {
    let (tx, rx) = mpsc::channel();
    let view = Arc::new(View { stop, ..View::default() });
    view.beat();
    (Handle { commands: tx, view: view.clone() }, Inbox { commands: rx, view })
}
