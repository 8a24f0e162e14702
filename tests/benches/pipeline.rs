//! weir's pipeline against a raw rdkafka passthrough, in one run on the same broker.
//!
//! Input: 1M records of 100 bytes over 4 partitions. The baseline consumes, produces the same
//! bytes and commits exactly as weir does (transactions every 100 ms with the consumed offsets
//! under exactly-once; flush then commit offsets every second under at-least-once), with no
//! Wasm. weir runs `uppercase`. Throughput is measured from the first record consumed to the
//! last commit, so joining the group is not counted.
//!
//! Then, on one-word records keyed by the word: `word-count` next to `uppercase` under
//! exactly-once (the price of state), restore speed from a changelog of as many records, and the
//! same word count written with Quix Streams (`quix_wordcount.py`, needs `pip install
//! quixstreams`).
//!
//! Then the enrichment join: as many orders, keyed by customer id, each looked up in a
//! co-partitioned table of 100,000 customers (`orders-enrich`), next to `uppercase` on the same
//! orders.
//!
//! Then windows: as many timestamped records over 1,000 keys counted per key in 10 s tumbling
//! windows (`windowed-count`: a state write and a timer per record, a timer firing per window),
//! next to the running count per key (`word-count`) on the same records.
//!
//! Run: `scripts/kafka.sh start` then `cargo bench -p weir-tests --bench pipeline`
//! (`WEIR_BENCH_RECORDS` changes the record count; `-- restore` runs only the restore section,
//! `-- enrich` only the enrichment join, `-- windows` only the windows).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use weir_runtime::changelog;
use weir_runtime::engine::{Engine, EngineOptions};
use weir_runtime::pipeline::config::{Guarantee, ModuleConfig, PipelineConfig, TableConfig};
use weir_runtime::pipeline::Pipeline;
use weir_runtime::state::RocksStore;
use weir_tests::guest;
use weir_tests::kafka::{bootstrap, create_topic, produce, produce_at, unique};

const PARTITIONS: i32 = 4;
const BATCH: usize = 500;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let total: usize = std::env::var("WEIR_BENCH_RECORDS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let bootstrap = bootstrap();
    let input = unique("bench-in");
    create_topic(&bootstrap, &input, PARTITIONS);
    let value = "x".repeat(100);
    let records: Vec<_> = (0..total).map(|i| (format!("k{i}"), value.clone(), Vec::new())).collect();
    let started = Instant::now();
    produce(&bootstrap, &input, &records, None);
    drop(records);
    println!(
        "weir pipeline benchmark: {total} records of 100 bytes, {PARTITIONS} partitions (produced in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let engine = Engine::new(EngineOptions::default()).unwrap_or_else(|e| panic!("engine: {e}"));
    if std::env::args().skip(1).any(|a| a == "restore") {
        restore_speed(&bootstrap, total);
        return;
    }
    if std::env::args().skip(1).any(|a| a == "enrich") {
        enrichment(&engine, &bootstrap, total);
        return;
    }
    if std::env::args().skip(1).any(|a| a == "windows") {
        windows(&engine, &bootstrap, total);
        return;
    }
    println!("{:>14} {:>16} {:>16} {:>8}", "guarantee", "raw rdkafka r/s", "weir r/s", "ratio");
    for guarantee in [Guarantee::ExactlyOnce, Guarantee::AtLeastOnce] {
        let raw = passthrough(&bootstrap, &input, guarantee, total);
        let weir = weir(&engine, &config(&bootstrap, &input, "uppercase", guarantee, None), total);
        println!("{:>14} {raw:>16.0} {weir:>16.0} {:>8.2}", format!("{guarantee:?}"), weir / raw);
    }
    stateful(&engine, &bootstrap, total);
    enrichment(&engine, &bootstrap, total);
    windows(&engine, &bootstrap, total);
}

/// Counts per key in event-time windows next to running counts per key, on the same records:
/// 1,000 keys, one record per millisecond of event time.
fn windows(engine: &Engine, bootstrap: &str, total: usize) {
    let topic = unique("bench-clicks");
    create_topic(bootstrap, &topic, PARTITIONS);
    let records: Vec<_> =
        (0..total).map(|i| format!("user-{:04}", (i * 7919) % 1_000)).map(|k| (k.clone(), k, Vec::new())).collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let base = now - 3 * 3_600_000;
    let timestamps: Vec<i64> = (0..total as i64).map(|i| base + i).collect();
    produce_at(bootstrap, &topic, &records, Some(&timestamps), None);
    drop((records, timestamps));
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let counting = weir(
        engine,
        &config(bootstrap, &topic, "word-count", Guarantee::ExactlyOnce, Some(&state.path().join("c"))),
        total,
    );
    let windowing = weir(
        engine,
        &config(bootstrap, &topic, "windowed-count", Guarantee::ExactlyOnce, Some(&state.path().join("w"))),
        total,
    );
    println!();
    println!("windows: {total} records, 1,000 keys, 10 s tumbling windows of event time, exactly-once, RocksDB with a changelog");
    println!("{:>24} {:>16} {:>16} {:>8}", "", "word-count r/s", "windowed r/s", "ratio");
    println!("{:>24} {counting:>16.0} {windowing:>16.0} {:>8.2}", "weir", windowing / counting);
}

/// Orders joined with a co-partitioned table of 100,000 customers, next to `uppercase` on the
/// same orders.
fn enrichment(engine: &Engine, bootstrap: &str, total: usize) {
    const CUSTOMERS: usize = 100_000;
    let (orders, customers) = (unique("bench-orders"), unique("bench-customers"));
    create_topic(bootstrap, &orders, PARTITIONS);
    create_topic(bootstrap, &customers, PARTITIONS);
    let table: Vec<_> = (0..CUSTOMERS)
        .map(|i| {
            (
                format!("c{i}"),
                format!(r#"{{"name":"customer {i}","email":"c{i}@example.com","tier":"gold"}}"#),
                Vec::new(),
            )
        })
        .collect();
    produce(bootstrap, &customers, &table, None);
    let stream: Vec<_> = (0..total)
        .map(|i| {
            (
                format!("c{}", (i * 7919) % CUSTOMERS),
                format!(r#"{{"order_id":"o{i}","amount":{}.5,"item":"book"}}"#, i % 100),
                Vec::new(),
            )
        })
        .collect();
    produce(bootstrap, &orders, &stream, None);
    drop((table, stream));
    let stateless = weir(engine, &config(bootstrap, &orders, "uppercase", Guarantee::ExactlyOnce, None), total);
    let mut joining = config(bootstrap, &orders, "orders-enrich", Guarantee::ExactlyOnce, None);
    joining.tables.insert("customers".into(), TableConfig { topic: customers, global: false });
    let started = Instant::now();
    let joined = weir(engine, &joining, total);
    println!();
    println!(
        "enrichment join: {total} orders against a table of {CUSTOMERS} customers, exactly-once (whole run {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    println!("{:>24} {:>16} {:>16} {:>8}", "", "uppercase r/s", "enrich r/s", "ratio");
    println!("{:>24} {stateless:>16.0} {joined:>16.0} {:>8.2}", "weir", joined / stateless);
}

/// The price of state, restore speed, and Quix Streams' word count, on one-word records keyed
/// by the word (100,000 distinct words).
fn stateful(engine: &Engine, bootstrap: &str, total: usize) {
    let words = unique("bench-words");
    create_topic(bootstrap, &words, PARTITIONS);
    let records: Vec<_> =
        (0..total).map(|i| format!("word-{:06}", (i * 7919) % 100_000)).map(|w| (w.clone(), w, Vec::new())).collect();
    produce(bootstrap, &words, &records, None);
    drop(records);
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let stateless = weir(engine, &config(bootstrap, &words, "uppercase", Guarantee::ExactlyOnce, None), total);
    let counting = config(bootstrap, &words, "word-count", Guarantee::ExactlyOnce, Some(state.path()));
    let stateful = weir(engine, &counting, total);
    println!();
    println!("the price of state: {total} one-word records, exactly-once, RocksDB stores with a changelog");
    println!("{:>24} {:>16} {:>16} {:>8}", "", "uppercase r/s", "word-count r/s", "ratio");
    println!("{:>24} {stateless:>16.0} {stateful:>16.0} {:>8.2}", "weir", stateful / stateless);

    restore_speed(bootstrap, total);
    println!();
    println!("word count, exactly-once, same broker and input");
    println!("{:>24} {:>16} {:>16} {:>8}", "quix commit interval", "quix r/s", "weir r/s", "ratio");
    quix(bootstrap, &words, total.min(300_000), None, stateful);
    quix(bootstrap, &words, total.min(100_000), Some(0.1), stateful);
}

/// Restores stores from a changelog of `total` records (250,000 distinct keys).
fn restore_speed(bootstrap: &str, total: usize) {
    let topic = unique("bench-changelog");
    create_topic(bootstrap, &topic, PARTITIONS);
    let records: Vec<_> = (0..total).map(|i| (format!("key-{:06}", i % 250_000), i.to_string(), Vec::new())).collect();
    produce(bootstrap, &topic, &records, None);
    drop(records);
    let config = config(bootstrap, &topic, "word-count", Guarantee::ExactlyOnce, None);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let (mut restored, started) = (0, Instant::now());
    for p in 0..PARTITIONS {
        let mut store =
            RocksStore::open_changelog_backed(&dir.path().join(p.to_string())).unwrap_or_else(|e| panic!("{e}"));
        restored += changelog::restore(&config, &topic, p, &mut store, &|_, _| {})
            .unwrap_or_else(|e| panic!("restore: {e:#}"))
            .records;
    }
    let secs = started.elapsed().as_secs_f64();
    let read = read_only(bootstrap, &topic);
    println!();
    println!(
        "restore: {restored} changelog records into RocksDB in {secs:.2} s: {:.0} records/s",
        restored as f64 / secs
    );
    println!("baseline: reading the same partitions one after another, no store: {read:.0} records/s");
}

/// Records per second for a plain read_committed consumer reading each partition to its end.
fn read_only(bootstrap: &str, topic: &str) -> f64 {
    let (mut records, started) = (0u64, Instant::now());
    for p in 0..PARTITIONS {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", unique("bench-read"))
            .set("isolation.level", "read_committed")
            .set("max.partition.fetch.bytes", "16777216")
            .set("fetch.wait.max.ms", "10")
            .set("queued.min.messages", "1000000")
            .create()
            .unwrap_or_else(|e| panic!("consumer: {e}"));
        let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap_or_else(|e| panic!("{e}"));
        consumer.assign(&tpl).unwrap_or_else(|e| panic!("{e}"));
        loop {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    records += 1;
                    if m.offset() + 1 >= high {
                        break;
                    }
                }
                Some(Err(e)) => panic!("{e}"),
                None => {}
            }
        }
    }
    records as f64 / started.elapsed().as_secs_f64()
}

/// Quix Streams' word count (tests/benches/quix_wordcount.py) on the first `count` of the same
/// records, with its default commit interval or the one given (seconds).
fn quix(bootstrap: &str, words: &str, count: usize, commit_interval: Option<f64>, weir_rate: f64) {
    let output = unique("bench-quix-out");
    create_topic(bootstrap, &output, PARTITIONS);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches").join("quix_wordcount.py");
    let mut command = std::process::Command::new("python3");
    command.arg(&script).args([
        "--broker",
        bootstrap,
        "--input",
        words,
        "--output",
        &output,
        "--count",
        &count.to_string(),
    ]);
    if let Some(interval) = commit_interval {
        command.args(["--commit-interval", &interval.to_string()]);
    }
    let run = command.output();
    let report = match run {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => {
            println!(
                "quix streams FAILED ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            );
            return;
        }
        Err(e) => {
            println!("quix streams FAILED: cannot run python3: {e}");
            return;
        }
    };
    let rate = report
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["records_per_second"].as_f64())
        .unwrap_or(f64::NAN);
    let label =
        commit_interval.map_or_else(|| "5 s (its default)".to_owned(), |s| format!("{} ms (weir's)", s * 1000.0));
    println!("{label:>24} {rate:>16.0} {weir_rate:>16.0} {:>8.1}   ({count} records for Quix)", weir_rate / rate);
}

fn config(
    bootstrap: &str,
    input: &str,
    module: &str,
    guarantee: Guarantee,
    state_dir: Option<&std::path::Path>,
) -> PipelineConfig {
    let output = unique("bench-weir-out");
    create_topic(bootstrap, &output, PARTITIONS);
    let mut outputs = BTreeMap::new();
    outputs.insert("default".to_owned(), output);
    PipelineConfig {
        application_id: unique("bench-weir"),
        bootstrap_servers: bootstrap.to_owned(),
        inputs: vec![input.to_owned()],
        outputs,
        module: ModuleConfig::at(guest(module)),
        tables: BTreeMap::new(),
        guarantee,
        auto_offset_reset: Default::default(),
        commit_interval_ms: None,
        batch_size: BATCH,
        linger_ms: 5,
        instance_id: Some("bench".into()),
        state_dir: state_dir.map(|p| p.to_path_buf()),
        kafka: BTreeMap::new(),
        errors: Default::default(),
    }
}

fn weir(engine: &Engine, config: &PipelineConfig, total: usize) -> f64 {
    let pipeline = Pipeline::new(config.clone(), engine).unwrap_or_else(|e| panic!("pipeline: {e:#}"));
    let (_handle, inbox) = weir_runtime::pipeline::channel(Default::default());
    let stats = pipeline.run(&inbox, Some(total as u64)).unwrap_or_else(|e| panic!("pipeline: {e:#}"));
    stats.throughput().unwrap_or(0.0)
}

/// Consume, produce the same bytes, commit: what weir does, minus the module.
fn passthrough(bootstrap: &str, input: &str, guarantee: Guarantee, total: usize) -> f64 {
    let output = unique("bench-raw-out");
    create_topic(bootstrap, &output, PARTITIONS);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("bench-raw"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    consumer.subscribe(&[input]).unwrap_or_else(|e| panic!("subscribe: {e}"));
    let mut producer_config = ClientConfig::new();
    producer_config.set("bootstrap.servers", bootstrap).set("linger.ms", "5").set("partitioner", "murmur2_random");
    let exactly_once = guarantee == Guarantee::ExactlyOnce;
    if exactly_once {
        producer_config.set("transactional.id", unique("bench-raw-txn"));
    } else {
        producer_config.set("enable.idempotence", "true");
    }
    let producer: ThreadedProducer<DefaultProducerContext> =
        producer_config.create().unwrap_or_else(|e| panic!("producer: {e}"));
    let timeout = Duration::from_secs(30);
    if exactly_once {
        producer.init_transactions(timeout).unwrap_or_else(|e| panic!("init_transactions: {e}"));
    }
    let interval = Duration::from_millis(if exactly_once { 100 } else { 1000 });
    let (mut consumed, mut first, mut open, mut last_commit) = (0usize, None, false, Instant::now());
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let commit = |offsets: &mut BTreeMap<i32, i64>, open: &mut bool| {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets.iter() {
            tpl.add_partition_offset(input, *p, Offset::Offset(*o)).unwrap_or_else(|e| panic!("{e}"));
        }
        if exactly_once {
            if !*open {
                return;
            }
            let metadata = consumer.group_metadata().unwrap_or_else(|| panic!("no group metadata"));
            producer
                .send_offsets_to_transaction(&tpl, &metadata, timeout)
                .unwrap_or_else(|e| panic!("send offsets: {e}"));
            producer.commit_transaction(timeout).unwrap_or_else(|e| panic!("commit: {e}"));
            *open = false;
        } else if !offsets.is_empty() {
            producer.flush(timeout).unwrap_or_else(|e| panic!("flush: {e}"));
            consumer.commit(&tpl, CommitMode::Sync).unwrap_or_else(|e| panic!("commit: {e}"));
        }
        offsets.clear();
    };
    while consumed < total {
        let batch = poll_batch(&consumer);
        if !batch.is_empty() {
            first.get_or_insert_with(Instant::now);
            if exactly_once && !open {
                producer.begin_transaction().unwrap_or_else(|e| panic!("begin: {e}"));
                open = true;
            }
            for m in &batch {
                let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&output);
                if let Some(k) = m.key() {
                    record = record.key(k);
                }
                if let Some(v) = m.payload() {
                    record = record.payload(v);
                }
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((_, back)) => {
                            record = back;
                            producer.poll(Duration::from_millis(10));
                        }
                    }
                }
                offsets.insert(m.partition(), m.offset() + 1);
            }
            consumed += batch.len();
        }
        if last_commit.elapsed() >= interval {
            commit(&mut offsets, &mut open);
            last_commit = Instant::now();
        }
    }
    commit(&mut offsets, &mut open);
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    consumed as f64 / secs
}

fn poll_batch(consumer: &BaseConsumer) -> Vec<BorrowedMessage<'_>> {
    let mut batch = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(5);
    while batch.len() < BATCH {
        let wait = if batch.is_empty() {
            Duration::from_millis(100)
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match consumer.poll(wait) {
            Some(Ok(m)) => batch.push(m),
            Some(Err(e)) => panic!("consumer: {e}"),
            None => break,
        }
    }
    batch
}
