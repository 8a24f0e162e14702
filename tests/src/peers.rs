//! The systems weir's benchmarks compare with, and one way to time them all: from outside, by
//! the committed offsets of their consumer group, from the first commit to the one that covers
//! the last record. Every system commits as it goes, so this counts processing and committing
//! alike, and never a start-up, a group join or a shutdown.
//!
//! [`KafkaStreams`] runs the word count of `benches/kafka-streams` (Processor API or DSL) in one
//! JVM over several rounds, so the first can warm it up.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;

/// How often the meter asks for the group's committed offsets.
const TICK: Duration = Duration::from_millis(50);

/// Reads a consumer group's committed offsets on a topic.
pub struct Meter {
    consumer: BaseConsumer,
    partitions: TopicPartitionList,
}

/// What a meter saw: records committed from the first commit to the last, and how long that took.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub records: u64,
    pub seconds: f64,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.records as f64 / self.seconds
    }
}

impl Meter {
    /// A meter of `group` on `topic`'s `partitions` partitions.
    pub fn new(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap_or_else(|e| panic!("meter: {e}"));
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        Self { consumer, partitions: tpl }
    }

    /// Records the group has committed, over all partitions.
    pub fn committed(&self) -> u64 {
        let committed = self
            .consumer
            .committed_offsets(self.partitions.clone(), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("committed offsets: {e}"));
        committed.elements().iter().filter_map(|e| e.offset().to_raw()).filter(|o| *o > 0).sum::<i64>() as u64
    }

    /// Waits until `total` records are committed and returns the rate from the first commit to
    /// the last; `Err` says how far the group got when `running` says the system has stopped, or
    /// when `timeout` passed.
    pub fn until(&self, total: u64, timeout: Duration, mut running: impl FnMut() -> bool) -> Result<Rate, String> {
        let started = Instant::now();
        let mut first: Option<(Instant, u64)> = None;
        loop {
            // Asked before the offsets, so the last commit of a system that just ended is seen.
            let stopped = !running();
            let now = self.committed();
            let at = Instant::now();
            if now > 0 && first.is_none() {
                first = Some((at, now));
            }
            if now >= total {
                let (since, base) = first.unwrap_or((at, now));
                return Ok(Rate { records: now - base, seconds: at.duration_since(since).as_secs_f64().max(1e-3) });
            }
            if stopped {
                return Err(format!("it stopped with {now} of {total} records committed"));
            }
            if started.elapsed() > timeout {
                return Err(format!("only {now} of {total} records committed after {timeout:?}"));
            }
            std::thread::sleep(TICK);
        }
    }
}

/// A JVM running the Kafka Streams word count, driven over its stdin.
pub struct KafkaStreams {
    child: Child,
    /// The applications' state directories, removed when dropped (after the JVM is stopped).
    _state: tempfile::TempDir,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl KafkaStreams {
    /// Builds `benches/kafka-streams` with Maven (Kafka Streams from Maven Central) into
    /// `build_dir`, and starts its JVM against `bootstrap`. `Err` says why it cannot run.
    pub fn start(bootstrap: &str, build_dir: &Path) -> Result<Self, String> {
        let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches").join("kafka-streams");
        let built = Command::new("mvn")
            .args(["-q", "-B", "package", "-f"])
            .arg(project.join("pom.xml"))
            .arg(format!("-Dweir.build={}", build_dir.display()))
            .output()
            .map_err(|e| format!("cannot run mvn: {e}"))?;
        if !built.status.success() {
            let said = String::from_utf8_lossy(&built.stdout).into_owned() + &String::from_utf8_lossy(&built.stderr);
            return Err(format!("mvn package failed ({}): {}", built.status, said.trim()));
        }
        let classpath: PathBuf = build_dir.join("classes");
        let state = tempfile::Builder::new()
            .prefix("weir-bench-kafka-streams-")
            .tempdir()
            .map_err(|e| format!("cannot make a state directory: {e}"))?;
        let mut child = Command::new("java")
            .arg("-cp")
            .arg(format!("{}:{}/*", classpath.display(), build_dir.join("lib").display()))
            .args(["weir.bench.WordCount", bootstrap])
            .arg(state.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run java: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the JVM's stdin or stdout is missing".into());
        };
        Ok(Self { child, _state: state, stdin, stdout: BufReader::new(stdout) })
    }

    /// Starts application `app` (`processor` or `dsl` mode) from `input` to `output`, from the
    /// earliest offsets; its consumer group is `app`.
    pub fn run(&mut self, mode: &str, app: &str, input: &str, output: &str) {
        self.command(&format!("start {mode} {app} {input} {output}"), "started");
    }

    /// Closes the running application.
    pub fn stop(&mut self) {
        self.command("stop", "stopped");
    }

    fn command(&mut self, line: &str, answer: &str) {
        writeln!(self.stdin, "{line}").unwrap_or_else(|e| panic!("the Kafka Streams JVM is gone: {e}"));
        let mut said = String::new();
        self.stdout.read_line(&mut said).unwrap_or_else(|e| panic!("the Kafka Streams JVM is gone: {e}"));
        assert_eq!(said.trim(), answer, "the Kafka Streams JVM, asked `{line}`");
    }
}

impl Drop for KafkaStreams {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
