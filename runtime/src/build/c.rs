//! C processors: clang for `wasm32-wasi` as a reactor (`-mexec-model=reactor`), every `.c` file
//! of the folder with the SDK's `weir.c`, then `component` makes it a component. Debian's
//! `clang-19`, `lld-19`, `libclang-rt-19-dev-wasm32` and `wasi-libc` are enough; elsewhere,
//! wasi-sdk's clang with `WEIR_CLANG` and `WEIR_WASI_SYSROOT`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{run, write_files, TIMED_WORLD, WIT_TEXT};

/// The C SDK, written beside the build.
const C_SDK: &[(&str, &str)] =
    &[("weir.h", include_str!("../../../sdk/c/weir.h")), ("weir.c", include_str!("../../../sdk/c/weir.c"))];

const INSTALL: &str = "install clang and its wasm32 runtime and libc: on Debian `apt install clang-19 lld-19 \
                       libclang-rt-19-dev-wasm32 wasi-libc`; or wasi-sdk, with WEIR_CLANG and WEIR_WASI_SYSROOT";

/// The C compiler: `WEIR_CLANG`, else `clang-19`, else `clang`.
fn clang() -> PathBuf {
    if let Some(path) = std::env::var_os("WEIR_CLANG") {
        return PathBuf::from(path);
    }
    let found = |name: &str| Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success());
    PathBuf::from(if found("clang-19") { "clang-19" } else { "clang" })
}

/// Writes the C SDK (`weir.h`, `weir.c`) into `dir`.
pub fn write_sdk(dir: &Path) -> anyhow::Result<()> {
    write_files(dir, C_SDK).map(drop)
}

pub(super) fn build_c(dir: &Path, staging: &Path, out: &Path) -> anyhow::Result<()> {
    let sdk = staging.join("c-sdk");
    write_sdk(&sdk)?;
    let dir = std::fs::canonicalize(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension() == Some(OsStr::new("c")) {
            if path.file_name() == Some(OsStr::new("weir.c")) {
                anyhow::bail!("{}: a file named weir.c would clash with weir's SDK; rename it", path.display());
            }
            sources.push(path);
        }
    }
    sources.sort();
    let core = staging.join("core.wasm");
    let mut cmd = Command::new(clang());
    cmd.args(["--target=wasm32-wasi", "-mexec-model=reactor", "-O2", "-Wall", "-fdiagnostics-absolute-paths"])
        .arg("-I")
        .arg(&sdk)
        .arg("-I")
        .arg(&dir);
    if let Some(sysroot) = std::env::var_os("WEIR_WASI_SYSROOT") {
        cmd.arg("--sysroot").arg(sysroot);
    }
    cmd.arg("-o").arg(&core).args(&sources).arg(sdk.join("weir.c")).current_dir(&dir);
    run(&mut cmd, &format!("clang on {}", dir.display()), INSTALL)?;
    let core = std::fs::read(&core)?;
    let component = super::component::componentize(&core, WIT_TEXT, TIMED_WORLD)
        .map_err(|e| anyhow::anyhow!("{}: clang built it, but it does not make a component: {e:#}", dir.display()))?;
    std::fs::write(out, component).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    Ok(())
}
