//! weir's pipeline against a raw rdkafka passthrough, in one run on the same broker.
//!
//! Input: 1M records of 100 bytes over 4 partitions. The baseline consumes, produces the same
//! bytes and commits exactly as weir does (transactions every 100 ms with the consumed offsets
//! under exactly-once; flush then commit offsets every second under at-least-once), with no
//! Wasm. weir runs `uppercase`. Throughput is measured from the first record consumed to the
//! last commit, so joining the group is not counted.
//!
//! Run: `scripts/kafka.sh start` then `cargo bench -p weir-tests --bench pipeline`
//! (`WEIR_BENCH_RECORDS` changes the record count).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use weir_runtime::engine::{Engine, EngineOptions};
use weir_runtime::pipeline::config::{Guarantee, PipelineConfig};
use weir_runtime::pipeline::Pipeline;
use weir_tests::guest;
use weir_tests::kafka::{bootstrap, create_topic, produce, unique};

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
    println!("weir pipeline benchmark: {total} records of 100 bytes, {PARTITIONS} partitions (produced in {:.1} s)", started.elapsed().as_secs_f64());
    println!("{:>14} {:>16} {:>16} {:>8}", "guarantee", "raw rdkafka r/s", "weir r/s", "ratio");
    let engine = Engine::new(EngineOptions::default()).unwrap_or_else(|e| panic!("engine: {e}"));
    for guarantee in [Guarantee::ExactlyOnce, Guarantee::AtLeastOnce] {
        let raw = passthrough(&bootstrap, &input, guarantee, total);
        let weir = weir(&engine, &bootstrap, &input, guarantee, total);
        println!("{:>14} {raw:>16.0} {weir:>16.0} {:>8.2}", format!("{guarantee:?}"), weir / raw);
    }
}

fn weir(engine: &Engine, bootstrap: &str, input: &str, guarantee: Guarantee, total: usize) -> f64 {
    let output = unique("bench-weir-out");
    create_topic(bootstrap, &output, PARTITIONS);
    let mut outputs = BTreeMap::new();
    outputs.insert("default".to_owned(), output);
    let config = PipelineConfig {
        application_id: unique("bench-weir"),
        bootstrap_servers: bootstrap.to_owned(),
        inputs: vec![input.to_owned()],
        outputs,
        module: toml::from_str(&format!("path = \"{}\"", guest("uppercase").display())).unwrap_or_else(|e| panic!("{e}")),
        guarantee,
        auto_offset_reset: Default::default(),
        commit_interval_ms: None,
        batch_size: BATCH,
        linger_ms: 5,
        instance_id: Some("bench".into()),
        state_dir: None,
        kafka: BTreeMap::new(),
    };
    let pipeline = Pipeline::new(config, engine).unwrap_or_else(|e| panic!("pipeline: {e:#}"));
    let stats = pipeline.run(&AtomicBool::new(false), Some(total as u64)).unwrap_or_else(|e| panic!("pipeline: {e:#}"));
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
    let producer: ThreadedProducer<DefaultProducerContext> = producer_config.create().unwrap_or_else(|e| panic!("producer: {e}"));
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
            producer.send_offsets_to_transaction(&tpl, &metadata, timeout).unwrap_or_else(|e| panic!("send offsets: {e}"));
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
        let wait = if batch.is_empty() { Duration::from_millis(100) } else { deadline.saturating_duration_since(Instant::now()) };
        match consumer.poll(wait) {
            Some(Ok(m)) => batch.push(m),
            Some(Err(e)) => panic!("consumer: {e}"),
            None => break,
        }
    }
    batch
}
