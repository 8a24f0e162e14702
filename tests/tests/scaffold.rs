//! `weir new` from a scratch folder outside the checkout, for every language and template: the
//! folder it makes builds with `weir build` (the real toolchains: cargo, componentize-py,
//! componentize-js, tsc, go, clang) and its sample gives the outputs its `expected.jsonl` says,
//! through `weir test --expect`. The Rust, Go and C SDKs come from the `weir` binary, written
//! under a scratch data dir.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");

/// The processors' builds, with what they need from this machine: a cargo target dir shared by
/// the Rust ones (so the SDK's dependencies compile once), and the componentize-js the test
/// command installed.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    /// `weir ARGS` in `cwd`, as a user runs it: its stdout, or a panic with its stderr.
    fn weir(&self, cwd: &Path, args: &[&str]) -> String {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let componentize_js = repo.join("node_modules/@bytecodealliance/componentize-js");
        let output = Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .env("WEIR_DATA_DIR", self.dir.path().join("data"))
            .env("CARGO_TARGET_DIR", shared_target())
            .env("WEIR_COMPONENTIZE_JS", componentize_js)
            .env("WEIR_TYPESCRIPT", repo.join("node_modules/typescript"))
            .env("WEIR_LOG", "error")
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "weir {args:?} in {}:\n{stdout}\n{stderr}", cwd.display());
        stdout.into_owned()
    }

    /// `weir new` for `lang` and `template`, then its own next commands: build, and test
    /// against its expected outputs.
    /// A scratch folder where `weir new` made `lang` processors of every template, each built
    /// and passing its own test.
    fn every_template_builds_and_passes_its_test(lang: &str) -> Self {
        let scratch = Self::new();
        for template in TEMPLATES {
            scratch.new_builds_and_passes_its_test(lang, template);
        }
        scratch
    }

    fn new_builds_and_passes_its_test(&self, lang: &str, template: &str) {
        let name = format!("my-{lang}-{template}");
        let said = self.weir(self.dir.path(), &["new", &name, "--lang", lang, "--template", template]);
        assert!(said.contains(&format!("weir build . -o {name}.wasm")), "{said}");
        let folder = self.dir.path().join(&name);
        let wasm = format!("{name}.wasm");
        self.weir(&folder, &["build", ".", "-o", &wasm]);
        let mut test = vec!["test", "--module", &wasm, "--input", "sample.jsonl", "--expect", "expected.jsonl"];
        if template == "table-join" {
            test.extend(["--table", "customers=customers.jsonl"]);
        }
        let checked = self.weir(&folder, &test);
        assert!(checked.contains("outputs match expected.jsonl"), "{lang} {template}: {checked}");
        // The pipeline file reads as weir reads pipeline files, its module where `weir build` put it.
        let pipeline = std::fs::read_to_string(folder.join("pipeline.toml")).unwrap();
        assert!(pipeline.contains(&format!("path = \"{wasm}\"")), "{pipeline}");
        assert!(folder.join(&wasm).is_file());
    }
}

const TEMPLATES: [&str; 4] = ["map", "stateful", "table-join", "window"];

/// One cargo target dir for every Rust scaffold of the run, outside the checkout's.
fn shared_target() -> PathBuf {
    std::env::temp_dir().join("weir-tests-scaffold-target")
}

#[test]
fn weir_new_makes_rust_processors_of_every_template_that_build_and_pass_their_own_test() {
    let scratch = Scratch::every_template_builds_and_passes_its_test("rust");
    let sdk = scratch.dir.path().join("data/sdk").join(env!("CARGO_PKG_VERSION")).join("rust/weir-sdk");
    assert!(sdk.join("Cargo.toml").is_file(), "the Rust SDK is written under the data dir");
}

#[test]
fn weir_new_makes_python_processors_of_every_template_that_build_and_pass_their_own_test() {
    Scratch::every_template_builds_and_passes_its_test("python");
}

#[test]
fn weir_new_makes_javascript_processors_of_every_template_that_build_and_pass_their_own_test() {
    Scratch::every_template_builds_and_passes_its_test("js");
}

#[test]
fn weir_new_makes_typescript_processors_of_every_template_that_build_and_pass_their_own_test() {
    Scratch::every_template_builds_and_passes_its_test("ts");
}

#[test]
fn weir_new_makes_go_processors_of_every_template_that_build_and_pass_their_own_test() {
    let scratch = Scratch::every_template_builds_and_passes_its_test("go");
    for template in TEMPLATES {
        // Its go.work points at the SDK under the data dir, so plain Go (and an editor) reads it.
        let folder = scratch.dir.path().join(format!("my-go-{template}"));
        let vet = Command::new("go").args(["vet", "."]).current_dir(&folder).output().unwrap();
        assert!(vet.status.success(), "go vet in {}: {}", folder.display(), String::from_utf8_lossy(&vet.stderr));
    }
}

#[test]
fn weir_new_makes_c_processors_of_every_template_that_build_and_pass_their_own_test() {
    let scratch = Scratch::every_template_builds_and_passes_its_test("c");
    let sdk = scratch.dir.path().join("data/sdk").join(env!("CARGO_PKG_VERSION")).join("c");
    assert!(sdk.join("weir.h").is_file(), "the C SDK is written under the data dir, for editors");
}

#[test]
fn weir_new_makes_cpp_processors_of_every_template_that_build_and_pass_their_own_test() {
    Scratch::every_template_builds_and_passes_its_test("cpp");
}

#[test]
fn weir_build_says_what_to_install_when_a_toolchain_is_missing() {
    let scratch = Scratch::new();
    for (lang, install) in [
        ("go", "install Go 1.24 or later"),
        ("c", "apt install clang-19 lld-19"),
        ("cpp", "libc++-19-dev-wasm32 libc++abi-19-dev-wasm32"),
        ("ts", "npm install typescript@5"),
    ] {
        let name = format!("no-{lang}");
        scratch.weir(scratch.dir.path(), &["new", &name, "--lang", lang]);
        // A PATH with none of the toolchains (and no node_modules above the scratch folder).
        let empty = scratch.dir.path().join("empty-path");
        std::fs::create_dir_all(&empty).unwrap();
        let output = Command::new(BIN)
            .args(["build", ".", "-o", "x.wasm"])
            .current_dir(scratch.dir.path().join(&name))
            .env("PATH", &empty)
            .env("WEIR_DATA_DIR", scratch.dir.path().join("data"))
            .env("WEIR_LOG", "error")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(install), "{lang}: {stderr}");
    }
}

#[test]
fn weir_new_lists_its_languages_and_templates_and_refuses_a_folder_that_is_not_empty() {
    let scratch = Scratch::new();
    let listed = scratch.weir(scratch.dir.path(), &["new", "--list"]);
    for word in ["rust", "python", "js", "ts", "go", "c", "cpp", "map", "stateful", "table-join", "window"] {
        assert!(listed.contains(word), "{listed}");
    }
    std::fs::create_dir(scratch.dir.path().join("taken")).unwrap();
    std::fs::write(scratch.dir.path().join("taken/notes.txt"), "mine").unwrap();
    let refused = Command::new(BIN).args(["new", "taken"]).current_dir(scratch.dir.path()).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("exists and is not empty"));
    assert_eq!(std::fs::read_to_string(scratch.dir.path().join("taken/notes.txt")).unwrap(), "mine");
}
