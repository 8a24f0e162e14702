//! `weir test`: runs a module over records from a JSONL file, no broker, outputs as JSONL.
//!
//! Records are grouped into batches of consecutive records from one partition, as a Kafka
//! consumer would deliver them. Each partition gets its own instance and state store; each batch
//! commits its state only when it succeeded, so a failing run leaves the state directory as it
//! was after the last good batch.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::engine::{Engine, Fired, Instance, Module};
use crate::error::ProcessError;
use crate::jsonl::{parse_line, InputRecord, OutputLine};
use crate::record::{Batch, Outputs};
use crate::state::{MemoryStore, RocksStore, StateStore};
use crate::tables::{TableSpec, TableView, Tables};

/// What `weir test` was asked to do.
#[derive(Debug, Clone)]
pub struct TestRun {
    pub module: PathBuf,
    /// A JSONL file, or `-` for standard input.
    pub input: PathBuf,
    pub config: Vec<(String, String)>,
    /// Where state persists between runs; in memory when `None`.
    pub state_dir: Option<PathBuf>,
    pub batch_size: usize,
    /// Tables by name, each loaded from a JSONL file (as input lines) before any record is
    /// processed; every partition sees every key, as in a global table.
    pub tables: Vec<(String, PathBuf)>,
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub records: usize,
    pub batches: usize,
    pub outputs: usize,
}

/// Reads every input line first, so a malformed line stops the run before anything is
/// processed, and names its line number.
pub fn read_input(path: &Path) -> anyhow::Result<Vec<InputRecord>> {
    let shown = path.display();
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open input {shown}"))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut records = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{shown}:{}: cannot read", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line) {
            Ok(record) => records.push(record),
            Err(e) => bail!("{shown}:{}: malformed record: {e}", n + 1),
        }
    }
    Ok(records)
}

/// Runs `run` with `engine`, writing one JSON line per output to `out`.
pub fn run(engine: &Engine, run: &TestRun, out: &mut dyn Write) -> anyhow::Result<Summary> {
    if run.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let records = read_input(&run.input)?;
    let tables = load_tables(&run.tables)?;
    let module = engine.load(&run.module)?;
    let mut instances: HashMap<i32, Instance> = HashMap::new();
    let mut next_offset: HashMap<(String, i32), i64> = HashMap::new();
    let mut batch = Batch::new("input", "input", 0);
    let mut summary = Summary::default();

    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let same = rest
            .iter()
            .take(run.batch_size)
            .take_while(|r| r.topic == first.topic && r.partition == first.partition)
            .count();
        let (chunk, tail) = rest.split_at(same);
        rest = tail;

        batch.reset(&first.topic, &first.topic, first.partition);
        for r in chunk {
            let next = next_offset.entry((r.topic.clone(), r.partition)).or_insert(0);
            let offset = r.offset.unwrap_or(*next);
            *next = offset + 1;
            let headers = r.headers.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
            batch.push(offset, r.timestamp, r.key.as_deref(), r.value.as_deref(), headers);
        }

        let instance = match instances.entry(first.partition) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let mut instance = open_instance(&module, run, &first.topic, first.partition)?;
                instance.set_tables(TableView { tables: tables.clone(), partition: first.partition });
                e.insert(instance)
            }
        };
        // A processor with timers: the batch moves the partition's event time, and the
        // event-time timers now due fire after it (wall-clock timers do not fire in a test run).
        let (outputs, fired) = match process(instance, &batch) {
            Ok(done) => done,
            Err(e) => {
                out.flush()?;
                return Err(e.into());
            }
        };
        let timer_outputs = fired.iter().flat_map(|f| f.outputs.iter());
        for o in outputs.iter().chain(timer_outputs) {
            serde_json::to_writer(&mut *out, &OutputLine::from_output(&o))?;
            out.write_all(b"\n")?;
        }
        instance.commit().context("cannot commit state")?;
        summary.records += chunk.len();
        summary.batches += 1;
        summary.outputs += outputs.len() + fired.iter().map(|f| f.outputs.len()).sum::<usize>();
    }
    out.flush()?;
    Ok(summary)
}

/// Processes a batch, then fires the event-time timers it made due.
fn process(instance: &mut Instance, batch: &Batch) -> Result<(Outputs, Vec<Fired>), ProcessError> {
    let outputs = instance.process(batch)?;
    Ok((outputs, instance.advance(batch)?))
}

/// The `--table` files, read in full: later lines of a key replace earlier ones, and a `null`
/// value deletes.
fn load_tables(files: &[(String, PathBuf)]) -> anyhow::Result<Tables> {
    let specs: Vec<TableSpec> =
        files.iter().map(|(name, _)| TableSpec { name: name.clone(), topic: name.clone(), global: true }).collect();
    let tables = Tables::new(&specs);
    for (name, path) in files {
        for r in read_input(path).with_context(|| format!("table `{name}`"))? {
            tables.apply(name, r.partition, r.key.as_deref(), r.value.as_deref());
        }
    }
    Ok(tables)
}

fn open_instance(module: &Module, run: &TestRun, topic: &str, partition: i32) -> anyhow::Result<Instance> {
    let store: Box<dyn StateStore> = match &run.state_dir {
        Some(dir) => Box::new(RocksStore::open(&store_path(dir, module.name(), partition))?),
        None => Box::new(MemoryStore::new()),
    };
    Ok(module.instantiate(topic, partition, store, &run.config)?)
}

/// `<state-dir>/<processor>/partition-<n>`: one store per processor and input partition.
pub fn store_path(state_dir: &Path, processor: &str, partition: i32) -> PathBuf {
    state_dir.join(processor).join(format!("partition-{partition}"))
}
