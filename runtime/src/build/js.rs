//! JavaScript (and TypeScript) processors: componentize-js, run by node.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{run, world_of, COMPONENTIZE_JS};

/// The JavaScript SDK, staged beside the user's modules as `weir.js`.
const JS_SDK: &str = include_str!("../../../sdk/js/weir.js");

pub(super) fn build_js(dir: &Path, wit: &Path, staging: &Path, out: &Path) -> anyhow::Result<()> {
    componentize(dir, &dir.join("app.js"), dir, wit, staging, out)
}

/// Builds the modules in `sources` (the user's folder, or what tsc made of it) for the
/// processor in `dir`, whose entry file is `app`.
fn componentize(sources: &Path, app: &Path, dir: &Path, wit: &Path, staging: &Path, out: &Path) -> anyhow::Result<()> {
    let package = componentize_js(dir)?;
    // componentize-js maps the entry's folder into the engine; the user's modules go there with
    // the SDK as `weir.js`, and their `from "weir"` imports are pointed at it.
    let src = staging.join("src");
    copy_js_sources(sources, &src, 0)?;
    std::fs::write(src.join("weir.js"), JS_SDK)?;
    check_js_syntax(dir, &src, &staging.join("check"))?;
    let world = world_of(&sources.join("app.js"), "timerHandler");
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
        &format!("componentize-js on {}", app.display()),
        "install Node.js 18 or later",
    )?;
    Ok(())
}

/// The JavaScript SDK's types, which a TypeScript processor is checked against.
pub const JS_SDK_TYPES: &str = include_str!("../../../sdk/js/weir.d.ts");

/// How tsc checks and compiles a TypeScript processor: strictly, to the modules componentize-js
/// takes, with the web APIs StarlingMonkey offers (`TextEncoder`, `console`, ...).
pub const TSCONFIG: &str = r#"{
  "compilerOptions": {
    "target": "ES2022",
    "module": "ES2022",
    "moduleResolution": "bundler",
    "lib": ["ES2022", "DOM"],
    "types": [],
    "strict": true,
    "allowJs": true,
    "skipLibCheck": true,
    "noEmitOnError": true,
    "rootDir": "."
  },
  "include": ["**/*.ts", "**/*.js", "**/*.mjs"]
}
"#;

/// TypeScript: tsc type-checks the folder against the SDK's types and compiles it, then the
/// JavaScript is built as any other.
pub(super) fn build_ts(dir: &Path, wit: &Path, staging: &Path, out: &Path) -> anyhow::Result<()> {
    let tsc = typescript(dir)?;
    let src = staging.join("ts");
    copy_tree(dir, &src)?;
    std::fs::write(src.join("weir.d.ts"), JS_SDK_TYPES)?;
    std::fs::write(src.join("tsconfig.json"), TSCONFIG)?;
    let compiled = staging.join("ts-out");
    let output = Command::new("node")
        .arg(&tsc)
        .args(["-p", "tsconfig.json", "--pretty", "false", "--outDir"])
        .arg(&compiled)
        .current_dir(&src)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run `node` (install Node.js 18 or later): {e}"))?;
    if !output.status.success() {
        // tsc names files relative to the staged copy: name them in the user's folder instead.
        let text = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| if l.starts_with(' ') { l.to_owned() } else { dir.join(l).display().to_string() })
            .collect();
        let stderr = String::from_utf8_lossy(&output.stderr);
        anyhow::bail!(
            "{} does not type-check (tsc):\n  {}{}",
            dir.join("app.ts").display(),
            lines.join("\n  "),
            stderr.trim()
        );
    }
    componentize(&compiled, &dir.join("app.ts"), dir, wit, staging, out)
}

/// tsc, from the `typescript` package: `WEIR_TYPESCRIPT`, or `node_modules` in the folder or
/// one of its parents, or npm's global root.
fn typescript(dir: &Path) -> anyhow::Result<PathBuf> {
    let tsc = |package: &Path| package.join("bin").join("tsc");
    if let Some(path) = std::env::var_os("WEIR_TYPESCRIPT") {
        return Ok(tsc(Path::new(&path)));
    }
    let start = std::fs::canonicalize(dir)?;
    if let Some(found) =
        start.ancestors().map(|a| tsc(&a.join("node_modules").join("typescript"))).find(|p| p.is_file())
    {
        return Ok(found);
    }
    let global = Command::new("npm").args(["root", "-g"]).output().ok().filter(|o| o.status.success());
    if let Some(root) = global.map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())) {
        let found = tsc(&root.join("typescript"));
        if found.is_file() {
            return Ok(found);
        }
    }
    anyhow::bail!(
        "{}: TypeScript is not installed; `npm install {}` in this folder or a parent, or set WEIR_TYPESCRIPT to its folder",
        dir.display(),
        super::TYPESCRIPT
    )
}

/// The entries of a processor's folder that are its sources: not `node_modules`, not dot files.
fn sources(dir: &Path) -> anyhow::Result<Vec<(std::fs::DirEntry, PathBuf, std::ffi::OsString)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let (path, name) = (entry.path(), entry.file_name());
        if name != "node_modules" && !name.to_string_lossy().starts_with('.') {
            found.push((entry, path, name));
        }
    }
    Ok(found)
}

/// Copies a TypeScript processor's folder (not `node_modules`, not dot files).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for (entry, path, name) in sources(from)? {
        // weir's own types and settings stand in for the copies `weir new` writes for editors.
        if name == "weir.d.ts" || name == "tsconfig.json" {
            continue;
        }
        if name == "weir.ts" {
            anyhow::bail!("{}: a file named weir.ts would hide weir's SDK; rename it", path.display());
        }
        if entry.file_type()?.is_dir() {
            copy_tree(&path, &to.join(&name))?;
        } else {
            std::fs::copy(&path, to.join(&name))?;
        }
    }
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
    for (entry, path, name) in sources(from)? {
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
