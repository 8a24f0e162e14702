//! Per-record cost of running a processor in wasm, beside the same function run natively in
//! this process, so the ratio holds on a noisy machine.
//!
//! - `uppercase` on 100-byte values at batch sizes 1, 100 and 1000: wasm (host encoding, the
//!   call, output checks, reading the outputs) against the native function driven by the same
//!   SDK glue. The difference is weir's Wasm overhead per record.
//! - `word-count`, one word per record, so one state `get` and one `put` per record: wasm with
//!   the in-memory store, with RocksDB (write-ahead log, applied on the caller's thread), and
//!   with RocksDB as a pipeline keeps it (changelog-backed: no write-ahead log, applied on the
//!   store's thread), against native with the SDK's in-process state stub. The per-call figure
//!   is (wasm - native - uppercase overhead at the same batch size) / 2. State is committed
//!   every 20,000 records, about a pipeline's 100 ms commit interval, and timed apart.
//!
//! - `uppercase` in Rust, Python and JavaScript: the same processor through the same host path,
//!   ns per record at batch sizes 100 and 1000, with each language's ratio to Rust.
//!
//! Run: `cargo bench -p weir-tests --bench engine` (figures are best of several rounds).

use std::hint::black_box;
use std::time::{Duration, Instant};

use weir_runtime::engine::{Engine, EngineOptions, Instance, Module};
use weir_runtime::record::Batch;
use weir_runtime::state::{MemoryStore, RocksStore, StateStore};
use weir_sdk::testing::{reset_state, TestBatch};
use weir_tests::{guest, polyglot_cache, polyglot_guest};

const ROUNDS: usize = 7;

/// Records between state commits: about what a pipeline processes in its 100 ms commit
/// interval (a word count runs at 150,000 to 200,000 records/s).
const COMMIT_EVERY: usize = 20_000;

struct Records {
    keys: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
}

fn records(n: usize, value: impl Fn(usize) -> Vec<u8>) -> Records {
    Records { keys: (0..n).map(|i| format!("key-{i:06}").into_bytes()).collect(), values: (0..n).map(value).collect() }
}

/// Best wall time per record over `ROUNDS` rounds of `per_round` records.
fn best_ns(per_round: usize, mut round: impl FnMut()) -> f64 {
    round();
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            round();
            start.elapsed().as_nanos() as f64 / per_round as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Per record: the best time to process (host encoding, the call, reading the outputs), and
/// the best time to commit the state written (zero for stateless processors), committed every
/// [`COMMIT_EVERY`] records as a pipeline does once per commit interval.
fn wasm_ns(instance: &mut Instance, input: &Records, batch_size: usize, total: usize) -> (f64, f64) {
    let mut batch = Batch::new("bench", "bench", 0);
    let calls = total / batch_size;
    let (mut process, mut commit) = (f64::INFINITY, f64::INFINITY);
    for round in 0..=ROUNDS {
        let (mut p, mut c) = (Duration::ZERO, Duration::ZERO);
        for call in 0..calls {
            let start = Instant::now();
            batch.reset("bench", "bench", 0);
            for i in 0..batch_size {
                let r = (call * batch_size + i) % input.keys.len();
                batch.push(r as i64, Some(0), Some(&input.keys[r]), Some(&input.values[r]), []);
            }
            let outputs = match instance.process(&batch) {
                Ok(o) => o,
                Err(e) => panic!("benchmark batch failed: {e}"),
            };
            for o in outputs.iter() {
                black_box((o.key(), o.value()));
            }
            let processed = Instant::now();
            if ((call + 1) * batch_size).is_multiple_of(COMMIT_EVERY) || call + 1 == calls {
                if let Err(e) = instance.commit() {
                    panic!("state commit failed: {e}");
                }
            }
            p += processed - start;
            c += processed.elapsed();
        }
        if round > 0 {
            process = process.min(p.as_nanos() as f64 / total as f64);
            commit = commit.min(c.as_nanos() as f64 / total as f64);
        }
    }
    (process, commit)
}

fn native_ns<R: weir_sdk::IntoOutputs>(
    input: &Records,
    batch_size: usize,
    total: usize,
    f: impl Fn(&weir_sdk::Record<'_>) -> R + Copy,
) -> f64 {
    let batches: Vec<TestBatch> = input
        .keys
        .chunks(batch_size)
        .zip(input.values.chunks(batch_size))
        .map(|(ks, vs)| {
            let mut b = TestBatch::new("bench");
            for (k, v) in ks.iter().zip(vs) {
                b.push(Some(k), Some(v), &[]);
            }
            b
        })
        .collect();
    let calls = total / batch_size;
    best_ns(calls * batch_size, || {
        for call in 0..calls {
            let b = &batches[call % batches.len()];
            black_box(b.run_encoded(f).unwrap_or_else(|e| panic!("native run failed: {e}")));
        }
    })
}

fn instance(module: &Module, store: Box<dyn StateStore>) -> Instance {
    module.instantiate("bench", 0, store, &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn main() {
    let engine = Engine::new(EngineOptions { cache_dir: None, ..EngineOptions::default() })
        .unwrap_or_else(|e| panic!("engine: {e}"));
    let load = |name: &str| engine.load(&guest(name)).unwrap_or_else(|e| panic!("{e}"));
    let uppercase = load("uppercase");
    let word_count = load("word-count");

    // `cargo bench --bench engine -- word` runs only the sections whose name contains `word`.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let wanted = |section: &str| filter.as_deref().is_none_or(|f| section.contains(f) || f.contains(section));

    println!("weir engine benchmark: ns per record, best of {ROUNDS} rounds (lower is better)");
    let mut overhead = std::collections::HashMap::new();
    if wanted("uppercase") || wanted("word-count") {
        println!();
        println!("uppercase, 100-byte values");
        println!("{:>6} {:>10} {:>10} {:>10}", "batch", "wasm", "native", "overhead");
        let input = records(1000, |i| {
            let mut v = format!("record {i} ").into_bytes();
            v.resize(100, b'x');
            v
        });
        for batch_size in [1, 100, 1000] {
            let total = if batch_size == 1 { 100_000 } else { 400_000 };
            let mut inst = instance(&uppercase, Box::new(MemoryStore::new()));
            let (wasm, _) = wasm_ns(&mut inst, &input, batch_size, total);
            let native = native_ns(&input, batch_size, total, uppercase::uppercase);
            overhead.insert(batch_size, wasm - native);
            println!("{batch_size:>6} {wasm:>10.0} {native:>10.0} {:>10.0}", wasm - native);
        }
    }
    if wanted("languages") {
        languages(&uppercase, &overhead);
    }
    if !wanted("word-count") {
        return;
    }

    println!();
    println!("word-count, one word per record (a state get and put each), 1000 distinct words;");
    println!("commit: the state written since the last commit, handed to the store every {COMMIT_EVERY} records (a");
    println!("pipeline's commit interval), per record; `changelog` returns once its thread has the writes");
    println!(
        "{:>6} {:>10} {:>10} {:>10} {:>14} {:>10}",
        "batch", "store", "wasm", "native", "per state call", "commit"
    );
    let words = records(1000, |i| format!("word{i}").into_bytes());
    for batch_size in [100, 1000] {
        let total = 200_000;
        reset_state();
        let native = native_ns(&words, batch_size, total, word_count::word_count);
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let rocks = RocksStore::open(&dir.path().join("wal")).unwrap_or_else(|e| panic!("{e}"));
        // As a pipeline keeps state: no write-ahead log, commits applied by the store's thread.
        let backed = RocksStore::open_changelog_backed(&dir.path().join("backed")).unwrap_or_else(|e| panic!("{e}"));
        let stores: [(&str, Box<dyn StateStore>); 3] =
            [("memory", Box::new(MemoryStore::new())), ("rocksdb", Box::new(rocks)), ("changelog", Box::new(backed))];
        for (name, store) in stores {
            if !wanted(&format!("word-count/{name}")) {
                continue;
            }
            let mut inst = instance(&word_count, store);
            let (wasm, commit) = wasm_ns(&mut inst, &words, batch_size, total);
            let per_call = (wasm - native - overhead[&batch_size]) / 2.0;
            println!("{batch_size:>6} {name:>10} {wasm:>10.0} {native:>10.0} {per_call:>14.0} {commit:>10.0}");
        }
    }
}

/// `uppercase` written in Rust, Python, JavaScript, TypeScript, Go and C, through the same host path.
fn languages(rust: &Module, rust_overhead: &std::collections::HashMap<usize, f64>) {
    // Python and JS components take seconds to compile: use the cache the tests filled.
    let cached = Engine::new(EngineOptions { cache_dir: Some(polyglot_cache()), ..EngineOptions::default() })
        .unwrap_or_else(|e| panic!("engine: {e}"));
    let load = |language: &str| cached.load(&polyglot_guest(language, "uppercase")).unwrap_or_else(|e| panic!("{e}"));
    let (python, js, ts, go, c) = (load("python"), load("js"), load("ts"), load("go"), load("c"));
    let input = records(1000, |i| {
        let mut v = format!("record {i} ").into_bytes();
        v.resize(100, b'x');
        v
    });
    println!();
    println!("uppercase in each language, 100-byte values: wasm ns per record (and its ratio to Rust)");
    println!(
        "{:>6} {:>10} {:>18} {:>18} {:>18} {:>14} {:>14} {:>16}",
        "batch", "rust", "python", "javascript", "typescript", "go", "c", "rust overhead"
    );
    for batch_size in [100, 1000] {
        let run = |module: &Module, total: usize| {
            wasm_ns(&mut instance(module, Box::new(MemoryStore::new())), &input, batch_size, total).0
        };
        let rust_ns = run(rust, 200_000);
        let python_ns = run(&python, 20_000);
        let js_ns = run(&js, 20_000);
        let ts_ns = run(&ts, 20_000);
        let go_ns = run(&go, 200_000);
        let c_ns = run(&c, 200_000);
        let ratio = |ns: f64| format!("{ns:.0} ({:.1}x)", ns / rust_ns);
        let overhead = rust_overhead.get(&batch_size).map_or_else(|| "-".to_owned(), |o| format!("{o:.0}"));
        println!(
            "{batch_size:>6} {rust_ns:>10.0} {:>18} {:>18} {:>18} {:>14} {:>14} {overhead:>16}",
            ratio(python_ns),
            ratio(js_ns),
            ratio(ts_ns),
            ratio(go_ns),
            ratio(c_ns)
        );
    }
}
