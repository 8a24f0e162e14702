//! Lookups in the pipeline's tables: topics replayed from their start into local maps by key,
//! kept current (`[tables.<name>]` in the pipeline file). Values are decoded from JSON, as table
//! topics usually hold JSON; [`get_bytes`] returns them raw.
//!
//! ```
//! use serde::Deserialize;
//! use weir_sdk::{table, Error};
//!
//! #[derive(Deserialize)]
//! struct Customer { name: String }
//!
//! fn customer_name(id: &str) -> Result<Option<String>, Error> {
//!     Ok(table::get::<Customer>("customers", id)?.map(|c| c.name))
//! }
//! # weir_sdk::testing::set_table("customers", "c1", r#"{"name": "Ada"}"#);
//! # assert_eq!(customer_name("c1").unwrap().as_deref(), Some("Ada"));
//! # assert_eq!(customer_name("c2").unwrap(), None);
//! ```

use serde::de::DeserializeOwned;

use crate::Error;

/// The value under `key` in table `name`, decoded from JSON; `None` when the table has no
/// such key.
pub fn get<T: DeserializeOwned>(name: &str, key: impl AsRef<[u8]>) -> Result<Option<T>, Error> {
    let key = key.as_ref();
    match backend::get(name, key) {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::msg(format!("table `{name}` under key {:?} does not decode: {e}", String::from_utf8_lossy(key)))
        }),
    }
}

/// The raw value under `key` in table `name`.
pub fn get_bytes(name: &str, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    backend::get(name, key.as_ref())
}

#[cfg(target_arch = "wasm32")]
mod backend {
    pub fn get(name: &str, key: &[u8]) -> Option<Vec<u8>> {
        crate::bindings::weir::processor::tables::get(name, key)
    }
}

/// Off wasm: a per-thread map filled by `testing::set_table`.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod backend {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// (table, key) -> value.
    type Entries = BTreeMap<(String, Vec<u8>), Vec<u8>>;

    thread_local! {
        static TABLES: RefCell<Entries> = const { RefCell::new(BTreeMap::new()) };
    }

    pub fn get(name: &str, key: &[u8]) -> Option<Vec<u8>> {
        TABLES.with_borrow(|t| t.get(&(name.to_owned(), key.to_vec())).cloned())
    }

    pub fn set(name: &str, key: &[u8], value: Option<&[u8]>) {
        TABLES.with_borrow_mut(|t| match value {
            Some(v) => t.insert((name.to_owned(), key.to_vec()), v.to_vec()),
            None => t.remove(&(name.to_owned(), key.to_vec())),
        });
    }
}
