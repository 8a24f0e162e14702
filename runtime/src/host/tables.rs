//! `weir:processor/tables`: read-only lookups in the pipeline's tables, from the partition of
//! the instance.

use super::HostState;
use crate::engine::bindings::weir::processor::tables::Host;

impl Host for HostState {
    fn get(&mut self, name: String, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        let Some(view) = &self.tables else {
            return Err(wasmtime::Error::msg(format!("no table named `{name}`: no tables are declared here")));
        };
        view.tables.get(&name, view.partition, &key).map_err(wasmtime::Error::msg)
    }
}
