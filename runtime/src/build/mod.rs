//! `weir build`: turns a processor's folder, in Rust, Python, JavaScript, TypeScript, Go, C or C++,
//! into a component, so users need not learn each toolchain's flags.
//!
//! The language is told by the folder's entry file: `Cargo.toml` (Rust, cargo for
//! `wasm32-wasip2`), `app.py` (Python, componentize-py), `app.js` (JavaScript,
//! componentize-js), `app.ts` (TypeScript: tsc, then componentize-js), `go.mod` (Go: stock Go
//! for wasip1, made a component here), `app.c` (C: clang for wasm32-wasi, made a component
//! here), `app.cpp` (C++: the same, with libc++ and no exceptions). weir carries its WIT and its
//! Python, JavaScript, Go and C SDKs, so a folder outside this repository builds the same way.
//! The result is checked and compiled into weir's cache, so the first run does not pay the
//! compile (7–9 s for a Python or JS component).

mod c;
mod component;
mod go;
mod js;
mod python;
mod rust;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::engine::Engine;

/// weir's WIT, the contract the guest is built against.
const WIT_TEXT: &str = include_str!("../../../wit/processor.wit");
const WIT: &[(&str, &str)] = &[("processor.wit", WIT_TEXT)];
const WORLD: &str = "stream-processor";
/// The world with the `timer-handler` export too.
const TIMED_WORLD: &str = "timed-processor";
/// The toolchain versions weir is tested with; the install hints name them.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
pub const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";
pub const TYPESCRIPT: &str = "typescript@5";

pub use c::write_sdk as write_c_sdk;
pub use go::write_sdk as write_go_sdk;
pub use js::{JS_SDK_TYPES, TSCONFIG};

/// The languages `weir build` knows, by entry file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    JavaScript,
    TypeScript,
    Go,
    C,
    Cpp,
}

/// Each language's entry file.
const ENTRIES: [(&str, Language); 7] = [
    ("Cargo.toml", Language::Rust),
    ("app.py", Language::Python),
    ("app.js", Language::JavaScript),
    ("app.ts", Language::TypeScript),
    ("go.mod", Language::Go),
    ("app.c", Language::C),
    ("app.cpp", Language::Cpp),
];

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Language::Cpp => f.write_str("C++"),
            other => write!(f, "{other:?}"),
        }
    }
}

impl Language {
    /// The language of the processor in `dir`, from its entry file.
    pub fn detect(dir: &Path) -> anyhow::Result<Self> {
        if !dir.is_dir() {
            anyhow::bail!("{}: not a folder; weir build takes a processor's folder", dir.display());
        }
        let found: Vec<Self> =
            ENTRIES.into_iter().filter(|(file, _)| dir.join(file).is_file()).map(|(_, language)| language).collect();
        match found[..] {
            [language] => Ok(language),
            [] => anyhow::bail!(
                "{}: no Cargo.toml (Rust), app.py (Python), app.js (JavaScript), app.ts (TypeScript), go.mod (Go), \
                 app.c (C) or app.cpp (C++) here; which language is it?",
                dir.display()
            ),
            _ => anyhow::bail!(
                "{}: more than one of Cargo.toml, app.py, app.js, app.ts, go.mod, app.c and app.cpp; keep one entry \
                 per folder",
                dir.display()
            ),
        }
    }
}

/// Builds the processor in `dir` into `out` and checks it loads; returns the language.
pub fn build(engine: &Engine, dir: &Path, out: &Path) -> anyhow::Result<Language> {
    let language = Language::detect(dir)?;
    let staging = tempfile::tempdir()?;
    let wit = write_files(&staging.path().join("wit"), WIT)?;
    let out_abs = absolute(out)?;
    let _ticker = crate::ticker::Ticker::start(format!("building {} ({language})", dir.display()));
    match language {
        Language::Rust => rust::build_rust(dir, &out_abs)?,
        Language::Python => python::build_python(dir, &wit, staging.path(), &out_abs)?,
        Language::JavaScript => js::build_js(dir, &wit, staging.path(), &out_abs)?,
        Language::TypeScript => js::build_ts(dir, &wit, staging.path(), &out_abs)?,
        Language::Go => go::build_go(dir, staging.path(), &out_abs)?,
        Language::C => c::build_c(dir, staging.path(), &out_abs)?,
        Language::Cpp => c::build_cpp(dir, staging.path(), &out_abs)?,
    }
    let bytes =
        std::fs::read(&out_abs).map_err(|e| anyhow::anyhow!("{}: the build wrote no component: {e}", out.display()))?;
    engine
        .load_bytes("build", &out.display().to_string(), &bytes)
        .map_err(|e| anyhow::anyhow!("{}: built, but weir cannot run it: {e}", out.display()))?;
    Ok(language)
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() { path.to_owned() } else { std::env::current_dir()?.join(path) })
}

/// Writes `files` (paths relative to `dir`, folders made as needed) under `dir`.
fn write_files(dir: &Path, files: &[(&str, &str)]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(dir.to_owned())
}

/// Runs a toolchain command; a missing program gets an install hint, a failure its output.
fn run(cmd: &mut Command, what: &str, install: &str) -> anyhow::Result<std::process::Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    // Toolchains written in Rust would print a backtrace that buries the user's error.
    cmd.env("RUST_BACKTRACE", "0");
    let output = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("{what}: `{program}` is not installed; {install}"),
        _ => anyhow::anyhow!("{what}: cannot run `{program}`: {e}"),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let tail: Vec<&str> = stderr.lines().chain(stdout.lines()).filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(15)..].join("\n  ");
        anyhow::bail!("{what} failed ({}):\n  {tail}", output.status);
    }
    Ok(output)
}

/// The world to build `entry` for. componentize-py and componentize-js want every export of
/// the world in the app: one that names the timer handler export (`handler`) gets the world that
/// has it.
fn world_of(entry: &Path, handler: &str) -> &'static str {
    let app = std::fs::read_to_string(entry).unwrap_or_default();
    if app.contains(handler) {
        TIMED_WORLD
    } else {
        WORLD
    }
}
