//! State stores: one per processor and input partition.
//!
//! A [`StateStore`] is the durable part (RocksDB on disk, or memory for tests). A [`StateView`]
//! sits in front of it for the duration of a batch: it buffers the batch's writes so reads see
//! them at once, and [`StateView::commit`] hands them to the store as one atomic write at the
//! batch boundary, or [`StateView::rollback`] forgets them when the batch fails. A
//! [`StoreReader`] reads the committed entries from other threads (interactive queries), beside
//! the one writer.

mod applier;
mod memory;
mod rocks;
mod view;

pub use memory::MemoryStore;
pub use rocks::{purge, RocksStore, MARK};
pub use view::StateView;

#[cfg(test)]
mod test;

use std::sync::Arc;

use crate::error::StateError;

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The writes of one batch: a value to store, or `None` to delete.
pub type WriteBatch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Writes borrowed from a buffer that holds their bytes (a restore's chunk).
pub type Borrowed<'a> = [(&'a [u8], Option<&'a [u8]>)];

/// The durable store behind a [`StateView`].
pub trait StateStore: Send {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// Entries with `start <= key < end` (no upper bound when `end` is `None`), ascending, at
    /// most `limit`.
    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StateError>;

    /// Applies all writes atomically, together with `checkpoint` when given (the changelog
    /// offset a restore continues from): after a crash either all or none are visible. Takes
    /// the writes, so a store that keeps them for later (the applier) needs no copy.
    fn apply(&mut self, writes: WriteBatch, checkpoint: Option<i64>) -> Result<(), StateError>;

    /// Loads writes that are sorted by key with no key twice (a restore's chunk), then records
    /// `checkpoint`. Stores with a faster bulk path than `apply` use it; a crash in between
    /// leaves the checkpoint older than the data, which only makes a restore redo some writes.
    fn bulk_load(&mut self, sorted: &Borrowed<'_>, checkpoint: i64) -> Result<(), StateError> {
        let owned: WriteBatch = sorted.iter().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect();
        self.apply(owned, Some(checkpoint))
    }

    /// The checkpoint stored by the last `apply` that had one.
    fn checkpoint(&self) -> Result<Option<i64>, StateError>;

    /// Removes every entry and the checkpoint, so the store can be rebuilt from its changelog.
    fn clear(&mut self) -> Result<(), StateError>;

    /// About how many bytes the store holds (keys and values), for metrics.
    fn size_bytes(&self) -> Option<u64> {
        None
    }

    /// A reader of what this store holds, for other threads. It sees only what `apply` has
    /// applied (a pipeline applies after its Kafka commit, so: committed state), and fails once
    /// the store is closed.
    fn reader(&self) -> Arc<dyn StoreReader>;
}

/// Reads a store's entries from any thread while its writer goes on.
pub trait StoreReader: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// As [`StateStore::scan`].
    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StateError>;
}
