//! Log lines into weir's structured logs, tagged with processor, topic and partition.
//! Off wasm they go to stderr.

#[cfg(target_arch = "wasm32")]
fn write(level: crate::bindings::weir::processor::log::Level, message: &str) {
    crate::bindings::weir::processor::log::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
fn write(level: crate::bindings::weir::processor::log::Level, message: &str) {
    eprintln!("[{level:?}] {message}");
}

use crate::bindings::weir::processor::log::Level;

pub fn trace(message: impl AsRef<str>) {
    write(Level::Trace, message.as_ref());
}

pub fn debug(message: impl AsRef<str>) {
    write(Level::Debug, message.as_ref());
}

pub fn info(message: impl AsRef<str>) {
    write(Level::Info, message.as_ref());
}

pub fn warn(message: impl AsRef<str>) {
    write(Level::Warn, message.as_ref());
}

/// An error line; weir shows the last one with the trap it explains.
pub fn error(message: impl AsRef<str>) {
    write(Level::Error, message.as_ref());
}
