//! `weir build`: turns a processor's folder, in Rust, Python or JavaScript, into a component,
//! so users need not learn each toolchain's flags.
//!
//! The language is told by the folder's entry file: `Cargo.toml` (Rust, cargo for
//! `wasm32-wasip2`), `app.py` (Python, componentize-py), `app.js` (JavaScript,
//! componentize-js). weir carries its WIT and its Python and JS SDK modules, so a folder outside
//! this repository builds the same way. The result is checked and compiled into weir's cache, so
//! the first run does not pay the compile (7–9 s for a Python or JS component).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::engine::Engine;

/// weir's WIT, the contract the guest is built against.
const WIT: &[(&str, &str)] = &[("processor.wit", include_str!("../../wit/processor.wit"))];
/// The Python SDK, put on componentize-py's path as the package `weir`.
const PYTHON_SDK: &[(&str, &str)] = &[
    ("__init__.py", include_str!("../../sdk/python/weir/__init__.py")),
    ("_host.py", include_str!("../../sdk/python/weir/_host.py")),
    ("join.py", include_str!("../../sdk/python/weir/join.py")),
    ("log.py", include_str!("../../sdk/python/weir/log.py")),
    ("state.py", include_str!("../../sdk/python/weir/state.py")),
    ("table.py", include_str!("../../sdk/python/weir/table.py")),
    ("timers.py", include_str!("../../sdk/python/weir/timers.py")),
    ("window.py", include_str!("../../sdk/python/weir/window.py")),
];
/// The JavaScript SDK, staged beside the user's modules as `weir.js`.
const JS_SDK: &str = include_str!("../../sdk/js/weir.js");
const WORLD: &str = "stream-processor";
/// The world with the `timer-handler` export too.
const TIMED_WORLD: &str = "timed-processor";
/// The toolchain versions weir is tested with; the install hints name them.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
pub const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";

/// The languages `weir build` knows, by entry file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    JavaScript,
}

impl Language {
    /// The language of the processor in `dir`, from its entry file.
    pub fn detect(dir: &Path) -> anyhow::Result<Self> {
        if !dir.is_dir() {
            anyhow::bail!("{}: not a folder; weir build takes a processor's folder", dir.display());
        }
        let found: Vec<Self> = [("Cargo.toml", Self::Rust), ("app.py", Self::Python), ("app.js", Self::JavaScript)]
            .into_iter()
            .filter(|(file, _)| dir.join(file).is_file())
            .map(|(_, language)| language)
            .collect();
        match found[..] {
            [language] => Ok(language),
            [] => anyhow::bail!(
                "{}: no Cargo.toml (Rust), app.py (Python) or app.js (JavaScript) here; which language is it?",
                dir.display()
            ),
            _ => anyhow::bail!(
                "{}: more than one of Cargo.toml, app.py and app.js; keep one entry per folder",
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
    let _ticker = crate::ticker::Ticker::start(format!("building {} ({language:?})", dir.display()));
    match language {
        Language::Rust => build_rust(dir, &out_abs)?,
        Language::Python => build_python(dir, &wit, staging.path(), &out_abs)?,
        Language::JavaScript => build_js(dir, &wit, staging.path(), &out_abs)?,
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

fn write_files(dir: &Path, files: &[(&str, &str)]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in files {
        std::fs::write(dir.join(name), text)?;
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

fn build_rust(dir: &Path, out: &Path) -> anyhow::Result<()> {
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

fn build_python(dir: &Path, wit: &Path, staging: &Path, out: &Path) -> anyhow::Result<()> {
    let sdk = staging.join("python");
    write_files(&sdk.join("weir"), PYTHON_SDK)?;
    let world = world_of(&dir.join("app.py"), "TimerHandler");
    run(
        Command::new("componentize-py")
            .arg("-d")
            .arg(wit)
            .args(["-w", world, "componentize", "-p"])
            .arg(&sdk)
            .arg("-p")
            .arg(absolute(dir)?)
            .args(["app", "-o"])
            .arg(out),
        &format!("componentize-py on {}", dir.join("app.py").display()),
        &format!("`pip install {COMPONENTIZE_PY}`"),
    )?;
    Ok(())
}

fn build_js(dir: &Path, wit: &Path, staging: &Path, out: &Path) -> anyhow::Result<()> {
    let package = componentize_js(dir)?;
    // componentize-js maps the entry's folder into the engine; the user's modules go there with
    // the SDK as `weir.js`, and their `from "weir"` imports are pointed at it.
    let src = staging.join("src");
    copy_js_sources(dir, &src, 0)?;
    std::fs::write(src.join("weir.js"), JS_SDK)?;
    check_js_syntax(dir, &src, &staging.join("check"))?;
    let world = world_of(&dir.join("app.js"), "timerHandler");
    let script = staging.join("componentize.mjs");
    let entry = package.join("src").join("componentize.js");
    std::fs::write(
        &script,
        format!(
            "import {{ writeFile }} from 'node:fs/promises';\n\
             import {{ pathToFileURL }} from 'node:url';\n\
             const {{ componentize }} = await import(pathToFileURL({entry}).href);\n\
             const {{ component }} = await componentize({{\n\
               sourcePath: 'app.js', witPath: {wit}, worldName: '{world}',\n\
               // weir gives guests no network: leave out the HTTP client and fetch handler.\n\
               disableFeatures: ['http', 'fetch-event'],\n\
             }});\n\
             await writeFile({out}, component);\n",
            entry = js_string(&entry.display().to_string()),
            wit = js_string(&wit.display().to_string()),
            out = js_string(&out.display().to_string()),
        ),
    )?;
    run(
        Command::new("node").arg(&script).current_dir(&src),
        &format!("componentize-js on {}", dir.join("app.js").display()),
        "install Node.js 18 or later",
    )?;
    Ok(())
}

/// componentize-js reports a syntax error without saying where; `node --check` does, so every
/// module is checked first (as an ES module, whatever the folder's package.json says).
fn check_js_syntax(dir: &Path, src: &Path, check: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(check)?;
    for file in js_files(src)? {
        let relative = file.strip_prefix(src).unwrap_or(&file);
        let copy =
            check.join(relative.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "__")).with_extension("mjs");
        std::fs::copy(&file, &copy)?;
        let shown = dir.join(relative);
        let output = Command::new("node").arg("--check").arg(&copy).output();
        let output = output.map_err(|e| anyhow::anyhow!("cannot run `node` (install Node.js 18 or later): {e}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr)
                .replace(&copy.display().to_string(), &shown.display().to_string());
            let lines: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with("Node.js ") && !l.trim_start().starts_with("at "))
                .collect();
            anyhow::bail!("{} is not valid JavaScript:\n  {}", shown.display(), lines.join("\n  "));
        }
    }
    Ok(())
}

fn js_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(js_files(&path)?);
        } else if matches!(path.extension().and_then(OsStr::to_str), Some("js" | "mjs")) {
            files.push(path);
        }
    }
    Ok(files)
}

fn js_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The componentize-js package: `WEIR_COMPONENTIZE_JS`, or `node_modules` in the folder or
/// one of its parents (an `npm install` anywhere above the processor), or npm's global root.
fn componentize_js(dir: &Path) -> anyhow::Result<PathBuf> {
    let name = Path::new("node_modules").join("@bytecodealliance").join("componentize-js");
    if let Some(path) = std::env::var_os("WEIR_COMPONENTIZE_JS") {
        return Ok(PathBuf::from(path));
    }
    let start = std::fs::canonicalize(dir)?;
    if let Some(found) = start.ancestors().map(|a| a.join(&name)).find(|p| p.is_dir()) {
        return Ok(found);
    }
    let global = Command::new("npm").args(["root", "-g"]).output().ok().filter(|o| o.status.success());
    if let Some(root) = global.map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())) {
        let found = root.join("@bytecodealliance").join("componentize-js");
        if found.is_dir() {
            return Ok(found);
        }
    }
    anyhow::bail!(
        "{}: componentize-js is not installed; `npm install {COMPONENTIZE_JS}` in this folder or a parent, \
         or set WEIR_COMPONENTIZE_JS to its folder",
        dir.display()
    )
}

/// Copies the processor's folder (not `node_modules`), pointing `from "weir"` at `./weir.js`.
fn copy_js_sources(from: &Path, to: &Path, depth: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (path, name) = (entry.path(), entry.file_name());
        if name == "node_modules" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if depth == 0 && name == "weir.js" {
            anyhow::bail!("{}: a file named weir.js would hide weir's SDK; rename it", path.display());
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_js_sources(&path, &target, depth + 1)?;
        } else if matches!(path.extension().and_then(OsStr::to_str), Some("js" | "mjs")) {
            let sdk = if depth == 0 { "./weir.js".to_owned() } else { "../".repeat(depth) + "weir.js" };
            let text = std::fs::read_to_string(&path)?;
            let text = text
                .replace("from \"weir\"", &format!("from \"{sdk}\""))
                .replace("from 'weir'", &format!("from '{sdk}'"));
            std::fs::write(&target, text)?;
        } else {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(())
}
