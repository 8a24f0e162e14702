//! Committed writes on their way into a changelog-backed RocksDB store, off the pipeline's
//! thread.
//!
//! Inserting a commit's writes into RocksDB's memtable cost the pipeline loop about a quarter of
//! its time on a word count (a skip-list insert per key), and nothing needs them there at once:
//! the changelog already holds them durably. So [`Applier::apply`] queues them and returns; a
//! thread of the store's own writes them, each commit's writes and its checkpoint in one atomic
//! write, in order. Until a commit's writes are in, they stay in the [`InFlight`] queue, where
//! reads look first (the store's own, and those of queries on other threads), so every read
//! sees everything committed. A crash loses at most the queued writes, with their checkpoint,
//! which the next restore reads again from the changelog.
//!
//! Scans and the checkpoint wait until the queue is empty instead of merging it; so does a
//! store that closes. At most [`MAX_QUEUED`] commits wait: past that, `apply` waits for the
//! oldest, so a disk slower than the pipeline holds the pipeline back rather than memory
//! growing. A failed write is reported by the next call.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rocksdb::DB;

use super::WriteBatch;

/// The column family holding weir's own bookkeeping (the changelog checkpoint), apart from the
/// guest's keys.
pub(super) const META: &str = "weir-meta";
/// The key of the changelog offset the store holds everything up to.
pub(super) const CHECKPOINT: &[u8] = b"changelog-checkpoint";

/// Most commits that may wait for the writer.
const MAX_QUEUED: usize = 4;

/// Writes after which the writer flushes the memtable to disk with its checkpoint. Without a
/// write-ahead log only flushed writes survive a crash; with in-place updates the memtable of a
/// store with few keys never fills, so without this a crash would replay the changelog from the
/// store's first commit.
const FLUSH_EVERY: usize = 500_000;

/// One commit's writes (sorted by key, each key once) and the checkpoint that goes with them.
pub struct Commit {
    pub writes: WriteBatch,
    pub checkpoint: Option<i64>,
}

impl Commit {
    /// The value this commit gives `key`: `Some(None)` for a delete, `None` when it does not
    /// touch the key.
    fn lookup(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        let i = self.writes.binary_search_by(|(k, _)| k.as_slice().cmp(key)).ok()?;
        Some(self.writes[i].1.as_deref())
    }
}

/// The commits queued for the writer, oldest first, shared with the store's readers.
#[derive(Default)]
pub struct InFlight {
    queue: Mutex<Queue>,
    /// How many commits are queued, to skip the lock when none is.
    queued: AtomicUsize,
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    commits: VecDeque<Arc<Commit>>,
    /// Why the writer stopped, once it has.
    failed: Option<String>,
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the queued commits say of `key`, the newest first: `None` when none touches it.
    pub fn get(&self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        if self.queued.load(Ordering::Acquire) == 0 {
            return None;
        }
        let queue = self.lock();
        queue.commits.iter().rev().find_map(|c| c.lookup(key)).map(|v| v.map(<[u8]>::to_vec))
    }

    /// Waits until the writer has applied every queued commit, or failed.
    pub fn settle(&self) -> Result<(), String> {
        let mut queue = self.lock();
        loop {
            if let Some(e) = &queue.failed {
                return Err(e.clone());
            }
            if queue.commits.is_empty() {
                return Ok(());
            }
            queue = self.changed.wait(queue).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// The writer thread of one store, and its queue.
pub struct Applier {
    pub in_flight: Arc<InFlight>,
    sender: Option<std::sync::mpsc::Sender<Arc<Commit>>>,
    thread: Option<JoinHandle<()>>,
}

impl Applier {
    /// Starts the writer for `db`, writing without a write-ahead log.
    pub fn start(db: Arc<DB>, name: String) -> std::io::Result<Self> {
        let in_flight = Arc::new(InFlight::default());
        let (sender, commits) = std::sync::mpsc::channel::<Arc<Commit>>();
        let shared = in_flight.clone();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            let mut unflushed = 0;
            for commit in commits {
                let result = write(&db, &commit);
                unflushed += commit.writes.len();
                if result.is_ok() && unflushed >= FLUSH_EVERY {
                    unflushed = 0;
                    if let Err(e) = flush(&db) {
                        tracing::warn!(
                            "flushing the state store failed; a crash now replays more of the changelog: {e}"
                        );
                    }
                }
                let failed = result.is_err();
                let mut queue = shared.lock();
                match result {
                    Ok(()) => {
                        queue.commits.pop_front();
                        shared.queued.store(queue.commits.len(), Ordering::Release);
                    }
                    // The failed commit and those after it stay queued, so reads still see
                    // them; the next call of the store reports the failure.
                    Err(e) => queue.failed = Some(e),
                }
                drop(queue);
                shared.changed.notify_all();
                if failed {
                    break;
                }
            }
        })?;
        Ok(Self { in_flight, sender: Some(sender), thread: Some(thread) })
    }

    /// Queues a commit for the writer, first waiting while [`MAX_QUEUED`] are queued. `Err`
    /// says why an earlier write failed.
    pub fn apply(&self, commit: Commit) -> Result<(), String> {
        let commit = Arc::new(commit);
        let mut queue = self.in_flight.lock();
        loop {
            if let Some(e) = &queue.failed {
                return Err(e.clone());
            }
            if queue.commits.len() < MAX_QUEUED {
                break;
            }
            queue = self.in_flight.changed.wait(queue).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        queue.commits.push_back(commit.clone());
        self.in_flight.queued.store(queue.commits.len(), Ordering::Release);
        drop(queue);
        match &self.sender {
            Some(sender) if sender.send(commit).is_ok() => Ok(()),
            _ => Err("the state store's writer thread is gone".into()),
        }
    }
}

impl Drop for Applier {
    /// Lets the writer finish what is queued, then stops it.
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Flushes the data, then the checkpoint: a checkpoint older than the data only makes the next
/// restore apply some changelog records again, which is harmless.
pub fn flush(db: &DB) -> Result<(), rocksdb::Error> {
    db.flush()?;
    match db.cf_handle(META) {
        Some(meta) => db.flush_cf(meta),
        None => Ok(()),
    }
}

/// Writes one commit and its checkpoint atomically, without a write-ahead log. (Ingesting each
/// commit as a sorted file instead was slower: 5.4 to 6.5 s for a million-record word count
/// against 4.8 to 5.4 s, the files' fixed costs and their compactions outweighing the cheaper
/// inserts.)
fn write(db: &DB, commit: &Commit) -> Result<(), String> {
    let mut batch = rocksdb::WriteBatch::default();
    for (key, value) in &commit.writes {
        match value {
            Some(v) => batch.put(key, v),
            None => batch.delete(key),
        }
    }
    if let Some(offset) = commit.checkpoint {
        match db.cf_handle(META) {
            Some(meta) => batch.put_cf(meta, CHECKPOINT, offset.to_le_bytes()),
            None => return Err(format!("column family {META} is missing")),
        }
    }
    let mut options = rocksdb::WriteOptions::default();
    options.disable_wal(true);
    db.write_opt(batch, &options).map_err(|e| e.to_string())
}
