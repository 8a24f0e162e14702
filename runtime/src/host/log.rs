//! `weir:processor/log`: guest log lines into the host's `tracing` logs.

use super::HostState;
use crate::contract::weir::processor::log::{Host, Level};
use crate::contract::weir::processor::types;

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let c = &self.log;
        let (module, topic, partition) = (c.module.as_str(), c.topic.as_str(), c.partition);
        match level {
            Level::Trace => tracing::trace!(target: "weir::guest", module, topic, partition, "{message}"),
            Level::Debug => tracing::debug!(target: "weir::guest", module, topic, partition, "{message}"),
            Level::Info => tracing::info!(target: "weir::guest", module, topic, partition, "{message}"),
            Level::Warn => tracing::warn!(target: "weir::guest", module, topic, partition, "{message}"),
            Level::Error => {
                tracing::error!(target: "weir::guest", module, topic, partition, "{message}");
                self.last_error = Some(message);
            }
        }
        Ok(())
    }
}

impl types::Host for HostState {}
