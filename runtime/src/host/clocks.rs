//! `wasi:clocks/monotonic-clock`'s sleeps, bounded by the guest's deadline.
//!
//! The epoch deadline interrupts a guest only while it runs WebAssembly; a guest asleep in the
//! host (`std::thread::sleep`, `time.sleep`, `setTimeout` turned into a blocking poll) would
//! sleep through it. So weir replaces the two functions that make a sleep, `subscribe-duration`
//! and `subscribe-instant`: the pollable they return is ready no later than the current call's
//! deadline, and the guest, woken, traps with the deadline as soon as it runs again. A sleep
//! well within the deadline sleeps as asked.

use std::time::{Duration, Instant};

use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;
use wasmtime_wasi::p2::{subscribe, DynPollable, Pollable};

use super::HostState;

/// The interface weir replaces two functions of, at the version wasmtime-wasi links (a guest
/// importing any 0.2 version is linked to it).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// The guest's monotonic clock: nanoseconds since the instance's host state was made.
#[derive(Debug, Clone, Copy)]
pub struct GuestClock {
    start: Instant,
}

impl Default for GuestClock {
    fn default() -> Self {
        Self::new()
    }
}

impl GuestClock {
    pub fn new() -> Self {
        Self { start: Instant::now() }
    }

    fn instant(&self, nanos: u64) -> Instant {
        self.start.checked_add(Duration::from_nanos(nanos)).unwrap_or_else(far_future)
    }
}

impl wasmtime_wasi::HostMonotonicClock for GuestClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A sleep until `at`.
struct Sleep {
    at: tokio::time::Instant,
}

#[async_trait::async_trait]
impl Pollable for Sleep {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.at).await;
    }
}

/// A pollable ready at `wanted`, or at the current call's deadline if that comes first.
fn sleep_until(mut store: StoreContextMut<'_, HostState>, wanted: Instant) -> wasmtime::Result<Resource<DynPollable>> {
    let host = store.data_mut();
    let at = match host.deadline {
        Some(deadline) => wanted.min(deadline),
        None => wanted,
    };
    let sleep = host.table.push(Sleep { at: at.into() })?;
    subscribe(&mut host.table, sleep)
}

/// Replaces the sleeps of the WASI clocks already in `linker` with ones bounded by the deadline.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap("subscribe-duration", |store: StoreContextMut<'_, HostState>, (nanos,): (u64,)| {
        // A duration too long to add is a sleep for ever, which the deadline ends.
        let wanted = Instant::now().checked_add(Duration::from_nanos(nanos)).unwrap_or_else(far_future);
        sleep_until(store, wanted).map(|p| (p,))
    })?;
    clock.func_wrap("subscribe-instant", |store: StoreContextMut<'_, HostState>, (when,): (u64,)| {
        let wanted = store.data().clock.instant(when);
        sleep_until(store, wanted).map(|p| (p,))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}
