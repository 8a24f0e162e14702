//! weir's pipeline against a raw rdkafka passthrough, in one run on the same broker.
//!
//! Input: 1M records of 100 bytes over 4 partitions. The baseline consumes, produces the same
//! bytes and commits exactly as weir does (transactions every 100 ms with the consumed offsets
//! under exactly-once; flush then commit offsets every second under at-least-once), with no
//! Wasm. weir runs `uppercase`. Throughput is measured from the first record consumed to the
//! last commit, so joining the group is not counted.
//!
//! Then, on one-word records keyed by the word (100,000 distinct words): restore speed from a
//! changelog of as many records; then `word-count` and `uppercase` (the price of state) next to
//! the same word count in Kafka Streams 4.1.1 (`kafka-streams/`, built with Maven: the Processor
//! API with one output per input, and the DSL's `groupByKey().count()`), every one timed by its
//! group's committed offsets in interleaved rounds (`WEIR_BENCH_ROUNDS`, default 3), medians
//! compared; then Quix Streams (`quix_wordcount.py`, needs `pip install quixstreams`), timed
//! the same way.
//!
//! Then the enrichment join: as many orders, keyed by customer id, each looked up in a
//! co-partitioned table of 100,000 customers (`orders-enrich`), next to `uppercase` on the same
//! orders.
//!
//! Then windows: as many timestamped records over 1,000 keys counted per key in 10 s tumbling
//! windows (`windowed-count`: a state write and a timer per record, a timer firing per window),
//! next to the running count per key (`word-count`) on the same records.
//!
//! Then stages: the word count over sentences, two weir stages against Kafka Streams' DSL
//! `flatMapValues().groupBy().count()`, each through a repartition topic.
//!
//! Run: `scripts/kafka.sh start` then `cargo bench -p weir-tests --bench pipeline`
//! (`WEIR_BENCH_RECORDS` changes the record count; `-- restore` runs only the restore section,
//! `-- enrich` only the enrichment join, `-- windows` only the windows, `-- stages` only the stages, `-- stateful` only the
//! restore and the word counts, `-- passthrough` only the table against raw rdkafka).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use weir_runtime::changelog;
use weir_runtime::config::{Guarantee, ModuleConfig, PipelineConfig, TableConfig};
use weir_runtime::engine::{Engine, EngineOptions};
use weir_runtime::pipeline::{Pipeline, TableFeed};
use weir_runtime::state::RocksStore;
use weir_runtime::tables::Tables;
use weir_tests::guest;
use weir_tests::kafka::{bootstrap, create_topic, last_counts, produce, produce_at, read_committed, unique};
use weir_tests::peers::{KafkaStreams, Meter, Rate};

const PARTITIONS: i32 = 4;
/// Longest any one system may take over a run of the comparison.
const LIMIT: Duration = Duration::from_secs(600);
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
    if std::env::args().skip(1).any(|a| a == "stateful") {
        stateful(&engine, &bootstrap, total);
        return;
    }
    if std::env::args().skip(1).any(|a| a == "windows") {
        windows(&engine, &bootstrap, total);
        return;
    }
    if std::env::args().skip(1).any(|a| a == "stages") {
        stages(&engine, &bootstrap, total);
        return;
    }
    println!("{:>14} {:>16} {:>16} {:>8}", "guarantee", "raw rdkafka r/s", "weir r/s", "ratio");
    for guarantee in [Guarantee::ExactlyOnce, Guarantee::AtLeastOnce] {
        let raw = passthrough(&bootstrap, &input, guarantee, total);
        let weir = weir(&engine, &config(&bootstrap, &input, "uppercase", guarantee, None), total);
        println!("{:>14} {raw:>16.0} {weir:>16.0} {:>8.2}", format!("{guarantee:?}"), weir / raw);
    }
    if std::env::args().skip(1).any(|a| a == "passthrough") {
        return;
    }
    stateful(&engine, &bootstrap, total);
    stages(&engine, &bootstrap, total);
    enrichment(&engine, &bootstrap, total);
    windows(&engine, &bootstrap, total);
}

/// The word count over sentences, as a newcomer writes it: weir's two stages (`word-split`
/// keyed by word, then `word-count`, in one pipeline) against Kafka Streams' DSL
/// `flatMapValues().groupBy().count()`, each through its own repartition topic, on the same
/// input of `total` words in sentences of five. Each is timed by its group's committed offsets
/// on its repartition topic, which count every word once it has been counted (and the
/// transaction markers, alike for both), in interleaved rounds after a Kafka Streams pass that
/// warms its JVM; each one's last count of every word is checked in the last round.
fn stages(engine: &Engine, bootstrap: &str, total: usize) {
    const PER_SENTENCE: usize = 5;
    let rounds_wanted = rounds_wanted();
    let sentences = unique("bench-sentences");
    create_topic(bootstrap, &sentences, PARTITIONS);
    let count = total / PER_SENTENCE;
    let word = |i: usize| format!("word-{:06}", (i * 7919) % 100_000);
    let records: Vec<_> = (0..count)
        .map(|i| {
            let text: Vec<String> = (0..PER_SENTENCE).map(|j| word(i * PER_SENTENCE + j)).collect();
            (format!("s{i}"), text.join(" "), Vec::new())
        })
        .collect();
    produce(bootstrap, &sentences, &records, None);
    drop(records);
    let words = count * PER_SENTENCE;
    let mut truth = std::collections::HashMap::new();
    for i in 0..words {
        *truth.entry(word(i)).or_insert(0_u64) += 1;
    }
    let mut jvm = kafka_streams(bootstrap);
    let have_jvm = jvm.is_some();
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut run = |system: &str, round: usize| -> f64 {
        let output = unique("bench-stages-out");
        create_topic(bootstrap, &output, PARTITIONS);
        let app = unique(&format!("bench-{system}"));
        let rate = match system {
            "weir" => {
                let meter = Meter::new(bootstrap, &app, &format!("{app}-count-repartition"), PARTITIONS);
                let text = format!(
                    "application_id = \"{app}\"\nbootstrap_servers = \"{bootstrap}\"\ninputs = [\"{sentences}\"]\n\
                     batch_size = {BATCH}\ninstance_id = \"bench\"\nstate_dir = \"{}\"\n\
                     [stages.split.module]\npath = \"{}\"\n[stages.split.outputs]\ndefault = {{ stage = \"count\" }}\n\
                     [stages.count.module]\npath = \"{}\"\n[stages.count.outputs]\ndefault = \"{output}\"\n",
                    state.path().join(&app).display(),
                    guest("word-split").display(),
                    guest("word-count").display(),
                );
                let config = PipelineConfig::parse(&text).unwrap_or_else(|e| panic!("pipeline: {e}"));
                std::thread::scope(|s| {
                    // Every sentence and every word is consumed once, by its stage.
                    let pipeline = s.spawn(|| weir(engine, &config, count + words));
                    let rate = meter.until(words as u64, LIMIT, || !pipeline.is_finished());
                    let _ = pipeline.join();
                    rate
                })
            }
            _ => {
                let Some(jvm) = jvm.as_mut() else { return f64::NAN };
                let meter = Meter::new(bootstrap, &app, &format!("{app}-words-repartition"), PARTITIONS);
                jvm.run("sentences", &app, &sentences, &output);
                let rate = meter.until(words as u64, LIMIT, || true);
                jvm.stop();
                rate
            }
        };
        if round + 1 == rounds_wanted {
            check_last_counts(system, bootstrap, &output, words, &truth);
        }
        per_second(system, rate)
    };
    if have_jvm {
        run("streams", usize::MAX);
    }
    let systems = [("weir", "weir, two stages"), ("streams", "KS DSL groupBy")];
    let rates = interleaved(&systems, rounds_wanted, run);
    println!();
    println!(
        "word count over sentences against Kafka Streams 4.1.1: {words} words in sentences of {PER_SENTENCE}, \
         exactly-once, a repartition hop, RocksDB with changelogs, 100 ms commits, words per second by the \
         committed offsets of the repartition topic, {rounds_wanted} interleaved rounds"
    );
    print_rounds(&systems, &rates, "words/s");
    println!("   weir two stages / KS DSL groupBy: {:.2}x", median(&rates[0]) / median(&rates[1]));
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
    restore_speed(bootstrap, total);
    let weir_rate = against_kafka_streams(engine, bootstrap, &words, total);
    println!();
    println!("word count, exactly-once, same broker and input, timed by committed offsets");
    println!("{:>24} {:>16} {:>16} {:>8}", "quix commit interval", "quix r/s", "weir r/s", "ratio");
    quix(bootstrap, &words, total.min(300_000), None, weir_rate);
    quix(bootstrap, &words, total.min(100_000), Some(0.1), weir_rate);
}

/// weir's word count next to Kafka Streams' (Processor API, one output per input; and the DSL's
/// `groupByKey().count()`), and `uppercase` for the price of state, with `twice` (the word
/// count's two records per input, without state) for the store's part of it: every one timed by its
/// group's committed offsets, in interleaved rounds, on the same input, after a first Kafka
/// Streams pass that warms its JVM. Checks each system's last count per word in the last round.
/// Returns weir's median word-count rate.
fn against_kafka_streams(engine: &Engine, bootstrap: &str, words: &str, total: usize) -> f64 {
    let rounds_wanted = rounds_wanted();
    let mut jvm = kafka_streams(bootstrap);
    let have_jvm = jvm.is_some();
    let truth = true_counts(total);
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    // Each run: a new application (group, output topic, state) on the same input.
    let mut run = |system: &str, round: usize| -> f64 {
        let output = unique("bench-peer-out");
        create_topic(bootstrap, &output, PARTITIONS);
        let app = unique(&format!("bench-{system}"));
        let meter = Meter::new(bootstrap, &app, words, PARTITIONS);
        let rate = match system {
            "uppercase" | "twice" | "word-count" => {
                let mut config = config(bootstrap, words, system, Guarantee::ExactlyOnce, None);
                (config.application_id, config.state_dir) = (app.clone(), Some(state.path().join(&app)));
                config.outputs.insert("default".into(), output.clone());
                std::thread::scope(|s| {
                    let pipeline = s.spawn(|| weir(engine, &config, total));
                    let rate = meter.until(total as u64, LIMIT, || !pipeline.is_finished());
                    let _ = pipeline.join();
                    rate
                })
            }
            mode => {
                let Some(jvm) = jvm.as_mut() else { return f64::NAN };
                jvm.run(mode.trim_start_matches("streams-"), &app, words, &output);
                let rate = meter.until(total as u64, LIMIT, || true);
                jvm.stop();
                rate
            }
        };
        if round + 1 == rounds_wanted && !["uppercase", "twice"].contains(&system) {
            check_last_counts(system, bootstrap, &output, total, &truth);
        }
        per_second(system, rate)
    };
    if have_jvm {
        run("streams-processor", usize::MAX);
    }
    // Each system with the label it is printed under.
    let systems = [
        ("uppercase", "weir uppercase"),
        ("twice", "weir twice"),
        ("word-count", "weir word-count"),
        ("streams-processor", "KS Processor API"),
        ("streams-dsl", "KS DSL count"),
    ];
    let rates = interleaved(&systems, rounds_wanted, run);
    let median_of = |wanted: &str| {
        let i = systems.iter().position(|(system, _)| *system == wanted);
        i.map_or(f64::NAN, |i| median(&rates[i]))
    };
    println!();
    println!(
        "word count against Kafka Streams 4.1.1: {total} one-word records, exactly-once, RocksDB with changelogs, \
         100 ms commits, timed by committed offsets, {rounds_wanted} interleaved rounds (JVM warmed by a first pass)"
    );
    print_rounds(&systems, &rates, "r/s");
    let word_count = median_of("word-count");
    println!(
        "   weir word-count / KS Processor API: {:.2}x (target 1.2x)",
        word_count / median_of("streams-processor")
    );
    println!("   weir word-count / KS DSL count:     {:.2}x (target 1.0x)", word_count / median_of("streams-dsl"));
    println!(
        "   the price of state, word-count / uppercase: {:.2}x (target 0.9x)",
        word_count / median_of("uppercase")
    );
    println!(
        "   the store's part of it, word-count / twice (its two records per input, no state): {:.2}x",
        word_count / median_of("twice")
    );
    word_count
}

/// How many interleaved rounds a comparison runs (`WEIR_BENCH_ROUNDS`, default 3).
fn rounds_wanted() -> usize {
    std::env::var("WEIR_BENCH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(3)
}

/// The JVM that runs the Kafka Streams word counts, built by Maven under the target directory;
/// `None`, said, when it cannot start (weir then runs alone).
fn kafka_streams(bootstrap: &str) -> Option<KafkaStreams> {
    let build = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| std::env::temp_dir().join("weir-bench"), std::path::PathBuf::from)
        .join("kafka-streams");
    KafkaStreams::start(bootstrap, &build).map_err(|e| println!("\nkafka streams FAILED: {e}; weir runs alone")).ok()
}

/// A system's rate per second, or NaN when its run failed (said).
fn per_second(system: &str, rate: Result<Rate, String>) -> f64 {
    match rate {
        Ok(rate) => rate.per_second(),
        Err(e) => {
            println!("{system} FAILED: {e}");
            f64::NAN
        }
    }
}

/// Says how many words of `truth` have another last count in `output` (of `want` records).
fn check_last_counts(
    system: &str,
    bootstrap: &str,
    output: &str,
    want: usize,
    truth: &std::collections::HashMap<String, u64>,
) {
    let counts =
        last_counts(&read_committed(bootstrap, output, want, Duration::from_secs(5), Duration::from_secs(120)));
    let wrong = truth.iter().filter(|(w, n)| counts.get(*w) != Some(n)).count();
    if wrong > 0 {
        println!("{system}: {wrong} of {} words have a wrong last count", truth.len());
    }
}

/// Runs every system once per round, the rounds interleaved; the rates of each system.
fn interleaved(systems: &[(&str, &str)], rounds: usize, mut run: impl FnMut(&str, usize) -> f64) -> Vec<Vec<f64>> {
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); systems.len()];
    for round in 0..rounds {
        for (i, (system, _)) in systems.iter().enumerate() {
            rates[i].push(run(system, round));
        }
    }
    rates
}

fn median(rates: &[f64]) -> f64 {
    let mut rates = rates.to_vec();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Each system's median and rounds, under its label.
fn print_rounds(systems: &[(&str, &str)], rates: &[Vec<f64>], unit: &str) {
    for ((_, label), r) in systems.iter().zip(rates) {
        let each: Vec<String> = r.iter().map(|x| format!("{x:.0}")).collect();
        println!("{label:>20}  median {:>8.0} {unit}   rounds {}", median(r), each.join(" / "));
    }
}

/// How many times each word of the word-count input occurs.
fn true_counts(total: usize) -> std::collections::HashMap<String, u64> {
    let mut counts = std::collections::HashMap::new();
    for i in 0..total {
        *counts.entry(format!("word-{:06}", (i * 7919) % 100_000)).or_insert(0) += 1;
    }
    counts
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
    // A first read, not counted: the first reader after the records were produced paid for their
    // writeback (restores right after producing ran at 0.87 to 0.9 million records/s, and 1.06
    // to 1.11 million after a read), and the baseline after the restore did not.
    read_only(bootstrap, &topic, 1);
    let started = Instant::now();
    let mut stores: Vec<RocksStore> = (0..PARTITIONS)
        .map(|p| RocksStore::open_changelog_backed(&dir.path().join(p.to_string())).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let opened = started.elapsed().as_secs_f64();
    let targets = stores
        .iter_mut()
        .zip(0..)
        .map(|(store, partition)| changelog::Target {
            partition,
            store: store as &mut dyn weir_runtime::state::StateStore,
        })
        .collect();
    let restored =
        changelog::restore(&config, &topic, targets, &|_, _| true).unwrap_or_else(|e| panic!("restore: {e:#}")).records;
    let secs = started.elapsed().as_secs_f64();
    let read = read_only(bootstrap, &topic, 1);
    let read_two = read_only(bootstrap, &topic, 2);
    // The same topic read as a table, as a pipeline reads its tables before its first record.
    let mut with_table = config.clone();
    with_table.tables.insert("bench".into(), TableConfig { topic: topic.clone(), global: false });
    let tables = Tables::new(&weir_runtime::tables::TableSpec::of(&with_table));
    let started = Instant::now();
    let feed = TableFeed::start(&with_table, &tables).unwrap_or_else(|e| panic!("table: {e:#}"));
    let table_secs = started.elapsed().as_secs_f64();
    drop(feed);
    let (_, keys, table_records, _) = tables.sizes().into_iter().next().unwrap_or_else(|| panic!("no table"));
    assert_eq!((keys, table_records), (250_000.min(total), total as u64), "the table's keys and records");
    println!();
    println!(
        "restore: {restored} changelog records into RocksDB in {secs:.2} s: {:.0} records/s \
         ({:.0} records/s after the {:.0} ms that opening the {PARTITIONS} stores took)",
        restored as f64 / secs,
        restored as f64 / (secs - opened),
        opened * 1000.0
    );
    println!("baseline: reading the same partitions with one consumer, no store: {read:.0} records/s");
    println!("baseline: reading them with two consumers side by side, as the restore does: {read_two:.0} records/s");
    println!(
        "table: the same records read as a table of {keys} keys in {table_secs:.2} s: {:.0} records/s",
        table_records as f64 / table_secs
    );
}

/// Records per second for plain read_committed consumers reading every partition to its end,
/// with the restore's fetch settings: `readers` of them side by side, the partitions dealt to
/// them in turn, as the restore deals them.
fn read_only(bootstrap: &str, topic: &str, readers: i32) -> f64 {
    let started = Instant::now();
    let records: u64 = std::thread::scope(|scope| {
        let running: Vec<_> = (0..readers)
            .map(|reader| {
                let partitions = (0..PARTITIONS).filter(|p| p % readers == reader).collect();
                scope.spawn(move || read_partitions(bootstrap, topic, partitions))
            })
            .collect();
        running.into_iter().map(|r| r.join().unwrap_or_else(|_| panic!("a reader panicked"))).sum()
    });
    records as f64 / started.elapsed().as_secs_f64()
}

/// Reads `partitions` of `topic` to their ends with one consumer; returns the records read.
fn read_partitions(bootstrap: &str, topic: &str, partitions: Vec<i32>) -> u64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("bench-read"))
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .set("queued.min.messages", "1000000")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    let mut tpl = TopicPartitionList::new();
    let mut left = std::collections::HashMap::new();
    for p in partitions {
        let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap_or_else(|e| panic!("{e}"));
        left.insert(p, high);
    }
    consumer.assign(&tpl).unwrap_or_else(|e| panic!("{e}"));
    let mut records = 0u64;
    while !left.is_empty() {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                records += 1;
                if left.get(&m.partition()).is_some_and(|high| m.offset() + 1 >= *high) {
                    left.remove(&m.partition());
                }
            }
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    records
}

/// Quix Streams' word count (tests/benches/quix_wordcount.py) on the first `count` of the same
/// records, with its default commit interval or the one given (seconds), timed by its group's
/// committed offsets like the others.
fn quix(bootstrap: &str, words: &str, count: usize, commit_interval: Option<f64>, weir_rate: f64) {
    let output = unique("bench-quix-out");
    create_topic(bootstrap, &output, PARTITIONS);
    let group = unique("bench-quix");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches").join("quix_wordcount.py");
    let mut command = std::process::Command::new("python3");
    command.arg(&script).args([
        "--broker",
        bootstrap,
        "--input",
        words,
        "--output",
        &output,
        "--group",
        &group,
        "--count",
        &count.to_string(),
    ]);
    if let Some(interval) = commit_interval {
        command.args(["--commit-interval", &interval.to_string()]);
    }
    let meter = Meter::new(bootstrap, &group, words, PARTITIONS);
    let mut child = match command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn() {
        Ok(child) => child,
        Err(e) => return println!("quix streams FAILED: cannot run python3: {e}"),
    };
    let metered = meter.until(count as u64, LIMIT, || matches!(child.try_wait(), Ok(None)));
    let out = child.wait_with_output();
    let rate = match (metered, out) {
        (Ok(rate), _) => rate.per_second(),
        (Err(e), out) => {
            let said = out.map(|o| String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("").to_owned());
            return println!("quix streams FAILED: {e}: {}", said.unwrap_or_else(|e| e.to_string()));
        }
    };
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
        module: Some(ModuleConfig::at(guest(module))),
        stages: BTreeMap::new(),
        tables: BTreeMap::new(),
        guarantee,
        auto_offset_reset: Default::default(),
        group_protocol: Default::default(),
        static_membership: true,
        standby_replicas: 0,
        commit_interval_ms: None,
        batch_size: BATCH,
        linger_ms: 5,
        instance_id: Some("bench".into()),
        state_dir: state_dir.map(|p| p.to_path_buf()),
        kafka: BTreeMap::new(),
        errors: Default::default(),
        changelog: Default::default(),
        max_instances: 32,
        threads: 1,
        thread: None,
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
        // As weir's consumer: librdkafka's default (1 s) lets a drained prefetch queue run dry.
        .set("fetch.queue.backoff.ms", "10")
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
            settle(&producer);
            producer.commit_transaction(timeout).unwrap_or_else(|e| panic!("commit: {e}"));
            *open = false;
        } else if !offsets.is_empty() {
            settle(&producer);
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

/// Waits for every record in flight, as weir's `kafka::flush` does: rust-rdkafka's own flush
/// (which `commit_transaction` calls) waits in steps of 100 ms beside a threaded producer.
fn settle(producer: &ThreadedProducer<DefaultProducerContext>) {
    while producer.in_flight_count() > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
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
