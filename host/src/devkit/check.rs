//! `wasync plugin check`: an upload's validation, offline.

use std::path::Path;

use serde::Serialize;

use super::{DevkitError, engine, read, read_text};
use crate::plugins::wasm::{PluginInfo, Trial};

/// What the host would install.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    /// Always true: a refusal is an error, not a report.
    pub ok: bool,
    /// What `GET /plugins` would show (the sha256 is the component's).
    pub plugin: PluginInfo,
    /// The interfaces the component imports; every one is linked by the
    /// host, or it would have been refused.
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// Validates `wasm` with its manifest as `POST /plugins` would, with
/// `max_component_bytes` as the size cap (`WASYNC_MAX_PLUGIN_BYTES`).
pub fn check(
    wasm_path: &Path,
    manifest_path: &Path,
    max_component_bytes: usize,
) -> Result<CheckReport, DevkitError> {
    let manifest = read_text(manifest_path)?;
    let wasm = read(wasm_path)?;
    let trial = Trial::load(engine(false)?, &manifest, &wasm, max_component_bytes)?;
    let (imports, exports) = trial.interfaces();
    Ok(CheckReport {
        ok: true,
        plugin: trial.info(),
        imports,
        exports,
    })
}
