//! How a pipeline is driven from outside its thread: commands in (applied by the loop at a
//! commit boundary), and a [`Snapshot`] out that anyone can read without touching the loop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

pub use crate::api::{
    GroupSnapshot, PartitionSnapshot, Phase, RestoreProgress, Snapshot, StageSnapshot, StandbySnapshot,
};
use crate::engine::Module;
use crate::now_ms;
use crate::query::Queryable;

/// A version ready to replace the running one at the next commit boundary: a module for each
/// stage it changes, each loaded, compiled, instantiated and initialised once already, so the
/// swap itself cannot fail for those reasons.
pub struct Prepared {
    pub stages: Vec<PreparedStage>,
    pub version: u32,
    pub digest: String,
}

/// One stage's new module, with its config and outputs.
pub struct PreparedStage {
    /// The stage (named as [`crate::config::PipelineConfig::stages`] names it).
    pub stage: String,
    pub module: Module,
    pub config: Vec<(String, String)>,
    pub outputs: BTreeMap<String, String>,
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
    /// Records the loop consumed so far, as of its last round (what the snapshot says once a
    /// second).
    pub consumed: AtomicU64,
    /// The views of the pipeline's worker threads, when it has several: the pipeline's
    /// snapshot and heartbeat are then theirs, taken together.
    threads: Mutex<Vec<Arc<View>>>,
    /// What its guests log and print (one for all its worker threads).
    pub guest_log: Arc<crate::guest_log::GuestLog>,
}

impl View {
    pub fn snapshot(&self) -> Snapshot {
        let own = self.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let threads = self.threads();
        own.with_threads(threads.iter().map(|t| t.snapshot()).collect())
    }

    fn threads(&self) -> Vec<Arc<View>> {
        self.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        f(&mut self.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    pub fn beat(&self) {
        self.heartbeat.store(now_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the loop last went round (of worker threads: the most silent one).
    pub fn silent_for_ms(&self) -> u64 {
        let threads = self.threads();
        match threads.iter().map(|t| t.silent_for_ms()).max() {
            Some(most) => most,
            None => now_ms().saturating_sub(self.heartbeat.load(Ordering::Relaxed)),
        }
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
    connect(Arc::new(View { stop, ..View::default() }))
}

/// Like [`channel`], the guests logging into `guest_log` (kept from the pipeline's last run).
pub fn channel_with_log(stop: Arc<AtomicBool>, guest_log: Arc<crate::guest_log::GuestLog>) -> (Handle, Inbox) {
    connect(Arc::new(View { stop, guest_log, ..View::default() }))
}

/// A handle and inbox for one worker thread of the pipeline `whole` views: the thread's view
/// shares what queries read, stops at `stop`, and counts in `whole`'s snapshot.
pub fn thread_channel(whole: &View, stop: Arc<AtomicBool>) -> (Handle, Inbox) {
    let view = Arc::new(View {
        stop,
        queryable: whole.queryable.clone(),
        guest_log: whole.guest_log.clone(),
        ..View::default()
    });
    whole.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(view.clone());
    connect(view)
}

fn connect(view: Arc<View>) -> (Handle, Inbox) {
    let (tx, rx) = mpsc::channel();
    view.beat();
    (Handle { commands: tx, view: view.clone() }, Inbox { commands: rx, view })
}
