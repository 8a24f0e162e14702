use super::*;

fn stored(pairs: &[(&str, &str)]) -> MemoryStore {
    let mut store = MemoryStore::new();
    let writes = pairs.iter().map(|(k, v)| (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec())));
    store.apply(writes.collect(), None).unwrap();
    store
}

fn keys(entries: Vec<Entry>) -> Vec<String> {
    entries.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect()
}

#[test]
fn reads_see_the_batchs_own_writes_before_commit() {
    let mut view = StateView::new(Box::new(stored(&[("a", "1")])));
    view.put(b"a".to_vec(), b"2".to_vec());
    view.delete(b"b".to_vec());
    assert_eq!(view.get(b"a").unwrap(), Some(b"2".to_vec()));
    assert_eq!(view.get(b"b").unwrap(), None);
}

#[test]
fn rollback_leaves_the_store_as_it_was() {
    let mut view = StateView::new(Box::new(stored(&[("a", "1")])));
    view.put(b"a".to_vec(), b"2".to_vec());
    view.rollback();
    assert_eq!(view.get(b"a").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn a_rollback_brings_back_the_committed_value_of_a_key_read_before_the_write() {
    let mut view = StateView::new(Box::new(stored(&[("a", "1")])));
    assert_eq!(view.get(b"a").unwrap(), Some(b"1".to_vec()));
    view.put(b"a".to_vec(), b"2".to_vec());
    view.commit(None).unwrap();
    view.put(b"a".to_vec(), b"3".to_vec());
    view.delete(b"b".to_vec());
    view.rollback();
    assert!(!view.has_pending());
    assert_eq!(view.get(b"a").unwrap(), Some(b"2".to_vec()));
    assert_eq!(view.pending().count(), 0);
}

#[test]
fn uncommitted_writes_outlive_the_read_cache_making_room() {
    let mut view = StateView::new(Box::new(stored(&[])));
    view.put(b"kept".to_vec(), b"1".to_vec());
    for i in 0..view::CACHE_ENTRIES + 10 {
        assert_eq!(view.get(format!("absent-{i}").as_bytes()).unwrap(), None);
    }
    assert_eq!(view.pending().collect::<Vec<_>>(), [(&b"kept"[..], Some(&b"1"[..]))]);
    view.commit(Some(4)).unwrap();
    assert!(!view.has_pending());
    assert_eq!(view.get(b"kept").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn scans_merge_pending_writes_and_deletes_in_key_order() {
    let mut view = StateView::new(Box::new(stored(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")])));
    view.delete(b"b".to_vec());
    view.put(b"bb".to_vec(), b"x".to_vec());
    view.put(b"z".to_vec(), b"x".to_vec());
    assert_eq!(keys(view.scan(b"a", Some(b"d"), 10).unwrap()), ["a", "bb", "c"]);
    assert_eq!(keys(view.scan(b"a", None, 3).unwrap()), ["a", "bb", "c"]);
    assert_eq!(keys(view.scan(b"c", None, 10).unwrap()), ["c", "d", "z"]);
}

#[test]
fn a_limited_scan_does_not_skip_stored_keys_that_sort_before_pending_ones() {
    let mut view = StateView::new(Box::new(stored(&[("a", "1"), ("b", "2"), ("c", "3")])));
    view.put(b"d".to_vec(), b"x".to_vec());
    assert_eq!(keys(view.scan(b"", None, 2).unwrap()), ["a", "b"]);
}

#[test]
fn rocksdb_commits_a_batch_atomically_and_keeps_it_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut view = StateView::new(Box::new(RocksStore::open(dir.path()).unwrap()));
        view.put(b"k1".to_vec(), b"v1".to_vec());
        view.put(b"k2".to_vec(), b"v2".to_vec());
        view.commit(Some(42)).unwrap();
        view.delete(b"k1".to_vec());
        view.rollback();
    }
    let store = RocksStore::open(dir.path()).unwrap();
    assert_eq!(store.checkpoint().unwrap(), Some(42));
    assert_eq!(store.get(b"k1").unwrap(), Some(b"v1".to_vec()));
    assert_eq!(keys(store.scan(b"k", Some(b"l"), 10).unwrap()), ["k1", "k2"]);
    assert_eq!(keys(store.scan(b"k2", None, 10).unwrap()), ["k2"]);
}

#[test]
fn clearing_a_rocksdb_store_removes_every_key_and_the_checkpoint() {
    for changelog_backed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut store = match changelog_backed {
            false => RocksStore::open(dir.path()).unwrap(),
            true => RocksStore::open_changelog_backed(dir.path()).unwrap(),
        };
        let writes: WriteBatch = (0..100u8).map(|i| (vec![i, 0xff], Some(vec![i]))).collect();
        store.apply(writes, Some(7)).unwrap();
        store.clear().unwrap();
        assert_eq!(store.scan(b"", None, 1000).unwrap().len(), 0, "changelog-backed: {changelog_backed}");
        assert_eq!(store.checkpoint().unwrap(), None);
    }
}

#[test]
fn a_changelog_backed_store_keeps_one_memtable_entry_per_key_however_many_commits_update_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RocksStore::open_changelog_backed(dir.path()).unwrap();
    for commit in 0..50 {
        let writes: WriteBatch =
            (0..100).map(|k| (format!("key-{k:03}").into_bytes(), Some(format!("{commit:04}").into_bytes()))).collect();
        store.apply(writes, Some(commit)).unwrap();
    }
    assert_eq!(store.memtable_entries(), 100, "the store's options reach its column family");
    assert_eq!(store.get(b"key-042").unwrap(), Some(b"0049".to_vec()));
    assert_eq!(store.reader().scan(b"key-", None, 1000).unwrap().len(), 100);
}

#[test]
fn a_bulk_load_lands_like_writes_and_overrides_older_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RocksStore::open_changelog_backed(dir.path()).unwrap();
    store
        .apply(vec![(b"a".to_vec(), Some(b"old".to_vec())), (b"z".to_vec(), Some(b"gone".to_vec()))], Some(3))
        .unwrap();
    let sorted: Vec<(&[u8], Option<&[u8]>)> =
        vec![(b"a", Some(b"new".as_slice())), (b"m", Some(b"1".as_slice())), (b"z", None)];
    store.bulk_load(&sorted, 9).unwrap();
    assert_eq!(keys(store.scan(b"", None, 10).unwrap()), ["a", "m"]);
    assert_eq!(store.get(b"a").unwrap(), Some(b"new".to_vec()));
    assert_eq!(store.checkpoint().unwrap(), Some(9));
}

#[test]
fn a_changelog_backed_store_reads_its_commits_before_and_after_its_writer_applied_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = RocksStore::open_changelog_backed(&path).unwrap();
    let reader = store.reader();
    let mut view = StateView::new(Box::new(store));
    view.put(b"a".to_vec(), b"1".to_vec());
    view.commit(Some(1)).unwrap();
    // Many commits in a row: the writer may lag, reads may not.
    for i in 0..200u32 {
        view.put(format!("k{i:03}").into_bytes(), i.to_string().into_bytes());
        view.delete(b"a".to_vec());
        view.commit(Some(2 + i64::from(i))).unwrap();
    }
    view.put(b"a".to_vec(), b"2".to_vec());
    view.commit(Some(300)).unwrap();
    assert_eq!(reader.get(b"a").unwrap(), Some(b"2".to_vec()), "a reader on another thread sees the last commit");
    assert_eq!(reader.get(b"k150").unwrap(), Some(b"150".to_vec()));
    assert_eq!(reader.scan(b"k", Some(b"l"), 1000).unwrap().len(), 200, "scans wait for the writer");
    drop(view);
    let store = RocksStore::open_changelog_backed(&path).unwrap();
    assert_eq!(store.checkpoint().unwrap(), Some(300), "the writer finished before the store closed");
    assert_eq!(store.get(b"a").unwrap(), Some(b"2".to_vec()));
    assert_eq!(store.scan(b"k", Some(b"l"), 1000).unwrap().len(), 200);
}

#[test]
fn queued_commits_leave_each_keys_newest_value_and_the_newest_checkpoint_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let mut store = RocksStore::open_changelog_backed(&path).unwrap();
    let put = |k: &str, v: &str| (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()));
    store.apply(vec![put("gone", "1"), put("kept", "1")], Some(1)).unwrap();
    store.apply(vec![(b"gone".to_vec(), None), put("kept", "2")], Some(2)).unwrap();
    store.apply(vec![put("new", "3")], None).unwrap();
    // Before the writer has written them, reads see the queued commits.
    assert_eq!(store.get(b"gone").unwrap(), None);
    assert_eq!(store.get(b"kept").unwrap(), Some(b"2".to_vec()));
    drop(store);
    let store = RocksStore::open_changelog_backed(&path).unwrap();
    assert_eq!(store.checkpoint().unwrap(), Some(2));
    assert_eq!(keys(store.scan(b"", None, 10).unwrap()), ["kept", "new"]);
    assert_eq!(store.get(b"kept").unwrap(), Some(b"2".to_vec()));
}

#[test]
fn a_purge_deletes_the_stores_weir_made_and_nothing_it_never_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    for p in 0..2 {
        let mut store = RocksStore::open(&app.join("state").join(format!("partition-{p}"))).unwrap();
        store.apply(vec![(b"k".to_vec(), Some(b"v".to_vec()))], None).unwrap();
    }
    // What weir never wrote: a file beside the stores, a folder named like a store without the
    // mark, and a link to a folder outside.
    std::fs::write(app.join("notes.txt"), b"mine").unwrap();
    std::fs::create_dir_all(app.join("state").join("partition-9")).unwrap();
    std::fs::write(app.join("state").join("partition-9").join("data"), b"mine").unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join(MARK), b"").unwrap();
    std::os::unix::fs::symlink(&outside, app.join("linked")).unwrap();
    let purged = purge(&app).unwrap();
    assert_eq!(purged.len(), 2, "{purged:?}");
    assert!(!app.join("state").join("partition-0").exists());
    assert!(app.join("notes.txt").exists() && app.join("state").join("partition-9").join("data").exists());
    assert!(outside.join(MARK).exists(), "a link is not followed");
    assert_eq!(purge(&dir.path().join("never-made")).unwrap(), Vec::<std::path::PathBuf>::new());
}
