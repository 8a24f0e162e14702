//! Tables: topics replayed from their start into in-memory maps by key, kept current as the
//! topic changes, and read by guests through `weir:processor/tables`.
//!
//! A co-partitioned table keeps one map per partition, and a record sees the map of its own
//! partition (the table's topic has as many partitions as the inputs, and the same keys go to
//! the same partition numbers). A global table keeps one map of every partition, so each
//! instance can look up any key. Writes come from one place (the pipeline's table feed, or
//! `weir test --table`), lookups from the guests and from queries. While a table loads, before
//! the pipeline's first record, two readers write it side by side, a batch under each lock.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;

/// How a pipeline declares a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// The name guests look it up by.
    pub name: String,
    /// The topic it is read from.
    pub topic: String,
    /// Every instance holds every partition, rather than the partition of its records.
    pub global: bool,
}

impl TableSpec {
    /// The tables a pipeline file declares.
    pub fn of(config: &crate::config::PipelineConfig) -> Vec<TableSpec> {
        config
            .tables
            .iter()
            .map(|(name, t)| TableSpec { name: name.clone(), topic: t.topic.clone(), global: t.global })
            .collect()
    }
}

#[derive(Debug)]
struct Table {
    spec: TableSpec,
    /// Co-partitioned: one map per partition, by partition number. Global: one map, at 0.
    maps: HashMap<i32, FxHashMap<Vec<u8>, Vec<u8>>>,
    /// Records read, and records without a key (which a table cannot hold).
    records: u64,
    keyless: u64,
}

/// The tables of a pipeline, shared between what feeds them and the instances that read them.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    inner: Arc<RwLock<Vec<Table>>>,
}

impl Tables {
    pub fn new(specs: &[TableSpec]) -> Self {
        let tables = specs
            .iter()
            .map(|spec| Table { spec: spec.clone(), maps: HashMap::new(), records: 0, keyless: 0 })
            .collect();
        Self { inner: Arc::new(RwLock::new(tables)) }
    }

    /// Applies one record of `topic`: the key now maps to the value, or is gone for a tombstone.
    /// Every table read from `topic` gets it.
    pub fn apply(&self, topic: &str, partition: i32, key: Option<&[u8]>, value: Option<&[u8]>) {
        self.apply_all(topic, [(partition, key.map(<[u8]>::to_vec), value.map(<[u8]>::to_vec))]);
    }

    /// Applies records of `topic` in order, (partition, key, value) each, under one lock.
    pub fn apply_all(&self, topic: &str, records: impl IntoIterator<Item = (i32, Option<Vec<u8>>, Option<Vec<u8>>)>) {
        let mut tables = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut fed: Vec<&mut Table> = tables.iter_mut().filter(|t| t.spec.topic == topic).collect();
        let last = fed.len().saturating_sub(1);
        for (partition, key, value) in records {
            // Each table but the last gets a copy; the last takes the record.
            let mut record = Some((key, value));
            for (i, table) in fed.iter_mut().enumerate() {
                let (key, value) = match i == last {
                    true => record.take().unwrap_or_default(),
                    false => record.clone().unwrap_or_default(),
                };
                table.records += 1;
                let Some(key) = key else {
                    table.keyless += 1;
                    continue;
                };
                let map = table.maps.entry(if table.spec.global { 0 } else { partition }).or_default();
                match value {
                    Some(value) => map.insert(key, value),
                    None => map.remove(&key),
                };
            }
        }
    }

    /// The value under `key` in table `name`, as a record of `partition` sees it. An unknown
    /// table is an error naming the known ones.
    pub fn get(&self, name: &str, partition: i32, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.read(|tables| {
            let Some(table) = tables.iter().find(|t| t.spec.name == name) else {
                let names: Vec<&str> = tables.iter().map(|t| t.spec.name.as_str()).collect();
                return Err(match names.is_empty() {
                    true => format!("no table named `{name}`: this pipeline declares no tables"),
                    false => format!("no table named `{name}`; this pipeline declares: {}", names.join(", ")),
                });
            };
            let map = table.maps.get(&if table.spec.global { 0 } else { partition });
            Ok(map.and_then(|m| m.get(key)).cloned())
        })
    }

    /// (name, keys held, records read, records without a key), for logs.
    pub fn sizes(&self) -> Vec<(String, usize, u64, u64)> {
        self.read(|tables| {
            tables
                .iter()
                .map(|t| (t.spec.name.clone(), t.maps.values().map(FxHashMap::len).sum(), t.records, t.keyless))
                .collect()
        })
    }

    fn read<R>(&self, f: impl FnOnce(&[Table]) -> R) -> R {
        f(&self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// What one instance reads: the tables, as seen from its partition.
#[derive(Debug, Clone)]
pub struct TableView {
    pub tables: Tables,
    pub partition: i32,
}

#[cfg(test)]
mod test {
    use super::*;

    fn spec(name: &str, global: bool) -> TableSpec {
        TableSpec { name: name.into(), topic: format!("{name}-topic"), global }
    }

    #[test]
    fn a_co_partitioned_table_answers_from_the_records_partition_only() {
        let tables = Tables::new(&[spec("customers", false)]);
        tables.apply("customers-topic", 1, Some(b"c1"), Some(b"Ada"));
        assert_eq!(tables.get("customers", 1, b"c1").unwrap(), Some(b"Ada".to_vec()));
        assert_eq!(tables.get("customers", 0, b"c1").unwrap(), None);
    }

    #[test]
    fn a_global_table_answers_every_partition_and_tombstones_delete() {
        let tables = Tables::new(&[spec("rates", true)]);
        tables.apply("rates-topic", 3, Some(b"EUR"), Some(b"1.1"));
        assert_eq!(tables.get("rates", 0, b"EUR").unwrap(), Some(b"1.1".to_vec()));
        tables.apply("rates-topic", 3, Some(b"EUR"), None);
        assert_eq!(tables.get("rates", 0, b"EUR").unwrap(), None);
    }

    #[test]
    fn an_unknown_table_is_an_error_naming_the_declared_ones() {
        let tables = Tables::new(&[spec("customers", false), spec("rates", true)]);
        let error = tables.get("custmers", 0, b"k").unwrap_err();
        assert_eq!(error, "no table named `custmers`; this pipeline declares: customers, rates");
        let none = Tables::default().get("x", 0, b"k").unwrap_err();
        assert!(none.contains("declares no tables"), "{none}");
    }

    #[test]
    fn records_without_a_key_are_counted_not_stored() {
        let tables = Tables::new(&[spec("customers", false)]);
        tables.apply("customers-topic", 0, None, Some(b"x"));
        assert_eq!(tables.sizes(), [("customers".to_owned(), 0, 1, 1)]);
    }
}
