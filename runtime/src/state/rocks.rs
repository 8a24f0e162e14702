use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rocksdb::{Direction, IteratorMode, Options, ReadOptions, DB};

use super::applier::{Applier, Commit, InFlight, CHECKPOINT, META};
use super::{Borrowed, Entry, StateStore, StoreReader, WriteBatch};
use crate::error::StateError;

/// The file that marks a folder as a state store weir made.
pub const MARK: &str = "WEIR-STORE";

/// Deletes the state stores weir made under `app_dir` (`<state_dir>/<application_id>`): each
/// `<store>/partition-<n>` folder that holds [`MARK`], then the folders left empty. Anything
/// else there, weir never wrote and leaves alone. Returns the stores deleted.
pub fn purge(app_dir: &Path) -> Result<Vec<PathBuf>, StateError> {
    let mut purged = Vec::new();
    let stores = match std::fs::read_dir(app_dir) {
        Ok(stores) => stores,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(purged),
        Err(e) => return Err(io(app_dir, e)),
    };
    for store in stores {
        let store = store.map_err(|e| io(app_dir, e))?;
        // Never through a link: a store folder weir made is a real folder.
        if !store.file_type().map_err(|e| io(app_dir, e))?.is_dir() {
            continue;
        }
        let store = store.path();
        for partition in std::fs::read_dir(&store).map_err(|e| io(&store, e))? {
            let partition = partition.map_err(|e| io(&store, e))?;
            let name = partition.file_name();
            let is_partition = name.to_str().is_some_and(|n| n.starts_with("partition-"));
            if !is_partition || !partition.file_type().map_err(|e| io(&store, e))?.is_dir() {
                continue;
            }
            let path = partition.path();
            if std::fs::symlink_metadata(path.join(MARK)).is_ok_and(|m| m.is_file()) {
                std::fs::remove_dir_all(&path).map_err(|e| io(&path, e))?;
                purged.push(path);
            }
        }
        let _ = std::fs::remove_dir(&store);
    }
    let _ = std::fs::remove_dir(app_dir);
    Ok(purged)
}

fn io(path: &Path, source: std::io::Error) -> StateError {
    StateError::Io { path: path.display().to_string(), source }
}

/// A RocksDB database on disk, one per processor and input partition.
pub struct RocksStore {
    /// Shared only with readers, which hold it weakly and for the length of one read.
    db: Arc<DB>,
    path: PathBuf,
    /// Without a write-ahead log (a changelog keeps the durable copy), writes are cheaper and a
    /// crash loses the unflushed ones, with their checkpoint, so a restore redoes them.
    wal: bool,
    /// For a changelog-backed store: the thread that writes commits into RocksDB, off the
    /// pipeline's thread (see [`super::applier`]).
    applier: Option<Applier>,
}

impl RocksStore {
    /// Opens (creating if needed) the store at `path`, durable on its own (write-ahead log).
    pub fn open(path: &Path) -> Result<Self, StateError> {
        Self::open_with(path, true)
    }

    /// Opens the store for a processor whose changelog holds the durable copy: no write-ahead
    /// log, as in Kafka Streams, and commits applied by a thread of the store's own. Data and
    /// checkpoint are flushed together (atomic flush), and on drop.
    pub fn open_changelog_backed(path: &Path) -> Result<Self, StateError> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, wal: bool) -> Result<Self, StateError> {
        let io = |source| StateError::Io { path: path.display().to_string(), source };
        std::fs::create_dir_all(path).map_err(io)?;
        // Marks the folder as a store weir made: a purge deletes only marked folders.
        let mark = path.join(MARK);
        if !mark.exists() {
            std::fs::write(&mark, b"a weir state store; deleted with it by `weir undeploy --purge`\n").map_err(io)?;
        }
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_atomic_flush(true);
        if !wal {
            // The applier is the one writer, so updates may overwrite a key's value in the
            // memtable (see `data_options`), which RocksDB allows only without concurrent writes.
            opts.set_allow_concurrent_memtable_write(false);
        }
        let data = data_options(wal);
        // A reader on another thread may be finishing a read of the store's last incarnation
        // (closed by a rebalance), holding its lock for a moment longer.
        let started = Instant::now();
        let db = loop {
            // `DB::open_cf` would open every column family with RocksDB's defaults.
            let families = vec![
                rocksdb::ColumnFamilyDescriptor::new("default", data.clone()),
                rocksdb::ColumnFamilyDescriptor::new(META, Options::default()),
            ];
            match DB::open_cf_descriptors(&opts, path, families) {
                Ok(db) => break db,
                Err(e) if e.to_string().contains("lock") && started.elapsed() < Duration::from_secs(2) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(source) => return Err(StateError::Rocks { path: path.display().to_string(), source }),
            }
        };
        let db = Arc::new(db);
        let applier = match wal {
            true => None,
            false => Some(
                Applier::start(db.clone(), "weir-state".into())
                    .map_err(|source| StateError::Io { path: path.display().to_string(), source })?,
            ),
        };
        Ok(Self { db, path: path.to_path_buf(), wal, applier })
    }

    /// Waits until every commit handed to the writer thread is in RocksDB.
    fn settle(&self) -> Result<(), StateError> {
        match &self.applier {
            Some(applier) => applier.in_flight.settle().map_err(|e| self.failed_write(e)),
            None => Ok(()),
        }
    }

    /// Entries in the active memtable, once the writer is done.
    #[cfg(test)]
    pub(super) fn memtable_entries(&self) -> u64 {
        let _ = self.settle();
        self.db.property_int_value("rocksdb.num-entries-active-mem-table").ok().flatten().unwrap_or(0)
    }

    fn failed_write(&self, detail: String) -> StateError {
        StateError::Io {
            path: self.path.display().to_string(),
            source: std::io::Error::other(format!("writing committed state into RocksDB failed: {detail}")),
        }
    }

    fn err(&self, source: rocksdb::Error) -> StateError {
        StateError::Rocks { path: self.path.display().to_string(), source }
    }

    fn meta(&self) -> Result<&rocksdb::ColumnFamily, StateError> {
        self.db.cf_handle(META).ok_or_else(|| StateError::Io {
            path: self.path.display().to_string(),
            source: std::io::Error::other(format!("column family {META} is missing")),
        })
    }
}

/// The options of the column family that holds the guest's keys.
fn data_options(wal: bool) -> Options {
    let mut opts = Options::default();
    opts.set_write_buffer_size(8 << 20);
    // Most lookups of a key the store has never seen end at a bloom filter instead of a
    // search of the memtable and every level (word counts meet new words all the time).
    opts.set_memtable_prefix_bloom_ratio(0.1);
    opts.set_memtable_whole_key_filtering(true);
    if !wal {
        // One memtable entry per key instead of one per key and commit, where the new value is
        // no longer than the old: on a word count the memtable held about a million entries,
        // and every read and write searched them. Iterators then see values change under
        // them; see `RocksReader::scan`.
        opts.set_inplace_update_support(true);
    }
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    opts.set_block_based_table_factory(&table);
    opts
}

fn scan(db: &DB, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, rocksdb::Error> {
    let mut read = ReadOptions::default();
    if let Some(end) = end {
        read.set_iterate_upper_bound(end.to_vec());
    }
    let iter = db.iterator_opt(IteratorMode::From(start, Direction::Forward), read);
    let mut out = Vec::new();
    for item in iter.take(limit) {
        let (k, v) = item?;
        out.push((k.into_vec(), v.into_vec()));
    }
    Ok(out)
}

/// A reader of a [`RocksStore`] on another thread: RocksDB serves reads beside its writer.
struct RocksReader {
    db: Weak<DB>,
    path: PathBuf,
    in_flight: Option<Arc<InFlight>>,
}

impl RocksReader {
    fn db(&self) -> Result<Arc<DB>, StateError> {
        self.db.upgrade().ok_or_else(|| StateError::Io {
            path: self.path.display().to_string(),
            source: std::io::Error::other("the store was closed (its partition moved)"),
        })
    }

    fn err(&self, source: rocksdb::Error) -> StateError {
        StateError::Rocks { path: self.path.display().to_string(), source }
    }
}

impl StoreReader for RocksReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let db = self.db()?;
        if let Some(value) = self.in_flight.as_ref().and_then(|f| f.get(key)) {
            return Ok(value);
        }
        db.get(key).map_err(|e| self.err(e))
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StateError> {
        let db = self.db()?;
        if let Some(in_flight) = &self.in_flight {
            in_flight.settle().map_err(|e| StateError::Io {
                path: self.path.display().to_string(),
                source: std::io::Error::other(e),
            })?;
        }
        let entries = scan(&db, start, end, limit).map_err(|e| self.err(e))?;
        if self.in_flight.is_none() {
            return Ok(entries);
        }
        // The store's writer may update values in place while this iterates, and an iterator
        // reads them without the lock a point read takes: read each value again.
        let mut stable = Vec::with_capacity(entries.len());
        for (key, _) in entries {
            if let Some(value) = db.get(&key).map_err(|e| self.err(e))? {
                stable.push((key, value));
            }
        }
        Ok(stable)
    }
}

impl StateStore for RocksStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(value) = self.applier.as_ref().and_then(|a| a.in_flight.get(key)) {
            return Ok(value);
        }
        self.db.get(key).map_err(|e| self.err(e))
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StateError> {
        self.settle()?;
        scan(&self.db, start, end, limit).map_err(|e| self.err(e))
    }

    fn reader(&self) -> Arc<dyn StoreReader> {
        let in_flight = self.applier.as_ref().map(|a| a.in_flight.clone());
        Arc::new(RocksReader { db: Arc::downgrade(&self.db), path: self.path.clone(), in_flight })
    }

    /// Writes must be sorted by key, each key once (as [`super::StateView`] commits them).
    fn apply(&mut self, writes: WriteBatch, checkpoint: Option<i64>) -> Result<(), StateError> {
        if writes.is_empty() && checkpoint.is_none() {
            return Ok(());
        }
        if let Some(applier) = &self.applier {
            let commit = Commit { writes, checkpoint };
            return applier.apply(commit).map_err(|e| self.failed_write(e));
        }
        let mut batch = rocksdb::WriteBatch::default();
        for (key, value) in &writes {
            match value {
                Some(v) => batch.put(key, v),
                None => batch.delete(key),
            }
        }
        if let Some(offset) = checkpoint {
            batch.put_cf(self.meta()?, CHECKPOINT, offset.to_le_bytes());
        }
        let mut options = rocksdb::WriteOptions::default();
        options.disable_wal(!self.wal);
        self.db.write_opt(batch, &options).map_err(|e| self.err(e))
    }

    /// Writes the chunk to an SST file and ingests it: several times cheaper than inserting into
    /// the memtable, which is what makes restores fast.
    fn bulk_load(&mut self, sorted: &Borrowed<'_>, checkpoint: i64) -> Result<(), StateError> {
        self.settle()?;
        if !sorted.is_empty() {
            let file = self.path.join(format!("restore-{checkpoint}.sst"));
            let options = data_options(self.wal);
            let mut writer = rocksdb::SstFileWriter::create(&options);
            writer.open(&file).map_err(|e| self.err(e))?;
            for (key, value) in sorted {
                match value {
                    Some(v) => writer.put(key, v),
                    None => writer.delete(key),
                }
                .map_err(|e| self.err(e))?;
            }
            writer.finish().map_err(|e| self.err(e))?;
            let mut ingest = rocksdb::IngestExternalFileOptions::default();
            ingest.set_move_files(true);
            let ingested = self.db.ingest_external_file_opts(&ingest, vec![&file]).map_err(|e| self.err(e));
            let _ = std::fs::remove_file(&file);
            ingested?;
        }
        self.apply(Vec::new(), Some(checkpoint))
    }

    fn checkpoint(&self) -> Result<Option<i64>, StateError> {
        self.settle()?;
        let raw = self.db.get_cf(self.meta()?, CHECKPOINT).map_err(|e| self.err(e))?;
        Ok(raw.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok()).map(i64::from_le_bytes))
    }

    fn size_bytes(&self) -> Option<u64> {
        // Live data in SST files plus what the memtables hold, as RocksDB estimates them.
        let property = |name: &str| self.db.property_int_value(name).ok().flatten();
        let sst = property("rocksdb.estimate-live-data-size")?;
        Some(sst + property("rocksdb.cur-size-all-mem-tables").unwrap_or(0))
    }

    fn clear(&mut self) -> Result<(), StateError> {
        self.settle()?;
        // Key by key: RocksDB refuses range deletes beside in-place updates.
        let mut batch = rocksdb::WriteBatch::default();
        for item in self.db.iterator(IteratorMode::Start) {
            let (key, _) = item.map_err(|e| self.err(e))?;
            batch.delete(&key[..]);
        }
        batch.delete_cf(self.meta()?, CHECKPOINT);
        self.db.write(batch).map_err(|e| self.err(e))
    }
}

impl Drop for RocksStore {
    fn drop(&mut self) {
        // The writer finishes what is queued before the flush.
        drop(self.applier.take());
        if !self.wal {
            if let Err(e) = super::applier::flush(&self.db) {
                tracing::warn!(path = %self.path.display(), "flushing the state store failed; the next start restores from the changelog: {e}");
            }
        }
    }
}
