//! Rust processors: cargo for `wasm32-wasip2`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{absolute, run};

pub(super) fn build_rust(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let manifest = absolute(&dir.join("Cargo.toml"))?;
    let output = run(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["build", "--release", "--target", "wasm32-wasip2", "--message-format=json-render-diagnostics"])
            .arg("--manifest-path")
            .arg(&manifest),
        &format!("cargo build of {}", dir.display()),
        "install Rust with rustup, then `rustup target add wasm32-wasip2`",
    )?;
    // cargo names the artifact in its JSON messages; the package is the one whose manifest we built.
    let manifest = std::fs::canonicalize(&manifest)?;
    let wasm = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| m["manifest_path"].as_str().is_some_and(|p| Path::new(p) == manifest))
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension() == Some(OsStr::new("wasm")));
    let wasm = wasm.ok_or_else(|| {
        anyhow::anyhow!("{}: cargo built no .wasm; is the crate a `cdylib` (crate-type = [\"cdylib\"])?", dir.display())
    })?;
    std::fs::copy(&wasm, out)
        .map_err(|e| anyhow::anyhow!("cannot copy {} to {}: {e}", wasm.display(), out.display()))?;
    Ok(())
}
