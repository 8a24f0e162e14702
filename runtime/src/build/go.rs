//! Go processors: stock Go builds a wasip1 reactor (`-buildmode=c-shared`, `//go:wasmexport`),
//! which `component` makes a component. The user needs Go 1.24 or later and nothing else: the
//! SDK is written beside the folder's module and joined to it by a `go.work`.

use std::path::Path;
use std::process::Command;

use super::{run, write_files, TIMED_WORLD, WIT_TEXT};

/// The Go SDK (module `github.com/weir-rs/weir/sdk/go`), by path in its module.
pub(crate) const GO_SDK: &[(&str, &str)] = &[
    ("go.mod", include_str!("../../../sdk/go/go.mod")),
    ("weir.go", include_str!("../../../sdk/go/weir.go")),
    ("batch.go", include_str!("../../../sdk/go/batch.go")),
    ("export_wasm.go", include_str!("../../../sdk/go/export_wasm.go")),
    ("testing.go", include_str!("../../../sdk/go/testing.go")),
    ("internal/host/host.go", include_str!("../../../sdk/go/internal/host/host.go")),
    ("internal/host/wasm.go", include_str!("../../../sdk/go/internal/host/wasm.go")),
    ("internal/host/native.go", include_str!("../../../sdk/go/internal/host/native.go")),
    ("internal/host/utf8.go", include_str!("../../../sdk/go/internal/host/utf8.go")),
    ("state/state.go", include_str!("../../../sdk/go/state/state.go")),
    ("table/table.go", include_str!("../../../sdk/go/table/table.go")),
    ("timers/timers.go", include_str!("../../../sdk/go/timers/timers.go")),
    ("log/log.go", include_str!("../../../sdk/go/log/log.go")),
    ("join/join.go", include_str!("../../../sdk/go/join/join.go")),
    ("window/window.go", include_str!("../../../sdk/go/window/window.go")),
];

/// Writes the Go SDK under `dir`.
pub fn write_sdk(dir: &Path) -> anyhow::Result<()> {
    write_files(dir, GO_SDK).map(drop)
}

pub(super) fn build_go(dir: &Path, staging: &Path, out: &Path) -> anyhow::Result<()> {
    let sdk = staging.join("go-sdk");
    write_sdk(&sdk)?;
    // The folder's module and the SDK's, as one workspace: the folder's `require` of the SDK is
    // answered by this copy, at this weir's version, with no download.
    let work = staging.join("go.work");
    let module = std::fs::canonicalize(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    std::fs::write(&work, format!("go 1.24\n\nuse (\n\t{module:?}\n\t{sdk:?}\n)\n"))?;
    let core = staging.join("core.wasm");
    run(
        Command::new("go")
            .args(["build", "-buildmode=c-shared", "-trimpath", "-o"])
            .arg(&core)
            .arg(".")
            .current_dir(dir)
            .env("GOOS", "wasip1")
            .env("GOARCH", "wasm")
            .env("CGO_ENABLED", "0")
            .env("GOWORK", &work)
            .env("GOTOOLCHAIN", "local"),
        &format!("go build of {}", dir.display()),
        "install Go 1.24 or later (https://go.dev/dl/, or Debian's golang-go)",
    )?;
    let core = std::fs::read(&core)?;
    let component = super::component::add_arena_allocators(&core)
        .and_then(|core| super::component::componentize(&core, WIT_TEXT, TIMED_WORLD))
        .map_err(|e| anyhow::anyhow!("{}: go built it, but it does not make a component: {e:#}", dir.display()))?;
    std::fs::write(out, component).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    Ok(())
}
