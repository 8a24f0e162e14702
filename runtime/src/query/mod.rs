//! Interactive queries: what the application beside weir reads of a pipeline's state.
//!
//! A [`Queryable`] is the part of a pipeline that other threads may read: a reader of each
//! assigned partition's store, the input position each store reflects, the pipeline's tables,
//! and who owns which partition across the application's instances ([`membership`]). The
//! pipeline loop keeps it current: it registers a partition's store once its restore is done,
//! moves its positions after every commit (the stores are written only after Kafka commits, so a
//! reader sees committed state and never an open transaction's writes), and drops every store
//! the moment partitions are revoked, so a query never reads a partition that may already be
//! another instance's.

pub mod claims;
pub mod membership;
mod murmur2;

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::watch;

use crate::error::StateError;
use crate::state::{Entry, StoreReader};
use crate::tables::Tables;
use crate::timers::{RESERVED, RESERVED_END};
pub use membership::Member;
pub use murmur2::{murmur2, partition_for};

/// Most entries one range query returns.
pub const MAX_LIMIT: usize = 1000;

/// The partition a key's state lives in, by the pipeline's partitioning of its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This instance reads it.
    Here,
    /// Another instance owns it, as the membership topic says.
    There(Member),
    /// Nobody can answer now (a rebalance, a restore, an instance gone): try again.
    Unavailable(String),
}

/// The committed input offsets a store reflects: (topic, partition) to the next offset to consume.
pub type Positions = BTreeMap<(String, i32), i64>;

/// One partition's store, as queries see it.
struct Partition {
    reader: Arc<dyn StoreReader>,
    positions: Positions,
}

#[derive(Default)]
struct Local {
    /// How many partitions the inputs have, once known.
    partitions: Option<i32>,
    stores: BTreeMap<i32, Partition>,
    /// False from a revocation until every newly assigned partition is open again.
    settled: bool,
    /// Counts assignments, so the membership publisher sees each change.
    generation: u64,
    /// Why nothing can be read, when the pipeline has stopped or failed.
    closed: Option<String>,
    tables: Option<Tables>,
    /// Whether the module keeps state at all.
    keeps_state: bool,
    /// The stage whose state queries read (the pipeline's last stage that keeps state).
    stage: Option<String>,
    /// Stores kept warm here for partitions other instances own (standby replicas), and the
    /// changelog offset each reflects: read only when a query allows it.
    standbys: BTreeMap<i32, (Arc<dyn StoreReader>, Option<i64>)>,
}

impl Local {
    /// The partitions that may be read (none while a rebalance is under way).
    fn open(&self) -> Vec<i32> {
        if self.settled {
            self.stores.keys().copied().collect()
        } else {
            Vec::new()
        }
    }
}

/// What queries read of one pipeline; shared between its loop, its membership thread and the
/// HTTP layer.
pub struct Queryable {
    local: RwLock<Local>,
    /// The instances of the application, as the membership topic last said.
    members: RwLock<Vec<Member>>,
    /// This instance's id, once the pipeline knows it.
    instance: RwLock<Option<String>>,
    /// The secret this application's instances share (what claims and forwards are signed with).
    claim_key: RwLock<Option<claims::ClaimKey>>,
    /// Bumped after every commit and every change of ownership (what `min_offset` waits on).
    changed: watch::Sender<u64>,
}

impl Default for Queryable {
    fn default() -> Self {
        let local = Local { closed: Some("the pipeline has not started yet".into()), ..Local::default() };
        Self {
            local: RwLock::new(local),
            members: RwLock::default(),
            instance: RwLock::default(),
            claim_key: RwLock::default(),
            changed: watch::Sender::new(0),
        }
    }
}

/// A value read from a store, and what it reflects.
#[derive(Debug, Clone)]
pub struct Point {
    pub partition: i32,
    pub value: Option<Vec<u8>>,
    pub positions: Positions,
}

/// A value read from a standby store, and the changelog offset that store reflects.
#[derive(Debug, Clone)]
pub struct StandbyPoint {
    pub value: Option<Vec<u8>>,
    pub changelog_offset: Option<i64>,
}

/// What a range query reads: `[from, to)`, continuing after `after` when given.
#[derive(Debug, Clone, Default)]
pub struct Range {
    pub from: Vec<u8>,
    pub to: Option<Vec<u8>>,
    /// The last key of the previous page.
    pub after: Option<Vec<u8>>,
}

impl Range {
    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        Self { from: prefix.to_vec(), to: successor(prefix), after: None }
    }

    /// The sub-ranges to scan: the range after the cursor, without weir's reserved keys.
    fn pieces(&self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let start = match &self.after {
            Some(after) if after.as_slice() >= self.from.as_slice() => [after.as_slice(), &[0]].concat(),
            _ => self.from.clone(),
        };
        let below_end = |k: &[u8]| self.to.as_deref().is_none_or(|to| k < to);
        let mut pieces = Vec::new();
        if start.as_slice() < RESERVED && below_end(&start) {
            let end = match self.to.as_deref() {
                Some(to) if to < RESERVED => to.to_vec(),
                _ => RESERVED.to_vec(),
            };
            pieces.push((start.clone(), Some(end)));
        }
        let resume = if start.as_slice() > RESERVED_END { start } else { RESERVED_END.to_vec() };
        if below_end(&resume) {
            pieces.push((resume, self.to.clone()));
        }
        pieces
    }
}

/// The smallest key greater than every key starting with `prefix` (none when it is all 0xff).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Whether `key` is one of weir's own (timers, event time), which queries never show.
pub fn reserved(key: &[u8]) -> bool {
    key >= RESERVED && key < RESERVED_END
}

/// Entries of several partitions, in key order, at most `limit`.
pub type Page = Vec<(i32, Entry)>;

impl crate::kafka::Revoked for Queryable {
    fn revoked(&self, partitions: &[i32]) {
        self.release(partitions);
    }
}

impl Queryable {
    fn local(&self) -> std::sync::RwLockReadGuard<'_, Local> {
        self.local.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn local_mut(&self) -> std::sync::RwLockWriteGuard<'_, Local> {
        self.local.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    // What the pipeline loop calls.

    /// The pipeline started: its instance id, its tables, and the stage whose state queries
    /// read (none when no stage keeps state).
    pub fn started(&self, instance: &str, tables: Tables, stage: Option<&str>) {
        *self.instance.write().unwrap_or_else(PoisonError::into_inner) = Some(instance.to_owned());
        let mut local = self.local_mut();
        local.tables = Some(tables);
        local.keeps_state = stage.is_some();
        local.stage = stage.map(str::to_owned);
        local.closed = None;
    }

    /// The standby stores kept here now, each with the changelog offset it reflects.
    pub fn set_standbys(&self, standbys: BTreeMap<i32, (Arc<dyn StoreReader>, Option<i64>)>) {
        self.local_mut().standbys = standbys;
    }

    /// The value under `key` in the standby store of `partition`; `None` when no standby of it
    /// is kept here.
    pub fn get_standby(&self, partition: i32, key: &[u8]) -> Result<Option<StandbyPoint>, StateError> {
        let local = self.local();
        let Some((reader, checkpoint)) = local.standbys.get(&partition) else { return Ok(None) };
        let value = if reserved(key) { None } else { reader.get(key)? };
        Ok(Some(StandbyPoint { value, changelog_offset: *checkpoint }))
    }

    /// `partitions` were handed back to the group (the others stay readable).
    pub fn release(&self, partitions: &[i32]) {
        let mut local = self.local_mut();
        local.stores.retain(|p, _| !partitions.contains(p));
        local.generation += 1;
        drop(local);
        self.bump();
    }

    /// A partition's store is restored and may be read; it reflects `positions`.
    pub fn open(&self, partition: i32, reader: Arc<dyn StoreReader>, positions: Positions) {
        self.local_mut().stores.insert(partition, Partition { reader, positions });
        self.bump();
    }

    /// Every assigned partition is open; the inputs have `partitions` partitions.
    pub fn settle(&self, partitions: i32) {
        let mut local = self.local_mut();
        local.partitions = Some(partitions);
        local.settled = true;
        local.generation += 1;
        drop(local);
        self.bump();
    }

    /// A commit makes the stores reflect the inputs up to `positions`: `apply` writes it into
    /// the stores while no query reads, so that a read sees a value and the position it
    /// reflects from the same commit (not a value one commit ahead of its position).
    pub fn commit<T>(&self, positions: &Positions, apply: impl FnOnce() -> T) -> T {
        let mut local = self.local_mut();
        let applied = apply();
        for ((topic, partition), next) in positions {
            if let Some(store) = local.stores.get_mut(partition) {
                store.positions.insert((topic.clone(), *partition), *next);
            }
        }
        drop(local);
        if !positions.is_empty() {
            self.bump();
        }
        applied
    }

    /// The pipeline stopped (or failed): nothing can be read from this instance.
    pub fn close(&self, why: &str) {
        let mut local = self.local_mut();
        local.stores.clear();
        local.settled = false;
        local.closed = Some(why.to_owned());
        drop(local);
        self.bump();
    }

    // What the membership thread calls.

    /// This instance's claim: its id, the partitions it reads, and the generation of that set.
    pub fn claim(&self) -> Option<(String, Vec<i32>, u64)> {
        let instance = self.instance()?;
        let local = self.local();
        Some((instance, local.open(), local.generation))
    }

    pub fn set_members(&self, members: Vec<Member>) {
        *self.members.write().unwrap_or_else(PoisonError::into_inner) = members;
    }

    /// The secret claims and forwarded queries are signed with, once the membership starts.
    pub fn set_claim_key(&self, key: claims::ClaimKey) {
        *self.claim_key.write().unwrap_or_else(PoisonError::into_inner) = Some(key);
    }

    // What queries call.

    pub fn instance(&self) -> Option<String> {
        self.instance.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn claim_key(&self) -> Option<claims::ClaimKey> {
        self.claim_key.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn members(&self) -> Vec<Member> {
        self.members.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The inputs' partition count, once known.
    pub fn partitions(&self) -> Option<i32> {
        self.local().partitions
    }

    /// The partitions this instance reads now (none while it rebalances).
    pub fn owned(&self) -> Vec<i32> {
        self.local().open()
    }

    /// The stage whose state queries read.
    pub fn stage(&self) -> Option<String> {
        self.local().stage.clone()
    }

    pub fn keeps_state(&self) -> bool {
        self.local().keeps_state
    }

    pub fn tables(&self) -> Option<Tables> {
        self.local().tables.clone()
    }

    /// Who can answer for `partition`.
    pub fn owner(&self, partition: i32) -> Owner {
        let local = self.local();
        if let Some(why) = &local.closed {
            return Owner::Unavailable(why.clone());
        }
        if local.settled && local.stores.contains_key(&partition) {
            return Owner::Here;
        }
        drop(local);
        let me = self.instance();
        // The latest claim wins: a partition that moved is claimed by its new owner after its old one.
        let claimed = self
            .members()
            .into_iter()
            .filter(|m| m.partitions.contains(&partition) && Some(&m.instance) != me.as_ref())
            .max_by_key(|m| m.offset);
        match claimed {
            Some(member) => Owner::There(member),
            None => Owner::Unavailable(format!("no instance has partition {partition} open now (a rebalance?)")),
        }
    }

    /// The value under `key` in `partition`, if this instance reads it now.
    pub fn get(&self, partition: i32, key: &[u8]) -> Result<Option<Point>, StateError> {
        let local = self.local();
        let Some(store) = local.stores.get(&partition).filter(|_| local.settled) else { return Ok(None) };
        let value = if reserved(key) { None } else { store.reader.get(key)? };
        Ok(Some(Point { partition, value, positions: store.positions.clone() }))
    }

    /// Up to `limit` entries of `range` over the partitions this instance reads (or only those
    /// in `only`), merged in key order; and the partitions that were read.
    pub fn scan(&self, range: &Range, limit: usize, only: Option<&[i32]>) -> Result<(Page, Vec<i32>), StateError> {
        let local = self.local();
        if !local.settled {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut page = Vec::new();
        let mut read = Vec::new();
        for (partition, store) in &local.stores {
            if only.is_some_and(|only| !only.contains(partition)) {
                continue;
            }
            read.push(*partition);
            let mut left = limit;
            for (from, to) in range.pieces() {
                if left == 0 {
                    break;
                }
                let entries = store.reader.scan(&from, to.as_deref(), left)?;
                left -= entries.len();
                page.extend(entries.into_iter().map(|e| (*partition, e)));
            }
        }
        drop(local);
        page.sort_by(|a, b| a.1 .0.cmp(&b.1 .0));
        page.truncate(limit);
        Ok((page, read))
    }

    /// The committed position of input `topic` partition `partition`, if this instance reads it.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        let local = self.local();
        local.stores.get(&partition)?.positions.get(&(topic.to_owned(), partition)).copied()
    }

    /// A receiver that wakes after every commit and ownership change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::state::{MemoryStore, StateStore};

    fn store(pairs: &[(&[u8], &str)]) -> MemoryStore {
        let mut store = MemoryStore::new();
        let writes = pairs.iter().map(|(k, v)| (k.to_vec(), Some(v.as_bytes().to_vec()))).collect();
        store.apply(writes, None).unwrap();
        store
    }

    fn keys(page: &Page) -> Vec<String> {
        page.iter().map(|(_, (k, _))| String::from_utf8_lossy(k).into_owned()).collect()
    }

    #[test]
    fn a_range_merges_partitions_in_key_order_and_continues_after_the_cursor() {
        let q = Queryable::default();
        q.started("a", Tables::default(), Some("state"));
        let (s0, s1) = (store(&[(b"a", "1"), (b"c", "3"), (b"e", "5")]), store(&[(b"b", "2"), (b"d", "4")]));
        q.open(0, s0.reader(), Positions::new());
        q.open(1, s1.reader(), Positions::new());
        q.settle(2);
        let (page, read) = q.scan(&Range::default(), 3, None).unwrap();
        assert_eq!((keys(&page), read), (vec!["a".into(), "b".into(), "c".into()], vec![0, 1]));
        let next = Range { after: Some(b"c".to_vec()), ..Range::default() };
        assert_eq!(keys(&q.scan(&next, 3, None).unwrap().0), ["d", "e"]);
    }

    #[test]
    fn timer_keys_are_never_shown_and_keys_past_them_are() {
        let q = Queryable::default();
        q.started("a", Tables::default(), Some("state"));
        let timer = [RESERVED, b"timer/1"].concat();
        let past: &[u8] = b"\xff\xffz";
        let s = store(&[(b"w", "1"), (&timer, "t"), (past, "2")]);
        q.open(0, s.reader(), Positions::new());
        q.settle(1);
        let (page, _) = q.scan(&Range::default(), 10, None).unwrap();
        assert_eq!(page.iter().map(|(_, (k, _))| k.clone()).collect::<Vec<_>>(), [b"w".to_vec(), past.to_vec()]);
        assert_eq!(q.get(0, &timer).unwrap().unwrap().value, None);
        assert!(q.scan(&Range::prefix(RESERVED), 10, None).unwrap().0.is_empty());
    }

    #[test]
    fn a_prefix_ends_before_the_next_prefix() {
        assert_eq!(Range::prefix(b"ab").to, Some(b"ac".to_vec()));
        assert_eq!(Range::prefix(b"a\xff").to, Some(b"b".to_vec()));
        assert_eq!(Range::prefix(b"\xff").to, None);
    }

    #[test]
    fn a_lost_partition_reads_nothing_and_names_no_owner() {
        let q = Queryable::default();
        q.started("a", Tables::default(), Some("state"));
        q.open(0, store(&[(b"k", "v")]).reader(), Positions::new());
        q.settle(1);
        assert_eq!(q.owner(0), Owner::Here);
        q.release(&[0]);
        assert!(q.get(0, b"k").unwrap().is_none());
        assert!(matches!(q.owner(0), Owner::Unavailable(_)));
    }
}
