//! `weir:processor/log`: guest log lines into the pipeline's guest log (and weir's own).

use super::HostState;
use crate::contract::weir::processor::log::{Host, Level};
use crate::contract::weir::processor::types;
use crate::guest_log::Level as Kept;

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Trace => Kept::Trace,
            Level::Debug => Kept::Debug,
            Level::Info => Kept::Info,
            Level::Warn => Kept::Warn,
            Level::Error => Kept::Error,
        };
        self.log.write(level, "log", &message);
        if level == Kept::Error {
            self.last_error = Some(message);
        }
        Ok(())
    }
}

impl types::Host for HostState {}
