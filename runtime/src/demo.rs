//! `weir demo`: weir's main job with no broker to install. It starts librdkafka's in-process
//! mock cluster (in memory, not durable, for trying weir only), produces sample records to it,
//! runs a pipeline over them, and prints what came out.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, Producer as _};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{Guarantee, ModuleConfig, PipelineConfig};
use crate::engine::Engine;
use crate::jsonl::bytes_value;
use crate::pipeline::Pipeline;
use crate::testrun::read_input;

const APPLICATION: &str = "weir-demo";
const INPUT: &str = "demo-input";
const OUTPUT: &str = "demo-output";
const PARTITIONS: i32 = 2;

/// What to demonstrate.
#[derive(Debug, Clone)]
pub struct Demo {
    pub module: PathBuf,
    /// Sample records, JSONL as for `weir test`.
    pub input: PathBuf,
    pub guarantee: Guarantee,
}

/// Runs the demo, writing the outputs as JSON lines to `out`.
pub fn run(engine: &Engine, demo: &Demo, out: &mut dyn Write) -> anyhow::Result<usize> {
    let records = read_input(&demo.input)?;
    let cluster = MockCluster::new(1).context("cannot start the embedded Kafka mock cluster")?;
    let bootstrap = cluster.bootstrap_servers();
    let mut outputs = BTreeMap::new();
    outputs.insert("default".to_owned(), OUTPUT.to_owned());
    let config = PipelineConfig {
        application_id: APPLICATION.into(),
        bootstrap_servers: bootstrap.clone(),
        inputs: vec![INPUT.into()],
        outputs,
        module: Some(ModuleConfig::at(&demo.module)),
        stages: BTreeMap::new(),
        tables: BTreeMap::new(),
        guarantee: demo.guarantee,
        auto_offset_reset: Default::default(),
        group_protocol: Default::default(),
        static_membership: true,
        standby_replicas: 0,
        commit_interval_ms: None,
        batch_size: 100,
        linger_ms: 5,
        instance_id: Some("demo".into()),
        state_dir: None,
        kafka: BTreeMap::new(),
        errors: Default::default(),
        changelog: Default::default(),
        max_instances: 32,
        threads: 1,
        thread: None,
    };
    // The mock broker cannot create topics through the admin API, so the changelog a stateful
    // module needs is made here, named as `changelog::topic` names it.
    let changelog = crate::changelog::topic(&config, config.store_name());
    for topic in [INPUT, OUTPUT, changelog.as_str()] {
        cluster.create_topic(topic, PARTITIONS, 1).with_context(|| format!("cannot create {topic}"))?;
    }
    eprintln!(
        "weir demo: embedded in-memory Kafka at {bootstrap} (librdkafka's mock cluster: not durable, \
         for trying weir only); {} records into `{INPUT}`, module {}, {:?}",
        records.len(),
        demo.module.display(),
        demo.guarantee
    );

    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create()?;
    for r in &records {
        let record = r.to_kafka(INPUT).partition(r.partition % PARTITIONS);
        producer.send(record).map_err(|(e, _)| anyhow::anyhow!("producing the sample records: {e}"))?;
    }
    producer.flush(Duration::from_secs(10))?;

    let (_handle, inbox) = crate::pipeline::channel(Default::default());
    let stats = Pipeline::new(config, engine)?.run(&inbox, Some(records.len() as u64))?;

    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("group.id", "weir-demo-reader").create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(OUTPUT, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut printed = 0;
    let mut last = Instant::now();
    while printed < stats.produced as usize && last.elapsed() < Duration::from_secs(10) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let line = serde_json::json!({
                    "topic": m.topic(),
                    "partition": m.partition(),
                    "key": bytes_value(m.key()),
                    "value": bytes_value(m.payload()),
                });
                writeln!(out, "{line}")?;
                printed += 1;
                last = Instant::now();
            }
            Some(Err(e)) => return Err(anyhow::anyhow!("reading `{OUTPUT}`: {e}")),
            None => {}
        }
    }
    eprintln!("weir demo: {} records in, {} out (printed {printed})", stats.consumed, stats.produced);
    Ok(printed)
}
