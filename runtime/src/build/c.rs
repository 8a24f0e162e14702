//! C and C++ processors: clang for `wasm32-wasi` as a reactor (`-mexec-model=reactor`), every
//! `.c` file of the folder with the SDK's `weir.c` (and for C++ every `.cpp`, `.cc` and `.cxx`
//! file, C++20 with libc++ and without exceptions), then `component` makes it a component.
//! Debian's `clang-19`, `lld-19`, `libclang-rt-19-dev-wasm32` and `wasi-libc` are enough for C,
//! with `libc++-19-dev-wasm32` and `libc++abi-19-dev-wasm32` for C++; elsewhere, wasi-sdk's clang
//! with `WEIR_CLANG` and `WEIR_WASI_SYSROOT`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{run, write_files, TIMED_WORLD, WIT_TEXT};

/// The C SDK, written beside the build.
const C_SDK: &[(&str, &str)] =
    &[("weir.h", include_str!("../../../sdk/c/weir.h")), ("weir.c", include_str!("../../../sdk/c/weir.c"))];

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

/// What a C (or, with `cpp`, a C++) build needs installed.
fn install_hint(cpp: bool) -> String {
    let libcxx = if cpp { " libc++-19-dev-wasm32 libc++abi-19-dev-wasm32" } else { "" };
    format!(
        "install clang and its wasm32 runtime and libc: on Debian `apt install clang-19 lld-19 \
         libclang-rt-19-dev-wasm32 wasi-libc{libcxx}`; or wasi-sdk, with WEIR_CLANG and WEIR_WASI_SYSROOT"
    )
}

/// The folder's source files with one of `extensions`, sorted; refuses a `weir.c` of its own.
fn sources(dir: &Path, extensions: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(OsStr::to_str).is_some_and(|e| extensions.contains(&e)) {
            if path.file_name() == Some(OsStr::new("weir.c")) {
                anyhow::bail!("{}: a file named weir.c would clash with weir's SDK; rename it", path.display());
            }
            sources.push(path);
        }
    }
    sources.sort();
    Ok(sources)
}

/// clang for wasm32-wasi with the SDK's and the folder's headers, and the sysroot if one is set.
fn clang_for(sdk: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(clang());
    cmd.args(["--target=wasm32-wasi", "-O2", "-Wall", "-fdiagnostics-absolute-paths"])
        .arg("-I")
        .arg(sdk)
        .arg("-I")
        .arg(dir)
        .current_dir(dir);
    if let Some(sysroot) = std::env::var_os("WEIR_WASI_SYSROOT") {
        cmd.arg("--sysroot").arg(sysroot);
    }
    cmd
}

/// A C processor: every `.c` file and the SDK, compiled and linked as a reactor in one go.
pub(super) fn build_c(dir: &Path, staging: &Path, out: &Path) -> anyhow::Result<()> {
    let sdk = staging.join("c-sdk");
    write_sdk(&sdk)?;
    let dir = std::fs::canonicalize(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let core = staging.join("core.wasm");
    let mut cmd = clang_for(&sdk, &dir);
    cmd.arg("-mexec-model=reactor").arg("-o").arg(&core).args(sources(&dir, &["c"])?).arg(sdk.join("weir.c"));
    run(&mut cmd, &format!("clang on {}", dir.display()), &install_hint(false))?;
    finish(&dir, &core, out, "clang")
}

/// A C++ processor: the `.c` files and the SDK compiled as C, then linked with the C++ files
/// as C++20 with libc++, without exceptions (wasm32-wasi's libc++ has none).
pub(super) fn build_cpp(dir: &Path, staging: &Path, out: &Path) -> anyhow::Result<()> {
    let sdk = staging.join("c-sdk");
    write_sdk(&sdk)?;
    let dir = std::fs::canonicalize(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let install = install_hint(true);
    let mut objects = Vec::new();
    for (i, c) in sources(&dir, &["c"])?.into_iter().chain([sdk.join("weir.c")]).enumerate() {
        let object = staging.join(format!("c{i}.o"));
        let mut cmd = clang_for(&sdk, &dir);
        cmd.arg("-c").arg(&c).arg("-o").arg(&object);
        run(&mut cmd, &format!("clang on {}", c.display()), &install)?;
        objects.push(object);
    }
    let core = staging.join("core.wasm");
    let mut cmd = clang_for(&sdk, &dir);
    cmd.args(["--driver-mode=g++", "-std=c++20", "-fno-exceptions", "-mexec-model=reactor"])
        .arg("-o")
        .arg(&core)
        .args(sources(&dir, &["cpp", "cc", "cxx"])?)
        .args(&objects);
    run(&mut cmd, &format!("clang++ on {}", dir.display()), &install)?;
    finish(&dir, &core, out, "clang++")
}

/// Makes the core module clang wrote a component, at `out`.
fn finish(dir: &Path, core: &Path, out: &Path, compiler: &str) -> anyhow::Result<()> {
    let core = std::fs::read(core)?;
    let component = super::component::componentize(&core, WIT_TEXT, TIMED_WORLD).map_err(|e| {
        anyhow::anyhow!("{}: {compiler} built it, but it does not make a component: {e:#}", dir.display())
    })?;
    std::fs::write(out, component).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    Ok(())
}
