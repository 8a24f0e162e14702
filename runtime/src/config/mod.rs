//! `PIPELINE.toml`: what `weir run` consumes, runs and produces, and how it commits.
//!
//! ```toml
//! application_id = "word-count"          # consumer group, prefix of all weir creates
//! bootstrap_servers = "127.0.0.1:9092"
//! inputs = ["sentences"]
//! guarantee = "exactly-once"             # or "at-least-once", "at-most-once"
//! auto_offset_reset = "earliest"         # or "latest"
//! group_protocol = "classic"             # or "consumer" (KIP-848)
//! static_membership = true               # group.instance.id = instance_id
//! standby_replicas = 0                   # warm copies of each store on other instances
//! threads = 1                            # worker threads, each a member of the group
//!
//! [outputs]                              # names the module routes to, and their topics
//! default = "word-counts"
//!
//! [module]                             # or several [stages.<name>] (see `stages`)
//! path = "word_count.wasm"
//! config = { }                           # handed to the module's init
//!
//! [tables.customers]                     # a table the module looks up by this name
//! topic = "customers"                    # read from its start, kept current
//! global = false                         # default: co-partitioned with the inputs
//!
//! [changelog]                            # how weir creates changelog topics
//! replication_factor = 3                 # default: the broker's
//! min_insync_replicas = 2                # default: replication_factor - 1 when above 1
//!
//! [kafka]                                # passed to librdkafka, but for what loads code
//! "security.protocol" = "plaintext"
//! ```
//!
//! Unknown keys and bad values are refused at start, naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod pairs;
mod stages;
pub use pairs::parse_pairs;
pub use stages::{repartition_topic, Route, StageConfig, StageRef, StageSpec};

/// How consumed offsets are committed relative to the outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Offsets, outputs and state changes commit in one Kafka transaction.
    #[default]
    ExactlyOnce,
    /// Offsets are committed only after every output before them is acknowledged.
    AtLeastOnce,
    /// Offsets are committed before the records are processed.
    AtMostOnce,
}

/// Where to start reading a partition that has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OffsetReset {
    #[default]
    Earliest,
    Latest,
}

impl OffsetReset {
    pub fn as_kafka(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

/// Which consumer group protocol a pipeline's consumer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum GroupProtocol {
    /// The classic protocol (JoinGroup/SyncGroup), with cooperative incremental rebalancing
    /// (`cooperative-sticky`), or eager `range` when a stage reads co-partitioned topics. A
    /// static member restarted within `session.timeout.ms` replaces its old self at once.
    #[default]
    Classic,
    /// The next-generation protocol (KIP-848): the broker assigns (`uniform`, or `range` when a
    /// stage reads co-partitioned topics) and rebalances incrementally. A static member that
    /// did not leave cleanly is fenced until the broker's session timeout.
    Consumer,
}

impl GroupProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
        }
    }
}

/// The module a pipeline runs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleConfig {
    /// The component, relative to the pipeline file.
    pub path: PathBuf,
    /// Names the processor's state: its changelog is `<application_id>-<name>-changelog` and its
    /// stores live under `<state_dir>/<application_id>/<name>/`. It does not change with the
    /// module file, so a new version keeps the state. Default: `state`.
    #[serde(default)]
    pub name: Option<String>,
    /// Handed to the module's `init`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Most linear memory an instance may use, in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_limit_mib: usize,
    /// Longest a batch may take, in milliseconds.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Fuel per batch, if metered.
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Most outputs one record may produce; past it, the record is at fault.
    #[serde(default = "default_max_outputs")]
    pub max_outputs_per_record: usize,
    /// Most output bytes one batch may produce; past it, the record that crossed it is at fault.
    #[serde(default = "default_max_batch_bytes")]
    pub max_output_bytes_per_batch: usize,
}

impl ModuleConfig {
    /// The module at `path`, with no configuration and the default limits.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            name: None,
            config: BTreeMap::new(),
            memory_limit_mib: default_memory_mib(),
            deadline_ms: default_deadline_ms(),
            fuel: None,
            max_outputs_per_record: default_max_outputs(),
            max_output_bytes_per_batch: default_max_batch_bytes(),
        }
    }
}

/// A table: a topic replayed from its start into a local map by key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The topic it is read from.
    pub topic: String,
    /// Every instance holds all partitions (any key can be looked up). Otherwise the table is
    /// co-partitioned with the inputs: same partition count, and a record sees the partition
    /// with its number.
    #[serde(default)]
    pub global: bool,
}

/// A whole pipeline file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// The consumer group, and the prefix of the transactional id and of anything weir creates.
    pub application_id: String,
    #[serde(default = "default_bootstrap")]
    pub bootstrap_servers: String,
    /// Topics to consume.
    pub inputs: Vec<String>,
    /// Output names (as the module routes to them) and their topics; `default` is the output of
    /// records the module does not route.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// The module, for a pipeline of one stage; absent when `[stages]` are declared.
    #[serde(default)]
    pub module: Option<ModuleConfig>,
    /// The stages of a pipeline of several modules, by name (see [`stages`]).
    #[serde(default)]
    pub stages: BTreeMap<String, StageConfig>,
    /// Tables the module looks up, by the name it uses.
    #[serde(default)]
    pub tables: BTreeMap<String, TableConfig>,
    #[serde(default)]
    pub guarantee: Guarantee,
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// The consumer group protocol (see [`GroupProtocol`]).
    #[serde(default)]
    pub group_protocol: GroupProtocol,
    /// Whether the consumer is a static member of its group (`group.instance.id` = the instance
    /// id): a restart within the session timeout then moves nothing. Off, every start joins as
    /// a new member and a stop leaves the group at once.
    #[serde(default = "yes")]
    pub static_membership: bool,
    /// How many other instances keep a warm copy of each partition's store (the stage queries
    /// read), so that its next owner restores only the changelog's tail.
    #[serde(default)]
    pub standby_replicas: u32,
    /// How often to commit; default 100 ms under exactly-once (as Kafka Streams), 1 s otherwise.
    #[serde(default)]
    pub commit_interval_ms: Option<u64>,
    /// Most records handed to the module in one call.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest to wait for a batch to fill, in milliseconds.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Names this instance: its transactional id is `<application_id>-<instance_id>`, and a
    /// restart with the same id fences the previous process at once. Default: the host name.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Where state stores live; in memory when absent.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// librdkafka settings passed verbatim to both consumer and producer.
    #[serde(default)]
    pub kafka: BTreeMap<String, String>,
    /// What a guest error on one record does.
    #[serde(default)]
    pub errors: ErrorsConfig,
    /// How weir creates the state's changelog topics.
    #[serde(default)]
    pub changelog: ChangelogConfig,
    /// Most processor instances (one per assigned input partition) this pipeline may hold.
    /// Under `weir serve` each pipeline reserves this many (and one for a swap) of the
    /// process's `--max-instances`, so one pipeline cannot starve the others.
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// Worker threads, as Kafka Streams' `num.stream.threads`: each its own group member with
    /// its own consumer and transactional producer, the partitions spread among them by the
    /// group protocol.
    #[serde(default = "one")]
    pub threads: u32,
    /// Which of the worker threads this copy of the file is for (1 to `threads`), when there is
    /// more than one: it names the thread's group member and transactional producer.
    #[serde(skip)]
    pub thread: Option<u32>,
}

fn one() -> u32 {
    1
}

/// Most worker threads a pipeline may have.
pub const MAX_THREADS: u32 = 64;

fn yes() -> bool {
    true
}

fn default_max_instances() -> u32 {
    32
}

/// The `[changelog]` table: how weir creates a changelog topic (an existing one is left as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangelogConfig {
    /// Replicas of each partition; default: the broker's `default.replication.factor`.
    #[serde(default)]
    pub replication_factor: Option<i32>,
    /// The topic's `min.insync.replicas`; default: one less than an explicit replication factor
    /// above 1, else the broker's.
    #[serde(default)]
    pub min_insync_replicas: Option<i32>,
}

/// What a guest error on one record does: a trap, a blown deadline, fuel or memory limit, a
/// rejected record, or an output weir cannot send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OnGuestError {
    /// Stop the pipeline at the record, committing nothing past it.
    #[default]
    Stop,
    /// Send the record to the dead-letter topic, with why, and go on.
    DeadLetter,
    /// Drop the record, count it and log it, and go on.
    Skip,
}

/// The `[errors]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorsConfig {
    #[serde(default)]
    pub on_guest_error: OnGuestError,
    /// Default: `<application_id>-dlq`.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
}

fn default_bootstrap() -> String {
    "127.0.0.1:9092".into()
}
fn default_batch_size() -> usize {
    500
}
fn default_linger_ms() -> u64 {
    5
}
fn default_memory_mib() -> usize {
    256
}
fn default_deadline_ms() -> u64 {
    5000
}
fn default_max_outputs() -> usize {
    DEFAULT_MAX_OUTPUTS_PER_RECORD
}
fn default_max_batch_bytes() -> usize {
    DEFAULT_MAX_OUTPUT_BYTES_PER_BATCH
}

/// How many outputs one record may have, unless `max_outputs_per_record` says otherwise.
pub const DEFAULT_MAX_OUTPUTS_PER_RECORD: usize = 10_000;
/// How many bytes of outputs one batch may have, unless `max_output_bytes_per_batch` says otherwise.
pub const DEFAULT_MAX_OUTPUT_BYTES_PER_BATCH: usize = 256 << 20;
/// librdkafka's default `message.max.bytes`: the largest record the producer sends.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// librdkafka settings weir sets itself from the guarantee; a `[kafka]` table may not override them.
const MANAGED: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "group.instance.id",
    "group.protocol",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "isolation.level",
    "transactional.id",
    "enable.idempotence",
    "auto.offset.reset",
];

/// librdkafka settings of the classic group protocol that the consumer protocol (KIP-848)
/// refuses: the broker owns them there.
const CLASSIC_ONLY: &[&str] = &["session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy"];

impl PipelineConfig {
    /// Reads and checks a pipeline file. Relative module paths are taken from the file's folder.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read pipeline {}: {e}", path.display()))?;
        let mut config = Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let modules = config.module.iter_mut().chain(config.stages.values_mut().map(|s| &mut s.module));
        for module in modules.filter(|m| m.path.is_relative()) {
            module.path = base.join(&module.path);
        }
        Ok(config)
    }

    /// Parses and checks the text of a pipeline file; the error names the key at fault.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: PipelineConfig = toml::from_str(text).map_err(|e| one_line(&e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// The largest record the producer sends: `message.max.bytes` of the `[kafka]` table.
    pub fn message_max_bytes(&self) -> usize {
        self.kafka.get("message.max.bytes").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_MESSAGE_MAX_BYTES)
    }

    /// What a running pipeline of this file could not take in place from `next`, by field
    /// name; empty when only the module file, its config and limits, and the outputs differ
    /// (those a swap at a commit boundary takes). Every field is named here, none skipped with
    /// `..`, so that a new field does not compile until it is decided.
    pub fn needs_restart(&self, next: &PipelineConfig) -> Vec<&'static str> {
        let PipelineConfig {
            application_id,
            bootstrap_servers,
            inputs,
            outputs: _,
            module,
            stages,
            tables,
            guarantee,
            auto_offset_reset,
            group_protocol,
            static_membership,
            standby_replicas,
            commit_interval_ms,
            batch_size,
            linger_ms,
            instance_id,
            state_dir,
            kafka,
            errors,
            changelog,
            max_instances,
            threads,
            thread: _,
        } = self;
        // Of a module, only its name (which names the state) needs a restart.
        let name = |m: &Option<ModuleConfig>| {
            m.as_ref().map(
                |ModuleConfig {
                     path: _,
                     name,
                     config: _,
                     memory_limit_mib: _,
                     deadline_ms: _,
                     fuel: _,
                     max_outputs_per_record: _,
                     max_output_bytes_per_batch: _,
                 }| name.clone(),
            )
        };
        [
            ("application_id", *application_id == next.application_id),
            ("bootstrap_servers", *bootstrap_servers == next.bootstrap_servers),
            ("inputs", *inputs == next.inputs),
            ("module.name", name(module) == name(&next.module)),
            // A change to the stage graph restarts; a stage's module, its config and limits swap.
            ("stages", Self::stage_graph(stages) == Self::stage_graph(&next.stages)),
            ("tables", *tables == next.tables),
            ("guarantee", *guarantee == next.guarantee),
            ("auto_offset_reset", *auto_offset_reset == next.auto_offset_reset),
            ("group_protocol", *group_protocol == next.group_protocol),
            ("static_membership", *static_membership == next.static_membership),
            ("standby_replicas", *standby_replicas == next.standby_replicas),
            ("commit_interval_ms", *commit_interval_ms == next.commit_interval_ms),
            ("batch_size", *batch_size == next.batch_size),
            ("linger_ms", *linger_ms == next.linger_ms),
            ("instance_id", *instance_id == next.instance_id),
            ("state_dir", *state_dir == next.state_dir),
            ("kafka", *kafka == next.kafka),
            ("errors", *errors == next.errors),
            ("changelog", *changelog == next.changelog),
            ("max_instances", *max_instances == next.max_instances),
            ("threads", *threads == next.threads),
        ]
        .into_iter()
        .filter_map(|(field, same)| (!same).then_some(field))
        .collect()
    }

    /// The stages as a graph: what each reads and where its outputs go, each module left out.
    fn stage_graph(stages: &BTreeMap<String, StageConfig>) -> BTreeMap<String, StageConfig> {
        let blank = |s: &StageConfig| StageConfig { module: ModuleConfig::at(""), ..s.clone() };
        stages.iter().map(|(name, s)| (name.clone(), blank(s))).collect()
    }

    /// The dead-letter topic, when failing records go to one.
    pub fn dead_letter_topic(&self) -> Option<String> {
        (self.errors.on_guest_error == OnGuestError::DeadLetter)
            .then(|| self.errors.dead_letter_topic.clone().unwrap_or_else(|| format!("{}-dlq", self.application_id)))
    }

    /// The name of the processor's state (changelog topic, store folder): `[module] name`, or
    /// `state`.
    pub fn store_name(&self) -> &str {
        self.module.as_ref().and_then(|m| m.name.as_deref()).unwrap_or("state")
    }

    /// What the module's `init` is handed: its `config`, as pairs (none for a file of stages,
    /// whose stages each have their own: see [`Self::stages`]).
    pub fn module_config(&self) -> Vec<(String, String)> {
        self.module.iter().flat_map(|m| m.config.clone()).collect()
    }

    /// The one module of a pipeline without stages, or of a stage's view of the file
    /// ([`StageSpec::config`]); an error naming the stages otherwise.
    pub fn single_module(&self) -> Result<&ModuleConfig, String> {
        self.module.as_ref().ok_or_else(|| {
            let names: Vec<&str> = self.stages.keys().map(String::as_str).collect();
            format!("pipeline `{}` has stages ({}), not one module", self.application_id, names.join(", "))
        })
    }

    /// Refuses values that parse but make no sense, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if !id_ok(&self.application_id) {
            return Err(format!("application_id `{}` {ID_RULE}", shown(&self.application_id)));
        }
        if let Some(name) = self.module.as_ref().and_then(|m| m.name.as_ref()) {
            if !id_ok(name) {
                return Err(format!("module.name `{}` {ID_RULE}", shown(name)));
            }
        }
        if let Some(id) = &self.instance_id {
            if !id_ok(id) {
                return Err(format!("instance_id `{}` {ID_RULE}", shown(id)));
            }
        }
        if let Some(name) = self.tables.keys().find(|n| !id_ok(n)) {
            return Err(format!("tables.{} {ID_RULE}", shown(name)));
        }
        if self.inputs.is_empty() || self.inputs.iter().any(String::is_empty) {
            return Err("inputs must name at least one topic, and no empty ones".into());
        }
        if let Some((name, _)) = self.outputs.iter().find(|(_, topic)| topic.is_empty()) {
            return Err(format!("outputs.{name} names an empty topic"));
        }
        for (name, table) in &self.tables {
            if table.topic.is_empty() {
                return Err(format!("tables.{name}.topic is empty"));
            }
            if self.inputs.contains(&table.topic) {
                return Err(format!(
                    "tables.{name} reads `{}`, which is also an input; a topic is a stream or a table",
                    table.topic
                ));
            }
        }
        if self.batch_size == 0 {
            return Err("batch_size must be at least 1".into());
        }
        self.check_stages()?;
        if self.errors.on_guest_error != OnGuestError::Stop && self.guarantee == Guarantee::AtMostOnce {
            return Err("errors.on_guest_error other than `stop` needs at-least-once or exactly-once: \
                 at-most-once has committed a batch before it fails, so it could not be replayed without the bad record"
                .into());
        }
        if self.errors.dead_letter_topic.as_deref() == Some("") {
            return Err("errors.dead_letter_topic is empty".into());
        }
        let ChangelogConfig { replication_factor: rf, min_insync_replicas: isr } = self.changelog;
        if rf.is_some_and(|rf| rf < 1) {
            return Err("changelog.replication_factor must be at least 1".into());
        }
        if isr.is_some_and(|isr| isr < 1 || rf.is_some_and(|rf| isr > rf)) {
            return Err("changelog.min_insync_replicas must be at least 1 and at most replication_factor".into());
        }
        if self.max_instances == 0 {
            return Err("max_instances must be at least 1".into());
        }
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return Err(format!("threads must be from 1 to {MAX_THREADS}"));
        }
        if self.commit_interval_ms == Some(0) {
            return Err("commit_interval_ms must be at least 1".into());
        }
        if let Some(key) = self.kafka.keys().find(|k| MANAGED.contains(&k.as_str())) {
            return Err(format!(
                "kafka.\"{key}\" is set by weir (from application_id, instance_id, guarantee, auto_offset_reset or \
                 group_protocol); remove it"
            ));
        }
        if self.group_protocol == GroupProtocol::Consumer {
            if let Some(key) = self.kafka.keys().find(|k| CLASSIC_ONLY.contains(&k.as_str())) {
                return Err(format!(
                    "kafka.\"{key}\" applies to group_protocol = \"classic\" only: under \"consumer\" the broker \
                     decides it (the group's group.consumer.session.timeout.ms and group.consumer.heartbeat.interval.ms, \
                     set with kafka-configs.sh --entity-type groups); remove it"
                ));
            }
        }
        if let Some(key) = self.kafka.keys().find(|k| loads_code(k)) {
            return Err(format!(
                "kafka.\"{key}\" is refused: it makes librdkafka load a library, run a command or open a file \
                 of the deployer's choosing, outside the Wasm sandbox (see docs/security.md)"
            ));
        }
        Ok(())
    }

    /// The instance slots this pipeline takes of a process's pool: one per partition it may
    /// hold (as many as its widest input has, when known, up to `max_instances`), and one more
    /// for the instance a swap prepares beside them.
    pub fn instance_slots(&self, widest_input: Option<i32>) -> u32 {
        let partitions = widest_input.map_or(self.max_instances, |n| n.max(1) as u32);
        // Each stage holds its own instances, and prepares its own for a swap.
        let stages = self.stages.len().max(1) as u32;
        partitions.min(self.max_instances).saturating_add(1).saturating_mul(stages)
    }

    /// Refuses holding `open + more` instances past `max_instances`, saying what to change.
    pub fn within_instance_share(&self, open: usize, more: usize) -> anyhow::Result<()> {
        let wanted = open + more;
        if wanted > self.max_instances as usize {
            anyhow::bail!(
                "pipeline `{}` would hold {wanted} instances (one per assigned input partition), more than its \
                 max_instances ({}): raise max_instances in the pipeline file (weir serve's --max-instances bounds \
                 the sum over its pipelines) or run more instances of the application",
                self.application_id,
                self.max_instances
            );
        }
        Ok(())
    }

    /// How long a transaction may stay open before the broker aborts it (the producer's
    /// `transaction.timeout.ms`, 10 s unless the `[kafka]` table says otherwise).
    pub fn transaction_timeout(&self) -> Duration {
        let ms = self.kafka.get("transaction.timeout.ms").and_then(|v| v.parse().ok());
        Duration::from_millis(ms.unwrap_or(10_000))
    }

    pub fn commit_interval(&self) -> Duration {
        let default = match self.guarantee {
            Guarantee::ExactlyOnce => 100,
            _ => 1000,
        };
        Duration::from_millis(self.commit_interval_ms.unwrap_or(default))
    }

    /// This instance's name: `instance_id`, else the host name, else `0`.
    /// This copy's name in the consumer group and as a transactional producer: the instance
    /// id, with the worker thread's number when the pipeline has several (`<instance>-<n>`).
    pub fn member(&self) -> String {
        match self.thread {
            Some(n) => format!("{}-{n}", self.instance()),
            None => self.instance(),
        }
    }

    pub fn instance(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect::<String>())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "0".into())
        })
    }
}

/// Longest name weir takes for an application, module, store, table or instance: it becomes a
/// file or folder name (with `.json` or `-changelog` after it) and part of topic names, which
/// Kafka bounds at 249 characters.
pub const MAX_ID_LEN: usize = 128;

/// Whether `s` may name an application, module, store, table or instance. Every such name ends
/// up in a path (`pipelines/<name>.json`, `<state_dir>/<application_id>/<store>/`), so this is
/// the one check between a name and the file system: ASCII letters, digits, `.`, `_` or `-`, at
/// most [`MAX_ID_LEN`] of them, starting with a letter, a digit or `_` (so never `.`, `..` or a
/// hidden file).
pub fn id_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else { return false };
    s.len() <= MAX_ID_LEN
        && (first.is_ascii_alphanumeric() || first == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// What [`id_ok`] asks of a name, for error messages.
pub const ID_RULE: &str =
    "must be 1 to 128 ASCII letters, digits, `.`, `_` or `-`, and start with a letter, a digit or `_`";

/// librdkafka settings that load code, run commands or read files other than certificates and
/// keys: a `[kafka]` table is written by whoever may deploy, and none of this may reach past
/// weir's sandbox. Compared without case, as librdkafka compares them.
const LOADS_CODE: &[&str] = &[
    // Shared libraries loaded into weir's process.
    "plugin.library.paths",
    "ssl.engine.location",
    "ssl.engine.id",
    "ssl.providers",
    // A shell command run at every Kerberos ticket refresh, and the keytab it alone reads.
    "sasl.kerberos.kinit.cmd",
    "sasl.kerberos.keytab",
    // A file of any kind read and sent to the token endpoint.
    "sasl.oauthbearer.assertion.jwt.template.file",
];

/// Whether `key` is one of [`LOADS_CODE`], or sets an interceptor (a plugin's hook).
fn loads_code(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    LOADS_CODE.contains(&key.as_str()) || key.starts_with("interceptor") || key.starts_with("plugin.")
}

/// A name as an error shows it: at most 40 characters of it.
fn shown(name: &str) -> String {
    match name.char_indices().nth(40) {
        Some((cut, _)) => format!("{}...", &name[..cut]),
        None => name.to_owned(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod test {

    fn minimal() -> PipelineConfig {
        PipelineConfig::parse(
            "application_id = \"a\"\ninputs = [\"in\"]\n[outputs]\ndefault = \"out\"\n[module]\npath = \"m.wasm\"\n",
        )
        .unwrap()
    }

    #[test]
    fn a_new_module_its_config_limits_and_outputs_swap_in_place() {
        let running = minimal();
        let mut next = running.clone();
        let module = next.module.as_mut().unwrap();
        module.path = "m2.wasm".into();
        module.config.insert("k".into(), "v".into());
        module.memory_limit_mib = 1;
        module.deadline_ms = 1;
        module.fuel = Some(1);
        module.max_outputs_per_record = 1;
        module.max_output_bytes_per_batch = 1;
        next.outputs.insert("alerts".into(), "alerts".into());
        assert_eq!(running.needs_restart(&next), Vec::<&str>::new());
    }

    #[test]
    fn a_change_to_what_the_clients_or_stores_were_made_from_needs_a_restart_naming_it() {
        let running = minimal();
        let mut next = running.clone();
        next.inputs.push("more".into());
        next.guarantee = Guarantee::AtLeastOnce;
        next.module.as_mut().unwrap().name = Some("other".into());
        next.kafka.insert("fetch.max.bytes".into(), "1000".into());
        next.state_dir = Some("/tmp/x".into());
        assert_eq!(running.needs_restart(&next), ["inputs", "module.name", "guarantee", "state_dir", "kafka"]);
    }

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

        /// A pipeline file is untrusted: any text parses or is refused, never a panic.
        #[test]
        fn any_pipeline_text_parses_or_is_refused_never_a_panic(text in any::<String>()) {
            let _ = PipelineConfig::parse(&text);
        }

        /// A name weir takes is one plain path component: joined to a folder it stays inside
        /// it, and it is never `.`, `..` or a hidden file.
        #[test]
        fn a_name_weir_takes_stays_one_folder_below_where_it_is_joined(name in "\\PC{0,3}|[a-zA-Z0-9._/-]{0,140}") {
            if id_ok(&name) {
                let joined = Path::new("/data/pipelines").join(&name);
                let components: Vec<_> = joined.strip_prefix("/data/pipelines").map(|p| p.components().collect()).unwrap_or_default();
                prop_assert_eq!(components.len(), 1, "{:?}", name);
                prop_assert!(matches!(components[0], std::path::Component::Normal(_)), "{:?}", name);
                prop_assert!(!name.starts_with('.') && name.len() <= MAX_ID_LEN, "{:?}", name);
            }
        }

        /// Files of the right shape with values of every kind.
        #[test]
        fn any_value_in_a_pipeline_file_parses_or_is_refused(
            id in "[a-z._-]{0,6}|\\PC{0,4}",
            number in prop_oneof![Just("0".to_owned()), Just("-1".to_owned()), Just("1e99".to_owned()), Just("\"x\"".to_owned()), any::<i64>().prop_map(|n| n.to_string())],
            guarantee in "[a-z-]{0,14}",
        ) {
            let text = format!(
                "application_id = {id:?}\ninputs = [\"in\"]\nguarantee = {guarantee:?}\nbatch_size = {number}\n\
                 commit_interval_ms = {number}\n[outputs]\ndefault = \"out\"\n[module]\npath = \"m.wasm\"\n\
                 memory_limit_mib = {number}\ndeadline_ms = {number}\nmax_outputs_per_record = {number}\n"
            );
            let _ = PipelineConfig::parse(&text);
        }
    }

    fn parse(text: &str) -> Result<PipelineConfig, String> {
        PipelineConfig::parse(text)
    }

    const MINIMAL: &str = "application_id = \"app\"\ninputs = [\"in\"]\n[module]\npath = \"m.wasm\"\n";

    #[test]
    fn a_minimal_pipeline_gets_exactly_once_from_earliest_with_100ms_commits() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!((c.guarantee, c.auto_offset_reset), (Guarantee::ExactlyOnce, OffsetReset::Earliest));
        assert_eq!(c.commit_interval(), Duration::from_millis(100));
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = parse(&format!("{MINIMAL}\n[module.limits]\nx = 1\n")).unwrap_err();
        assert!(err.contains("limits"), "{err}");
        let err = parse(&format!("batchsize = 5\n{MINIMAL}")).unwrap_err();
        assert!(err.contains("batchsize"), "{err}");
    }

    #[test]
    fn tls_and_sasl_settings_pass_through_to_librdkafka() {
        let c = parse(&format!(
            "{MINIMAL}[kafka]\n\"security.protocol\" = \"sasl_ssl\"\n\"sasl.mechanism\" = \"SCRAM-SHA-256\"\n\
             \"sasl.username\" = \"u\"\n\"sasl.password\" = \"p\"\n"
        ))
        .unwrap();
        let mut client = rdkafka::ClientConfig::new();
        for (k, v) in &c.kafka {
            client.set(k, v);
        }
        // Creating a client checks every setting against what librdkafka was built with.
        let created: Result<rdkafka::producer::BaseProducer, _> = client.create();
        assert!(created.is_ok(), "{:?}", created.err());
    }

    #[test]
    fn names_that_are_dots_hidden_or_too_long_are_refused_wherever_they_become_paths() {
        for bad in [".", "..", ".hidden", "-x", &"a".repeat(MAX_ID_LEN + 1), "a/b", ""] {
            assert!(!id_ok(bad), "{bad:?}");
            let err = parse(&format!("application_id = {bad:?}\ninputs = [\"in\"]\n[module]\npath = \"m.wasm\"\n"))
                .unwrap_err();
            assert!(err.contains("application_id"), "{err}");
            let err = parse(&format!("{MINIMAL}name = {bad:?}\n")).unwrap_err();
            assert!(err.contains("module.name"), "{err}");
            let err = parse(&format!("{MINIMAL}[tables.{bad:?}]\ntopic = \"t\"\n")).unwrap_err();
            assert!(err.contains("tables."), "{err}");
        }
        for good in ["a", "word-count", "v1.2", "_x", &"a".repeat(MAX_ID_LEN)] {
            assert!(id_ok(good), "{good:?}");
        }
    }

    #[test]
    fn kafka_settings_that_load_code_run_commands_or_read_chosen_files_are_refused_by_name() {
        for key in [
            "plugin.library.paths",
            "PLUGIN.LIBRARY.PATHS",
            "ssl.engine.location",
            "sasl.kerberos.kinit.cmd",
            "interceptor.x",
            "ssl.providers",
            "sasl.oauthbearer.assertion.jwt.template.file",
        ] {
            let err = parse(&format!("{MINIMAL}[kafka]\n{key:?} = \"/tmp/evil.so\"\n")).unwrap_err();
            assert!(err.contains(key) && err.contains("refused"), "{err}");
        }
        // Certificates and keys stay allowed.
        parse(&format!("{MINIMAL}[kafka]\n\"ssl.ca.location\" = \"/etc/ssl/ca.pem\"\n")).unwrap();
    }

    #[test]
    fn a_changelogs_replication_is_settable_and_checked() {
        let c = parse(&format!("{MINIMAL}[changelog]\nreplication_factor = 3\n")).unwrap();
        assert_eq!(c.changelog, ChangelogConfig { replication_factor: Some(3), min_insync_replicas: None });
        let err =
            parse(&format!("{MINIMAL}[changelog]\nreplication_factor = 2\nmin_insync_replicas = 3\n")).unwrap_err();
        assert!(err.contains("min_insync_replicas"), "{err}");
        let err = parse(&format!("{MINIMAL}[changelog]\nreplication_factor = 0\n")).unwrap_err();
        assert!(err.contains("replication_factor"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let err = parse(&format!("guarantee = \"twice\"\n{MINIMAL}")).unwrap_err();
        assert!(err.contains("twice") && err.contains("exactly-once"), "{err}");
        let err = parse(&format!("{MINIMAL}[kafka]\n\"enable.auto.commit\" = \"true\"\n")).unwrap_err();
        assert!(err.contains("enable.auto.commit"), "{err}");
        let err = parse(&format!("batch_size = 0\n{MINIMAL}")).unwrap_err();
        assert!(err.contains("batch_size"), "{err}");
    }
}
