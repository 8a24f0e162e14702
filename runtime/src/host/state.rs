//! `weir:processor/state`: the guest's key-value store, served by the instance's [`StateView`],
//! without weir's own keys (timers, event time).

use super::HostState;
use crate::contract::weir::processor::state::{Entry, Host};
use crate::record::RECORD_OVERHEAD;
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
        // The changelog takes what the producer takes: a bigger entry is the record's fault,
        // found now rather than refused by Kafka at the commit.
        let size = key.len() + value.len() + RECORD_OVERHEAD;
        if size > self.max_state_bytes {
            let why = format!(
                "a state value of {} bytes (key {}) is {size} bytes as a changelog record, more than the \
                 producer's message.max.bytes ({}); Kafka would refuse it",
                value.len(),
                shown_key(&key),
                self.max_state_bytes
            );
            self.refused_state = Some(why.clone());
            return Err(wasmtime::Error::msg(why));
        }
        self.state.put(key, value);
        self.limiter.hold(self.state.pending_bytes(), "its uncommitted state")
    }

    fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<()> {
        check(&key)?;
        self.state.delete(key);
        self.limiter.hold(self.state.pending_bytes(), "its uncommitted state")
    }

    /// Reads in chunks, counting what was read against the guest's memory limit after each, so
    /// a scan of a huge range fails at the limit instead of loading it all into the host.
    fn scan(&mut self, start: Vec<u8>, end: Option<Vec<u8>>, limit: u32) -> wasmtime::Result<Vec<Entry>> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut bytes = self.state.pending_bytes();
        for (from, to) in guest_ranges(&start, end.as_deref()) {
            let mut from = from.to_vec();
            loop {
                let left = (limit as usize).saturating_sub(entries.len());
                if left == 0 {
                    break;
                }
                let chunk = self.state.scan(&from, to, left.min(SCAN_CHUNK))?;
                let full = chunk.len() == left.min(SCAN_CHUNK);
                let Some(last) = chunk.last().map(|(k, _)| k.clone()) else { break };
                bytes += chunk.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
                self.limiter.hold(bytes, "a state scan")?;
                entries.extend(chunk.into_iter().map(|(key, value)| Entry { key, value }));
                if !full {
                    break;
                }
                // The next key after the last one read.
                from = last;
                from.push(0);
            }
        }
        // The results go to the guest's memory, where its limit counts them again.
        self.limiter.host = self.state.pending_bytes();
        Ok(entries)
    }
}

/// How many entries a scan reads at once before it counts them against the memory limit.
const SCAN_CHUNK: usize = 1024;

/// A key as an error shows it: text when it is, else hex; at most 64 bytes of it.
fn shown_key(key: &[u8]) -> String {
    let cut = &key[..key.len().min(64)];
    let more = if key.len() > cut.len() { "..." } else { "" };
    match std::str::from_utf8(cut) {
        Ok(s) => format!("{s:?}{more}"),
        Err(_) => format!("0x{}{more}", hex::encode(cut)),
    }
}
