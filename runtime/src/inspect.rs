//! `weir inspect`: what a component is, what it targets, and whether this weir can run it.

use std::fmt::Write as _;
use std::path::Path;

use crate::contract::{PROCESSOR_EXPORT, TIMER_HANDLER_EXPORT};
use crate::engine::Engine;

/// A human-readable report, and whether the module is runnable here.
pub fn inspect(engine: &Engine, path: &Path) -> (String, bool) {
    let shown = path.display().to_string();
    let mut report = format!("{shown}\n");
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return (format!("{report}  valid:   no: cannot read: {e}\n"), false),
    };
    let _ = writeln!(report, "  size:    {} ({} bytes)", human_size(bytes.len()), bytes.len());
    let component = match engine.compile(&shown, &bytes) {
        Ok((component, _)) => component,
        Err(e) => return (format!("{report}  valid:   no: {e}\n"), false),
    };
    let ty = component.component_type();
    let wasmtime = engine.wasmtime();
    let exports: Vec<&str> = ty.exports(wasmtime).map(|(n, _)| n).collect();
    let imports: Vec<&str> = ty.imports(wasmtime).map(|(n, _)| n).collect();
    // The component's own version of the interfaces, which may be older than this weir's.
    let unversioned = |name: &'static str| name.split('@').next().unwrap_or(name);
    let exported = |name: &'static str| exports.iter().find(|e| e.split('@').next() == Some(unversioned(name)));
    let world = match (exported(PROCESSOR_EXPORT), exported(TIMER_HANDLER_EXPORT)) {
        (Some(export), timers) => {
            let version = export.rsplit('@').next().unwrap_or_default();
            let name = if timers.is_some() { "timed-processor" } else { "stream-processor" };
            format!("weir:processor/{name}, version {version}")
        }
        (None, _) => "not a weir processor".to_owned(),
    };
    let _ = writeln!(report, "  world:   {world}");
    let _ = writeln!(report, "  exports: {}", list(&exports));
    let _ = writeln!(report, "  imports: {}", list(&imports));
    match engine.load_bytes("inspect", &shown, &bytes) {
        Ok(_) => {
            let _ = writeln!(report, "  valid:   yes, this weir can run it");
            (report, true)
        }
        Err(e) => {
            let _ = writeln!(report, "  valid:   no: {e}");
            (report, false)
        }
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn human_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / (1 << 10) as f64),
        b => format!("{b} B"),
    }
}
