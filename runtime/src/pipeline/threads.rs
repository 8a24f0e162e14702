//! Worker threads (`threads = N`), as Kafka Streams' stream threads: N loops in one process,
//! each its own member of the consumer group with its own consumer and transactional producer
//! (`<instance>-<n>`), the partitions spread among them by the group protocol. They share what
//! the pipeline has once ([`Common`]): the tables, the claim queries are routed by, the standby
//! stores, and the view the supervisor reads, where their snapshots count as one.
//!
//! The thread that calls [`run`] starts them, hands them the supervisor's commands, and stops
//! them all when it is asked to or when one of them fails (the failure is the pipeline's).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::anyhow;

use super::control::{self, Command, Handle, Inbox, SwapOutcome};
use super::start::{Attach, Common, Thread};
use super::work::{Pipeline, Stats};
use crate::config::PipelineConfig;
use crate::engine::{Engine, Module};

/// How often the calling thread looks at the worker threads and its inbox.
const WATCH_EVERY: Duration = Duration::from_millis(20);

/// Runs a pipeline until its view's stop flag is set (or, with `max_records`, until that many
/// records were consumed), on `threads` worker threads; returns what they did together.
pub fn run(
    config: PipelineConfig,
    modules: Vec<Module>,
    attach: Attach,
    inbox: &Inbox,
    max_records: Option<u64>,
) -> anyhow::Result<Stats> {
    let count = config.threads;
    if count <= 1 {
        return Pipeline::start(config, modules, attach)?.run(inbox, max_records);
    }
    let application = config.application_id.clone();
    let mut common = Common::start(config, modules, &attach)?;
    let whole = inbox.view.clone();
    // The workers stop at this flag, set when the pipeline is asked to stop or a worker ends.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers: Vec<(Handle, JoinHandle<anyhow::Result<Stats>>)> = Vec::new();
    for n in 1..=count {
        let (handle, worker_inbox) = control::thread_channel(&whole, stop.clone());
        let thread =
            Thread { number: Some(n), view: handle.view.clone(), metrics: attach.metrics.clone(), status_line: false };
        let started = common.thread(thread, attach.paused).and_then(|pipeline| {
            std::thread::Builder::new()
                .name(format!("weir-{application}-{n}"))
                .spawn(move || pipeline.run(&worker_inbox, None))
                .map_err(|e| anyhow!("cannot start worker thread {n}: {e}"))
        });
        match started {
            Ok(worker) => workers.push((handle, worker)),
            Err(e) => {
                stop.store(true, Ordering::SeqCst);
                join(workers)?;
                return Err(e);
            }
        }
    }
    tracing::info!(application = %application, threads = count, "worker threads started");
    loop {
        while let Some(command) = inbox.next() {
            match command {
                Command::Pause => workers.iter().for_each(|(h, _)| _ = h.send(Command::Pause)),
                Command::Resume => workers.iter().for_each(|(h, _)| _ = h.send(Command::Resume)),
                // The supervisor restarts a pipeline of several threads for a new version (see
                // `PipelineConfig::needs_restart`); a swap that reaches here is refused whole.
                Command::Swap(_, reply) => {
                    let why = "a pipeline of several worker threads takes a new version by a restart";
                    _ = reply.send(SwapOutcome::RolledBack(why.into()));
                }
            }
        }
        let consumed: u64 = workers.iter().map(|(h, _)| h.view.consumed.load(Ordering::Relaxed)).sum();
        let enough = max_records.is_some_and(|max| consumed >= max);
        let ended = workers.iter().any(|(_, w)| w.is_finished());
        if whole.stopping() || enough || ended {
            stop.store(true, Ordering::SeqCst);
        }
        if workers.iter().all(|(_, w)| w.is_finished()) {
            break;
        }
        std::thread::sleep(WATCH_EVERY);
    }
    let stats = join(workers)?;
    drop(common);
    Ok(stats)
}

/// Runs the pipeline `config` describes, its modules loaded by `engine`, reporting nowhere in
/// particular, until `max_records` were consumed (the benchmarks).
pub fn run_alone(config: PipelineConfig, engine: &Engine, max_records: Option<u64>) -> anyhow::Result<Stats> {
    let modules = Pipeline::modules(&config, engine)?;
    let (_handle, inbox) = control::channel(Arc::default());
    let attach = Attach::quiet(&config, inbox.view.clone());
    run(config, modules, attach, &inbox, max_records)
}

/// Waits for every worker; what they did together, or the first one's failure.
fn join(workers: Vec<(Handle, JoinHandle<anyhow::Result<Stats>>)>) -> anyhow::Result<Stats> {
    let mut total = Stats::default();
    let mut failure = None;
    for (_, worker) in workers {
        match worker.join() {
            Ok(Ok(stats)) => total.add(&stats),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some(anyhow!("a worker thread panicked"))),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(total),
    }
}
