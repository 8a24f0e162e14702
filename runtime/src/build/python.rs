//! Python processors: componentize-py.

use std::path::Path;
use std::process::Command;

use super::{absolute, run, world_of, write_files, COMPONENTIZE_PY};

/// The Python SDK, put on componentize-py's path as the package `weir`.
pub(super) const PYTHON_SDK: &[(&str, &str)] = &[
    ("__init__.py", include_str!("../../../sdk/python/weir/__init__.py")),
    ("_host.py", include_str!("../../../sdk/python/weir/_host.py")),
    ("join.py", include_str!("../../../sdk/python/weir/join.py")),
    ("log.py", include_str!("../../../sdk/python/weir/log.py")),
    ("state.py", include_str!("../../../sdk/python/weir/state.py")),
    ("table.py", include_str!("../../../sdk/python/weir/table.py")),
    ("timers.py", include_str!("../../../sdk/python/weir/timers.py")),
    ("window.py", include_str!("../../../sdk/python/weir/window.py")),
];

pub(super) fn build_python(dir: &Path, wit: &Path, staging: &Path, out: &Path) -> anyhow::Result<()> {
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
