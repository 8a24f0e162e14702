//! Who owns which partition across an application's instances, learned through Kafka itself.
//!
//! Every instance of a stateful pipeline that serves queries writes its claim (instance id, the
//! URL others reach it at, the partitions it has open, the generation of that set) to the
//! compacted topic `<application_id>-instances`, keyed by instance id, whenever the set changes
//! and every [`REFRESH`]; it reads every other claim from the same topic. When two claims name
//! a partition (an instance died and another took its partitions over), the later one in the
//! log wins. The owner itself checks before it answers, so a stale claim gives a 503, never a
//! wrong value. An instance that stops deletes its claim (a tombstone).
//!
//! Claims and tombstones are signed with the application's [`ClaimKey`]; one that does not
//! verify (written by anyone else who can write the topic) is ignored and logged, so a forged
//! claim cannot send queries to a URL of the forger's choosing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::claims::{ClaimKey, CLAIM_MAC};
use super::Queryable;
use crate::config::PipelineConfig;
use crate::kafka::{self, CatchUpCtx};

/// How often an instance writes its claim even when nothing changed.
pub const REFRESH: Duration = Duration::from_secs(30);

/// One instance's claim, as read from the membership topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub instance: String,
    pub url: String,
    pub partitions: Vec<i32>,
    pub generation: u64,
    /// When it was written, in ms since the epoch.
    pub updated_ms: u64,
    /// Where the claim sits in the membership topic (later claims win).
    #[serde(default)]
    pub offset: i64,
}

/// Where this instance is reached, and the secret that proves it is one of the application's.
#[derive(Debug, Clone)]
pub struct Advertise {
    /// The URL other instances reach this one's HTTP API at.
    pub url: String,
    pub key: ClaimKey,
}

/// The membership topic of `config`'s application.
pub fn topic(config: &PipelineConfig) -> String {
    format!("{}-instances", config.application_id)
}

/// The thread that writes this instance's claim and reads everyone's; stopped (and the claim
/// deleted) when dropped.
pub struct Publisher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Creates the topic if it is missing, then starts the thread.
    pub fn start(config: &PipelineConfig, url: &str, key: ClaimKey, queryable: Arc<Queryable>) -> anyhow::Result<Self> {
        let topic = topic(config);
        let spec = kafka::TopicSpec::new("membership", 1, true, true);
        kafka::ensure_topic(config, &topic, spec)?;
        let producer: BaseProducer = kafka::base(config)
            .set("linger.ms", "0")
            .create()
            .context("cannot create the Kafka producer of the membership topic")?;
        let consumer: BaseConsumer<CatchUpCtx> = kafka::catch_up(config, "instances")
            .set("enable.partition.eof", "false")
            .set("isolation.level", "read_uncommitted")
            .create_with_context(CatchUpCtx)
            .context("cannot create the Kafka consumer of the membership topic")?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, 0, Offset::Beginning)?;
        consumer.assign(&assignment).with_context(|| format!("cannot read the membership topic `{topic}`"))?;
        let stop = Arc::new(AtomicBool::new(false));
        queryable.set_claim_key(key.clone());
        let state = Loop { topic, url: url.to_owned(), key, producer, consumer, queryable, stop: stop.clone() };
        let thread = std::thread::Builder::new().name("weir-members".into()).spawn(move || state.run())?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Loop {
    topic: String,
    url: String,
    key: ClaimKey,
    producer: BaseProducer,
    consumer: BaseConsumer<CatchUpCtx>,
    queryable: Arc<Queryable>,
    stop: Arc<AtomicBool>,
}

impl Loop {
    fn run(self) {
        let mut members: BTreeMap<String, Member> = BTreeMap::new();
        let mut published: Option<(Vec<i32>, u64)> = None;
        let mut last_write = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            if let Some((instance, partitions, generation)) = self.queryable.claim() {
                let changed = published.as_ref() != Some(&(partitions.clone(), generation));
                if changed || last_write.elapsed() >= REFRESH {
                    let member = Member {
                        instance: instance.clone(),
                        url: self.url.clone(),
                        partitions: partitions.clone(),
                        generation,
                        updated_ms: crate::now_ms(),
                        offset: 0,
                    };
                    match self.write(&instance, Some(&member)) {
                        Ok(()) => {
                            published = Some((partitions, generation));
                            last_write = Instant::now();
                        }
                        Err(e) => tracing::warn!(topic = %self.topic, "cannot write this instance's claim: {e}"),
                    }
                }
            }
            if self.read(&mut members) {
                self.queryable.set_members(members.values().cloned().collect());
            }
        }
        if let Some(instance) = self.queryable.instance() {
            if let Err(e) = self.write(&instance, None) {
                tracing::warn!(topic = %self.topic, "cannot delete this instance's claim: {e}");
            }
        }
    }

    /// Writes a claim (or its tombstone) and waits until the broker has it.
    fn write(&self, instance: &str, member: Option<&Member>) -> anyhow::Result<()> {
        let value = member.map(serde_json::to_vec).transpose()?;
        let mac = self.key.sign(&[self.topic.as_bytes(), instance.as_bytes(), value.as_deref().unwrap_or_default()]);
        let headers = OwnedHeaders::new().insert(Header { key: CLAIM_MAC, value: Some(mac.as_bytes()) });
        let mut record: BaseRecord<'_, str, [u8]> =
            BaseRecord::to(&self.topic).key(instance).partition(0).headers(headers);
        if let Some(value) = &value {
            record = record.payload(value);
        }
        self.producer.send(record).map_err(|(e, _)| e)?;
        self.producer.flush(Duration::from_secs(5))?;
        Ok(())
    }

    /// Reads what claims arrived (waiting up to 100 ms for the first); whether any did.
    fn read(&self, members: &mut BTreeMap<String, Member>) -> bool {
        let mut changed = false;
        let mut wait = Duration::from_millis(100);
        while let Some(message) = self.consumer.poll(wait) {
            wait = Duration::ZERO;
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(topic = %self.topic, "reading the membership topic: {e}");
                    break;
                }
            };
            let Some(key) = message.key().map(|k| String::from_utf8_lossy(k).into_owned()) else { continue };
            let mac = message.headers().and_then(|h| h.iter().find(|h| h.key == CLAIM_MAC).and_then(|h| h.value));
            let signed = [self.topic.as_bytes(), key.as_bytes(), message.payload().unwrap_or_default()];
            if !mac.is_some_and(|mac| self.key.verify(&signed, mac)) {
                tracing::warn!(
                    topic = %self.topic,
                    offset = message.offset(),
                    instance = %key,
                    "ignoring a claim not signed with this application's claim secret"
                );
                continue;
            }
            changed = true;
            match message.payload().map(serde_json::from_slice::<Member>) {
                None => {
                    members.remove(&key);
                }
                Some(Ok(mut member)) => {
                    member.offset = message.offset();
                    members.insert(key, member);
                }
                Some(Err(e)) => {
                    tracing::warn!(topic = %self.topic, offset = message.offset(), "ignoring a claim that is not one: {e}");
                }
            }
        }
        changed
    }
}
