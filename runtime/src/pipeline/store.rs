//! Where a task's state store lives: one folder per application, store and partition under the
//! state directory, shared by a partition's task and its standby, so that either finds what the
//! other left.

use anyhow::Context as _;

use crate::config::PipelineConfig;
use crate::state::{MemoryStore, RocksStore, StateStore};

/// The state store of `partition`: RocksDB under the state directory (kept without a
/// write-ahead log when a changelog holds it), else memory.
pub(super) fn open_store(
    config: &PipelineConfig,
    changelogged: bool,
    partition: i32,
) -> anyhow::Result<Box<dyn StateStore>> {
    Ok(match &config.state_dir {
        Some(dir) => {
            let path =
                dir.join(&config.application_id).join(config.store_name()).join(format!("partition-{partition}"));
            let store = match changelogged {
                true => RocksStore::open_changelog_backed(&path),
                false => RocksStore::open(&path),
            };
            Box::new(store.with_context(|| format!("state store {}", path.display()))?)
        }
        None => Box::new(MemoryStore::new()),
    })
}
