//! `weir:processor/state`: the guest's key-value store, served by the instance's [`StateView`],
//! without weir's own keys (timers, event time).

use super::HostState;
use crate::engine::bindings::weir::processor::state::{Entry, Host};
use crate::timers::{guest_ranges, is_reserved, RESERVED};

fn check(key: &[u8]) -> wasmtime::Result<()> {
    if is_reserved(key) {
        return Err(wasmtime::Error::msg(format!(
            "state keys starting with {:?} are reserved for weir's timers",
            String::from_utf8_lossy(RESERVED)
        )));
    }
    Ok(())
}

impl Host for HostState {
    fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        check(&key)?;
        Ok(self.state.get(&key)?)
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
        check(&key)?;
        self.state.put(key, value);
        Ok(())
    }

    fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<()> {
        check(&key)?;
        self.state.delete(key);
        Ok(())
    }

    fn scan(&mut self, start: Vec<u8>, end: Option<Vec<u8>>, limit: u32) -> wasmtime::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for (from, to) in guest_ranges(&start, end.as_deref()) {
            let left = (limit as usize).saturating_sub(entries.len());
            if left == 0 {
                break;
            }
            entries.extend(self.state.scan(from, to, left)?);
        }
        Ok(entries.into_iter().map(|(key, value)| Entry { key, value }).collect())
    }
}
