//! `weir:processor/timers`: timers kept in the instance's state (see [`crate::timers`]).

use super::HostState;
use crate::contract::weir::processor::timers::Host;
use crate::contract::weir::processor::types::Clock;
use crate::timers::timer_key;

impl HostState {
    fn check_timer_handler(&self) -> wasmtime::Result<()> {
        if self.timer_handler {
            return Ok(());
        }
        Err(wasmtime::Error::msg(
            "the processor sets a timer but does not export `weir:processor/timer-handler`, so it could never \
             fire; build it for the `timed-processor` world",
        ))
    }
}

impl Host for HostState {
    fn set(&mut self, clock: Clock, at: i64, key: Vec<u8>) -> wasmtime::Result<()> {
        self.check_timer_handler()?;
        self.state.put(timer_key(clock, at, &key), Vec::new());
        self.fired.timer_set(clock, at);
        Ok(())
    }

    fn cancel(&mut self, clock: Clock, at: i64, key: Vec<u8>) -> wasmtime::Result<()> {
        self.state.delete(timer_key(clock, at, &key));
        Ok(())
    }

    fn event_time(&mut self) -> wasmtime::Result<i64> {
        Ok(self.event_time.unwrap_or(-1))
    }
}
