//! The host's log. Each line is tagged with the plugin's name, control
//! characters are escaped, and a call's lines share a budget (256 lines,
//! 64 KiB, each line costing 64 bytes on top of its text; the rest is
//! counted as `logsDropped` and not written): log per batch, not per message.
//! In tests ([`testing`](crate::testing)) lines are captured instead.

use crate::Level;

/// Writes `msg` at `level`.
#[inline]
pub fn write(level: Level, msg: &str) {
    crate::host::log(level, msg);
}

/// Writes `msg` at level `trace`.
#[inline]
pub fn trace(msg: &str) {
    write(Level::Trace, msg);
}

/// Writes `msg` at level `debug`.
#[inline]
pub fn debug(msg: &str) {
    write(Level::Debug, msg);
}

/// Writes `msg` at level `info`.
#[inline]
pub fn info(msg: &str) {
    write(Level::Info, msg);
}

/// Writes `msg` at level `warn`.
#[inline]
pub fn warn(msg: &str) {
    write(Level::Warn, msg);
}

/// Writes `msg` at level `error`.
#[inline]
pub fn error(msg: &str) {
    write(Level::Error, msg);
}
