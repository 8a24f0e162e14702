use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock};

use super::{Entry, StateStore, StoreReader, WriteBatch};
use crate::error::StateError;

/// A store that lives in memory and is lost with the process: for tests and `weir test`
/// without `--state-dir`. Its map sits behind a lock so that readers on other threads see each
/// `apply` whole; the writer holds it only while applying.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Arc<RwLock<BTreeMap<Vec<u8>, Vec<u8>>>>,
    checkpoint: Option<i64>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

/// A reader of a [`MemoryStore`] on another thread.
struct MemoryReader {
    map: Arc<RwLock<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

fn get(map: &RwLock<BTreeMap<Vec<u8>, Vec<u8>>>, key: &[u8]) -> Option<Vec<u8>> {
    map.read().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
}

fn scan(map: &RwLock<BTreeMap<Vec<u8>, Vec<u8>>>, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<Entry> {
    let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
    let map = map.read().unwrap_or_else(PoisonError::into_inner);
    map.range::<[u8], _>((Bound::Included(start), upper)).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl StoreReader for MemoryReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(get(&self.map, key))
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StateError> {
        Ok(scan(&self.map, start, end, limit))
    }
}

impl StateStore for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(get(&self.map, key))
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StateError> {
        Ok(scan(&self.map, start, end, limit))
    }

    fn apply(&mut self, writes: WriteBatch, checkpoint: Option<i64>) -> Result<(), StateError> {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        for (key, value) in writes {
            match value {
                Some(v) => map.insert(key, v),
                None => map.remove(&key),
            };
        }
        if checkpoint.is_some() {
            self.checkpoint = checkpoint;
        }
        Ok(())
    }

    fn checkpoint(&self) -> Result<Option<i64>, StateError> {
        Ok(self.checkpoint)
    }

    fn size_bytes(&self) -> Option<u64> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        Some(map.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum())
    }

    fn clear(&mut self) -> Result<(), StateError> {
        self.map.write().unwrap_or_else(PoisonError::into_inner).clear();
        self.checkpoint = None;
        Ok(())
    }

    fn reader(&self) -> Arc<dyn StoreReader> {
        Arc::new(MemoryReader { map: self.map.clone() })
    }
}
