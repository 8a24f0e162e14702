//! A processor that imports an interface weir does not give (`weir-tests:outside/network`, the
//! stand-in for anything beyond weir's contract and WASI): weir must refuse it at load, naming
//! the import, rather than fail at the first call.
// Exports are for the component; a native build of the workspace gets an empty library.
#![cfg(target_arch = "wasm32")]
wit_bindgen::generate!({
    inline: r#"
        package weir-tests:outside;

        interface network {
            send: func(bytes: list<u8>) -> bool;
        }

        world outsider {
            include weir:processor/stream-processor@0.2.1;
            import network;
        }
    "#,
    path: "../../../wit",
    generate_all,
});

use weir::processor::types::{Batch, Outputs, ProcessingError};

struct Outsider;

impl exports::weir::processor::processor::Guest for Outsider {
    fn init(_: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn process(batch: Batch) -> Result<Outputs, ProcessingError> {
        weir_tests::outside::network::send(&batch.data);
        Err(ProcessingError { record: None, message: "never runs".into() })
    }
}

export!(Outsider);
