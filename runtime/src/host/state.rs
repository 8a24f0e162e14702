//! `weir:processor/state`: the guest's key-value store, served by the instance's [`StateView`].

use super::HostState;
use crate::engine::bindings::weir::processor::state::{Entry, Host};

impl Host for HostState {
    fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.state.get(&key)?)
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.state.put(key, value);
        Ok(())
    }

    fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<()> {
        self.state.delete(key);
        Ok(())
    }

    fn scan(&mut self, start: Vec<u8>, end: Option<Vec<u8>>, limit: u32) -> wasmtime::Result<Vec<Entry>> {
        let entries = self.state.scan(&start, end.as_deref(), limit as usize)?;
        Ok(entries.into_iter().map(|(key, value)| Entry { key, value }).collect())
    }
}
