//! Shared helpers of weir's end-to-end tests and benchmarks: where the guest components are,
//! and how to run the `weir` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The component built from guest crate `name` (`word-count` or `word_count`).
pub fn guest(name: &str) -> PathBuf {
    Path::new(env!("WEIR_GUEST_DIR")).join(format!("{}.wasm", name.replace('-', "_")))
}

/// The `weir` binary built beside these tests.
pub fn weir_bin() -> PathBuf {
    // Integration tests and benches live in <target>/<profile>/deps; the binary one level up.
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    profile_dir.join("weir")
}

/// Runs `weir` with `args`, using `cache_dir` for compiled components.
pub fn weir(args: &[&str], cache_dir: &Path) -> Output {
    let bin = weir_bin();
    Command::new(&bin)
        .args(args)
        .env("WEIR_CACHE_DIR", cache_dir)
        .env("WEIR_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (build it with `cargo build --release -p weir-runtime`)", bin.display()))
}

/// The golden inputs and expected outputs under `tests/golden/`.
pub fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden").join(name)
}
