//! Interactive queries under load: point-query latency (p50, p99) and queries per second over
//! loopback from several concurrent clients while a word count processes at full speed, beside
//! a direct read of a RocksDB store in this process (the floor); the pipeline's speed with and
//! without the queries; and the latency of a query another instance answers (forwarded).
//!
//! The pipeline is timed by its group's committed offsets, from its first commit to the one
//! that covers the last record (`weir_tests::peers::Meter`), so deploying and joining the
//! group count for no load; loads interleave over `WEIR_BENCH_ROUNDS` rounds (default 3), and
//! medians are compared.
//!
//! Run: `scripts/kafka.sh start` then `cargo bench -p weir-tests --bench query`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_runtime::query::partition_for;
use weir_runtime::state::{RocksStore, StateStore};
use weir_tests::kafka::{bootstrap, create_topic, produce, unique, TestRecord};
use weir_tests::peers::Meter;
use weir_tests::serve::{Server, Sidecar};

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");
const RECORDS: usize = 1_500_000;
const WORDS: usize = 20_000;
/// Threads reading the store directly (the floor).
const CLIENTS: usize = 2;
/// Keep-alive connections the query clients use.
const CONNECTIONS: usize = 16;
const PARTITIONS: i32 = 4;

fn word(i: usize) -> String {
    format!("w{}", (i * 7919) % WORDS)
}

/// Latencies in µs: (p50, p99).
fn percentiles(mut micros: Vec<u32>) -> (f64, f64) {
    micros.sort_unstable();
    let at = |q: f64| micros.get(((micros.len() as f64 * q) as usize).min(micros.len().saturating_sub(1))).copied();
    (at(0.50).unwrap_or(0) as f64 / 1000.0, at(0.99).unwrap_or(0) as f64 / 1000.0)
}

/// One round: pipeline records/s, query (p50, p99) in ms, queries/s, CPU µs per answer of the
/// server's HTTP thread and of the client thread.
type Round = (f64, (f64, f64), f64, f64, f64);

/// CPU seconds the calling thread has used.
fn thread_cpu() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for the call to fill.
    match unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } {
        0 => t.tv_sec as f64 + t.tv_nsec as f64 / 1e9,
        _ => 0.0,
    }
}

/// CPU seconds the threads named `weir-http` of process `pid` have used.
fn http_cpu(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0.0 };
    let ticks = |stat: &str| -> Option<f64> {
        let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
        if name != "weir-http" {
            return Some(0.0);
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?)
    };
    // SAFETY: sysconf reads a constant of the system.
    let hz = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as f64,
        _ => 100.0,
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| ticks(&stat))
        .sum::<f64>()
        / hz
}

/// How hard the clients ask.
#[derive(Clone, Copy)]
enum Load {
    None,
    /// As fast as the answers come.
    Saturating,
    /// About this many queries per second in all.
    Paced(u32),
}

/// When the next queries may go: `None` as fast as answers come, else released by a pacer
/// (each release carries when it was made).
type Releases = Option<Pacing>;

#[derive(Clone)]
struct Pacing {
    releases: Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Instant>>>,
    /// Set by the first answer from the pipeline's state: the pacer starts then, so the queries
    /// answered 503 before its first assignment leave no backlog behind.
    answering: Arc<AtomicBool>,
}

/// Releases `per_second` queries evenly into `into`, from the first answer until `stop`. A
/// thread of its own, because tokio's timer ticks in whole milliseconds: sleeping per
/// connection there sent all sixteen at once, in bursts, and fell short of the rate.
fn pacer(
    per_second: u32,
    into: tokio::sync::mpsc::UnboundedSender<Instant>,
    answering: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    while !answering.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    let mut released = 0u64;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_micros(100));
        let now = Instant::now();
        let due = (now.duration_since(started).as_secs_f64() * f64::from(per_second)) as u64;
        while released < due {
            if into.send(now).is_err() {
                return;
            }
            released += 1;
        }
    }
}

/// One keep-alive connection asking `GET {prefix}{word}` for random words until `stop`, each
/// when `releases` lets one go (or at once); the latency of each answer (200 or 404) in µs,
/// from its release (so a query waiting for a free connection counts its wait).
async fn asker(address: String, prefix: String, stop: Arc<AtomicBool>, seed: usize, releases: Releases) -> Answers {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        tokio::net::TcpStream::connect(&address).await.unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream.set_nodelay(true).unwrap_or_else(|e| panic!("{e}"));
    let (mut micros, mut i, mut buf) = (Vec::new(), seed, Vec::with_capacity(8192));
    let mut first = None;
    while !stop.load(Ordering::Relaxed) {
        let started = match &releases {
            Some(p) if p.answering.load(Ordering::Relaxed) => match p.releases.lock().await.recv().await {
                Some(at) => at,
                None => break,
            },
            Some(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Instant::now()
            }
            None => Instant::now(),
        };
        i = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let request = format!("GET {prefix}{} HTTP/1.1\r\nHost: bench\r\n\r\n", word(i >> 20));
        stream.write_all(request.as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
        buf.clear();
        // Headers, then as many body bytes as Content-Length says.
        let (head, length) = loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap_or_else(|e| panic!("{e}"));
            assert!(n > 0, "the server closed the connection");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (end + 4, length);
            }
        };
        while buf.len() < head + length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap_or_else(|e| panic!("{e}"));
            assert!(n > 0, "the server closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        }
        // 404 (a word not counted yet) is an answer too; 503 comes before the first assignment.
        if buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.1 404") {
            match &releases {
                Some(p) if !p.answering.swap(true, Ordering::Relaxed) => continue,
                _ => {}
            }
            micros.push(started.elapsed().as_micros() as u32);
            first.get_or_insert(started);
        }
    }
    Answers { micros, first }
}

/// What one connection got: the latency of each answer in µs, and when it asked the first
/// question that was answered (before the first assignment, the answers are 503).
#[derive(Default)]
struct Answers {
    micros: Vec<u32>,
    first: Option<Instant>,
}

/// Deploys word count `app` over the waiting input and times it by its committed offsets until
/// every record is committed, with the clients asking for random words meanwhile as `load`
/// says. Records/s, the query latencies, queries/s while it ran, and the CPU µs per answer of
/// the HTTP thread and of the client thread.
fn round(server: &Server, s: &Sidecar, input: &str, load: Load) -> (f64, Vec<u32>, f64, f64, f64) {
    let app = unique("bench-query");
    let output = unique("bench-query-out");
    create_topic(&s.bootstrap, &output, PARTITIONS);
    let file = s.pipeline(&app, "word-count", input, &output, "guarantee = \"exactly-once\"");
    let stop = Arc::new(AtomicBool::new(false));
    let (connections, releases, pacing) = match load {
        Load::None => (0, None, None),
        Load::Saturating => (CONNECTIONS, None, None),
        Load::Paced(per_second) => {
            let (send, receive) = tokio::sync::mpsc::unbounded_channel();
            let answering = Arc::new(AtomicBool::new(false));
            let pacing = {
                let (answering, stop) = (answering.clone(), stop.clone());
                std::thread::spawn(move || pacer(per_second, send, answering, stop))
            };
            let releases = Pacing { releases: Arc::new(tokio::sync::Mutex::new(receive)), answering };
            (CONNECTIONS, Some(releases), Some(pacing))
        }
    };
    let address = server.url.trim_start_matches("http://").to_owned();
    let prefix = format!("/v1/pipelines/{app}/state/");
    let stop_clients = stop.clone();
    // One thread drives every connection, as a load generator like wrk does.
    let clients = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
        let cpu = thread_cpu();
        let all = rt.block_on(async move {
            let tasks: Vec<_> = (0..connections)
                .map(|c| {
                    let releases = releases.clone();
                    tokio::spawn(asker(address.clone(), prefix.clone(), stop_clients.clone(), c * 1_000_003, releases))
                })
                .collect();
            let mut all = Answers::default();
            for t in tasks {
                let answers = t.await.unwrap_or_default();
                all.micros.extend(answers.micros);
                all.first = all.first.into_iter().chain(answers.first).min();
            }
            all
        });
        (all, thread_cpu() - cpu)
    });
    let meter = Meter::new(&s.bootstrap, &app, input, PARTITIONS);
    let (started, cpu_before) = (Instant::now(), http_cpu(server.pid()));
    server.deploy(&file);
    let rate = meter.until(RECORDS as u64, Duration::from_secs(600), || true).unwrap_or_else(|e| panic!("{app}: {e}"));
    let ended = Instant::now();
    stop.store(true, Ordering::SeqCst);
    let (answers, client_cpu) = clients.join().unwrap_or_default();
    if let Some(pacing) = pacing {
        let _ = pacing.join();
    }
    let cpu = http_cpu(server.pid()) - cpu_before;
    // Each round's pipeline leaves, so no later round shares the machine with idle ones.
    let (status, body) = server.send("DELETE", &format!("/v1/pipelines/{app}?purge=true"), None, Some(&server.token));
    assert_eq!(status, 200, "undeploy {app}: {body}");
    let asking = ended.duration_since(answers.first.unwrap_or(started)).as_secs_f64();
    let qps = answers.micros.len() as f64 / asking.max(1e-3);
    let answered = (answers.micros.len() as f64).max(1.0);
    (rate.per_second(), answers.micros, qps, cpu * 1e6 / answered, client_cpu * 1e6 / answered)
}

/// The floor: reads of a RocksDB store in this process, by `CLIENTS` threads, for a second.
fn direct_reads() -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut store = RocksStore::open_changelog_backed(&dir.path().join("store")).unwrap_or_else(|e| panic!("{e}"));
    let writes = (0..WORDS).map(|i| (format!("w{i}").into_bytes(), Some(b"12".to_vec()))).collect();
    store.apply(writes, None).unwrap_or_else(|e| panic!("{e}"));
    let reader = store.reader();
    let window = Duration::from_secs(1);
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let reader = reader.clone();
            std::thread::spawn(move || {
                let (started, mut n, mut i) = (Instant::now(), 0u64, c);
                while started.elapsed() < window {
                    i = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    std::hint::black_box(reader.get(word(i >> 20).as_bytes()).ok());
                    n += 1;
                }
                n
            })
        })
        .collect();
    let reads: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    let per_second = reads as f64 / window.as_secs_f64();
    (per_second, CLIENTS as f64 * 1e9 / per_second)
}

/// Sequential queries from `a`, alternating between words `b` owns (forwarded) and words `a`
/// owns, once both instances have processed every record (so the pipeline is idle for both):
/// (p50, p99) of each.
fn forwarded(s: &Sidecar, a: &Server, input: &str) -> ((f64, f64), (f64, f64)) {
    let app = unique("bench-forward");
    let output = unique("bench-forward-out");
    create_topic(&s.bootstrap, &output, PARTITIONS);
    let file = s.pipeline(&app, "word-count", input, &output, "");
    let b = s.serve_in("bench-b", &["--instance-id", "bench-b"]);
    a.deploy(&file);
    b.deploy(&file);
    let meter = Meter::new(&s.bootstrap, &app, input, PARTITIONS);
    meter.until(RECORDS as u64, Duration::from_secs(600), || true).unwrap_or_else(|e| panic!("{app}: {e}"));
    let owned_by = |server: &Server| -> Vec<i64> {
        let started = Instant::now();
        loop {
            let (_, map, _) = server.query(&format!("/v1/pipelines/{app}/instances"));
            let members = map["members"].as_array().cloned().unwrap_or_default();
            let owned: Vec<i64> = map["owned"].as_array().into_iter().flatten().filter_map(|p| p.as_i64()).collect();
            if members.len() == 2 && !owned.is_empty() && owned.len() < PARTITIONS as usize {
                return owned;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "the instances never split: {map}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let here = owned_by(a);
    owned_by(&b);
    let words: Vec<String> = (0..WORDS).map(|i| format!("w{i}")).collect();
    let (local, remote): (Vec<&String>, Vec<&String>) =
        words.iter().partition(|w| here.contains(&i64::from(partition_for(w.as_bytes(), PARTITIONS))));
    let (mut there, mut mine) = (Vec::new(), Vec::new());
    for (r, l) in remote.iter().zip(&local).take(2_000) {
        for (word, into) in [(r, &mut there), (l, &mut mine)] {
            let started = Instant::now();
            let (status, _, _) = a.query(&format!("/v1/pipelines/{app}/state/{word}"));
            if status == 200 || status == 404 {
                into.push(started.elapsed().as_micros() as u32);
            }
        }
    }
    b.stop();
    (percentiles(there), percentiles(mine))
}

fn main() {
    let _ = bootstrap();
    let s = Sidecar::new(Path::new(BIN));
    let input = unique("bench-query-in");
    create_topic(&s.bootstrap, &input, PARTITIONS);
    let records: Vec<TestRecord> = (0..RECORDS).map(|i| (word(i), word(i), Vec::new())).collect();
    produce(&s.bootstrap, &input, &records, None);
    let server = s.serve_in("bench-a", &["--instance-id", "bench-a"]);
    // Interleaved rounds: without queries, saturating queries, paced queries (the targets' rate,
    // and a light load); twice.
    let loads = [
        ("no queries", Load::None),
        ("queries as fast as answered", Load::Saturating),
        ("20,000 queries/s", Load::Paced(20_000)),
        ("2,000 queries/s", Load::Paced(2_000)),
    ];
    let rounds: usize = std::env::var("WEIR_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let mut results: Vec<Vec<Round>> = vec![Vec::new(); loads.len()];
    let mut latencies: Vec<Vec<u32>> = vec![Vec::new(); loads.len()];
    for _ in 0..rounds {
        for (i, (_, load)) in loads.iter().enumerate() {
            let (speed, micros, qps, cpu, client) = round(&server, &s, &input, *load);
            results[i].push((speed, percentiles(micros.clone()), qps, cpu, client));
            latencies[i].extend(micros);
        }
    }
    let (floor_rate, floor_ns) = direct_reads();
    let ((fwd50, fwd99), (loc50, loc99)) = forwarded(&s, &server, &input);
    server.stop();

    println!(
        "\ninteractive queries: word count over {RECORDS} records ({WORDS} words, {PARTITIONS} partitions, exactly-once, RocksDB), \
         point queries for random words on {CONNECTIONS} keep-alive connections from one client thread, while the pipeline processes; \
         timed by committed offsets, {rounds} interleaved rounds"
    );
    println!(
        "{:>30} {:>22} {:>10} {:>26} {:>12} {:>14} {:>16}",
        "load", "pipeline records/s", "ratio", "p50 / p99 ms", "queries/s", "HTTP µs/query", "client µs/query"
    );
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let baseline = median(results[0].iter().map(|r| r.0).collect());
    for (i, ((name, load), rounds)) in loads.iter().zip(&results).enumerate() {
        let latency = |(p50, p99): (f64, f64)| match load {
            Load::None => "-".to_owned(),
            _ => format!("{p50:.3} / {p99:.3}"),
        };
        let cpu = |c: f64| match load {
            Load::None => "-".to_owned(),
            _ => format!("{c:.1}"),
        };
        for (speed, percentiles, qps, c, client) in rounds {
            println!(
                "{name:>30} {speed:>22.0} {:>9.2}x {:>26} {qps:>12.0} {:>14} {:>16}",
                speed / baseline,
                latency(*percentiles),
                cpu(*c),
                cpu(*client)
            );
        }
        let speed = median(rounds.iter().map(|r| r.0).collect());
        let qps = median(rounds.iter().map(|r| r.2).collect());
        let c = median(rounds.iter().map(|r| r.3).collect());
        let client = median(rounds.iter().map(|r| r.4).collect());
        let all = latency(percentiles(latencies[i].clone()));
        println!(
            "{:>30} {speed:>22.0} {:>9.2}x {all:>26} {qps:>12.0} {:>14} {:>16}",
            "median, all answers",
            speed / baseline,
            cpu(c),
            cpu(client)
        );
    }
    println!("{:>30} targets: ratio at least 0.8x, p99 at most 2 ms, at least 20,000 queries/s", "");
    println!("{:>52} {floor_rate:.0} reads/s, {floor_ns:.0} ns a read", "floor: the store read directly, same threads");
    println!("{:>52} p50 {loc50:.3} ms, p99 {loc99:.3} ms", "one client, pipelines done: a key owned here");
    println!("{:>52} p50 {fwd50:.3} ms, p99 {fwd99:.3} ms", "one client, pipelines done: forwarded to the owner");
}
