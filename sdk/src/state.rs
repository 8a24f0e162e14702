//! The processor's key-value state, private to it and to the input partition being processed.
//!
//! Values are typed: anything serde can serialize, stored as JSON so processors in other
//! languages read the same state. Writes are visible at once and become durable with the
//! batch's outputs; a failed batch leaves the state as it was.
//!
//! ```
//! use weir_sdk::{state, Error};
//!
//! fn count(word: &str) -> Result<u64, Error> {
//!     let count = state::get::<u64>(word)?.unwrap_or(0) + 1;
//!     state::put(word, &count)?;
//!     Ok(count)
//! }
//! # assert_eq!((count("w").unwrap(), count("w").unwrap()), (1, 2));
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Error;

/// The value under `key`, decoded as `T`.
pub fn get<T: DeserializeOwned>(key: impl AsRef<[u8]>) -> Result<Option<T>, Error> {
    let key = key.as_ref();
    match backend::get(key) {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::msg(format!("state under key {:?} does not decode: {e}", String::from_utf8_lossy(key)))
        }),
    }
}

/// Stores `value` under `key`.
pub fn put<T: Serialize + ?Sized>(key: impl AsRef<[u8]>, value: &T) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value)?;
    backend::put(key.as_ref(), &bytes);
    Ok(())
}

/// Removes `key`.
pub fn delete(key: impl AsRef<[u8]>) {
    backend::delete(key.as_ref());
}

/// The raw bytes under `key`.
pub fn get_bytes(key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    backend::get(key.as_ref())
}

/// Stores raw bytes under `key`.
pub fn put_bytes(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
    backend::put(key.as_ref(), value.as_ref());
}

/// Every entry whose key starts with `prefix`, in key order.
pub fn scan_prefix(prefix: impl AsRef<[u8]>) -> Scan {
    let prefix = prefix.as_ref().to_vec();
    let end = successor(&prefix);
    Scan { next: Some(prefix), end, page: Vec::new().into_iter() }
}

/// Every entry with `start <= key < end` (no upper bound when `end` is `None`), in key order.
pub fn scan_range(start: impl AsRef<[u8]>, end: Option<&[u8]>) -> Scan {
    Scan { next: Some(start.as_ref().to_vec()), end: end.map(<[u8]>::to_vec), page: Vec::new().into_iter() }
}

/// The smallest key greater than every key starting with `prefix`, if there is one.
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

const PAGE: u32 = 256;

/// An iterator over state entries, fetched from the host a page at a time.
#[derive(Debug)]
pub struct Scan {
    next: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    page: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
}

impl Iterator for Scan {
    type Item = (Vec<u8>, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(entry) = self.page.next() {
            return Some(entry);
        }
        let start = self.next.take()?;
        let page = backend::scan(&start, self.end.as_deref(), PAGE);
        if page.len() == PAGE as usize {
            self.next = page.last().map(|(k, _)| {
                let mut after = k.clone();
                after.push(0);
                after
            });
        }
        self.page = page.into_iter();
        self.page.next()
    }
}

#[cfg(target_arch = "wasm32")]
mod backend {
    use crate::bindings::weir::processor::state as host;

    pub fn get(key: &[u8]) -> Option<Vec<u8>> {
        host::get(key)
    }

    pub fn put(key: &[u8], value: &[u8]) {
        host::put(key, value);
    }

    pub fn delete(key: &[u8]) {
        host::delete(key);
    }

    pub fn scan(start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        host::scan(start, end, limit).into_iter().map(|e| (e.key, e.value)).collect()
    }
}

/// Off wasm: a per-thread map, so processors' unit tests run with `cargo test`.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod backend {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::ops::Bound;

    thread_local! {
        static STORE: RefCell<BTreeMap<Vec<u8>, Vec<u8>>> = const { RefCell::new(BTreeMap::new()) };
    }

    pub fn get(key: &[u8]) -> Option<Vec<u8>> {
        STORE.with_borrow(|s| s.get(key).cloned())
    }

    pub fn put(key: &[u8], value: &[u8]) {
        STORE.with_borrow_mut(|s| s.insert(key.to_vec(), value.to_vec()));
    }

    pub fn delete(key: &[u8]) {
        STORE.with_borrow_mut(|s| s.remove(key));
    }

    pub fn scan(start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        STORE.with_borrow(|s| {
            s.range::<[u8], _>((Bound::Included(start), upper))
                .take(limit as usize)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    pub fn clear() {
        STORE.with_borrow_mut(BTreeMap::clear);
    }

    pub fn entries() -> Vec<(Vec<u8>, Vec<u8>)> {
        STORE.with_borrow(|s| s.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn typed_values_round_trip_through_json() {
        backend::clear();
        put("n", &41u64).unwrap();
        assert_eq!(get::<u64>("n").unwrap(), Some(41));
        assert_eq!(get_bytes("n"), Some(b"41".to_vec()));
        assert!(get::<String>("n").unwrap_err().message().contains("\"n\""));
    }

    #[test]
    fn prefix_scans_page_through_everything_under_the_prefix_only() {
        backend::clear();
        for i in 0..600u32 {
            put_bytes(format!("p/{i:04}"), b"x");
        }
        put_bytes("p0", b"outside");
        put_bytes("o", b"outside");
        let keys: Vec<Vec<u8>> = scan_prefix("p/").map(|(k, _)| k).collect();
        assert_eq!(keys.len(), 600);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_successor_of_a_prefix_skips_trailing_ff_bytes() {
        assert_eq!(successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff\xff"), None);
    }
}
