//! `weir:processor/tables`: read-only lookups in the pipeline's tables, from the partition of
//! the instance.

use super::HostState;
use crate::contract::weir::processor::tables::Host;

impl Host for HostState {
    fn get(&mut self, name: String, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.tables.tables.get(&name, self.tables.partition, &key).map_err(wasmtime::Error::msg)
    }
}
