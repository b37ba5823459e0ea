//! The plugin developer kit: what `wasync plugin check` and `wasync plugin
//! run` do, offline, with no server, store or broker.
//!
//! # Why it is written the way it is
//! - **The host's own code, not a copy.** `check` is the upload's
//!   validation ([`Trial::load`]: size cap, manifest, magic, component,
//!   sha256, world, imports) and `run` is a sync's plugin chain (sub-batches,
//!   deadlines, memory cap, log budget, `on_error`, tripping) on the same
//!   engine settings. A plugin that passes here passes on a server with the
//!   same limits; there is no second implementation to drift.
//! - **Inputs are what the API returns.** Messages and chats are read in
//!   the JSON shape of `GET .../messages` and `GET .../chats`, so a team can
//!   replay what a server stored.
//! - **Instructions are counted, not timed alone.** Wall time on a shared
//!   machine varies; wasmtime's fuel (about one unit per WebAssembly
//!   instruction) is repeatable, so `run` reports both. Counting costs a few
//!   percent of guest speed, which is why only this engine counts.
//!
//! - [`check`]: validate a component and its manifest.
//! - [`run`]: run a plugin on messages and chats; the report.
//! - `input`: reading messages and chats.

mod check;
mod input;
mod run;

use std::path::{Path, PathBuf};

pub use check::{CheckReport, check};
pub use run::{ChatReport, Repeat, RunOptions, RunReport, run};

use crate::plugins::wasm::{PluginError, PluginRuntime, RuntimeOptions};

/// Why a developer-kit command could not give its answer.
#[derive(Debug, thiserror::Error)]
pub enum DevkitError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An input file is not what the command reads.
    #[error("{}: {reason}", path.display())]
    BadInput { path: PathBuf, reason: String },
    /// The command line asks for something the plugin cannot do.
    #[error("{0}")]
    Usage(String),
    /// The host would refuse the plugin (the upload's error).
    #[error(transparent)]
    Refused(#[from] PluginError),
}

impl DevkitError {
    /// The stable code: an upload's refusal code (`bad_manifest`,
    /// `world_mismatch`, ...), `unreadable_file`, `bad_input`, `usage` or
    /// `engine`.
    pub fn code(&self) -> &'static str {
        match self {
            DevkitError::Read { .. } => "unreadable_file",
            DevkitError::BadInput { .. } => "bad_input",
            DevkitError::Usage(_) => "usage",
            DevkitError::Refused(e) => e.code().unwrap_or("engine"),
        }
    }

    /// True when the host would refuse the plugin (exit 1), false when the
    /// command could not run as asked (exit 2).
    pub fn is_refusal(&self) -> bool {
        matches!(self, DevkitError::Refused(e) if e.code().is_some())
    }
}

/// The manifest beside a component: `FILE.toml` for `FILE.wasm`.
pub fn manifest_beside(wasm: &Path) -> PathBuf {
    wasm.with_extension("toml")
}

fn read(path: &Path) -> Result<Vec<u8>, DevkitError> {
    std::fs::read(path).map_err(|source| DevkitError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_text(path: &Path) -> Result<String, DevkitError> {
    let bytes = read(path)?;
    String::from_utf8(bytes).map_err(|_| DevkitError::BadInput {
        path: path.to_owned(),
        reason: "not UTF-8 text".into(),
    })
}

/// An engine with the production settings (tick, memory ceiling), without
/// the pooling allocator's reservation (one instance at a time here) and
/// without a compile cache; `count` adds instruction counting.
fn engine(count: bool) -> Result<std::sync::Arc<PluginRuntime>, DevkitError> {
    Ok(PluginRuntime::new(RuntimeOptions {
        pooling: false,
        count_instructions: count,
        ..RuntimeOptions::default()
    })?)
}
