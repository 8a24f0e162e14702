//! Whether Kafka answers, as the pipeline tells it: in the log, the status' notice and the loop's
//! heartbeat. The clients reconnect by themselves; this only says so, and asks a broker now and
//! then while no record comes (a consumer with nothing to read does not always notice a broker
//! that went away).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};

use super::control::View;
use super::failure::{backoff, pause};
use crate::config::PipelineConfig;
use crate::kafka;

/// How long without records before the loop asks whether a broker answers, and how often then.
const IDLE_PROBE: Duration = Duration::from_secs(2);

/// What the pipeline last said of Kafka.
pub(super) struct Health {
    view: Arc<View>,
    application_id: String,
    /// Whether the pipeline last said a broker connection is down (and the notice says so).
    pub trouble: bool,
    /// Since when no record came, and when a broker was last asked whether it answers.
    idle_since: Instant,
    last_probe: Instant,
    /// A client of the pipeline's own for that question, made on first use.
    prober: Option<BaseConsumer>,
}

impl Health {
    pub fn new(view: Arc<View>, config: &PipelineConfig) -> Self {
        let now = Instant::now();
        Self {
            view,
            application_id: config.application_id.clone(),
            trouble: false,
            idle_since: now,
            last_probe: now,
            prober: None,
        }
    }

    /// Says that Kafka is away (`why`), in the log and the status.
    pub fn away(&mut self, why: &str) {
        tracing::warn!(application = %self.application_id, "{why}; the clients reconnect by themselves");
        self.view.update(|s| s.notice = Some(format!("waiting for Kafka: {why}; the clients reconnect by themselves")));
        self.trouble = true;
    }

    /// Clears what [`Health::away`] said.
    pub fn back(&mut self, how: &str) {
        tracing::info!(application = %self.application_id, "{how}");
        self.view.update(|s| s.notice = None);
        self.trouble = false;
    }

    /// After a poll: records came (Kafka is back, if it was away), or none did (and a broker is
    /// asked whether it answers, at most every [`IDLE_PROBE`]).
    pub fn polled(&mut self, records: usize, config: &PipelineConfig) {
        if records > 0 {
            self.idle_since = Instant::now();
            if self.trouble {
                self.back("the consumer reads again");
            }
        } else if self.idle_since.elapsed() >= IDLE_PROBE && self.last_probe.elapsed() >= IDLE_PROBE {
            self.probe(config);
        }
    }

    fn probe(&mut self, config: &PipelineConfig) {
        self.last_probe = Instant::now();
        if self.prober.is_none() {
            self.prober = kafka::base(config).create().ok();
        }
        let Some(prober) = &self.prober else { return };
        let topic = config.inputs.first().map(String::as_str);
        match prober.fetch_metadata(topic, Duration::from_secs(1)) {
            Err(e) if !self.trouble => self.away(&format!("no broker answers at {} ({e})", config.bootstrap_servers)),
            Ok(_) if self.trouble => self.back("a broker answers again"),
            _ => {}
        }
        self.view.beat();
    }
}

/// Until a broker answers at the pipeline's bootstrap servers. With `wait`, tries again with
/// backoff, the reason in the status' notice, until one does or the pipeline is told to stop;
/// without, the first failure is the error.
pub(super) fn await_kafka(config: &PipelineConfig, view: &View, wait: bool) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        let e = match kafka::probe(config) {
            Ok(()) if attempt == 0 => return Ok(()),
            Ok(()) => {
                tracing::info!(application = %config.application_id, "Kafka answers");
                view.update(|s| s.notice = None);
                return Ok(());
            }
            Err(e) if !wait => return Err(e),
            Err(e) => e,
        };
        if view.stopping() {
            return Err(e.context("stopped while waiting for Kafka"));
        }
        attempt += 1;
        let delay = backoff(attempt);
        tracing::warn!(application = %config.application_id, attempt, "{e:#}; trying again in {} ms", delay.as_millis());
        view.update(|s| {
            s.notice = Some(format!("waiting for Kafka: {e:#}; attempt {attempt}, next in {} ms", delay.as_millis()))
        });
        pause(view, delay);
    }
}
