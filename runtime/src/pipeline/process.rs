//! One poll's records through their tasks: each partition's run of records becomes a batch for
//! its task, the outputs (and those of the timers the batch made due) go to the sink, and the
//! offsets are booked for the next commit. Records a guest error was about before are set aside
//! as the `[errors]` policy says (see [`super::dead_letter`]); the wall-clock timers of every
//! task fire here too.

use std::time::{SystemTime, UNIX_EPOCH};

use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};

use super::dead_letter::{self, Poison};
use super::failure::Failure;
use super::sink::{produce, send, Answering};
use super::task::Env;
use super::work::Work;
use crate::engine::Fired;

impl Work {
    /// Runs one partition's run of messages through its task, setting aside the records
    /// marked as poisoned.
    pub(super) fn process(&mut self, messages: &[BorrowedMessage<'_>]) -> Result<(), Failure> {
        if self.poisoned.is_empty() {
            return self.process_run(messages);
        }
        let mut start = 0;
        for (i, m) in messages.iter().enumerate() {
            if let Some(poison) = self.poisoned.get(m.topic(), m.partition(), m.offset()).cloned() {
                if start < i {
                    self.process_run(&messages[start..i])?;
                }
                self.put_aside(m, &poison)?;
                start = i + 1;
            }
        }
        if start < messages.len() {
            self.process_run(&messages[start..])?;
        }
        Ok(())
    }

    /// A poisoned record: to the dead-letter topic (in the open transaction) or dropped, and
    /// counted, and consumed like any other.
    fn put_aside(&mut self, m: &BorrowedMessage<'_>, poison: &Poison) -> Result<(), Failure> {
        let policy = self.config.errors.on_guest_error;
        match &self.dead_letter {
            Some(topic) => {
                let stage = self.stages.get(self.stages.reading(m.topic())?);
                let digest = self.view.snapshot().digest.unwrap_or_else(|| stage.tasks.module().name().to_owned());
                let named = (self.stages.len() > 1).then_some(stage.name.as_str());
                send(self.txn.producer(), dead_letter::dead_letter(topic, m, poison, &digest, named))?;
                self.view.update(|s| s.dead_lettered += 1);
            }
            None => {
                tracing::warn!(application = %self.config.application_id, "skipped the record: {}", poison.message);
                self.view.update(|s| s.skipped += 1);
            }
        }
        self.metrics.failed_record(dead_letter::action(policy));
        self.consumed_through(m.topic(), m.partition(), 1, m.offset());
        Ok(())
    }

    /// Counts `count` records of a partition consumed, the last at `last`, and books the offset
    /// after it for the next commit.
    fn consumed_through(&mut self, topic: &str, partition: i32, count: u64, last: i64) {
        let key = (topic.to_owned(), partition);
        let counter = self.consumed.entry(key).or_insert_with(|| self.metrics.consumed(topic, partition));
        counter.inc_by(count);
        self.txn.add_offset(topic, partition, last + 1);
    }

    /// Runs one partition's run of messages through its task and produces the outputs.
    fn process_run(&mut self, messages: &[BorrowedMessage<'_>]) -> Result<(), Failure> {
        let first = &messages[0];
        let (topic, partition) = (first.topic(), first.partition());
        self.batch.reset(topic, topic, partition);
        for m in messages {
            let headers = m.headers();
            let pairs = headers.iter().flat_map(|h| h.iter()).map(|h| (h.key.as_bytes(), h.value.unwrap_or_default()));
            self.batch.push(m.offset(), m.timestamp().to_millis(), m.key(), m.payload(), pairs);
        }
        let i = self.stages.reading(topic)?;
        let stage = self.stages.get_mut(i);
        if !stage.warned_unkeyed && stage.tasks.module().uses_state() {
            if let Some(m) = messages.iter().find(|m| m.key().is_none()) {
                stage.warned_unkeyed = true;
                let warning = format!(
                    "stage `{}` keeps state per partition, but records of its input have no key (first: topic `{}` \
                     partition {} offset {}): unkeyed records reach partitions at random, so one key's state may \
                     be split over several partitions. Key them by the state's key in a stage before this one",
                    stage.name,
                    m.topic(),
                    m.partition(),
                    m.offset()
                );
                tracing::warn!(application = %self.config.application_id, "{warning}");
                self.view.update(|s| s.notice = Some(warning));
            }
        }
        let env = Env { config: &stage.config, view: &self.view, metrics: &self.metrics };
        let (outputs, fired) = stage.tasks.task(&env, topic, partition)?.process(&self.batch, &self.metrics)?;
        produce(self.txn.producer(), &stage.config, &outputs, &Answering::Batch(&self.batch))?;
        self.stats.produced += outputs.len() as u64;
        self.metrics.produced.inc_by(outputs.len() as u64);
        let produced = outputs.len() as u64 + self.produce_fired(i, &fired, partition)?;
        self.stages.count(i, messages.len() as u64, produced);
        self.consumed_through(topic, partition, messages.len() as u64, messages[messages.len() - 1].offset());
        Ok(())
    }

    /// Fires the due wall-clock timers of every task and produces their outputs. Under
    /// exactly-once the firing joins a transaction like a batch; one is opened only when
    /// something fired, so an idle pipeline commits nothing.
    pub(super) fn fire_wall_clock(&mut self) -> Result<(), Failure> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        for i in 0..self.stages.len() {
            let stage = self.stages.get_mut(i);
            if !stage.tasks.module().uses_timers() {
                continue;
            }
            for (partition, fired) in stage.tasks.fire_wall_clock(now, &self.metrics)? {
                self.txn.begin()?;
                let produced = self.produce_fired(i, &fired, partition)?;
                self.stages.count(i, 0, produced);
            }
        }
        Ok(())
    }

    /// Produces what stage `i`'s timers made; how many outputs that was.
    fn produce_fired(&mut self, i: usize, fired: &[Fired], partition: i32) -> Result<u64, Failure> {
        let mut produced = 0;
        for f in fired {
            let config = &self.stages.get(i).config;
            produce(self.txn.producer(), config, &f.outputs, &Answering::Timers(f, partition))?;
            produced += f.outputs.len() as u64;
        }
        self.stats.produced += produced;
        self.metrics.produced.inc_by(produced);
        Ok(produced)
    }
}
