//! Standby replicas, as Kafka Streams keeps them (KIP-441): a warm copy of a partition's store
//! on another instance, so that the partition's next owner starts after only the changelog's
//! tail.
//!
//! With `standby_replicas = N`, each partition of the stage that queries read is kept warm on
//! the N instances after its owner in the ring of live instances, sorted by id. Owners and live
//! instances come from the instance registry (`<application_id>-instances`), so every instance
//! computes the same placement without talking to the others. A thread of the pipeline's own
//! keeps the standby stores here: it opens each where the partition's task would open it, and
//! every [`CATCH_UP_EVERY`] brings them to the end of their changelog partitions through the
//! restore that tasks use (read_committed, from each store's checkpoint). The broker's
//! assignor decides who gets a partition: when it is this instance, the task takes the warm
//! store over and restores only what it has not yet applied.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};

use super::control::{StandbySnapshot, View};
use super::store::open_store;
use crate::changelog;
use crate::config::PipelineConfig;
use crate::kafka::{self, CatchUpCtx, KAFKA_TIMEOUT};
use crate::query::Queryable;
use crate::state::{StateStore, StoreReader};

/// How often the standby stores are brought to the end of their changelog partitions.
pub const CATCH_UP_EVERY: Duration = Duration::from_millis(500);

/// The partitions `me` keeps warm of `count`: for each, the `replicas` instances after its owner
/// in `live` (sorted, `me` among them), wrapping around; a partition with no known owner counts
/// from the instance at its own index. Never one `me` owns.
pub fn placement(
    count: i32,
    owners: &BTreeMap<i32, String>,
    live: &[String],
    me: &str,
    replicas: usize,
) -> BTreeSet<i32> {
    let mut kept = BTreeSet::new();
    if live.is_empty() {
        return kept;
    }
    for partition in 0..count {
        let owner = owners.get(&partition);
        if owner.is_some_and(|o| o == me) {
            continue;
        }
        let start = match owner.and_then(|o| live.iter().position(|i| i == o)) {
            Some(i) => i,
            None => partition as usize % live.len(),
        };
        let after = (1..live.len()).map(|step| &live[(start + step) % live.len()]);
        let chosen: Vec<&String> = after.filter(|i| Some(*i) != owner).take(replicas).collect();
        if chosen.iter().any(|i| *i == me) {
            kept.insert(partition);
        }
    }
    kept
}

/// What the keeper and the loop share.
#[derive(Default)]
struct Kept {
    /// Partitions whose task is open here: never kept as a standby meanwhile.
    active: BTreeSet<i32>,
    /// The warm stores, by partition.
    stores: BTreeMap<i32, Box<dyn StateStore>>,
}

/// The standby stores of a pipeline, and the thread that keeps them.
pub(super) struct Standbys {
    kept: Arc<Mutex<Kept>>,
    queryable: Arc<Queryable>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What the keeper needs: the stage's view of the pipeline file, its changelog, how many
/// standbys to keep, and where to learn and tell.
pub(super) struct Keeper {
    pub config: PipelineConfig,
    pub changelog: String,
    pub replicas: usize,
    pub queryable: Arc<Queryable>,
    pub view: Arc<View>,
}

impl Standbys {
    pub fn start(keeper: Keeper) -> anyhow::Result<Self> {
        let kept = Arc::new(Mutex::new(Kept::default()));
        let queryable = keeper.queryable.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping) = (kept.clone(), stop.clone());
        let thread =
            std::thread::Builder::new().name("weir-standby".into()).spawn(move || keeper.run(&shared, &stopping))?;
        Ok(Self { kept, queryable, stop, thread: Some(thread) })
    }

    fn kept(&self) -> MutexGuard<'_, Kept> {
        lock(&self.kept)
    }

    /// `partition`'s task opens here: its warm store, if one is kept, which the task takes over.
    pub fn activate(&self, partition: i32) -> Option<Box<dyn StateStore>> {
        let mut kept = self.kept();
        kept.active.insert(partition);
        let store = kept.stores.remove(&partition);
        if store.is_some() {
            self.queryable.set_standbys(readers(&kept.stores));
        }
        store
    }

    /// `partition`'s task closed here: it may be kept as a standby again.
    pub fn deactivate(&self, partition: i32) {
        self.kept().active.remove(&partition);
    }
}

impl Drop for Standbys {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.queryable.set_standbys(BTreeMap::new());
    }
}

/// What queries read of the standby stores: a reader of each, and the changelog offset it
/// reflects.
fn readers(stores: &BTreeMap<i32, Box<dyn StateStore>>) -> BTreeMap<i32, (Arc<dyn StoreReader>, Option<i64>)> {
    stores.iter().map(|(p, store)| (*p, (store.reader(), store.checkpoint().ok().flatten()))).collect()
}

fn lock(kept: &Mutex<Kept>) -> MutexGuard<'_, Kept> {
    kept.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Keeper {
    fn run(self, kept: &Mutex<Kept>, stop: &AtomicBool) {
        let mut warned = false;
        while !stop.load(Ordering::SeqCst) {
            match self.round(kept) {
                Ok(()) => warned = false,
                Err(e) => {
                    // Where the stores stand is unknown until a round goes through again.
                    self.view.update(|s| s.standbys.iter_mut().for_each(|s| s.lag = None));
                    if !warned {
                        warned = true;
                        tracing::warn!(application = %self.config.application_id, "keeping the standby stores: {e:#}");
                    }
                }
            }
            let mut waited = Duration::ZERO;
            while waited < CATCH_UP_EVERY && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
                waited += Duration::from_millis(50);
            }
        }
    }

    /// The partitions to keep warm here now, from the instance registry.
    fn wanted(&self) -> BTreeSet<i32> {
        let Some(count) = self.queryable.partitions() else { return BTreeSet::new() };
        let Some(me) = self.queryable.instance() else { return BTreeSet::new() };
        let members = self.queryable.members();
        let mut owners: BTreeMap<i32, (i64, String)> = BTreeMap::new();
        for member in members.iter().filter(|m| m.instance != me) {
            for p in &member.partitions {
                let later = owners.get(p).is_none_or(|(offset, _)| member.offset > *offset);
                if later {
                    owners.insert(*p, (member.offset, member.instance.clone()));
                }
            }
        }
        let mut owners: BTreeMap<i32, String> = owners.into_iter().map(|(p, (_, i))| (p, i)).collect();
        for p in self.queryable.owned() {
            owners.insert(p, me.clone());
        }
        // Live: this instance, and every instance that owns a partition by the latest claims.
        let mut live: Vec<String> = owners.values().cloned().collect();
        live.push(me.clone());
        live.sort();
        live.dedup();
        placement(count, &owners, &live, &me, self.replicas)
    }

    /// Opens the stores newly wanted, drops those no longer wanted, and brings the rest to the
    /// end of their changelog partitions; publishes where each stands.
    fn round(&self, kept: &Mutex<Kept>) -> anyhow::Result<()> {
        let wanted = self.wanted();
        let mut kept = lock(kept);
        let Kept { active, stores } = &mut *kept;
        stores.retain(|p, _| wanted.contains(p) && !active.contains(p));
        let new: Vec<i32> = wanted.iter().copied().filter(|p| !active.contains(p) && !stores.contains_key(p)).collect();
        for p in new {
            stores.insert(p, open_store(&self.config, true, p)?);
        }
        if stores.is_empty() {
            self.queryable.set_standbys(BTreeMap::new());
            self.view.update(|s| s.standbys.clear());
            return Ok(());
        }
        let targets =
            stores.iter_mut().map(|(p, store)| changelog::Target { partition: *p, store: store.as_mut() }).collect();
        changelog::catch_up(&self.config, &self.changelog, targets)?;
        let consumer: BaseConsumer<CatchUpCtx> =
            kafka::catch_up(&self.config, "standby").create_with_context(CatchUpCtx)?;
        let mut standbys = Vec::with_capacity(stores.len());
        for (p, store) in stores.iter() {
            let checkpoint = store.checkpoint()?;
            let end = consumer.fetch_watermarks(&self.changelog, *p, KAFKA_TIMEOUT).ok().map(|(_, high)| high);
            // Unknown rather than 0 when the broker's answer is not an offset (-1001).
            let lag = end.filter(|end| *end >= 0).map(|end| (end - checkpoint.unwrap_or(0)).max(0));
            standbys.push(StandbySnapshot { partition: *p, checkpoint, lag });
        }
        self.queryable.set_standbys(readers(stores));
        drop(kept);
        self.view.update(|s| s.standbys = standbys);
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_partition_is_kept_on_the_instances_after_its_owner_and_never_on_its_owner() {
        let live = ids(&["a", "b", "c"]);
        let owners: BTreeMap<i32, String> = [(0, "a"), (1, "b"), (2, "c")].map(|(p, i)| (p, i.to_string())).into();
        assert_eq!(placement(3, &owners, &live, "a", 1), BTreeSet::from([2]));
        assert_eq!(placement(3, &owners, &live, "b", 1), BTreeSet::from([0]));
        assert_eq!(placement(3, &owners, &live, "a", 2), BTreeSet::from([1, 2]), "instances - 1: every other");
        assert_eq!(placement(3, &owners, &live, "a", 5), BTreeSet::from([1, 2]), "more than there are");
        assert!(placement(3, &owners, &live, "a", 0).is_empty());
    }

    #[test]
    fn every_instance_computes_the_same_placement_so_each_partition_gets_its_replicas() {
        let live = ids(&["a", "b", "c", "d"]);
        let owners: BTreeMap<i32, String> =
            (0..8).map(|p| (p, live[p as usize % 4].clone())).filter(|(p, _)| *p != 5).collect();
        for replicas in 1..=3 {
            let mut copies: BTreeMap<i32, usize> = BTreeMap::new();
            for me in &live {
                for p in placement(8, &owners, &live, me, replicas) {
                    *copies.entry(p).or_default() += 1;
                }
            }
            for p in 0..8 {
                assert_eq!(copies.get(&p).copied().unwrap_or(0), replicas, "partition {p}, {replicas} replicas");
            }
        }
    }
}
