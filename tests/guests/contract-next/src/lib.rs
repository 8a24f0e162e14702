//! A processor for a contract weir does not know: `weir:processor@1.0.0`, whose `process` takes
//! and returns plain bytes. It stands for a component built with a future SDK, which this weir
//! must refuse by its version rather than fail on at the first call.
// Exports are for the component; a native build of the workspace gets an empty library.
#![cfg(target_arch = "wasm32")]
wit_bindgen::generate!({
    inline: r#"
        package weir:processor@1.0.0;

        interface processor {
            process: func(batch: list<u8>) -> list<u8>;
        }

        world stream-processor {
            export processor;
        }
    "#,
});

struct Next;

impl exports::weir::processor::processor::Guest for Next {
    fn process(batch: Vec<u8>) -> Vec<u8> {
        batch
    }
}

export!(Next);
