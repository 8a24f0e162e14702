//! `weir run`: the loop that consumes, processes, produces and commits.
//!
//! Each step polls a batch ([`source`]), hands each partition's records to that partition's
//! [`task`] ([`process`]), sends the outputs ([`sink`]), and commits when the interval is up as
//! the guarantee says ([`txn`]). A failed step is retried, set aside or stops the pipeline
//! ([`recovery`]). Between steps the loop takes the commands in its inbox ([`control`]: pause,
//! resume, swap the module) and applies them at a commit boundary, and publishes a [`Snapshot`]
//! anyone may read ([`progress`]). When partitions are assigned, their state is restored beside
//! the loop ([`restore`]) and their tasks open when it is done, while the other tasks go on; a
//! pipeline is ready only when every assigned partition's task is open. For a processor with
//! timers, every [`WALL_CLOCK_TICK`] the due wall-clock timers of every task fire.
//! A pipeline of several worker [`threads`] runs one such loop on each.

pub mod control;
pub mod dead_letter;
mod failure;
mod health;
mod process;
mod progress;
mod rebalance;
mod recovery;
mod restore;
mod sink;
mod source;
mod stage;
mod standby;
mod start;
mod store;
mod table_feed;
mod task;
mod threads;
mod txn;
mod work;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message as _;

pub use control::{
    channel, channel_with_log, Command, Handle, Inbox, Phase, Prepared, PreparedStage, Snapshot, SwapOutcome, View,
};
use failure::Failure;
use recovery::Retries;
pub use start::Attach;
pub use table_feed::TableFeed;
pub use threads::{run, run_alone};
pub use work::Pipeline;
pub use work::Stats;

/// How often the wall-clock timers are checked.
pub const WALL_CLOCK_TICK: Duration = Duration::from_millis(100);

impl Pipeline {
    /// Runs until the view's stop flag is set (or, with `max_records`, until that many records
    /// were consumed), then commits what is done and leaves the group. Commands from `inbox`
    /// apply at commit boundaries.
    pub fn run(mut self, inbox: &Inbox, max_records: Option<u64>) -> anyhow::Result<Stats> {
        let mut progress = progress::Progress::new(self.status_line, &self.work.config);
        let done = |stats: &Stats| max_records.is_some_and(|max| stats.consumed >= max);
        let view = inbox.view.clone();
        let mut retries = Retries::default();
        while !view.stopping() && !done(&self.work.stats) {
            view.beat();
            while let Some(command) = inbox.next() {
                self.take(command);
            }
            let stepped = self.step().and_then(|()| self.release_revoked());
            match stepped.and_then(|()| self.commit_if_due()).and_then(|()| self.apply_commands()) {
                Ok(()) => self.succeeded(&mut retries),
                Err(failure) => self.failed(failure, &mut retries)?,
            }
            progress.tick(&mut self.work, &self.consumer, self.last_commit);
            view.consumed.store(self.work.stats.consumed, Ordering::Relaxed);
        }
        progress.finish();
        view.queryable.close("the pipeline is stopping");
        match self.commit() {
            Ok(()) => {}
            // Stopping as the group rebalances (another instance stopping too): the partitions
            // may be another's already, whose owner redoes the open work. Nothing was lost.
            Err(Failure::Rebalanced(e)) => {
                self.abandon();
                tracing::warn!(
                    application = %self.work.config.application_id,
                    "{e:#}; the final commit was dropped, and the partitions' next owner redoes the open work"
                );
            }
            Err(failure) => {
                let domain = failure.domain();
                let e = match failure {
                    Failure::Fenced(e) => self.work.txn.fenced(e).0,
                    Failure::Kafka(e)
                    | Failure::ProducerLost(e)
                    | Failure::Rebalanced(e)
                    | Failure::ConsumerLost(e)
                    | Failure::Fatal(e, _) => e,
                    Failure::Guest(e) | Failure::WholeBatch { error: e, .. } => e.into(),
                };
                return Err(
                    self.fail(e.context("the final commit failed; the open work will be redone on restart"), domain)
                );
            }
        }
        self.work.stats.finished = Some(Instant::now());
        // Partitions revoked from here on are released at once: nothing is left to commit.
        self.work.shared.closing.store(true, Ordering::SeqCst);
        self.consumer.unsubscribe();
        self.work.set_phase(Phase::Stopped);
        let stats = self.work.stats;
        tracing::info!(
            application = %self.work.config.application_id, consumed = stats.consumed, produced = stats.produced,
            batches = stats.batches, commits = stats.commits, commit_ms = stats.commit_time.as_millis() as u64,
            "pipeline stopped"
        );
        Ok(stats)
    }

    /// Polls one batch and processes it.
    fn step(&mut self) -> Result<(), Failure> {
        if self.rewind_owed {
            source::rewind(&self.consumer, self.work.config.auto_offset_reset, self.work.stages.internal(), None)?;
            self.rewind_owed = false;
        }
        let (consumer, work) = (&self.consumer, &mut self.work);
        if let Some(feed) = &mut work.table_feed {
            feed.poll()?;
        }
        // Before the poll: a partition's records polled before its seek back are not returned.
        work.finish_restores(consumer)?;
        let linger = Duration::from_millis(work.config.linger_ms);
        let revoking = || work.shared.revoke_pending();
        let (mut messages, trouble) = source::poll_batch(consumer, work.batch_size(), linger, revoking)?;
        match trouble {
            Some(e) => work.health.away(&format!("consumer: {e}")),
            None => work.health.polled(messages.len(), &work.config),
        }
        if work.follow_assignment(consumer)? {
            // The partitions were lost: what this poll returned may belong to another instance
            // now, and is read again by its owner.
            return Ok(());
        }
        if work.stages.restoring() {
            // Fetched before their partitions' pause took hold: read again once restored.
            messages.retain(|m| !work.stages.holds(m.topic(), m.partition()));
        }
        if work.paused {
            // Fetched before the pause took hold: read again after the resume.
            return source::rewind_to(consumer, &messages);
        }
        if work.stages.uses_timers() && work.last_wall_clock.elapsed() >= WALL_CLOCK_TICK {
            work.last_wall_clock = Instant::now();
            work.fire_wall_clock()?;
        }
        if messages.is_empty() {
            return Ok(());
        }
        work.stats.first_record.get_or_insert_with(Instant::now);
        work.txn.before_processing(consumer, &messages)?;
        work.txn.begin()?;
        for run in messages.chunk_by(|a, b| a.topic() == b.topic() && a.partition() == b.partition()) {
            work.process(run)?;
        }
        work.stats.consumed += messages.len() as u64;
        work.stats.batches += 1;
        work.metrics.batches.inc();
        Ok(())
    }

    /// Takes a command in; it applies at the next commit boundary.
    fn take(&mut self, command: Command) {
        match command {
            Command::Pause => self.want_paused = true,
            Command::Resume => self.want_paused = false,
            Command::Swap(prepared, reply) => self.pending_swap = Some((prepared, reply)),
        }
    }

    /// Commits, then swaps the module, pauses or resumes as asked.
    fn apply_commands(&mut self) -> Result<(), Failure> {
        if self.want_paused == self.work.paused && self.pending_swap.is_none() {
            return Ok(());
        }
        self.commit_now()?;
        if let Some((prepared, reply)) = self.pending_swap.take() {
            // The supervisor may have stopped waiting; the outcome is in the status too.
            let _ = reply.send(self.work.swap(*prepared));
        }
        if self.want_paused != self.work.paused {
            let mut assignment = self.consumer.assignment()?;
            if !self.want_paused && self.work.stages.restoring() {
                // Partitions held by a restore resume when it is done.
                let held = self.work.stages.held();
                let mut free = rdkafka::TopicPartitionList::new();
                for e in assignment.elements() {
                    if !held.iter().any(|(t, p)| t == e.topic() && *p == e.partition()) {
                        free.add_partition(e.topic(), e.partition());
                    }
                }
                assignment = free;
            }
            let application = &self.work.config.application_id;
            match self.want_paused {
                true => self.consumer.pause(&assignment).map(|()| tracing::info!(%application, "paused"))?,
                false => self.consumer.resume(&assignment).map(|()| tracing::info!(%application, "resumed"))?,
            }
            self.work.paused = self.want_paused;
        }
        self.work.set_phase(self.work.settled_phase());
        Ok(())
    }
}
