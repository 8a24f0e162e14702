//! `weir new`: a processor's folder that builds and tests at once, in Rust, Python, JavaScript,
//! TypeScript, Go or C, from a template (`map`, `stateful`, `table-join`, `window`), as `rpk transform
//! init` and `spin new` make theirs.
//!
//! The folder holds the processor, a sample input and the outputs it gives (`weir test
//! --expect` checks them), a `pipeline.toml` ready for `weir run` and `weir deploy`, and a README
//! of the commands that matter. Everything it needs travels inside the `weir` binary: the
//! Python, JavaScript, Go and C SDKs are staged by `weir build` itself, and the Rust, Go and C
//! SDKs are written under weir's data dir (`sdk/<version>/rust`, `.../go`, `.../c`) at this
//! weir's version, where the folder's `Cargo.toml`, `go.work` or `compile_flags.txt` points (for
//! cargo, go and editors). A
//! TypeScript folder gets the SDK's types and a `tsconfig.json` for editors; `weir build` uses
//! its own. The templates are `runtime/templates/`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::build::{COMPONENTIZE_JS, COMPONENTIZE_PY, TYPESCRIPT};

/// The language of a new processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
    Ts,
    Go,
    C,
    Cpp,
}

/// What a new processor does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// Uppercases every value (stateless, one output per record).
    Map,
    /// Counts records per key in weir's state store.
    Stateful,
    /// Enriches each record from a table (a topic kept as a local map).
    TableJoin,
    /// Counts records per key in tumbling windows of event time, emitted when each closes.
    Window,
}

impl Lang {
    pub const ALL: [Lang; 7] = [Lang::Rust, Lang::Python, Lang::Js, Lang::Ts, Lang::Go, Lang::C, Lang::Cpp];

    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::Ts => "ts",
            Lang::Go => "go",
            Lang::C => "c",
            Lang::Cpp => "cpp",
        }
    }
}

impl Template {
    pub const ALL: [Template; 4] = [Template::Map, Template::Stateful, Template::TableJoin, Template::Window];

    pub fn name(self) -> &'static str {
        match self {
            Template::Map => "map",
            Template::Stateful => "stateful",
            Template::TableJoin => "table-join",
            Template::Window => "window",
        }
    }

    fn about(self) -> &'static str {
        match self {
            Template::Map => "uppercases every value (stateless)",
            Template::Stateful => "counts records per key in weir's state store",
            Template::TableJoin => "enriches each order with its customer from a table",
            Template::Window => "counts records per key in 10-second windows of event time",
        }
    }

    /// The template's files: the processor in each language, its sample input and outputs.
    fn files(self) -> Files {
        macro_rules! template {
            ($dir:literal) => {
                Files {
                    rust: include_str!(concat!("../templates/", $dir, "/rust.rs")),
                    python: include_str!(concat!("../templates/", $dir, "/python.py")),
                    js: include_str!(concat!("../templates/", $dir, "/js.js")),
                    ts: include_str!(concat!("../templates/", $dir, "/ts.ts")),
                    go: include_str!(concat!("../templates/", $dir, "/go.go")),
                    c: include_str!(concat!("../templates/", $dir, "/c.c")),
                    cpp: include_str!(concat!("../templates/", $dir, "/cpp.cpp")),
                    sample: include_str!(concat!("../templates/", $dir, "/sample.jsonl")),
                    expected: include_str!(concat!("../templates/", $dir, "/expected.jsonl")),
                }
            };
        }
        match self {
            Template::Map => template!("map"),
            Template::Stateful => template!("stateful"),
            Template::TableJoin => template!("table-join"),
            Template::Window => template!("window"),
        }
    }
}

struct Files {
    rust: &'static str,
    python: &'static str,
    js: &'static str,
    ts: &'static str,
    go: &'static str,
    c: &'static str,
    cpp: &'static str,
    sample: &'static str,
    expected: &'static str,
}

/// The `customers` table of the `table-join` template, as `weir test --table` reads it.
const CUSTOMERS: &str = include_str!("../templates/table-join/customers.jsonl");

/// The Rust SDK's crates and the WIT they generate from, as they are written under the SDK
/// folder (their manifests are written by [`write_rust_sdk`]).
const RUST_SDK: &[(&str, &str)] = &[
    ("wit/processor.wit", include_str!("../../wit/processor.wit")),
    ("weir-abi/src/lib.rs", include_str!("../../abi/src/lib.rs")),
    ("weir-sdk-macro/src/lib.rs", include_str!("../../sdk/macro/src/lib.rs")),
    ("weir-sdk/src/lib.rs", include_str!("../../sdk/src/lib.rs")),
    ("weir-sdk/src/error.rs", include_str!("../../sdk/src/error.rs")),
    ("weir-sdk/src/glue.rs", include_str!("../../sdk/src/glue.rs")),
    ("weir-sdk/src/join.rs", include_str!("../../sdk/src/join.rs")),
    ("weir-sdk/src/log.rs", include_str!("../../sdk/src/log.rs")),
    ("weir-sdk/src/output.rs", include_str!("../../sdk/src/output.rs")),
    ("weir-sdk/src/record.rs", include_str!("../../sdk/src/record.rs")),
    ("weir-sdk/src/state.rs", include_str!("../../sdk/src/state.rs")),
    ("weir-sdk/src/table.rs", include_str!("../../sdk/src/table.rs")),
    ("weir-sdk/src/testing.rs", include_str!("../../sdk/src/testing.rs")),
    ("weir-sdk/src/timers.rs", include_str!("../../sdk/src/timers.rs")),
    ("weir-sdk/src/window.rs", include_str!("../../sdk/src/window.rs")),
];

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `weir new --list` prints.
pub fn list() -> String {
    let mut text = String::from("languages:\n");
    for lang in Lang::ALL {
        text.push_str(&format!("  {}\n", lang.name()));
    }
    text.push_str("templates:\n");
    for template in Template::ALL {
        text.push_str(&format!("  {:<11} {}\n", template.name(), template.about()));
    }
    text
}

/// Makes the folder `dir` (whose last part names the processor) for a `lang` processor from
/// `template`; a Rust one depends on the SDK written under `sdk_dir`. Returns what to tell the
/// user.
pub fn create(dir: &Path, lang: Lang, template: Template, sdk_dir: &Path) -> anyhow::Result<String> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    check_name(&name)?;
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} exists and is not empty; give a new folder", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files = template.files();
    let write = |file: &str, text: &str| {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    match lang {
        Lang::Rust => {
            let sdk = write_rust_sdk(sdk_dir)?;
            write("Cargo.toml", &cargo_toml(&name, &sdk))?;
            write("src/lib.rs", files.rust)?;
            write(".gitignore", "/target\n*.wasm\n")?;
        }
        Lang::Python => {
            write("app.py", files.python)?;
            write(".gitignore", "*.wasm\n__pycache__/\n")?;
        }
        Lang::Js => {
            write("app.js", files.js)?;
            write("package.json", &package_json(&name, false))?;
            write(".gitignore", "*.wasm\nnode_modules/\n")?;
        }
        Lang::Ts => {
            write("app.ts", files.ts)?;
            write("package.json", &package_json(&name, true))?;
            write("weir.d.ts", crate::build::JS_SDK_TYPES)?;
            write("tsconfig.json", crate::build::TSCONFIG)?;
            write(".gitignore", "*.wasm\nnode_modules/\n")?;
        }
        Lang::Go => {
            let sdk = sdk_dir.join(VERSION).join("go");
            crate::build::write_go_sdk(&sdk)?;
            write("go.mod", &go_mod(&name))?;
            write("go.work", &format!("go 1.24\n\nuse (\n\t.\n\t{:?}\n)\n", sdk))?;
            write("main.go", files.go)?;
            write(".gitignore", "*.wasm\ngo.work.sum\n")?;
        }
        Lang::C | Lang::Cpp => {
            let sdk = sdk_dir.join(VERSION).join("c");
            crate::build::write_c_sdk(&sdk)?;
            // For clangd and editors: where weir.h is, and how weir build compiles.
            let flags = if lang == Lang::Cpp {
                write("app.cpp", files.cpp)?;
                "--target=wasm32-wasi\n-std=c++20\n-fno-exceptions\n"
            } else {
                write("app.c", files.c)?;
                "--target=wasm32-wasi\n"
            };
            write("compile_flags.txt", &format!("{flags}-I{}\n", sdk.display()))?;
            write(".gitignore", "*.wasm\n")?;
        }
    }
    write("sample.jsonl", files.sample)?;
    write("expected.jsonl", files.expected)?;
    if template == Template::TableJoin {
        write("customers.jsonl", CUSTOMERS)?;
    }
    write("pipeline.toml", &pipeline_toml(&name, template))?;
    let readme = readme(&name, lang, template);
    write("README.md", &readme)?;
    let steps = steps(&name, lang, template);
    Ok(format!("made {} ({} processor, {} template); next:\n\n{steps}", dir.display(), lang.name(), template.name()))
}

/// A processor's name: a Kafka application id, a topic prefix and (for Rust) a crate name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64;
    if !ok {
        bail!(
            "`{name}` cannot name a processor: use lowercase letters, digits, `-` and `_`, starting with a letter \
             (it becomes the application id, the topics' prefix and the crate or package name)"
        );
    }
    Ok(())
}

/// Writes the Rust SDK under `sdk_dir` (`<version>/rust`), as this weir carries it; returns the
/// `weir-sdk` crate's folder. Written again each time, so it is always this weir's.
pub fn write_rust_sdk(sdk_dir: &Path) -> anyhow::Result<PathBuf> {
    let root = sdk_dir.join(VERSION).join("rust");
    let manifests = [
        ("weir-abi/Cargo.toml", manifest("weir-abi", "The columnar layout of weir's WIT batches and outputs.", "", "")),
        (
            "weir-sdk-macro/Cargo.toml",
            manifest(
                "weir-sdk-macro",
                "The #[processor] attribute of weir-sdk.",
                "[lib]\nproc-macro = true\n",
                "syn = { version = \"2\", features = [\"full\"] }\nquote = \"1\"\nproc-macro2 = \"1\"\n",
            ),
        ),
        (
            "weir-sdk/Cargo.toml",
            manifest(
                "weir-sdk",
                "Write weir stream processors in Rust: one annotated function per processor.",
                "",
                "weir-abi = { path = \"../weir-abi\" }\nweir-sdk-macro = { path = \"../weir-sdk-macro\" }\n\
                 wit-bindgen = { version = \"=0.61.1\", default-features = false, features = [\"macros\", \"realloc\"] }\n\
                 serde = { version = \"1\", features = [\"derive\"] }\nserde_json = \"1\"\n",
            ),
        ),
    ];
    let files = RUST_SDK.iter().map(|(p, t)| (*p, (*t).to_owned())).chain(manifests);
    for (path, text) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(root.join("weir-sdk"))
}

/// A standalone manifest of one of the SDK's crates.
fn manifest(name: &str, description: &str, lib: &str, dependencies: &str) -> String {
    format!(
        "# Written by weir {VERSION} (`weir new`); it is rewritten, do not edit.\n[package]\nname = \"{name}\"\n\
         description = \"{description}\"\nversion = \"{VERSION}\"\nedition = \"2021\"\nlicense = \"Apache-2.0\"\n\
         publish = false\n\n{lib}\n[dependencies]\n{dependencies}\n# Not part of any workspace around it.\n[workspace]\n"
    )
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    let sdk = sdk.to_string_lossy().replace('\\', "/");
    format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
         [lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\n# The SDK of weir {VERSION}, written there by `weir new`.\n\
         weir-sdk = {{ path = \"{sdk}\" }}\n\n# Its own workspace, so that one around it does not claim it.\n[workspace]\n"
    )
}

fn package_json(name: &str, typescript: bool) -> String {
    let version = COMPONENTIZE_JS.rsplit_once('@').map_or("", |(_, v)| v);
    let tsc = TYPESCRIPT.rsplit_once('@').map_or("", |(_, v)| v);
    let typescript = if typescript { format!(",\n    \"typescript\": \"^{tsc}\"") } else { String::new() };
    format!(
        "{{\n  \"name\": \"{name}\",\n  \"private\": true,\n  \"type\": \"module\",\n  \"devDependencies\": {{\n    \
         \"@bytecodealliance/componentize-js\": \"{version}\"{typescript}\n  }}\n}}\n"
    )
}

/// A Go processor's module: it requires the SDK, which `go.work` (for `go test` and editors)
/// and `weir build` (its own workspace) find on disk.
fn go_mod(name: &str) -> String {
    format!("module example.com/{name}\n\ngo 1.24\n\nrequire github.com/weir-rs/weir/sdk/go v{VERSION}\n")
}

fn pipeline_toml(name: &str, template: Template) -> String {
    let mut text = format!(
        "# `weir run pipeline.toml` runs it against the broker below; `weir deploy pipeline.toml` hands it to a\n\
         # `weir serve`. Build {name}.wasm first (see README.md).\n\
         application_id = \"{name}\"\nbootstrap_servers = \"127.0.0.1:9092\"\ninputs = [\"{name}-in\"]\n\n\
         [module]\npath = \"{name}.wasm\"\n\n[outputs]\ndefault = \"{name}-out\"\n"
    );
    if template == Template::TableJoin {
        text.push_str(&format!("\n[tables.customers]\ntopic = \"{name}-customers\"\n"));
    }
    text
}

/// The commands that matter, in order.
fn steps(name: &str, lang: Lang, template: Template) -> String {
    let setup = match lang {
        Lang::Rust => "rustup target add wasm32-wasip2   # once".to_owned(),
        Lang::Python => format!("pip install {COMPONENTIZE_PY}   # once"),
        Lang::Js => "npm install   # componentize-js, as package.json pins it".to_owned(),
        Lang::Ts => "npm install   # componentize-js and tsc, as package.json pins them".to_owned(),
        Lang::Go => "go version    # Go 1.24 or later; go test runs it off wasm".to_owned(),
        Lang::C => "clang-19 --version   # with lld-19, libclang-rt-19-dev-wasm32 and wasi-libc (Debian)".to_owned(),
        Lang::Cpp => "clang-19 --version   # with lld-19, libclang-rt-19-dev-wasm32, wasi-libc, \
                      libc++-19-dev-wasm32 and libc++abi-19-dev-wasm32 (Debian)"
            .to_owned(),
    };
    let table = if template == Template::TableJoin { " --table customers=customers.jsonl" } else { "" };
    let table_topic = if template == Template::TableJoin {
        format!("\nweir topic create {name}-customers && weir topic produce {name}-customers -i customers.jsonl")
    } else {
        String::new()
    };
    format!(
        "cd {name}\n{setup}\nweir build . -o {name}.wasm\n\
         weir test --module {name}.wasm --input sample.jsonl --expect expected.jsonl{table}\n\
         weir topic create {name}-in && weir topic create {name}-out{table_topic}\n\
         weir run pipeline.toml                # or: weir deploy pipeline.toml, to a weir serve\n"
    )
}

fn readme(name: &str, lang: Lang, template: Template) -> String {
    let source = match lang {
        Lang::Rust => "src/lib.rs",
        Lang::Python => "app.py",
        Lang::Js => "app.js",
        Lang::Ts => "app.ts",
        Lang::Go => "main.go",
        Lang::C => "app.c",
        Lang::Cpp => "app.cpp",
    };
    format!(
        "# {name}\n\nA weir processor in {} that {} (`{source}`).\n\n```sh\n{}```\n\n\
         - `weir build` makes the component; `weir test` runs it over `sample.jsonl` with no broker and \
         checks its outputs against `expected.jsonl` (`--update` rewrites that file after a change).\n\
         - `pipeline.toml` reads topic `{name}-in` and writes `{name}-out` on the broker at 127.0.0.1:9092, \
         exactly once; `weir deploy pipeline.toml` hands it to a `weir serve`, `weir logs {name}` shows what \
         it logs, and `weir ps` how it runs.\n",
        match lang {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
            Lang::Ts => "TypeScript",
            Lang::Go => "Go",
            Lang::C => "C",
            Lang::Cpp => "C++",
        },
        template.about(),
        steps(name, lang, template).lines().skip(1).map(|l| format!("{l}\n")).collect::<String>()
    )
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_name_that_cannot_be_an_application_id_and_a_crate_is_refused() {
        for bad in ["", "Upper", "1st", "a b", "../x", "a.b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        for good in ["a", "word-count", "orders_2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn every_template_writes_a_folder_in_every_language_and_a_second_time_is_refused() {
        let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for lang in Lang::ALL {
            for template in Template::ALL {
                let dir = scratch.path().join(format!("p-{}-{}", lang.name(), template.name()));
                let said = create(&dir, lang, template, &scratch.path().join("sdk"));
                assert!(said.is_ok(), "{said:?}");
                for file in ["sample.jsonl", "expected.jsonl", "pipeline.toml", "README.md"] {
                    assert!(dir.join(file).is_file(), "{} lacks {file}", dir.display());
                }
                assert!(create(&dir, lang, template, &scratch.path().join("sdk")).is_err());
            }
        }
        let sdk = scratch.path().join("sdk").join(VERSION).join("rust");
        assert!(sdk.join("weir-sdk/src/lib.rs").is_file() && sdk.join("wit/processor.wit").is_file());
    }
}
