use std::path::{Path, PathBuf};

use rocksdb::{Direction, IteratorMode, Options, ReadOptions, DB};

use super::{Entry, StateStore, WriteBatch};
use crate::error::StateError;

/// The column family holding weir's own bookkeeping (the changelog checkpoint), apart from the
/// guest's keys.
const META: &str = "weir-meta";
const CHECKPOINT: &[u8] = b"changelog-checkpoint";

/// A RocksDB database on disk, one per processor and input partition.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
}

impl RocksStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(path)
            .map_err(|source| StateError::Io { path: path.display().to_string(), source })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_write_buffer_size(8 << 20);
        let db = DB::open_cf(&opts, path, ["default", META]).map_err(|source| StateError::Rocks {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self { db, path: path.to_path_buf() })
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

impl StateStore for RocksStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.db.get(key).map_err(|e| self.err(e))
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StateError> {
        let mut read = ReadOptions::default();
        if let Some(end) = end {
            read.set_iterate_upper_bound(end.to_vec());
        }
        let iter = self.db.iterator_opt(IteratorMode::From(start, Direction::Forward), read);
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    fn apply(&mut self, writes: &WriteBatch, checkpoint: Option<i64>) -> Result<(), StateError> {
        if writes.is_empty() && checkpoint.is_none() {
            return Ok(());
        }
        let mut batch = rocksdb::WriteBatch::default();
        for (key, value) in writes {
            match value {
                Some(v) => batch.put(key, v),
                None => batch.delete(key),
            }
        }
        if let Some(offset) = checkpoint {
            batch.put_cf(self.meta()?, CHECKPOINT, offset.to_le_bytes());
        }
        self.db.write(batch).map_err(|e| self.err(e))
    }

    fn checkpoint(&self) -> Result<Option<i64>, StateError> {
        let raw = self.db.get_cf(self.meta()?, CHECKPOINT).map_err(|e| self.err(e))?;
        Ok(raw.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok()).map(i64::from_le_bytes))
    }

    fn clear(&mut self) -> Result<(), StateError> {
        let first = self.db.iterator(IteratorMode::Start).next().transpose().map_err(|e| self.err(e))?;
        let last = self.db.iterator(IteratorMode::End).next().transpose().map_err(|e| self.err(e))?;
        let mut batch = rocksdb::WriteBatch::default();
        if let (Some((first, _)), Some((last, _))) = (first, last) {
            batch.delete_range(&first[..], &last[..]);
            batch.delete(&last[..]);
        }
        batch.delete_cf(self.meta()?, CHECKPOINT);
        self.db.write(batch).map_err(|e| self.err(e))
    }
}
