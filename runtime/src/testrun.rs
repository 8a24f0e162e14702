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

use crate::config::PipelineConfig;
use crate::engine::{Engine, Instance, Module};
use crate::jsonl::{parse_line, InputRecord, OutputLine};
use crate::record::{Batch, OutputRef};
use crate::state::{MemoryStore, RocksStore, StateStore};
use crate::tables::{TableSpec, TableView, Tables};

/// What `weir test` was asked to do.
#[derive(Debug, Clone)]
pub struct TestRun {
    /// A module, or a pipeline file's stages.
    pub target: Target,
    /// A JSONL file, or `-` for standard input.
    pub input: PathBuf,
    /// Where state persists between runs; in memory when `None`.
    pub state_dir: Option<PathBuf>,
    pub batch_size: usize,
    /// Tables by name, each loaded from a JSONL file (as input lines) before any record is
    /// processed; every partition sees every key, as in a global table.
    pub tables: Vec<(String, PathBuf)>,
}

/// What runs over the input.
#[derive(Debug, Clone)]
pub enum Target {
    /// One module, with the configuration for its `init`; outputs name their output (`topic`
    /// is absent for the default one).
    Module { path: PathBuf, config: Vec<(String, String)> },
    /// A pipeline file's stages, in flow order; outputs name the topic they go to.
    Pipeline(Box<PipelineConfig>),
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub records: usize,
    pub batches: usize,
    pub outputs: usize,
}

impl Summary {
    fn add(&mut self, other: Summary) {
        self.records += other.records;
        self.batches += other.batches;
        self.outputs += other.outputs;
    }
}

/// Where an output came from: the input lines of the batch that made it (one line with
/// `--batch-size 1`), and their partition. For a pipeline's later stages, the input lines of the
/// first stage's batch that led to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub first_line: usize,
    pub last_line: usize,
    pub partition: i32,
}

impl Origin {
    /// The origin of a batch of records from `origins`.
    fn of(origins: &[Origin]) -> Origin {
        let first = origins.iter().map(|o| o.first_line).min().unwrap_or(0);
        let last = origins.iter().map(|o| o.last_line).max().unwrap_or(0);
        Origin { first_line: first, last_line: last, partition: origins.first().map_or(0, |o| o.partition) }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.first_line == self.last_line {
            true => write!(f, "input line {} (partition {})", self.first_line, self.partition),
            false => write!(f, "input lines {}-{} (partition {})", self.first_line, self.last_line, self.partition),
        }
    }
}

/// Reads every input line first, so a malformed line stops the run before anything is
/// processed, and names its line number.
pub fn read_input(path: &Path) -> anyhow::Result<Vec<InputRecord>> {
    Ok(read_numbered(path)?.into_iter().map(|(_, r)| r).collect())
}

/// [`read_input`], each record with its line number.
fn read_numbered(path: &Path) -> anyhow::Result<Vec<(usize, InputRecord)>> {
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
            Ok(record) => records.push((n + 1, record)),
            Err(e) => bail!("{shown}:{}: malformed record: {e}", n + 1),
        }
    }
    Ok(records)
}

/// Runs `run` with `engine`, writing one JSON line per output to `out`.
pub fn run(engine: &Engine, run: &TestRun, out: &mut dyn Write) -> anyhow::Result<Summary> {
    let result = run_each(engine, run, &mut |line, _| {
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
        Ok(())
    });
    out.flush()?;
    result
}

/// Runs `run` with `engine`: every output line, with where it came from.
pub fn run_collect(engine: &Engine, run: &TestRun) -> anyhow::Result<(Summary, Vec<(OutputLine, Origin)>)> {
    let mut lines = Vec::new();
    let summary = run_each(engine, run, &mut |line, origin| {
        lines.push((line, origin));
        Ok(())
    })?;
    Ok((summary, lines))
}

/// What is done with each output line, and where it came from.
type Emit<'a> = dyn FnMut(OutputLine, Origin) -> anyhow::Result<()> + 'a;

fn run_each(engine: &Engine, run: &TestRun, emit: &mut Emit<'_>) -> anyhow::Result<Summary> {
    if run.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let numbered = read_numbered(&run.input)?;
    let origins: Vec<Origin> = numbered
        .iter()
        .map(|(line, r)| Origin { first_line: *line, last_line: *line, partition: r.partition })
        .collect();
    let records: Vec<InputRecord> = numbered.into_iter().map(|(_, r)| r).collect();
    let tables = load_tables(&run.tables)?;
    match &run.target {
        Target::Module { path, config } => {
            let module = engine.load(path)?;
            let one = One { module: &module, store: module.name(), config, run, tables: &tables };
            one.run(&records, &origins, &mut |o, origin| emit(OutputLine::from_output(&o), origin))
        }
        Target::Pipeline(pipeline) => run_stages(engine, pipeline, run, &tables, (records, origins), emit),
    }
}

/// Runs a pipeline's stages in flow order, each over all of its input before the next: what a
/// stage routes to another goes to that stage's input partitioned as its repartition topic
/// would be (murmur2 of the key over its partitions: the stage's `partitions`, else as many as
/// the input lines name; a record without a key goes to partition 0), in the order produced.
/// Outputs to topics are written with their topic.
fn run_stages(
    engine: &Engine,
    pipeline: &PipelineConfig,
    run: &TestRun,
    tables: &Tables,
    (records, origins): (Vec<InputRecord>, Vec<Origin>),
    emit: &mut Emit<'_>,
) -> anyhow::Result<Summary> {
    let widest = records.iter().map(|r| r.partition + 1).max().unwrap_or(1);
    let stages = pipeline.stages();
    let mut fed: HashMap<String, Vec<(InputRecord, Origin)>> = HashMap::new();
    let mut summary = Summary::default();
    for stage in &stages {
        let module_config = stage.config.single_module().map_err(anyhow::Error::msg)?;
        let module = engine.load(&module_config.path)?;
        let config: Vec<(String, String)> = module_config.config.clone().into_iter().collect();
        let (input, input_origins): (Vec<InputRecord>, Vec<Origin>) = match &stage.repartition {
            Some((topic, _)) => {
                let mut input = fed.remove(topic).unwrap_or_default();
                // Stable: each partition's records keep the order they were produced in.
                input.sort_by_key(|(r, _)| r.partition);
                input.into_iter().unzip()
            }
            None => (records.clone(), origins.clone()),
        };
        let partitions_of = |topic: &str| {
            stages
                .iter()
                .find(|s| s.repartition.as_ref().is_some_and(|(t, _)| t == topic))
                .map(|s| s.repartition.as_ref().and_then(|(_, n)| *n).unwrap_or(widest))
        };
        let one = One { module: &module, store: &stage.name, config: &config, run, tables };
        let done = one.run(&input, &input_origins, &mut |o, origin| {
            let name = o.topic().unwrap_or("default");
            let Some(topic) = stage.config.outputs.get(name) else {
                bail!(
                    "stage `{}` routed a record to output `{name}`, which the pipeline does not configure",
                    stage.name
                );
            };
            match partitions_of(topic) {
                Some(partitions) => {
                    let record = InputRecord {
                        topic: topic.clone(),
                        partition: o.key().map_or(0, |k| crate::query::partition_for(k, partitions)),
                        partition_given: true,
                        offset: None,
                        timestamp: o.timestamp(),
                        key: o.key().map(<[u8]>::to_vec),
                        value: o.value().map(<[u8]>::to_vec),
                        headers: o.headers().map(|(k, v)| (k.to_vec(), v.to_vec())).collect(),
                    };
                    fed.entry(topic.clone()).or_default().push((record, origin));
                    Ok(())
                }
                None => emit(OutputLine { topic: Some(topic.clone()), ..OutputLine::from_output(&o) }, origin),
            }
        })?;
        summary.add(done);
    }
    Ok(summary)
}

/// One module over records, as a consumer would deliver them.
struct One<'a> {
    module: &'a Module,
    /// Names its stores under `--state-dir`.
    store: &'a str,
    config: &'a [(String, String)],
    run: &'a TestRun,
    tables: &'a Tables,
}

impl One<'_> {
    /// Runs `records` (each from its origin in `origins`) through the module, batch by batch.
    fn run(
        &self,
        records: &[InputRecord],
        origins: &[Origin],
        emit: &mut dyn FnMut(OutputRef<'_>, Origin) -> anyhow::Result<()>,
    ) -> anyhow::Result<Summary> {
        let mut instances: HashMap<i32, Instance> = HashMap::new();
        let mut next_offset: HashMap<(String, i32), i64> = HashMap::new();
        let mut batch = Batch::new("input", "input", 0);
        let mut summary = Summary::default();
        let mut rest = records;
        let mut batch_size = self.run.batch_size;
        while let Some(first) = rest.first() {
            let same = rest
                .iter()
                .take(batch_size)
                .take_while(|r| r.topic == first.topic && r.partition == first.partition)
                .count();
            let (chunk, tail) = rest.split_at(same);
            let done = records.len() - rest.len();
            let origin = Origin::of(origins.get(done..done + same).unwrap_or_default());

            batch.reset(&first.topic, &first.topic, first.partition);
            let next = next_offset.entry((first.topic.clone(), first.partition)).or_insert(0);
            let first_offset = *next;
            for r in chunk {
                let offset = r.offset.unwrap_or(*next);
                *next = offset + 1;
                let headers = r.headers.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
                batch.push(offset, r.timestamp, r.key.as_deref(), r.value.as_deref(), headers);
            }

            let instance = match instances.entry(first.partition) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let mut instance = self.open_instance(&first.topic, first.partition)?;
                    instance.set_tables(TableView { tables: self.tables.clone(), partition: first.partition });
                    e.insert(instance)
                }
            };
            let outputs = match instance.process(&batch) {
                Ok(outputs) => outputs,
                // Too much together for the module's limits, though each record fits: as the
                // pipeline does, go on in smaller batches (the failed one left no state).
                Err(e) => match e.smaller_batch(chunk.len()) {
                    Some(most) => {
                        batch_size = most;
                        tracing::warn!(
                            "{e}; none of its {} records fails alone: going on in batches of at most {most}",
                            chunk.len()
                        );
                        next_offset.insert((first.topic.clone(), first.partition), first_offset);
                        continue;
                    }
                    None => return Err(e.into()),
                },
            };
            // A processor with timers: the batch moves the partition's event time, and the
            // event-time timers now due fire after it (wall-clock timers do not fire in a test run).
            let fired = instance.advance(&batch)?;
            rest = tail;
            let timer_outputs = fired.iter().flat_map(|f| f.outputs.iter());
            for o in outputs.iter().chain(timer_outputs) {
                emit(o, origin)?;
            }
            instance.commit().context("cannot commit state")?;
            summary.records += chunk.len();
            summary.batches += 1;
            summary.outputs += outputs.len() + fired.iter().map(|f| f.outputs.len()).sum::<usize>();
        }
        Ok(summary)
    }

    fn open_instance(&self, topic: &str, partition: i32) -> anyhow::Result<Instance> {
        let store: Box<dyn StateStore> = match &self.run.state_dir {
            Some(dir) => Box::new(RocksStore::open(&store_path(dir, self.store, partition))?),
            None => Box::new(MemoryStore::new()),
        };
        Ok(self.module.instantiate(topic, partition, store, self.config)?)
    }
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

/// `<state-dir>/<processor>/partition-<n>`: one store per processor and input partition.
pub fn store_path(state_dir: &Path, processor: &str, partition: i32) -> PathBuf {
    state_dir.join(processor).join(format!("partition-{partition}"))
}
