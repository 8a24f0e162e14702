//! Kafka source and sink: client settings for each guarantee, the consumer context that drops
//! the open work before partitions are released, and the producer context that counts failed
//! deliveries.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, ConsumerGroupMetadata, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::producer::{DeliveryResult, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::{GroupProtocol, Guarantee, PipelineConfig};

/// How long transactional calls and synchronous commits may take.
pub const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an abort waits for the transaction's sends in flight (see [`Shared::abort`]).
const FLUSH_BEFORE_ABORT: Duration = Duration::from_secs(10);

pub type Producer = ThreadedProducer<ProducerCtx>;
pub type Consumer = BaseConsumer<ConsumerCtx>;

/// Waits until every record sent is acknowledged and its delivery report served, or `timeout`
/// passes; looks every millisecond.
///
/// rust-rdkafka's own `flush`, which its `commit_transaction` also calls first, waits for the
/// reports on the queue that a threaded producer's polling thread serves, in steps of up to
/// 100 ms: with anything in flight it took 100 ms, and an exactly-once commit every 100 ms spent
/// most of its time there. After this, its flush finds nothing to wait for.
pub fn flush(producer: &Producer, timeout: Duration) -> KafkaResult<()> {
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 {
        if Instant::now() >= deadline {
            // Its error, said its way.
            return producer.flush(Duration::ZERO);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// What [`send_offsets`] came to.
#[derive(Debug)]
pub enum Sent {
    /// The call returned, with this.
    Returned(KafkaResult<()>),
    /// The call had not returned after this long, or the caller gave up waiting: the producer
    /// is still inside it and must not be used again.
    Abandoned(Duration),
}

/// Adds the consumed offsets to the open transaction, calling librdkafka on a thread of its own
/// and waiting for it at most `timeout`, calling `waiting` with the time waited so far every
/// 250 ms meanwhile (it returns false to stop waiting: the pipeline is stopping).
///
/// librdkafka's `send_offsets_to_transaction` does not time out while the group coordinator is
/// down (librdkafka #5456, open for 2.12 and 2.14): with the broker SIGKILLed 50 ms to 1.5 s
/// before, a call given 3 s returned only once the broker was back, 40 s and more later, and
/// the pipeline loop stood still without a word. On [`Sent::Abandoned`] the caller replaces the
/// producer: the new one, of the same transactional id, fences this one and aborts its
/// transaction; the thread keeps this one until its call returns.
pub fn send_offsets(
    producer: &Arc<Producer>,
    offsets: TopicPartitionList,
    group: ConsumerGroupMetadata,
    timeout: Duration,
    mut waiting: impl FnMut(Duration) -> bool,
) -> Sent {
    let (done, result) = std::sync::mpsc::sync_channel(1);
    let caller = producer.clone();
    let spawned = std::thread::Builder::new().name("weir-txn-offsets".into()).spawn(move || {
        let _ = done.send(caller.send_offsets_to_transaction(&offsets, &group, timeout));
    });
    if let Err(e) = spawned {
        // The offsets went with the thread that did not start: the work is redone.
        tracing::warn!("cannot start a thread to send the transaction's offsets on: {e}");
        return Sent::Abandoned(Duration::ZERO);
    }
    let started = Instant::now();
    loop {
        match result.recv_timeout(Duration::from_millis(250)) {
            Ok(returned) => return Sent::Returned(returned),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Sent::Abandoned(started.elapsed());
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let waited = started.elapsed();
                if waited >= timeout || !waiting(waited) {
                    return Sent::Abandoned(waited);
                }
            }
        }
    }
}

/// What the pipeline loop and the rebalance callback share.
pub struct Shared {
    /// The loop's producer, for the callback to abort with when partitions are lost; replaced
    /// when it is lost.
    producer: Mutex<Option<Arc<Producer>>>,
    /// Set when an abort failed: the loop replaces the producer before it begins another
    /// transaction (the new producer's start aborts what the old one left open).
    pub producer_lost: AtomicBool,
    pub book: Mutex<Book>,
    /// What the group changed that the loop has yet to act on.
    moves: Mutex<Moves>,
    /// Set once the loop is done with the consumer: a revocation then releases the partitions
    /// at once (the consumer is closing; nothing is left to commit).
    pub closing: AtomicBool,
    /// Told at once when partitions were lost, before they can move (queries stop reading them).
    revoked: Arc<dyn Revoked>,
}

/// What the rebalance callback tells before partitions go to another instance: a narrow handle,
/// so this layer knows nothing of who listens (the query layer, which closes its readers).
pub trait Revoked: Send + Sync {
    /// `partitions` (of the inputs) are no longer this consumer's.
    fn revoked(&self, partitions: &[i32]);
}

/// What a rebalance changed, for the loop to act on after the poll that saw it.
#[derive(Debug, Default)]
struct Moves {
    /// Partitions the group takes back. They stay this instance's until the loop has committed
    /// its open work and closed their tasks, and then releases them ([`release`]).
    pub revoked: Vec<(String, i32)>,
    /// Partitions newly assigned, whose tasks the loop opens.
    pub assigned: Vec<(String, i32)>,
    /// Set when the assignment was lost (the session timed out, or the member was fenced): the
    /// open work was aborted in the callback, since its partitions may be another's already.
    pub lost: bool,
}

/// The work since the last commit.
#[derive(Debug, Default)]
pub struct Book {
    /// When the open transaction began (exactly-once).
    pub txn: Option<Instant>,
    /// Next offset to consume per (topic, partition), for records processed since the last
    /// commit.
    pub offsets: BTreeMap<(String, i32), i64>,
}

impl Book {
    pub fn positions(&self) -> KafkaResult<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &self.offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
        Ok(tpl)
    }
}

impl Shared {
    pub fn new(revoked: Arc<dyn Revoked>) -> Arc<Self> {
        Arc::new(Self {
            revoked,
            producer: Mutex::new(None),
            producer_lost: AtomicBool::new(false),
            book: Mutex::new(Book::default()),
            moves: Mutex::new(Moves::default()),
            closing: AtomicBool::new(false),
        })
    }

    pub fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn moves(&self) -> std::sync::MutexGuard<'_, Moves> {
        self.moves.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the assignment was lost since the last call (the open work was dropped).
    pub fn take_lost(&self) -> bool {
        std::mem::take(&mut self.moves().lost)
    }

    /// The partitions assigned since the last call.
    pub fn take_assigned(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut self.moves().assigned)
    }

    /// The partitions revoked since the last call, still held until [`release`]d.
    pub fn take_revoked(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut self.moves().revoked)
    }

    /// Whether partitions were revoked that the loop has not released yet (a poll then stops
    /// early, so that the rebalance waits on this instance as little as it can).
    pub fn revoke_pending(&self) -> bool {
        !self.moves().revoked.is_empty()
    }

    /// Hands the revoke callback the loop's (new) producer.
    pub fn set_producer(&self, producer: Arc<Producer>) {
        *self.producer.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(producer);
        self.producer_lost.store(false, Ordering::SeqCst);
    }

    /// Aborts the open transaction, if one is. librdkafka may send the abort before the
    /// coordinator has taken the transaction's partitions (an AddPartitionsToTxn answered
    /// CONCURRENT_TRANSACTIONS right after the previous commit is retried, yet counted as
    /// sent), and the coordinator then refuses it as INVALID_TXN_STATE, a fatal error
    /// (librdkafka #4849). Waiting for the sends in flight first closes that window; if the
    /// abort fails all the same, the producer is marked lost, to be replaced before the next
    /// transaction. False when nothing was open.
    pub fn abort(&self, book: &mut Book) -> bool {
        if book.txn.take().is_none() {
            return false;
        }
        let producer = self.producer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let Some(producer) = producer else { return true };
        if self.producer_lost.load(Ordering::SeqCst) {
            return true;
        }
        let _ = flush(&producer, FLUSH_BEFORE_ABORT);
        if let Err(e) = producer.abort_transaction(KAFKA_TIMEOUT) {
            tracing::warn!("aborting the open transaction failed: {e}; a new producer takes over, which aborts it");
            self.producer_lost.store(true, Ordering::SeqCst);
        }
        true
    }

    /// The partitions were lost, not handed back: they may be another instance's already, so
    /// the work since the last commit is dropped at once (under exactly-once the open
    /// transaction is aborted; otherwise nothing more is committed). The next owner resumes
    /// from the committed offsets with the state its changelog holds, so at-least-once may
    /// repeat outputs but never loses a state change.
    fn on_lost(&self, partitions: &[i32]) {
        self.revoked.revoked(partitions);
        let mut book = self.book();
        if self.abort(&mut book) {
            tracing::info!("partitions lost: aborted the open transaction");
        }
        book.offsets.clear();
        self.moves().lost = true;
    }
}

/// Hands back partitions the group revoked, once the loop has committed the work on them and
/// closed their tasks.
pub fn release(consumer: &Consumer, partitions: &[(String, i32)]) -> KafkaResult<()> {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    unassign(consumer, &tpl)
}

/// Hands back `tpl`: only those partitions when the protocol is incremental, the whole
/// assignment when it is eager.
fn unassign<C: ConsumerContext>(consumer: &BaseConsumer<C>, tpl: &TopicPartitionList) -> KafkaResult<()> {
    match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
        _ => consumer.unassign(),
    }
}

/// The consumer's context: logs through `tracing`, and leaves what a rebalance changes to the
/// loop.
///
/// A revocation is not acted on here: the partitions stay assigned until the loop, after the
/// poll that served the callback, has committed the open work (the revoked partitions' records
/// with everyone else's, in one transaction under exactly-once) and closed their tasks; then it
/// releases them ([`release`]). librdkafka waits for that call, and the group for librdkafka.
/// Tasks of the partitions that stay are not touched. Partitions that were lost, or revoked
/// while the consumer closes, are released at once.
pub struct ConsumerCtx {
    pub shared: Arc<Shared>,
}

impl ClientContext for ConsumerCtx {}

impl ConsumerContext for ConsumerCtx {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let partitions: Vec<(String, i32)> =
            tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
        let incremental = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let assigned = match incremental {
                    true => consumer.incremental_assign(tpl),
                    false => consumer.assign(tpl),
                };
                if let Err(e) = assigned {
                    tracing::warn!("taking the assigned partitions failed: {e}");
                }
                tracing::info!(partitions = partitions.len(), incremental, "partitions assigned");
                self.shared.moves().assigned.extend(partitions);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                if lost || self.shared.closing.load(Ordering::SeqCst) {
                    if lost {
                        tracing::warn!(partitions = partitions.len(), "partitions lost");
                        let numbers: Vec<i32> = partitions.iter().map(|(_, p)| *p).collect();
                        self.shared.on_lost(&numbers);
                    }
                    if let Err(e) = unassign(consumer, tpl) {
                        tracing::warn!("releasing the revoked partitions failed: {e}");
                    }
                    return;
                }
                tracing::info!(partitions = partitions.len(), incremental, "partitions revoked");
                self.shared.moves().revoked.extend(partitions);
            }
            _ => tracing::warn!("rebalance error: {}", RDKafkaErrorCode::from(err)),
        }
    }
}

/// The producer's context: remembers failed deliveries until the next commit looks, and the
/// last changelog offset written per partition (for the stores' checkpoints).
#[derive(Default)]
pub struct ProducerCtx {
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// The changelog topics (one per stateful stage).
    changelogs: Vec<String>,
    changelog_offsets: Mutex<std::collections::HashMap<(String, i32), i64>>,
}

impl ProducerCtx {
    /// The offset after the last record delivered to `partition` of changelog `topic` since the
    /// last call.
    pub fn take_changelog_end(&self, topic: &str, partition: i32) -> Option<i64> {
        let mut offsets = self.changelog_offsets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        offsets.remove(&(topic.to_owned(), partition)).map(|last| last + 1)
    }

    /// How many deliveries failed since the last call, and the last failure.
    pub fn take_failures(&self) -> Option<(u64, String)> {
        let failed = self.failed.swap(0, Ordering::SeqCst);
        let last = self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        (failed > 0).then(|| (failed, last.unwrap_or_default()))
    }
}

impl ClientContext for ProducerCtx {}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        use rdkafka::message::Message as _;
        if let Ok(message) = result {
            if self.changelogs.iter().any(|c| c == message.topic()) {
                let mut offsets = self.changelog_offsets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let key = (message.topic().to_owned(), message.partition());
                let last = offsets.entry(key).or_insert(message.offset());
                *last = (*last).max(message.offset());
            }
        }
        if let Err((error, message)) = result {
            self.failed.fetch_add(1, Ordering::SeqCst);
            let text = format!("topic `{}` partition {}: {error}", message.topic(), message.partition());
            *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(text);
        }
    }
}

/// Settings every client of a pipeline shares: the bootstrap servers, the user's `[kafka]`
/// table, and a `client.id` of the pipeline's own (`weir-<application_id>-<instance>`, unless
/// the table names one), so the broker's client quotas apply per pipeline.
pub fn base(config: &PipelineConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.bootstrap_servers);
    for (key, value) in &config.kafka {
        client.set(key, value);
    }
    default(&mut client, config, "client.id", &client_id(config));
    client
}

/// The `client.id` of a pipeline's Kafka clients when its `[kafka]` table names none.
pub fn client_id(config: &PipelineConfig) -> String {
    format!("weir-{}-{}", config.application_id, config.member())
}

fn default(client: &mut ClientConfig, config: &PipelineConfig, key: &str, value: &str) {
    if !config.kafka.contains_key(key) {
        client.set(key, value);
    }
}

/// A consumer that reads assigned partitions to their end (`read_committed`, end-of-partition
/// events, no commits), for changelog restores and tables; `purpose` names its group. An offset
/// no longer in the log (retention removed it after its start was read) reads from the earliest
/// left, never from the end.
pub fn catch_up(config: &PipelineConfig, purpose: &str) -> ClientConfig {
    let mut client = base(config);
    client
        .set("group.id", format!("{}-{purpose}", config.application_id))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "10");
    default(&mut client, config, "fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
    client
}

/// How long a consumer's fetcher waits, once its prefetch queue is full, before it looks again.
/// librdkafka's default, 1 s, let the queue run dry while the pipeline drained it: a word count
/// spent more than a third of its time waiting in `poll` (3.1 s of 8 s for 1M records; 0.55 s at
/// 10 ms).
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// The context of consumers that read a partition to its end (changelog restores, tables):
/// reaching the end is the goal, not an error.
pub struct CatchUpCtx;

impl rdkafka::ClientContext for CatchUpCtx {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let eof = matches!(error, rdkafka::error::KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF);
        if !eof {
            tracing::warn!("catching up: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for CatchUpCtx {}

/// How many partitions `topic` has; an error if it does not exist.
pub fn partition_count(
    consumer: &BaseConsumer<impl rdkafka::consumer::ConsumerContext>,
    topic: &str,
    what: &str,
) -> anyhow::Result<i32> {
    let metadata = consumer
        .fetch_metadata(Some(topic), KAFKA_TIMEOUT)
        .with_context(|| format!("cannot read the metadata of {what} `{topic}`"))?;
    let n = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    if n == 0 {
        bail!("{what} topic `{topic}` does not exist");
    }
    Ok(n)
}

/// What [`ensure_topic`] creates: `partitions` partitions, compacted or not, with a replication
/// factor (`None`: the broker's default) and `min.insync.replicas` (`None`: the broker's, or
/// one less than an explicit factor above 1); with `exact`, an existing topic with another
/// partition count is refused.
pub struct TopicSpec<'a> {
    /// Names the topic's role in logs and errors.
    pub what: &'a str,
    pub partitions: i32,
    pub compact: bool,
    pub exact: bool,
    pub replication_factor: Option<i32>,
    pub min_insync_replicas: Option<i32>,
    /// Other topic settings.
    pub settings: &'a [(&'a str, &'a str)],
}

impl<'a> TopicSpec<'a> {
    /// A topic with the broker's replication defaults.
    pub fn new(what: &'a str, partitions: i32, compact: bool, exact: bool) -> Self {
        Self { what, partitions, compact, exact, replication_factor: None, min_insync_replicas: None, settings: &[] }
    }
}

/// Creates `topic` as `spec` says unless it exists.
pub fn ensure_topic(config: &PipelineConfig, topic: &str, spec: TopicSpec<'_>) -> anyhow::Result<()> {
    let TopicSpec { what, partitions, compact, exact, replication_factor, min_insync_replicas, settings } = spec;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let consumer: BaseConsumer = base(config).create()?;
    let metadata = consumer.fetch_metadata(Some(topic), KAFKA_TIMEOUT)?;
    let existing = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    if existing == partitions || (existing > 0 && !exact) {
        return Ok(());
    }
    if existing > 0 {
        bail!("{what} topic `{topic}` has {existing} partitions, {partitions} expected");
    }
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = base(config).create()?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication_factor.unwrap_or(-1)));
    if compact {
        new = new.set("cleanup.policy", "compact");
    }
    for (key, value) in settings {
        new = new.set(key, value);
    }
    let min_isr = min_insync_replicas.or(replication_factor.filter(|rf| *rf > 1).map(|rf| rf - 1));
    let min_isr = min_isr.map(|n| n.to_string());
    if let Some(n) = &min_isr {
        new = new.set("min.insync.replicas", n);
    }
    let results = futures_executor::block_on(admin.create_topics([&new], &AdminOptions::new()))
        .with_context(|| format!("cannot create {what} topic `{topic}`"))?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic, partitions, "created {what} topic"),
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("cannot create {what} topic `{t}`: {e}"),
        }
    }
    Ok(())
}

/// Whether a broker answers at the pipeline's bootstrap servers, within 10 s.
pub fn probe(config: &PipelineConfig) -> anyhow::Result<()> {
    let consumer: BaseConsumer = base(config).create().context("cannot create a Kafka client")?;
    let topic = config.inputs.first().map(String::as_str);
    consumer
        .fetch_metadata(topic, Duration::from_secs(10))
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("no Kafka broker answers at {}: {e}", config.bootstrap_servers))
}

/// Refuses a pipeline whose input or output topics do not exist: a configuration error that
/// names the topic, rather than a producer or consumer retrying a missing topic forever.
pub fn check_topics(config: &PipelineConfig) -> anyhow::Result<()> {
    check_inputs(config)?;
    let consumer: BaseConsumer = base(config).create().context("cannot create a Kafka client")?;
    for (name, topic) in &config.outputs {
        partition_count(&consumer, topic, &format!("output `{name}`:"))
            .map_err(|e| anyhow::anyhow!("{e:#}; {CREATE_IT}"))?;
    }
    Ok(())
}

/// Refuses a pipeline whose input topics do not exist, naming the topic.
pub fn check_inputs(config: &PipelineConfig) -> anyhow::Result<()> {
    let consumer: BaseConsumer = base(config).create().context("cannot create a Kafka client")?;
    for input in &config.inputs {
        partition_count(&consumer, input, "input").map_err(|e| anyhow::anyhow!("{e:#}; {CREATE_IT}"))?;
    }
    Ok(())
}

/// What to do about a topic that does not exist.
const CREATE_IT: &str = "create it first (`weir topic create`), or name another in the pipeline file";

/// The topics a running pipeline depends on, as they were when it started: to tell, after a
/// Kafka error, whether one was deleted or repartitioned underneath it.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// The changelog topic and its partition count, for a stateful pipeline.
    pub changelog: Option<(String, i32)>,
    pub dead_letter: Option<String>,
}

impl Layout {
    /// What changed underneath the pipeline, as an error naming the topic and what to do; `None`
    /// when nothing did, or when the broker cannot be asked (the Kafka error then speaks for
    /// itself, and is retried).
    pub fn changed(&self, config: &PipelineConfig) -> Option<String> {
        let consumer: BaseConsumer = base(config).create().ok()?;
        // Briefly: with the broker away this fails, and the retry should not wait on it.
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(2)).ok()?;
        let partitions = |topic: &str| {
            metadata.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len() as i32)
        };
        let deleted = |what: &str, topic: &str, then: &str| {
            Some(format!("{what} topic `{topic}` was deleted while the pipeline ran; {then}"))
        };
        let redo = "nothing past the last commit was written: recreate it and restart the pipeline";
        for input in &config.inputs {
            if partitions(input) == 0 {
                return deleted("input", input, redo);
            }
        }
        for (name, topic) in &config.outputs {
            if partitions(topic) == 0 {
                return deleted(&format!("output `{name}`:"), topic, redo);
            }
        }
        if let Some((changelog, expected)) = &self.changelog {
            if partitions(changelog) == 0 {
                return deleted(
                    "changelog",
                    changelog,
                    "the local stores still hold the state, but it is no longer durable, and a restart would \
                     create an empty changelog and start the state over. To keep it, stop every instance and \
                     recreate the topic (compacted) from a copy; to start over, restart",
                );
            }
            if let Some(problem) = repartitioned(config, changelog, *expected, |t| partitions(t)) {
                return Some(problem);
            }
        }
        match &self.dead_letter {
            Some(topic) if partitions(topic) == 0 => {
                deleted("dead-letter", topic, "restart the pipeline to create it again, or recreate it")
            }
            _ => None,
        }
    }
}

/// Says so when an input of a stateful pipeline no longer has as many partitions as its
/// changelog (`expected`): keys then reach other partitions than the one holding their state.
pub fn repartitioned(
    config: &PipelineConfig,
    changelog: &str,
    expected: i32,
    partitions: impl Fn(&str) -> i32,
) -> Option<String> {
    let (input, now) = config.inputs.iter().map(|i| (i, partitions(i))).find(|(_, n)| *n > 0 && *n != expected)?;
    Some(format!(
        "input topic `{input}` now has {now} partitions, but the state is kept in {expected} (changelog \
         `{changelog}`): records of one key would reach another partition than the one holding its state, so \
         the pipeline stopped before processing any record of the new layout. To repartition, run the \
         processor as a new application (another application_id) from the earliest offsets, which rebuilds \
         its state with the new partitioning"
    ))
}

/// How many partitions the inputs have; they must agree, since state is kept per partition.
pub fn input_partitions(
    config: &PipelineConfig,
    consumer: &BaseConsumer<impl rdkafka::consumer::ConsumerContext>,
) -> anyhow::Result<i32> {
    let mut counts = Vec::new();
    for input in &config.inputs {
        counts.push((input.as_str(), partition_count(consumer, input, "input")?));
    }
    let n = counts[0].1;
    if let Some((other, m)) = counts.iter().find(|(_, m)| *m != n) {
        bail!(
            "per-partition state and tables need co-partitioned inputs: `{}` has {n} partitions, `{other}` has {m}",
            counts[0].0
        );
    }
    Ok(n)
}

/// The most partitions any input has, asked of the broker within `timeout`; `None` when it
/// does not answer in time or an input is missing.
pub fn widest_input(config: &PipelineConfig, timeout: Duration) -> Option<i32> {
    let consumer: BaseConsumer = base(config).create().ok()?;
    let mut widest = 0;
    for input in &config.inputs {
        let metadata = consumer.fetch_metadata(Some(input), timeout).ok()?;
        widest = widest.max(metadata.topics().first()?.partitions().len() as i32);
    }
    (widest > 0).then_some(widest)
}

/// The producer: transactional under exactly-once, idempotent otherwise; partitions by key the
/// way Java clients do, so co-partitioned topics agree.
pub fn producer(config: &PipelineConfig, changelogs: &[String]) -> anyhow::Result<Arc<Producer>> {
    let mut client = base(config);
    default(&mut client, config, "partitioner", "murmur2_random");
    default(&mut client, config, "linger.ms", "5");
    match config.guarantee {
        Guarantee::ExactlyOnce => {
            client.set("transactional.id", format!("{}-{}", config.application_id, config.member()));
            // A crashed instance that does not come back holds its partitions' offsets at most
            // this long (Kafka Streams uses 10 s under exactly-once too).
            default(
                &mut client,
                config,
                "transaction.timeout.ms",
                &config.transaction_timeout().as_millis().to_string(),
            );
        }
        _ => {
            client.set("enable.idempotence", "true");
        }
    }
    let producer: Producer = client
        .create_with_context(ProducerCtx { changelogs: changelogs.to_vec(), ..ProducerCtx::default() })
        .map_err(|e| anyhow::anyhow!("cannot create the Kafka producer: {e}"))?;
    if config.guarantee == Guarantee::ExactlyOnce {
        producer
            .init_transactions(KAFKA_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("cannot initialise transactions at {}: {e}", config.bootstrap_servers))?;
    }
    Ok(Arc::new(producer))
}

/// How a pipeline's consumer takes part in its group: the protocol, the assignor, and whether
/// rebalances are incremental (only the partitions that move are touched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPlan {
    pub protocol: GroupProtocol,
    pub assignor: &'static str,
    pub incremental: bool,
}

impl GroupPlan {
    /// The plan for `config`; `copartitioned` when a stage reads several topics whose partitions
    /// must stay together (the same partition of each on one instance).
    ///
    /// The sticky assignors (`cooperative-sticky` on the classic protocol, `uniform` on the
    /// broker under the consumer protocol) balance each topic on its own and so may split
    /// co-partitioned topics; such a pipeline takes `range` instead, which keeps them together
    /// but moves more partitions when members come and go (and is eager under the classic
    /// protocol). A `[kafka]` `partition.assignment.strategy` overrides the classic choice.
    pub fn of(config: &PipelineConfig, copartitioned: bool) -> Self {
        match config.group_protocol {
            GroupProtocol::Consumer => {
                let assignor = if copartitioned { "range" } else { "uniform" };
                Self { protocol: GroupProtocol::Consumer, assignor, incremental: true }
            }
            GroupProtocol::Classic => {
                let assignor: &'static str = match config.kafka.get("partition.assignment.strategy") {
                    Some(chosen) if chosen.trim() == "cooperative-sticky" => "cooperative-sticky",
                    Some(chosen) if chosen.trim() == "range" => "range",
                    Some(chosen) if chosen.trim() == "roundrobin" => "roundrobin",
                    Some(_) => "as [kafka] says",
                    None if copartitioned => "range",
                    None => "cooperative-sticky",
                };
                Self { protocol: GroupProtocol::Classic, assignor, incremental: assignor == "cooperative-sticky" }
            }
        }
    }
}

/// The consumer's `group.instance.id` (static membership, KIP-345): the pipeline's instance id,
/// unless the file turns static membership off.
pub fn group_instance_id(config: &PipelineConfig) -> Option<String> {
    config.static_membership.then(|| config.member())
}

/// The consumer, in the application's group (a static member unless the file says otherwise),
/// reading only committed records
/// of `topics` (the inputs of every stage), speaking the group protocol `plan` says.
pub fn consumer(
    config: &PipelineConfig,
    topics: &[String],
    plan: GroupPlan,
    shared: Arc<Shared>,
) -> anyhow::Result<Consumer> {
    let mut client = base(config);
    client.set("group.id", &config.application_id);
    if let Some(id) = group_instance_id(config) {
        client.set("group.instance.id", id);
    }
    client
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", config.auto_offset_reset.as_kafka());
    default(&mut client, config, "fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
    match plan.protocol {
        GroupProtocol::Consumer => {
            client.set("group.protocol", "consumer").set("group.remote.assignor", plan.assignor);
        }
        GroupProtocol::Classic => {
            client.set("group.protocol", "classic");
            default(&mut client, config, "partition.assignment.strategy", plan.assignor);
            // A crashed instance's partitions move after this long; a static member restarted
            // sooner takes its own back with no rebalance at all.
            default(&mut client, config, "session.timeout.ms", SESSION_TIMEOUT_MS);
            // A member learns of a rebalance at its next heartbeat, and the cooperative
            // protocol's second round waits for every member's: 500 ms kept the longest commit
            // gap of the partitions that stay during a join near 0.5 s (1.4 to 1.5 s at 1.5 s).
            default(&mut client, config, "heartbeat.interval.ms", "500");
        }
    }
    let consumer: Consumer = client
        .create_with_context(ConsumerCtx { shared })
        .map_err(|e| anyhow::anyhow!("cannot create the Kafka consumer: {e}"))?;
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| anyhow::anyhow!("cannot subscribe to {topics:?}: {e}"))?;
    Ok(consumer)
}

/// The classic protocol's session timeout unless the `[kafka]` table sets one: how long a
/// static member may be away (a restart) before its partitions move.
pub const SESSION_TIMEOUT_MS: &str = "10000";

#[cfg(test)]
mod test {
    use super::*;

    fn config(extra: &str) -> PipelineConfig {
        let text = format!(
            "application_id = \"orders\"\ninstance_id = \"host1\"\ninputs = [\"in\"]\n[module]\npath = \"m.wasm\"\n{extra}"
        );
        PipelineConfig::parse(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_client_of_a_pipeline_carries_its_own_client_id_unless_the_file_names_one() {
        let client = base(&config(""));
        assert_eq!(client.get("client.id"), Some("weir-orders-host1"));
        assert_eq!(catch_up(&config(""), "restore").get("client.id"), Some("weir-orders-host1"));
        let named = base(&config("[kafka]\n\"client.id\" = \"team-a\"\n"));
        assert_eq!(named.get("client.id"), Some("team-a"));
    }
}
