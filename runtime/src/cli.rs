//! The `weir` command line, as a library so tests drive exactly what the binary runs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::client::{self, Client};
use crate::config::PipelineConfig;
use crate::engine::{ComponentCache, Engine, EngineOptions};
use crate::metrics::Metrics;
use crate::query::claims::ClaimKey;
use crate::query::membership::Advertise;
use crate::supervisor::{Site, Supervisor};
use crate::{config, inspect, testrun};

/// weir runs WebAssembly stream processors on Kafka records, with state and exactly-once commits.
#[derive(Parser)]
#[command(name = "weir", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a processor's folder that builds and tests at once: the processor, a sample input
    /// and the outputs it gives, a pipeline.toml and a README of the next commands.
    #[command(
        display_order = 0,
        after_help = "Works outside weir's repository: the Rust SDK is written under weir's data dir, the \
Python and JavaScript SDKs come with `weir build`.\n\
Example: weir new clicks --lang python --template stateful"
    )]
    New {
        /// The folder to make; its name names the processor (lowercase letters, digits, - and _).
        #[arg(required_unless_present = "list")]
        dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "rust")]
        lang: crate::scaffold::Lang,
        #[arg(long, value_enum, default_value = "map")]
        template: crate::scaffold::Template,
        /// Show the languages and templates.
        #[arg(long)]
        list: bool,
        /// Where the Rust SDK is written [default: <data dir>/sdk, the data dir being $WEIR_DATA_DIR or
        /// ~/.local/share/weir].
        #[arg(long, value_name = "DIR")]
        sdk_dir: Option<PathBuf>,
    },
    /// Run a processor over records from a JSONL file, no broker needed; outputs go to stdout as
    /// JSONL.
    #[command(after_help = "Input lines look like {\"key\": \"k\", \"value\": \"v\", \"partition\": 0}; \
bytes that are not UTF-8 are written {\"base64\": \"...\"}.\n\
Example: weir test --module uppercase.wasm --input records.jsonl")]
    #[command(display_order = 3)]
    Test(TestArgs),
    /// Run a pipeline: consume Kafka topics, run the module on every batch, produce its outputs and
    /// commit as the pipeline's guarantee says. Stops cleanly on SIGINT or SIGTERM.
    #[command(after_help = "The pipeline file is TOML; see runtime/src/pipeline/config.rs or the README.\n\
Example: weir run pipeline.toml --bootstrap-servers 127.0.0.1:9092 --instance-id a")]
    #[command(display_order = 4)]
    Run(RunArgs),
    /// Host many pipelines as a service: deployed, hot-swapped, paused and watched over a local
    /// HTTP API (see `weir deploy`). Runs until SIGTERM; after a crash, a restart on the same
    /// data dir brings every pipeline back as it was.
    #[command(after_help = "Example: weir serve --data-dir /var/lib/weir --listen 127.0.0.1:8787")]
    #[command(display_order = 5)]
    Serve(ServeArgs),
    /// Upload a pipeline file and the module it names to a `weir serve`, and wait until it runs.
    /// A running pipeline swaps the new module in at its next commit, keeping state and offsets.
    #[command(display_order = 6)]
    Deploy {
        pipeline: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
        /// How long to wait for the pipeline to run the new version, in seconds.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
    },
    /// List the pipelines of a `weir serve`: status, version, partitions, rates, lag.
    #[command(display_order = 7)]
    Ps {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One pipeline's whole status, as JSON.
    #[command(display_order = 8)]
    Status {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// What a pipeline's guests logged and printed, newest last, with where each was logged.
    #[command(after_help = "Lines come from the SDKs' log calls, and from what a guest prints (stdout at info, \
stderr at warn), each with its topic, partition and the offsets of the batch being processed. \
The latest 1,000 lines of each pipeline are kept; a guest logging more than 200 lines a second \
has the rest dropped and counted.\n\
Example: weir logs word-count --follow --level warn")]
    #[command(display_order = 9)]
    Logs {
        name: String,
        /// Keep printing lines as they are logged, until interrupted.
        #[arg(long, short)]
        follow: bool,
        /// Only lines at this level or worse.
        #[arg(long, value_enum, default_value = "trace")]
        level: crate::guest_log::Level,
        /// How many of the newest lines to print first.
        #[arg(long, short = 'n', default_value_t = 100)]
        lines: usize,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop consuming at the next commit (the group keeps its partitions).
    #[command(display_order = 10)]
    Pause {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Consume again; a failed pipeline starts again from its committed offsets.
    #[command(display_order = 11)]
    Resume {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Swap back to the version before the live one, keeping state and offsets.
    #[command(display_order = 12)]
    Rollback {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The dead-letter topic of a pipeline under `weir serve`.
    #[command(subcommand)]
    #[command(display_order = 14)]
    Dlq(DlqCommand),
    /// Stop a pipeline (its partitions go to the application's other instances once its session
    /// times out); `--purge` also deletes its local state. Kafka topics are never deleted.
    #[command(display_order = 13)]
    Undeploy {
        name: String,
        #[arg(long)]
        purge: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Try weir with no broker: an embedded in-memory Kafka (not durable), sample records in, a
    /// pipeline running the module, the outputs printed.
    #[command(display_order = 1)]
    Demo {
        /// The processor component (.wasm).
        #[arg(long, short)]
        module: PathBuf,
        /// Sample records, JSONL as for `weir test`.
        #[arg(long, short)]
        input: PathBuf,
        /// The delivery guarantee of the demo pipeline.
        #[arg(long, default_value = "exactly-once", value_parser = ["exactly-once", "at-least-once", "at-most-once"])]
        guarantee: String,
    },
    /// Build a processor's folder into a component: Rust (Cargo.toml), Python (app.py) or
    /// JavaScript (app.js). The component is checked and compiled into weir's cache.
    #[command(
        after_help = "Python needs componentize-py (pip), JavaScript needs Node.js and componentize-js (npm).\n\
Example: weir build guest-examples/python/word-count -o word-count.wasm"
    )]
    #[command(display_order = 2)]
    Build {
        /// The processor's folder.
        dir: PathBuf,
        /// Where to write the component [default: <folder name>.wasm in the current folder].
        #[arg(long, short)]
        out: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Create a topic, produce JSONL records to it, or read it as JSONL (committed records only).
    #[command(subcommand)]
    #[command(display_order = 15)]
    Topic(TopicCommand),
    /// Show which world and version a component targets, its size, and whether it is valid.
    #[command(display_order = 16)]
    Inspect {
        /// The component to inspect.
        module: PathBuf,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Print a shell's completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Examples: weir completions bash > /etc/bash_completion.d/weir\n\
          weir completions zsh > \"${fpath[1]}/_weir\"\n\
          weir completions fish > ~/.config/fish/completions/weir.fish")]
    #[command(display_order = 17)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print weir's man page (roff).
    #[command(display_order = 18, after_help = "Example: weir man > /usr/local/share/man/man1/weir.1")]
    Man,
}

#[derive(Subcommand)]
enum TopicCommand {
    /// Create a topic (an existing one with as many partitions is fine).
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// A topic config, as key=value (repeatable), e.g. cleanup.policy=compact.
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        config: Vec<String>,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap_servers: String,
    },
    /// Produce the records of a JSONL file (as for `weir test`), partitioned by key as weir
    /// partitions its outputs (murmur2) unless a line names its partition.
    Produce {
        topic: String,
        /// The records, one JSON object per line; `-` reads standard input.
        #[arg(long, short)]
        input: PathBuf,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap_servers: String,
    },
    /// Print a topic's committed records from its start as JSONL, until `--count` records or
    /// `--idle-ms` without one.
    Consume {
        topic: String,
        #[arg(long)]
        count: Option<usize>,
        #[arg(long, default_value_t = 5000)]
        idle_ms: u64,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap_servers: String,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Send the dead-lettered records back to the topics and partitions they came from (after
    /// a fix), each with a `weir.replayed.from` header. They come after newer records there.
    Replay {
        name: String,
        /// First dead-letter offset to send (in every partition) [default: the start].
        #[arg(long)]
        from: Option<i64>,
        /// Offset to stop before [default: the end].
        #[arg(long)]
        until: Option<i64>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Where pipelines, module versions and (by default) state live [default: $WEIR_DATA_DIR or
    /// ~/.local/share/weir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The HTTP API's address; beyond loopback only with an explicitly given token.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: std::net::SocketAddr,
    /// The admin token (else $WEIR_ADMIN_TOKEN, else one generated into DIR/admin.token).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Largest deploy request, in MiB (413 past it).
    #[arg(long, default_value_t = 64)]
    max_upload_mib: usize,
    /// Where compiled components are cached [default: ~/.cache/weir/components].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Meter fuel on every guest, so pipelines may set `fuel` (slower for all).
    #[arg(long)]
    fuel: bool,
    /// Most processor instances alive at once, over all pipelines (one per input partition).
    #[arg(long, default_value_t = 256)]
    max_instances: u32,
    /// The instance id of pipelines whose file names none [default: the host name]; instances
    /// of one application need different ones.
    #[arg(long)]
    instance_id: Option<String>,
    /// The URL other instances reach this one at, to forward queries for the partitions it
    /// owns [default: http://<listen>]; needed when listening on an unspecified address.
    #[arg(long)]
    advertised_url: Option<String>,
    /// Most forwarded queries and range scans running at once; more are answered 503.
    #[arg(long, default_value_t = crate::admin::MAX_HEAVY_QUERIES)]
    max_heavy_queries: std::num::NonZeroUsize,
    /// A folder besides DIR/state where a pipeline file's `state_dir` may point (repeatable).
    #[arg(long = "state-root", value_name = "DIR")]
    state_roots: Vec<PathBuf>,
    /// The secret this application's instances share, to sign their claims on the membership
    /// topic and the queries they forward (else $WEIR_CLAIM_SECRET, else the admin token).
    #[arg(long)]
    claim_secret_file: Option<PathBuf>,
    /// A token that reads (state, status, metrics) must carry too (else $WEIR_READ_TOKEN; the
    /// admin token also reads). Without one, reads are open to whoever reaches the port.
    #[arg(long)]
    read_token_file: Option<PathBuf>,
}

#[derive(Args)]
struct ServerArgs {
    /// The `weir serve` to talk to [default: $WEIR_SERVER or http://127.0.0.1:8787].
    #[arg(long)]
    server: Option<String>,
    /// The admin token's file [default: $WEIR_ADMIN_TOKEN, or the default data dir's admin.token].
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl ServerArgs {
    fn client(&self) -> anyhow::Result<Client> {
        let server = self
            .server
            .clone()
            .or_else(|| std::env::var("WEIR_SERVER").ok())
            .unwrap_or_else(|| "http://127.0.0.1:8787".into());
        Ok(Client::new(&server, client::token(self.token_file.as_deref())?))
    }
}

#[derive(Args)]
struct TestArgs {
    /// The processor component (.wasm).
    #[arg(long, short, required_unless_present = "pipeline", conflicts_with = "pipeline")]
    module: Option<PathBuf>,
    /// A pipeline file instead of a module: its stages run in flow order, what a stage routes
    /// to another partitioned by key as its repartition topic would be; each output line names
    /// its topic.
    #[arg(long, short)]
    pipeline: Option<PathBuf>,
    /// Records to process, one JSON object per line; `-` reads standard input.
    #[arg(long, short)]
    input: PathBuf,
    /// Configuration for the processor's init, as key=value (repeatable).
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Keep state here between runs (RocksDB, one store per partition); in memory otherwise.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Most records handed to the processor in one call [default: 100, or 1 with --expect, so
    /// that each output names the one input line it came from].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Compare the outputs with this JSONL file instead of printing them: prints what is
    /// missing, extra or changed (with the expected file's line and the input line each output
    /// came from) and exits 1 if anything is.
    #[arg(long, value_name = "FILE")]
    expect: Option<PathBuf>,
    /// With --expect: how outputs are matched to its lines. `exact`: in the order weir writes
    /// them, the input's order (each partition's records keep theirs, as in Kafka); `sorted`:
    /// as a set, in any order.
    #[arg(long, value_enum, default_value = "exact", requires = "expect")]
    order: crate::expect::Order,
    /// With --expect: write the outputs into its file (creating it) instead of comparing.
    #[arg(long, requires = "expect")]
    update: bool,
    /// A table the processor looks up, as NAME=FILE.jsonl (input lines: key and value); read in
    /// full before the first record, every key visible to every partition. Repeatable.
    #[arg(long = "table", value_name = "NAME=FILE")]
    tables: Vec<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
struct RunArgs {
    /// The pipeline file (TOML).
    pipeline: PathBuf,
    /// Overrides `bootstrap_servers`.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Overrides `instance_id` (the transactional id is <application_id>-<instance_id>).
    #[arg(long)]
    instance_id: Option<String>,
    /// Overrides `guarantee`.
    #[arg(long, value_parser = ["exactly-once", "at-least-once", "at-most-once"])]
    guarantee: Option<String>,
    /// Overrides `auto_offset_reset`.
    #[arg(long, value_parser = ["earliest", "latest"])]
    auto_offset_reset: Option<String>,
    /// Overrides `state_dir`.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Stop after consuming this many records (and committing them).
    #[arg(long)]
    max_records: Option<u64>,
    /// Where compiled components are cached [default: ~/.cache/weir/components].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Serve /healthz, /readyz, /metrics, the pipeline's status and queries of its state here
    /// (read-only).
    #[arg(long)]
    admin: Option<std::net::SocketAddr>,
    /// The URL other instances reach this one's admin address at, to forward queries
    /// [default: http://<admin>].
    #[arg(long, requires = "admin")]
    advertised_url: Option<String>,
}

#[derive(Args)]
struct LimitArgs {
    /// Most linear memory a processor instance may use, in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    memory_limit: usize,
    /// Longest a processor may take for one batch, in milliseconds.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    deadline: u64,
    /// Meter guests with this much fuel per batch (slower; off by default).
    #[arg(long)]
    fuel: Option<u64>,
    /// Where compiled components are cached [default: ~/.cache/weir/components].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Compile every time, without reading or writing the cache.
    #[arg(long)]
    no_cache: bool,
}

impl LimitArgs {
    fn engine(&self) -> anyhow::Result<Engine> {
        let cache_dir = if self.no_cache { None } else { self.cache_dir.clone().or_else(ComponentCache::default_dir) };
        engine(self.memory_limit, self.deadline, self.fuel, cache_dir)
    }
}

/// An engine with these limits (MiB, milliseconds, fuel per batch) and component cache.
fn engine(
    memory_mib: usize,
    deadline_ms: u64,
    fuel: Option<u64>,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<Engine> {
    Engine::new(EngineOptions {
        memory_limit: memory_mib << 20,
        deadline: Duration::from_millis(deadline_ms),
        fuel,
        cache_dir,
        ..EngineOptions::default()
    })
}

/// Parses `args` (the first is the program name) and runs the command, writing its output to
/// `out`. Returns whether the command succeeded; errors carry the one-line explanation.
pub fn run_from<I, T>(args: I, out: &mut dyn std::io::Write) -> anyhow::Result<bool>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    run(Cli::try_parse_from(args)?, out)
}

pub fn run(cli: Cli, out: &mut dyn std::io::Write) -> anyhow::Result<bool> {
    match cli.command {
        Command::Test(args) => {
            let config = config::parse_pairs(&args.config).map_err(anyhow::Error::msg)?;
            let engine = args.limits.engine()?;
            let target = match (args.module, &args.pipeline) {
                (Some(path), _) => testrun::Target::Module { path, config },
                (None, Some(file)) if config.is_empty() => {
                    testrun::Target::Pipeline(Box::new(config::PipelineConfig::load(file)?))
                }
                (None, Some(_)) => anyhow::bail!("--config goes with --module; a pipeline file configures its stages"),
                (None, None) => anyhow::bail!("give --module or --pipeline"),
            };
            let batch_size = args.batch_size.unwrap_or(if args.expect.is_some() { 1 } else { 100 });
            let run = testrun::TestRun {
                target,
                input: args.input,
                state_dir: args.state_dir,
                batch_size,
                tables: table_args(&args.tables)?,
            };
            let Some(expected) = args.expect else {
                let summary = testrun::run(&engine, &run, out)?;
                tracing::info!(records = summary.records, batches = summary.batches, outputs = summary.outputs, "done");
                return Ok(true);
            };
            let (_, outputs) = testrun::run_collect(&engine, &run)?;
            if args.update {
                let mut text = String::new();
                for (line, _) in &outputs {
                    text.push_str(&serde_json::to_string(line)?);
                    text.push('\n');
                }
                std::fs::write(&expected, text).with_context(|| format!("cannot write {}", expected.display()))?;
                writeln!(out, "wrote {} outputs to {}", outputs.len(), expected.display())?;
                return Ok(true);
            }
            let wanted = crate::expect::load(&expected)?;
            let actual = outputs
                .iter()
                .map(|(line, origin)| crate::expect::Actual::of(line, *origin))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let differences = crate::expect::compare(&wanted, &actual, args.order);
            if differences.is_empty() {
                writeln!(out, "{} outputs match {}", actual.len(), expected.display())?;
                return Ok(true);
            }
            write!(out, "{}", crate::expect::render(&expected, actual.len(), wanted.len(), &differences))?;
            Ok(false)
        }
        Command::Run(args) => {
            let config = run_config(&args)?;
            // The engine's ceilings: the widest of the stages' limits (each stage has its own).
            let stages = config.stages();
            let modules = stages.iter().filter_map(|s| s.config.module.as_ref());
            let widest = modules.fold((0, 0, None::<u64>), |(memory, deadline, fuel), m| {
                (memory.max(m.memory_limit_mib), deadline.max(m.deadline_ms), fuel.max(m.fuel))
            });
            let cache_dir = args.cache_dir.clone().or_else(ComponentCache::default_dir);
            let engine = Engine::new(EngineOptions {
                memory_limit: widest.0 << 20,
                deadline: Duration::from_millis(widest.1),
                fuel: widest.2,
                cache_dir,
                // The one pipeline's share is the whole pool.
                max_instances: config.instance_slots(None).max(EngineOptions::default().max_instances),
            })?;
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(signal, stop.clone())?;
            }
            // A supervisor with one pipeline: the same code as `weir serve`.
            let supervisor = Supervisor::new(engine, Metrics::new(), None);
            if let Some(listen) = args.admin {
                let address = crate::serve::admin_beside(supervisor.clone(), listen)?;
                let url = args.advertised_url.clone().unwrap_or_else(|| format!("http://{address}"));
                // Instances believe each other's claims only with a secret they share.
                let key = std::env::var("WEIR_CLAIM_SECRET")
                    .ok()
                    .filter(|s| !s.trim().is_empty())
                    .map_or_else(ClaimKey::default, |s| ClaimKey::new(s.trim().as_bytes()));
                supervisor.set_site(Site { instance_id: None, advertise: Some(Advertise { url, key }) });
                eprintln!("weir run: admin on http://{address}");
            }
            let stats = supervisor.run_one(config, stop, args.max_records)?;
            writeln!(out, "consumed {} records, produced {}", stats.consumed, stats.produced)?;
            Ok(true)
        }
        Command::Serve(args) => {
            let serve = crate::serve::Serve {
                data_dir: args.data_dir.unwrap_or_else(client::default_data_dir),
                listen: args.listen,
                token_file: args.token_file,
                max_upload_mib: args.max_upload_mib,
                cache_dir: args.cache_dir,
                fuel: args.fuel,
                max_instances: args.max_instances,
                instance_id: args.instance_id,
                advertised_url: args.advertised_url,
                state_roots: args.state_roots,
                read_token_file: args.read_token_file,
                claim_secret_file: args.claim_secret_file,
                max_heavy_queries: args.max_heavy_queries,
            };
            crate::serve::run(serve, out)?;
            Ok(true)
        }
        Command::Deploy { pipeline, server, timeout } => {
            let client = server.client()?;
            let deployed = client.deploy(&pipeline)?;
            let (name, version) = (&deployed.name, deployed.version);
            writeln!(out, "{name}: version {version} ({}), sha256 {}", deployed.action.as_str(), deployed.digest)?;
            if let Some(notice) = &deployed.notice {
                writeln!(out, "{name}: {notice}")?;
            }
            out.flush()?;
            let status = client.wait_running(name, version, Duration::from_secs(timeout))?;
            writeln!(out, "{name}: {}", status.snapshot.status.as_str())?;
            Ok(true)
        }
        Command::Ps { server } => {
            client::print_table(&server.client()?.list()?, out)?;
            Ok(true)
        }
        Command::Status { name, server } => {
            let status = server.client()?.status(&name)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
            Ok(true)
        }
        Command::New { dir, lang, template, list, sdk_dir } => {
            let Some(dir) = dir.filter(|_| !list) else {
                write!(out, "{}", crate::scaffold::list())?;
                return Ok(true);
            };
            let sdk_dir = sdk_dir.unwrap_or_else(|| client::default_data_dir().join("sdk"));
            write!(out, "{}", crate::scaffold::create(&dir, lang, template, &sdk_dir)?)?;
            Ok(true)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "weir", out);
            Ok(true)
        }
        Command::Man => {
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(out)?;
            Ok(true)
        }
        Command::Logs { name, follow, level, lines, server } => {
            let client = server.client()?;
            if follow {
                client.follow_logs(&name, level, lines, out)?;
                return Ok(true);
            }
            let page = client.logs(&name, level, lines)?;
            for line in &page.lines {
                writeln!(out, "{}", client::show_log_line(line))?;
            }
            if page.dropped > 0 {
                writeln!(out, "({} lines were dropped by the rate limit since the pipeline started)", page.dropped)?;
            }
            Ok(true)
        }
        Command::Pause { name, server } => {
            server.client()?.pause(&name, true)?;
            writeln!(out, "{name}: pausing at the next commit")?;
            Ok(true)
        }
        Command::Resume { name, server } => {
            server.client()?.pause(&name, false)?;
            writeln!(out, "{name}: resuming")?;
            Ok(true)
        }
        Command::Rollback { name, server } => {
            let done = server.client()?.rollback(&name)?;
            writeln!(out, "{name}: rolled back to version {}", done.version)?;
            Ok(true)
        }
        Command::Dlq(DlqCommand::Replay { name, from, until, server }) => {
            let ticker = crate::ticker::Ticker::start(format!("{name}: replaying dead-lettered records"));
            let done = server.client()?.replay(&name, from, until);
            drop(ticker);
            let done = done?;
            writeln!(out, "{name}: replayed {} dead-lettered records", done.replayed)?;
            Ok(true)
        }
        Command::Undeploy { name, purge, server } => {
            server.client()?.undeploy(&name, purge)?;
            writeln!(out, "{name}: undeployed{}", if purge { ", local state deleted" } else { "" })?;
            Ok(true)
        }
        Command::Demo { module, input, guarantee } => {
            let guarantee = toml::Value::String(guarantee).try_into()?;
            let engine = Engine::new(EngineOptions::default())?;
            crate::demo::run(&engine, &crate::demo::Demo { module, input, guarantee }, out)?;
            Ok(true)
        }
        Command::Build { dir, out: target, limits } => {
            let target = match target {
                Some(t) => t,
                None => {
                    let name = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
                    // Appended, not set: a folder `orders.v2` builds `orders.v2.wasm`.
                    let name = name.file_name().map_or("processor".into(), |n| n.to_string_lossy());
                    PathBuf::from(format!("{name}.wasm"))
                }
            };
            let language = crate::build::build(&limits.engine()?, &dir, &target)?;
            writeln!(out, "built {} ({language}) into {}", dir.display(), target.display())?;
            Ok(true)
        }
        Command::Topic(TopicCommand::Create { name, partitions, config, bootstrap_servers }) => {
            let configs = config::parse_pairs(&config).map_err(anyhow::Error::msg)?;
            crate::topic::create(&bootstrap_servers, &name, partitions, &configs)?;
            writeln!(out, "topic {name}: {partitions} partitions")?;
            Ok(true)
        }
        Command::Topic(TopicCommand::Produce { topic, input, bootstrap_servers }) => {
            let n = crate::topic::produce(&bootstrap_servers, &topic, &input)?;
            writeln!(out, "produced {n} records to {topic}")?;
            Ok(true)
        }
        Command::Topic(TopicCommand::Consume { topic, count, idle_ms, bootstrap_servers }) => {
            crate::topic::consume(&bootstrap_servers, &topic, count, Duration::from_millis(idle_ms), out)?;
            Ok(true)
        }
        Command::Inspect { module, limits } => {
            let (report, valid) = inspect::inspect(&limits.engine()?, &module);
            out.write_all(report.as_bytes())?;
            Ok(valid)
        }
    }
}

/// `--table NAME=FILE` arguments.
fn table_args(args: &[String]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((name, file)) if !name.is_empty() && !file.is_empty() => Ok((name.to_owned(), PathBuf::from(file))),
            _ => Err(anyhow::anyhow!("--table expects NAME=FILE.jsonl, got `{a}`")),
        })
        .collect()
}

/// The pipeline file with the command line's overrides, checked again after them.
fn run_config(args: &RunArgs) -> anyhow::Result<PipelineConfig> {
    let mut config = PipelineConfig::load(&args.pipeline)?;
    let value = |s: &str| toml::Value::String(s.to_owned());
    if let Some(b) = &args.bootstrap_servers {
        config.bootstrap_servers = b.clone();
    }
    if let Some(i) = &args.instance_id {
        config.instance_id = Some(i.clone());
    }
    if let Some(g) = &args.guarantee {
        config.guarantee = value(g).try_into()?;
    }
    if let Some(r) = &args.auto_offset_reset {
        config.auto_offset_reset = value(r).try_into()?;
    }
    if let Some(d) = &args.state_dir {
        config.state_dir = Some(d.clone());
    }
    config.check().map_err(anyhow::Error::msg)?;
    Ok(config)
}

/// The whole `weir` program: logging to stderr, output to stdout, one-line errors, exit codes.
pub fn main() -> std::process::ExitCode {
    use std::process::ExitCode;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "warn,weir::guest=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = run(Cli::parse(), &mut out);
    let flushed = std::io::Write::flush(&mut out);
    match (result, flushed) {
        (Ok(true), Ok(())) => ExitCode::SUCCESS,
        (Ok(false), _) => ExitCode::FAILURE,
        (Ok(true), Err(e)) => {
            eprintln!("weir: error: cannot write the output: {e}");
            ExitCode::FAILURE
        }
        (Err(e), _) => {
            eprintln!("weir: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
