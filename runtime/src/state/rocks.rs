use std::path::{Path, PathBuf};

use rocksdb::{Direction, IteratorMode, Options, ReadOptions, DB};

use super::{Entry, StateStore, WriteBatch};
use crate::error::StateError;

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
        opts.set_write_buffer_size(8 << 20);
        let db = DB::open(&opts, path).map_err(|source| StateError::Rocks {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self { db, path: path.to_path_buf() })
    }

    fn err(&self, source: rocksdb::Error) -> StateError {
        StateError::Rocks { path: self.path.display().to_string(), source }
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

    fn apply(&mut self, writes: &WriteBatch) -> Result<(), StateError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut batch = rocksdb::WriteBatch::default();
        for (key, value) in writes {
            match value {
                Some(v) => batch.put(key, v),
                None => batch.delete(key),
            }
        }
        self.db.write(batch).map_err(|e| self.err(e))
    }
}
