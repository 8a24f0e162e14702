//! `weir serve` as a service: what a hot swap costs under load, how long a deploy takes to its
//! first output, and what one sidecar with many pipelines weighs. Each figure is printed beside
//! a baseline from the same run.
//!
//! - Swap pause: `uppercase` under steady exactly-once load, swapped for `reversed`. From the
//!   deploy request to the first output of v2 a read_committed reader sees, and the longest gap
//!   between outputs around the swap, beside the longest gap in the seconds before it.
//! - Deploy to first output: a Rust and a Python module, compiled cold (an empty cache) and from
//!   the cache, beside `weir run` of the same module from the cache.
//! - Memory: the RSS of one `weir serve` with 20 idle stateless pipelines, beside 20 `weir run`
//!   processes.
//!
//! Run: `scripts/kafka.sh start` then `cargo bench -p weir-tests --bench serve`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use weir_tests::kafka::{bootstrap, create_topic, numbered, pipeline_file, produce, read_committed, unique, Weir};
use weir_tests::serve::Server;
use weir_tests::{guest, polyglot_guest};

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");

fn main() {
    let bootstrap = bootstrap();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let cache = dir.path().join("cache");
    swap_pause(&bootstrap, dir.path(), &cache);
    deploy_to_first_output(&bootstrap, dir.path());
    memory(&bootstrap, dir.path(), &cache);
}

/// Outputs as a read_committed reader sees them arrive: when, and whether v2 wrote them.
fn watch(bootstrap: &str, topic: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<(Instant, bool)>> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", unique("bench-reader"))
            .set("isolation.level", "read_committed")
            .create()
            .unwrap_or_else(|e| panic!("reader: {e}"));
        let mut tpl = TopicPartitionList::new();
        for p in 0..4 {
            tpl.add_partition_offset(&topic, p, Offset::Beginning).unwrap_or_else(|e| panic!("{e}"));
        }
        consumer.assign(&tpl).unwrap_or_else(|e| panic!("{e}"));
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
                // v1 uppercases ("RECORD 7"), v2 reverses ("7 drocer").
                let v2 = m.payload().is_some_and(|p| p.ends_with(b"drocer"));
                seen.push((Instant::now(), v2));
            }
        }
        seen
    })
}

/// `dir/name`, created.
fn folder(dir: &Path, name: impl AsRef<Path>) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    path
}

fn longest_gap(arrivals: &[Instant]) -> Duration {
    arrivals.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

fn swap_pause(bootstrap: &str, dir: &Path, cache: &Path) {
    let (input, output) = (unique("bench-swap-in"), unique("bench-swap-out"));
    create_topic(bootstrap, &input, 4);
    create_topic(bootstrap, &output, 4);
    let server = Server::start(Path::new(BIN), &dir.join("swap-data"), cache, &[]);
    let app = unique("bench-swap");
    let extra = "guarantee = \"exactly-once\"";
    let v1 = pipeline_file(&folder(dir, "v1"), &app, bootstrap, &input, &output, &guest("uppercase"), extra);
    let v2 = pipeline_file(&folder(dir, "v2"), &app, bootstrap, &input, &output, &guest("reversed"), extra);
    // Compile v2 into the cache first: the figure is the swap, not a cold compile.
    let warm = weir_tests::weir(&["inspect", &guest("reversed").to_string_lossy()], cache);
    assert!(warm.ok, "{:?}", warm.error);
    server.deploy(&v1);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = watch(bootstrap, &output, stop.clone());
    let (records, over) = (300_000, Duration::from_secs(20));
    let producer = {
        let (bootstrap, input) = (bootstrap.to_owned(), input.clone());
        std::thread::spawn(move || produce(&bootstrap, &input, &numbered(0..records), Some(over)))
    };
    std::thread::sleep(Duration::from_secs(10));
    let asked = Instant::now();
    server.deploy(&v2);
    let answered = asked.elapsed();
    producer.join().unwrap_or_else(|_| panic!("producer panicked"));
    server.wait_for(&app, "caught up", Duration::from_secs(120), |s| s["lag"] == 0);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let seen = reader.join().unwrap_or_else(|_| panic!("reader panicked"));
    let first_v2 = seen.iter().find(|(_, v2)| *v2).map(|(t, _)| *t - asked);
    let window = |from: Instant, to: Instant| -> Vec<Instant> {
        seen.iter().map(|(t, _)| *t).filter(|t| *t >= from && *t <= to).collect()
    };
    let before = longest_gap(&window(asked - Duration::from_secs(5), asked));
    let around = longest_gap(&window(asked, asked + Duration::from_secs(3)));
    let commit_interval = Duration::from_millis(100);
    println!(
        "\nhot swap under steady exactly-once load ({records} records over {} s, 4 partitions, uppercase -> reversed)",
        over.as_secs()
    );
    println!("{:>48} {:>10}", "", "ms");
    println!("{:>48} {:>10}", "deploy request answered (v2 live)", answered.as_millis());
    println!(
        "{:>48} {:>10}",
        "request to first v2 output (read_committed)",
        first_v2.map_or("-".into(), |d| d.as_millis().to_string())
    );
    println!("{:>48} {:>10}", "longest gap in outputs, 3 s after the request", around.as_millis());
    println!("{:>48} {:>10}", "baseline: longest gap in the 5 s before", before.as_millis());
    println!(
        "{:>48} {:>10}",
        "target: commit interval + 50 ms",
        (commit_interval + Duration::from_millis(50)).as_millis()
    );
    server.stop();
}

/// Deploys `module` as a fresh pipeline over 10 waiting records and times it to the first
/// output.
fn time_deploy(server: &Server, bootstrap: &str, dir: &Path, module: &Path) -> Duration {
    let (input, output) = (unique("bench-dep-in"), unique("bench-dep-out"));
    create_topic(bootstrap, &input, 1);
    create_topic(bootstrap, &output, 1);
    produce(bootstrap, &input, &numbered(0..10), None);
    let app = unique("bench-deploy");
    let file = pipeline_file(&folder(dir, &app), &app, bootstrap, &input, &output, module, "");
    let started = Instant::now();
    server.deploy(&file);
    let out = read_committed(bootstrap, &output, 1, Duration::from_secs(60), Duration::from_secs(120));
    assert!(!out.is_empty(), "no output from {}", module.display());
    started.elapsed()
}

/// `weir run` of `module` from a warm cache, to its first output.
fn time_run(bootstrap: &str, dir: &Path, module: &Path, cache: &Path) -> Duration {
    let (input, output) = (unique("bench-run-in"), unique("bench-run-out"));
    create_topic(bootstrap, &input, 1);
    create_topic(bootstrap, &output, 1);
    produce(bootstrap, &input, &numbered(0..10), None);
    let app = unique("bench-run");
    let file = pipeline_file(&folder(dir, &app), &app, bootstrap, &input, &output, module, "");
    let started = Instant::now();
    let weir = Weir::start(Path::new(BIN), &file, &[], cache);
    let out = read_committed(bootstrap, &output, 1, Duration::from_secs(60), Duration::from_secs(120));
    let took = started.elapsed();
    weir.stop();
    assert!(!out.is_empty(), "no output from weir run {}", module.display());
    took
}

fn deploy_to_first_output(bootstrap: &str, dir: &Path) {
    println!("\ndeploy to first output (10 records waiting, exactly-once), seconds");
    println!("{:>12} {:>14} {:>14} {:>22}", "module", "cold compile", "from cache", "weir run, from cache");
    let modules: Vec<(&str, PathBuf)> =
        vec![("Rust", guest("uppercase")), ("Python", polyglot_guest("python", "uppercase"))];
    for (language, module) in modules {
        let cache = dir.join(format!("cold-cache-{language}"));
        let server = Server::start(Path::new(BIN), &dir.join(format!("deploy-data-{language}")), &cache, &[]);
        let cold = time_deploy(&server, bootstrap, dir, &module);
        let cached = time_deploy(&server, bootstrap, dir, &module);
        server.stop();
        let run = time_run(bootstrap, dir, &module, &cache);
        println!(
            "{language:>12} {:>14.2} {:>14.2} {:>22.2}",
            cold.as_secs_f64(),
            cached.as_secs_f64(),
            run.as_secs_f64()
        );
    }
}

/// Resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn memory(bootstrap: &str, dir: &Path, cache: &Path) {
    const PIPELINES: usize = 20;
    let files: Vec<(String, PathBuf)> = (0..PIPELINES)
        .map(|i| {
            let (input, output) = (unique("bench-idle-in"), unique("bench-idle-out"));
            create_topic(bootstrap, &input, 1);
            create_topic(bootstrap, &output, 1);
            let app = unique(&format!("bench-idle{i}"));
            let file = pipeline_file(&folder(dir, &app), &app, bootstrap, &input, &output, &guest("uppercase"), "");
            (app, file)
        })
        .collect();
    let server = Server::start(Path::new(BIN), &dir.join("idle-data"), cache, &[]);
    for (app, file) in &files {
        server.deploy(file);
        server.wait_phase(app, "running");
    }
    std::thread::sleep(Duration::from_secs(3));
    let serve_rss = rss_mib(server.pid());
    server.stop();

    let mut runs = Vec::new();
    for (i, (_, file)) in files.iter().enumerate() {
        let mut weir = Weir::start(Path::new(BIN), file, &["--instance-id", &format!("run{i}")], cache);
        weir.wait_for_log("partitions assigned", Duration::from_secs(120));
        runs.push(weir);
    }
    std::thread::sleep(Duration::from_secs(3));
    let run_rss: f64 = runs.iter().map(|w| rss_mib(w.pid())).sum();
    for weir in runs {
        weir.stop();
    }
    println!("\nmemory: {PIPELINES} idle stateless Rust pipelines (uppercase), resident MiB");
    println!("{:>40} {:>10.0}", "one weir serve hosting all", serve_rss);
    println!("{:>40} {:>10.0}", format!("baseline: {PIPELINES} weir run processes, summed"), run_rss);
    println!("{:>40} {:>10.2}", "ratio", serve_rss / run_rss.max(1.0));
}
