//! Builds every guest component the tests and benchmarks run, for `wasm32-wasip2`, and tells
//! the crate where they are (`WEIR_GUEST_DIR`).
//!
//! The guests are built by a nested cargo with its own target directory (beside the host's), so
//! it never waits on the lock of the build that runs this script.

use std::path::{Path, PathBuf};
use std::process::Command;

const GUESTS: &[&str] = &[
    "uppercase",
    "filter-json",
    "route-by-key",
    "word-count",
    "word-split",
    "windowed-count",
    "reminders",
    "orders-enrich",
    "orders-validate",
    "orders-aggregate",
    "orders-notify",
    "misbehave",
    "not-a-processor",
    "reversed",
    "twice",
    "word-count-v2",
    "handmade",
    "contract-next",
    "outsider",
];

fn main() {
    let root = PathBuf::from(env("CARGO_MANIFEST_DIR")).join("..");
    for watched in
        ["wit", "abi", "sdk", "guest-examples", "tests/guests", "Cargo.toml", "Cargo.lock", ".cargo/config.toml"]
    {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out: the guests go to <target>/guests.
    let out_dir = PathBuf::from(env("OUT_DIR"));
    let target_dir = out_dir.ancestors().nth(4).unwrap_or(&out_dir).join("guests");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root).args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"]).arg(&target_dir);
    for guest in GUESTS {
        cmd.args(["-p", guest]);
    }
    // Settings meant for the host build must not leak into the guest build.
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "RUSTC_WRAPPER", "CARGO_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run cargo to build the guests: {e}"));
    if !status.success() {
        panic!(
            "building the guest components failed ({status}); is the wasm32-wasip2 target installed? \
             (`rustup target add wasm32-wasip2`)"
        );
    }
    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    for guest in GUESTS {
        let file = wasm_dir.join(format!("{}.wasm", guest.replace('-', "_")));
        assert!(exists(&file), "guest build did not produce {}", file.display());
    }
    println!("cargo:rustc-env=WEIR_GUEST_DIR={}", wasm_dir.display());
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo did not set {name}"))
}

fn exists(path: &Path) -> bool {
    path.is_file()
}
