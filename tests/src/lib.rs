//! Shared helpers of weir's end-to-end tests and benchmarks: where the guest components are,
//! and how to run `weir` commands.

use std::path::{Path, PathBuf};

pub mod fleet;
pub mod kafka;
pub mod peers;
pub mod serve;

/// The component built from guest crate `name` (`word-count` or `word_count`).
pub fn guest(name: &str) -> PathBuf {
    Path::new(env!("WEIR_GUEST_DIR")).join(format!("{}.wasm", name.replace('-', "_")))
}

/// The component of the Python (`"python"`), JavaScript (`"js"`), TypeScript (`"ts"`), Go
/// (`"go"`), C (`"c"`) or C++ (`"cpp"`) example `name` under `guest-examples/<language>/`, built with `weir build` when
/// missing or older than its sources (example, SDK, WIT). Needs componentize-py,
/// componentize-js, tsc, Go and clang for wasm32-wasi, which `scripts/test.sh` installs or checks; without them this
/// panics with the install command.
pub fn polyglot_guest(language: &str, name: &str) -> PathBuf {
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("guest-examples").join(language).join(name);
    let out = polyglot_dir().join(format!("{language}-{name}.wasm"));
    let sdk = root.join("sdk").join(match language {
        "js" | "ts" => "js",
        "go" => "go",
        "c" | "cpp" => "c",
        _ => "python",
    });
    let newest = [dir.as_path(), &sdk, &root.join("wit")].iter().map(|p| newest_mtime(p)).max().flatten();
    let built = std::fs::metadata(&out).and_then(|m| m.modified()).ok();
    if built.is_none() || built < newest {
        let (dir_arg, out_arg) = (dir.to_string_lossy(), out.to_string_lossy());
        let run = weir(&["build", &dir_arg, "-o", &out_arg], &polyglot_cache());
        assert!(run.ok, "weir build {dir_arg} failed: {}", run.error.as_deref().unwrap_or("no error message"));
    }
    out
}

/// Where the Python and JS example components go, beside the Rust guests.
fn polyglot_dir() -> PathBuf {
    let guests = Path::new(env!("WEIR_GUEST_DIR"));
    let dir = guests.ancestors().nth(2).unwrap_or(guests).join("polyglot");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// A compiled-component cache shared by the tests that run the Python and JS components, which
/// take seconds each to compile.
pub fn polyglot_cache() -> PathBuf {
    polyglot_dir().join("cache")
}

fn newest_mtime(path: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    let entries = std::fs::read_dir(path).ok()?;
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != "__pycache__")
        .filter_map(|e| newest_mtime(&e.path()))
        .max()
}

/// What a `weir` command printed, and how it ended.
#[derive(Debug)]
pub struct Run {
    pub stdout: String,
    /// The error, on one line as the binary prints it, when the command failed.
    pub error: Option<String>,
    /// Whether the command reported success.
    pub ok: bool,
}

/// Runs `weir <args>` in this process, through the same code as the binary, with its own
/// compiled-component cache in `cache_dir`.
pub fn weir(args: &[&str], cache_dir: &Path) -> Run {
    let cache = cache_dir.to_string_lossy().into_owned();
    let mut argv = vec!["weir"];
    argv.extend_from_slice(args);
    if args.first().is_some_and(|c| *c == "test" || *c == "inspect" || *c == "build") {
        argv.extend_from_slice(&["--cache-dir", &cache]);
    }
    let mut out = Vec::new();
    let result = weir_runtime::cli::run_from(argv, &mut out);
    let stdout = String::from_utf8_lossy(&out).into_owned();
    match result {
        Ok(ok) => Run { stdout, error: None, ok },
        Err(e) => Run { stdout, error: Some(format!("{e:#}")), ok: false },
    }
}

impl Run {
    /// The error of a run that must have failed.
    pub fn failure(&self) -> &str {
        assert!(!self.ok, "expected the command to fail, it printed:\n{}", self.stdout);
        self.error.as_deref().unwrap_or("(the command failed without an error message)")
    }

    /// The output lines of a run that must have succeeded, parsed as JSON.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        assert!(self.ok, "expected success, got: {:?}", self.error);
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("output line is not JSON ({e}): {l}")))
            .collect()
    }
}

/// Writes `lines` to a file `name` in `dir`, one per line, and returns its path.
pub fn write_lines(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// The golden inputs and expected outputs under `tests/golden/`.
pub fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden").join(name)
}
