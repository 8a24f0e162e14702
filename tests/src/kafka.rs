//! Helpers for tests against the real Kafka broker that `scripts/kafka.sh start` runs: its
//! address, topics with random names, producing and reading back with read_committed, and
//! `weir run` as a child process that can be killed.
//!
//! A test that needs the broker fails with a clear message when it is absent; it never skips.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

/// The broker's address: `WEIR_KAFKA_BOOTSTRAP`, else 127.0.0.1:`WEIR_KAFKA_PORT` (9092).
/// Panics, naming the fix, when nothing answers there.
pub fn bootstrap() -> String {
    let address = std::env::var("WEIR_KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        format!("127.0.0.1:{}", std::env::var("WEIR_KAFKA_PORT").unwrap_or_else(|_| "9092".into()))
    });
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &address)
        .create()
        .unwrap_or_else(|e| panic!("cannot create a Kafka client: {e}"));
    if let Err(e) = probe.fetch_metadata(None, Duration::from_secs(10)) {
        panic!(
            "no Kafka broker answers at {address} ({e}). These tests need the real broker: \
             run `scripts/kafka.sh start` (./scripts/test.sh does) or set WEIR_KAFKA_BOOTSTRAP."
        );
    }
    address
}

/// `prefix` with a random suffix, so tests share one broker without sharing topics or groups.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// Creates `name` with `partitions` partitions.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin = admin(bootstrap);
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = futures_executor::block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .unwrap_or_else(|e| panic!("creating topic {name}: {e}"));
    for r in results {
        if let Err((t, e)) = r {
            panic!("creating topic {t}: {e}");
        }
    }
}

/// The end offset (high watermark) of each partition of `topic`.
pub fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap_or_else(|e| panic!("cannot create a Kafka client: {e}"));
    (0..partitions)
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("offsets of {topic} partition {p}: {e}"));
            high
        })
        .collect()
}

/// A record to produce: key, value, headers.
pub type TestRecord = (String, String, Vec<(String, String)>);

/// An admin client on `bootstrap`.
fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap_or_else(|e| panic!("admin client: {e}"))
}

/// Deletes `name`.
pub fn delete_topic(bootstrap: &str, name: &str) {
    let results = futures_executor::block_on(admin(bootstrap).delete_topics(&[name], &AdminOptions::new()))
        .unwrap_or_else(|e| panic!("deleting topic {name}: {e}"));
    for r in results {
        if let Err((t, e)) = r {
            panic!("deleting topic {t}: {e}");
        }
    }
}

/// Raises `name` to `partitions` partitions.
pub fn add_partitions(bootstrap: &str, name: &str, partitions: usize) {
    let new = rdkafka::admin::NewPartitions::new(name, partitions);
    let results = futures_executor::block_on(admin(bootstrap).create_partitions([&new], &AdminOptions::new()))
        .unwrap_or_else(|e| panic!("adding partitions to {name}: {e}"));
    for r in results {
        if let Err((t, e)) = r {
            panic!("adding partitions to {t}: {e}");
        }
    }
}

/// Produces `values` to `topic` without keys, spread over its `partitions` in turn, and waits
/// until all are acknowledged.
pub fn produce_unkeyed(bootstrap: &str, topic: &str, partitions: i32, values: &[String]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap_or_else(|e| panic!("producer: {e}"));
    for (i, value) in values.iter().enumerate() {
        let record: BaseRecord<'_, str, str> =
            BaseRecord::to(topic).partition(i as i32 % partitions.max(1)).payload(value.as_str());
        send_waiting(&producer, record);
    }
    producer.flush(Duration::from_secs(60)).unwrap_or_else(|e| panic!("flushing test records: {e}"));
}

/// Sends `record`, waiting while the producer's queue is full.
fn send_waiting<'a>(producer: &ThreadedProducer<DefaultProducerContext>, mut record: BaseRecord<'a, str, str>) {
    while let Err((_, back)) = producer.send(record) {
        record = back;
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The input records `0..n`: key `k<i>`, value `record <i>`, header `seq=<i>`.
pub fn numbered(range: std::ops::Range<usize>) -> Vec<TestRecord> {
    range.map(|i| (format!("k{i}"), format!("record {i}"), vec![("seq".to_owned(), i.to_string())])).collect()
}

/// Produces `records` to `topic` and waits until all are acknowledged; with `pace`, spread
/// over about that long.
pub fn produce(bootstrap: &str, topic: &str, records: &[TestRecord], pace: Option<Duration>) {
    produce_at(bootstrap, topic, records, None, pace);
}

/// Like [`produce`], with record `i` timestamped `timestamps[i]` (ms since the epoch) when given.
pub fn produce_at(
    bootstrap: &str,
    topic: &str,
    records: &[TestRecord],
    timestamps: Option<&[i64]>,
    pace: Option<Duration>,
) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        // As weir and the Java clients partition: keys land where their outputs will.
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap_or_else(|e| panic!("producer: {e}"));
    let start = Instant::now();
    for (i, (key, value, headers)) in records.iter().enumerate() {
        if let Some(pace) = pace {
            let due = pace.mul_f64(i as f64 / records.len() as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let mut owned = OwnedHeaders::new();
        for (k, v) in headers {
            owned = owned.insert(Header { key: k, value: Some(v.as_bytes()) });
        }
        let mut record = BaseRecord::to(topic).key(key.as_str()).payload(value.as_str()).headers(owned);
        if let Some(ts) = timestamps.and_then(|t| t.get(i)) {
            record = record.timestamp(*ts);
        }
        send_waiting(&producer, record);
    }
    producer.flush(Duration::from_secs(60)).unwrap_or_else(|e| panic!("flushing test records: {e}"));
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: Vec<(String, String)>,
    pub partition: i32,
}

/// Reads `topic` from the beginning with read_committed until `want` records arrived, or nothing
/// new arrived for `quiet`, or `timeout` passed.
pub fn read_committed(
    bootstrap: &str,
    topic: &str,
    want: usize,
    quiet: Duration,
    timeout: Duration,
) -> Vec<ReadRecord> {
    let mut reader = CommittedReader::new(bootstrap, topic);
    let mut out = Vec::new();
    reader.read(|r| out.push(r), |n| n >= want, quiet, timeout);
    out
}

/// A read_committed reader of every partition of a topic from its beginning, which goes on from
/// where it stopped.
pub struct CommittedReader {
    consumer: BaseConsumer,
    topic: String,
    seen: usize,
}

impl CommittedReader {
    pub fn new(bootstrap: &str, topic: &str) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", unique("reader"))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap_or_else(|e| panic!("reader: {e}"));
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
        let mut tpl = TopicPartitionList::new();
        for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning).unwrap_or_else(|e| panic!("{e}"));
        }
        consumer.assign(&tpl).unwrap_or_else(|e| panic!("assign {topic}: {e}"));
        Self { consumer, topic: topic.to_owned(), seen: 0 }
    }

    /// How many committed records it has read so far.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Reads on until nothing new arrived for `quiet` (or `timeout` passed); returns how many
    /// records it has read in all.
    pub fn settle(&mut self, quiet: Duration, timeout: Duration) -> usize {
        self.read(|_| {}, |_| false, quiet, timeout);
        self.seen
    }

    /// Reads on until it has read more than `n` records in all, or `timeout` passed; returns
    /// whether it got there.
    pub fn wait_past(&mut self, n: usize, timeout: Duration) -> bool {
        self.read(|_| {}, |seen| seen > n, timeout, timeout);
        self.seen > n
    }

    /// Hands each record read to `each` until `done(records read in all)`, nothing new for
    /// `quiet`, or `timeout`.
    fn read(
        &mut self,
        mut each: impl FnMut(ReadRecord),
        done: impl Fn(usize) -> bool,
        quiet: Duration,
        timeout: Duration,
    ) {
        let start = Instant::now();
        let mut last_new = Instant::now();
        while !done(self.seen) && start.elapsed() < timeout && last_new.elapsed() < quiet {
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
                    let headers = m
                        .headers()
                        .map(|hs| hs.iter().map(|h| (h.key.to_owned(), text(h.value).unwrap_or_default())).collect())
                        .unwrap_or_default();
                    each(ReadRecord {
                        key: text(m.key()),
                        value: text(m.payload()),
                        headers,
                        partition: m.partition(),
                    });
                    self.seen += 1;
                    last_new = Instant::now();
                }
                Some(Err(e)) => panic!("reading {}: {e}", self.topic),
                None => {}
            }
        }
    }
}

/// Counts how often each value occurs.
pub fn counts(records: &[ReadRecord]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in records {
        *counts.entry(r.value.clone().unwrap_or_default()).or_insert(0) += 1;
    }
    counts
}

/// Writes a pipeline file for `module` from `input` to `output`.
pub fn pipeline_file(
    dir: &Path,
    app: &str,
    bootstrap: &str,
    input: &str,
    output: &str,
    module: &Path,
    extra: &str,
) -> PathBuf {
    let path = dir.join(format!("{app}.toml"));
    let text = format!(
        "application_id = \"{app}\"\nbootstrap_servers = \"{bootstrap}\"\ninputs = [\"{input}\"]\n{extra}\n\
         [outputs]\ndefault = \"{output}\"\n\n[module]\npath = \"{}\"\n",
        module.display()
    );
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// `weir run` as a child process, with its stderr collected (and watched for log lines).
pub struct Weir {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Weir {
    /// Starts `<bin> run pipeline args...` with info-level logs; `bin` is the `weir-e2e` binary
    /// (`env!("CARGO_BIN_EXE_weir-e2e")` in a test).
    pub fn start(bin: &Path, pipeline: &Path, args: &[&str], cache_dir: &Path) -> Self {
        Self::start_with(bin, pipeline, args, cache_dir, &[])
    }

    /// Like [`Weir::start`], with these environment variables set too.
    pub fn start_with(bin: &Path, pipeline: &Path, args: &[&str], cache_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(bin)
            .arg("run")
            .arg(pipeline)
            .args(args)
            .args(["--cache-dir", &cache_dir.to_string_lossy()])
            .envs(env.iter().copied())
            .env("WEIR_LOG", "info,rdkafka=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start weir: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take();
        let sink = log.clone();
        std::thread::spawn(move || {
            if let Some(stderr) = stderr {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(mut log) = sink.lock() {
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
            }
        });
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until its log contains `needle`, or panics with the log after `timeout`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("weir exited ({status}) before logging {needle:?}:\n{}", self.log());
            }
            assert!(start.elapsed() < timeout, "weir did not log {needle:?} within {timeout:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL `weir run --admin 127.0.0.1:0` says it listens on, once it says so.
    pub fn admin_url(&mut self) -> String {
        self.wait_for_log("admin on http://", LONG);
        let log = self.log();
        let at = log.find("admin on http://").map(|i| i + "admin on ".len()).unwrap_or_default();
        log[at..].split_whitespace().next().unwrap_or_default().to_owned()
    }

    /// Waits for it to exit on its own (a refused start), and for its log to be read.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let status = self.child.wait().unwrap_or_else(|e| panic!("waiting for weir: {e}"));
        self.drain_log();
        status
    }

    /// Waits until the log of an exited weir stops growing.
    fn drain_log(&self) {
        let mut seen = self.log().len();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.log().len();
            if now == seen && now > 0 {
                break;
            }
            seen = now;
        }
    }

    /// SIGKILL: no chance to commit or leave the group.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit; panics with the log if it was not clean. Returns
    /// the log.
    pub fn stop(mut self) -> String {
        let status = terminate(&mut self.child);
        assert!(status.success(), "weir did not stop cleanly ({status}):\n{}", self.log());
        self.drain_log();
        self.log()
    }
}

/// How many partitions the last `assignment now` line of a weir log says it holds.
pub fn last_assignment(log: &str) -> Option<usize> {
    let line = log.lines().rev().find(|l| l.contains("assignment now"))?;
    let value = line.split("partitions=").nth(1)?;
    value.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Sends SIGTERM to our own child and waits for it to exit.
pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: sending a signal to our own child by its PID.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    child.wait().unwrap_or_else(|e| panic!("waiting for weir: {e}"))
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` one-word records keyed by their word (so a word always lands in the same partition),
/// starting at `from`, over a vocabulary of 500 words.
pub fn words(from: usize, n: usize) -> Vec<TestRecord> {
    (from..from + n).map(|i| format!("w{}", (i * 7919) % 500)).map(|w| (w.clone(), w, Vec::new())).collect()
}

/// How many times each word occurs in `records`.
pub fn true_counts(records: &[TestRecord]) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for (word, _, _) in records {
        *counts.entry(word.clone()).or_insert(0) += 1;
    }
    counts
}

/// The last count a word count emitted for each word (outputs of one word share a partition, in
/// order).
pub fn last_counts(out: &[ReadRecord]) -> HashMap<String, u64> {
    out.iter()
        .map(|r| {
            let key = r.key.clone().unwrap_or_else(|| panic!("a word count output without a key: {r:?}"));
            let value = r.value.as_deref().and_then(|v| v.parse().ok());
            (key, value.unwrap_or_else(|| panic!("a word count output whose value is not a count: {r:?}")))
        })
        .collect()
}

pub const LONG: Duration = Duration::from_secs(180);
pub const QUIET: Duration = Duration::from_secs(20);

/// A test's input and output topics (random names), its folder, and the weir binary.
pub struct Setup {
    pub bootstrap: String,
    pub input: String,
    pub output: String,
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    cache: Option<PathBuf>,
}

/// Topics with `partitions` partitions; `bin` is `env!("CARGO_BIN_EXE_weir-e2e")`.
pub fn setup(bin: &str, partitions: i32) -> Setup {
    let bootstrap = bootstrap();
    let (input, output) = (unique("in"), unique("out"));
    create_topic(&bootstrap, &input, partitions);
    create_topic(&bootstrap, &output, partitions);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    Setup { bootstrap, input, output, dir, bin: PathBuf::from(bin), cache: None }
}

impl Setup {
    /// A pipeline file running guest `module` from the input to the output.
    pub fn pipeline(&self, module: &str, app: &str, extra: &str) -> PathBuf {
        self.pipeline_of(&crate::guest(module), app, extra)
    }

    /// A pipeline file running the component at `module` from the input to the output.
    pub fn pipeline_of(&self, module: &Path, app: &str, extra: &str) -> PathBuf {
        pipeline_file(self.dir.path(), app, &self.bootstrap, &self.input, &self.output, module, extra)
    }

    /// Instances started from now on share this compiled-component cache (a fresh one by
    /// default), so components that take seconds to compile are compiled once.
    pub fn with_cache(mut self, cache: PathBuf) -> Self {
        self.cache = Some(cache);
        self
    }

    pub fn start(&self, pipeline: &Path, args: &[&str]) -> Weir {
        self.start_with(pipeline, args, &[])
    }

    /// Like [`Setup::start`], with these environment variables set too.
    pub fn start_with(&self, pipeline: &Path, args: &[&str], env: &[(&str, &str)]) -> Weir {
        Weir::start_with(&self.bin, pipeline, args, self.cache.as_deref().unwrap_or(self.dir.path()), env)
    }
}

/// Starts and SIGKILLs weir `crashes` times at random moments while `records` flow in (each
/// instance first commits some output of its own), then
/// lets a last instance run until the output has `want` records (or goes quiet).
pub fn crash_repeatedly(
    s: &Setup,
    pipeline: &Path,
    input: Vec<TestRecord>,
    crashes: usize,
    want: usize,
) -> Vec<ReadRecord> {
    crash_repeatedly_at(s, pipeline, input, None, crashes, want)
}

/// Like [`crash_repeatedly`], with the input records timestamped.
pub fn crash_repeatedly_at(
    s: &Setup,
    pipeline: &Path,
    input: Vec<TestRecord>,
    timestamps: Option<Vec<i64>>,
    crashes: usize,
    want: usize,
) -> Vec<ReadRecord> {
    use rand::Rng;
    let records = input.len();
    let (bootstrap, topic) = (s.bootstrap.clone(), s.input.clone());
    let producer = std::thread::spawn(move || {
        produce_at(&bootstrap, &topic, &input, timestamps.as_deref(), Some(Duration::from_secs(40)))
    });
    let mut rng = rand::rng();
    let mut output = CommittedReader::new(&s.bootstrap, &s.output);
    let mut committed_at_kills = Vec::new();
    for _ in 0..crashes {
        // Each kill lands once this instance has committed something of its own, a random
        // moment later: a fixed delay after the assignment can end an instance that is still
        // starting on a loaded machine, and then the crash tests nothing.
        let weir = s.start(pipeline, &["--instance-id", "crashy"]);
        let before = output.seen();
        if !output.wait_past(before, LONG) {
            panic!("weir committed nothing past {before} outputs within {LONG:?}:\n{}", weir.log());
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..1500)));
        weir.kill();
        committed_at_kills.push(output.settle(Duration::from_secs(1), LONG));
    }
    // As many outputs as inputs, unless the caller expects a number of its own.
    let expected = if want == usize::MAX { records } else { want };
    println!("outputs committed when each SIGKILL landed: {committed_at_kills:?} (of {expected} expected)");
    let mid_stream = committed_at_kills.iter().filter(|&&n| n > 0 && n < expected).count();
    assert!(mid_stream >= 3, "the crashes must land while records flow: {committed_at_kills:?}");
    producer.join().unwrap_or_else(|_| panic!("the producer thread panicked"));
    let last = s.start(pipeline, &["--instance-id", "crashy"]);
    let out = read_committed(&s.bootstrap, &s.output, want, QUIET, LONG);
    last.stop();
    out
}

/// A broker of a test's own, from `scripts/kafka.sh` on another port and data dir, for tests
/// that crash and restart it without disturbing the broker the other tests share. Stopped (by
/// the script, by its PID) when dropped.
pub struct OwnBroker {
    port: u16,
    pub bootstrap: String,
}

impl OwnBroker {
    /// Formats and starts a broker on `port` (its controller takes `port + 1`).
    pub fn start(port: u16) -> Self {
        let mut broker = Self { port, bootstrap: String::new() };
        broker.bootstrap = broker.script("start");
        broker
    }

    /// SIGKILL, as a crash: no clean shutdown, no flush.
    pub fn kill(&self) {
        self.script("kill");
    }

    /// Starts it again on the data it left, and waits until it answers.
    pub fn resume(&self) {
        self.script("resume");
    }

    fn script(&self, mode: &str) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
        let out = Command::new(&script)
            .arg(mode)
            .env("WEIR_KAFKA_PORT", self.port.to_string())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(out.status.success(), "scripts/kafka.sh {mode} on port {} failed ({})", self.port, out.status);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.script("stop");
    }
}
