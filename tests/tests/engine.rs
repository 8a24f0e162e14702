//! The engine through its library API: recovery after traps, the compile cache, rollback.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]
use std::time::Duration;

use weir_runtime::engine::{CacheOutcome, Engine, EngineOptions};
use weir_runtime::error::ProcessError;
use weir_runtime::record::Batch;
use weir_runtime::state::MemoryStore;
use weir_tests::guest;

fn engine(cache: Option<&std::path::Path>) -> Engine {
    let options = EngineOptions {
        cache_dir: cache.map(|p| p.to_path_buf()),
        deadline: Duration::from_millis(300),
        ..EngineOptions::default()
    };
    Engine::new(options).unwrap()
}

fn batch(values: &[&str]) -> Batch {
    let mut batch = Batch::new("in", "in", 0);
    for (i, v) in values.iter().enumerate() {
        batch.push(i as i64, Some(1_700_000_000_000), Some(format!("k{i}").as_bytes()), Some(v.as_bytes()), []);
    }
    batch
}

#[test]
fn after_a_trap_the_same_instance_processes_the_next_batch() {
    let module = engine(None).load(&guest("misbehave")).unwrap();
    let mut instance = module.instantiate("in", 0, Box::new(MemoryStore::new()), &[]).unwrap();
    for poison in ["panic", "loop"] {
        let err = instance.process(&batch(&["ok", poison])).unwrap_err();
        assert!(matches!(err, ProcessError::Trap { .. } | ProcessError::Deadline { .. }), "{err}");
        let outputs = instance.process(&batch(&["ok", "fine"])).unwrap();
        let values: Vec<_> = outputs.iter().map(|o| o.value().unwrap().to_vec()).collect();
        assert_eq!(values, [b"ok".to_vec(), b"fine".to_vec()]);
    }
}

#[test]
fn outputs_inherit_the_timestamp_of_the_record_they_answer() {
    let module = engine(None).load(&guest("uppercase")).unwrap();
    let mut instance = module.instantiate("in", 0, Box::new(MemoryStore::new()), &[]).unwrap();
    let outputs = instance.process(&batch(&["a", "b"])).unwrap();
    let answered: Vec<_> = outputs.iter().map(|o| (o.source(), o.timestamp())).collect();
    assert_eq!(answered, [(0, None), (1, None)], "no timestamp set by the guest: the input's applies");
}

#[test]
fn a_second_load_of_the_same_component_comes_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(guest("word-count")).unwrap();
    let (_, first) = engine(Some(cache.path())).compile("word-count", &bytes).unwrap();
    let (_, second) = engine(Some(cache.path())).compile("word-count", &bytes).unwrap();
    assert_eq!((first, second), (CacheOutcome::Compiled, CacheOutcome::Hit));
}

#[test]
fn a_corrupt_cache_entry_is_recompiled_not_trusted() {
    let cache = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(guest("uppercase")).unwrap();
    engine(Some(cache.path())).compile("uppercase", &bytes).unwrap();
    for entry in std::fs::read_dir(cache.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let (_, outcome) = engine(Some(cache.path())).compile("uppercase", &bytes).unwrap();
    assert_eq!(outcome, CacheOutcome::Compiled);
}

#[test]
fn state_written_by_a_failed_batch_is_rolled_back_and_committed_state_stays() {
    let module = engine(None).load(&guest("word-count")).unwrap();
    let mut instance = module.instantiate("in", 0, Box::new(MemoryStore::new()), &[]).unwrap();
    instance.process(&batch(&["x"])).unwrap();
    instance.commit().unwrap();
    let mut bad = batch(&["x"]);
    bad.push(1, None, None, Some(&[0xff]), []);
    assert!(matches!(instance.process(&bad), Err(ProcessError::Rejected { .. })));
    let outputs = instance.process(&batch(&["x"])).unwrap();
    assert_eq!(outputs.iter().next().and_then(|o| o.value()), Some(&b"2"[..]), "x was counted once before, not twice");
}

/// One record for key `a` at `timestamp` (ms).
fn click(timestamp: i64) -> Batch {
    let mut batch = Batch::new("in", "in", 0);
    batch.push(0, Some(timestamp), Some(b"a"), Some(b"click"), []);
    batch
}

#[test]
fn a_rolled_back_batch_takes_the_event_time_it_moved_with_it() {
    let module = engine(None).load(&guest("windowed-count")).unwrap();
    let mut instance = module.instantiate("in", 0, Box::new(MemoryStore::new()), &[]).unwrap();
    // Event time 20 s, then forgotten (as after a Kafka error): a record at 1 s is on time
    // again, and its window [0, 10 s) closes with it when event time reaches 40 s.
    instance.process(&click(20_000)).unwrap();
    assert!(instance.advance(&click(20_000)).unwrap().is_empty());
    instance.rollback();
    for t in [1_000, 40_000] {
        instance.process(&click(t)).unwrap();
        let fired = instance.advance(&click(t)).unwrap();
        let values: Vec<_> = fired.iter().flat_map(|f| f.outputs.iter().map(|o| o.value().unwrap().to_vec())).collect();
        if t == 40_000 {
            assert_eq!(values, [br#"{"start":0,"end":10000,"count":1}"#.to_vec()]);
        }
    }
}

#[test]
fn a_timer_set_for_a_time_that_already_fired_through_still_fires() {
    let module = engine(None).load(&guest("reminders")).unwrap();
    let config = [("delay_ms".to_owned(), "0".to_owned())];
    let mut instance = module.instantiate("in", 0, Box::new(MemoryStore::new()), &config).unwrap();
    let far = i64::MAX / 2;
    let mut fire = |value: &str| {
        instance.process(&batch(&[value])).unwrap();
        let fired = instance.fire_wall_clock(far).unwrap();
        fired.iter().flat_map(|f| f.outputs.iter().map(|o| o.value().unwrap().to_vec())).collect::<Vec<_>>()
    };
    // The first firing runs through `far`; the second reminder is set for now, long before it.
    assert_eq!(fire("first"), [b"first".to_vec()]);
    assert_eq!(fire("second"), [b"second".to_vec()]);
}
