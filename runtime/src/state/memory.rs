use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Entry, StateStore, WriteBatch};
use crate::error::StateError;

/// A store that lives in memory and is lost with the process: for tests and `weir test`
/// without `--state-dir`.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    checkpoint: Option<i64>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl StateStore for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.map.get(key).cloned())
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StateError> {
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .map
            .range::<[u8], _>((Bound::Included(start), upper))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(&mut self, writes: &WriteBatch, checkpoint: Option<i64>) -> Result<(), StateError> {
        for (key, value) in writes {
            match value {
                Some(v) => self.map.insert(key.clone(), v.clone()),
                None => self.map.remove(key),
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
        Some(self.map.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum())
    }

    fn clear(&mut self) -> Result<(), StateError> {
        self.map.clear();
        self.checkpoint = None;
        Ok(())
    }
}
