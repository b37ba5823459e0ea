//! A plugin directory on disk: `<name>.toml` plus `<name>.<sha256>.wasm`,
//! written so that a crash at any point leaves a manifest whose component
//! is there (component first, manifest last as the commit point, both
//! fsynced with the directory).

use std::path::{Path, PathBuf};

use super::{Manifest, PluginError, io};

/// Where a manifest's component is: `<name>.<sha256>.wasm` when the
/// manifest pins a sha256 and that file exists (what installs write), else
/// `<name>.wasm` (a plugin copied in by hand).
pub(super) fn component_path(dir: &Path, manifest: &Manifest) -> PathBuf {
    if let Some(sha) = &manifest.sha256 {
        let versioned = versioned_component(dir, &manifest.name, sha);
        if versioned.is_file() {
            return versioned;
        }
    }
    dir.join(format!("{}.wasm", manifest.name))
}

pub(super) fn versioned_component(dir: &Path, name: &str, sha256: &str) -> PathBuf {
    dir.join(format!("{name}.{sha256}.wasm"))
}

/// Install, step 1: the component under its versioned name, durable. The
/// manifest on disk still names the old one, so a crash after this step
/// leaves the old plugin in place (and an orphan the next install or
/// removal of the plugin sweeps).
pub(super) fn stage_component(
    dir: &Path,
    name: &str,
    sha256: &str,
    wasm: &[u8],
) -> Result<PathBuf, PluginError> {
    let path = versioned_component(dir, name, sha256);
    write_atomic(&path, wasm)?;
    sync_dir(dir)?;
    Ok(path)
}

/// Install, step 2 and commit point: the manifest, atomically replaced and
/// durable.
pub(super) fn commit_manifest(dir: &Path, name: &str, text: &str) -> Result<(), PluginError> {
    write_atomic(&dir.join(format!("{name}.toml")), text.as_bytes())?;
    sync_dir(dir)
}

/// Install, step 3 (and removal): deletes the plugin's components other
/// than `keep`, and leftovers of interrupted writes. Best effort: an orphan
/// is never loaded, only wasted space.
pub(super) fn sweep_components(dir: &Path, name: &str, keep: Option<&Path>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{name}.");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else {
            continue;
        };
        // Names cannot contain '.', so `<name>.` never matches another
        // plugin's files.
        let ours = file.strip_prefix(&prefix).is_some_and(|rest| {
            rest == "wasm" || rest.ends_with(".wasm") || rest.ends_with(".tmp")
        });
        if ours && keep.is_none_or(|k| k != entry.path()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes `path` through a temporary file, synced before the rename, so the
/// file is either the old one or the whole new one.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PluginError> {
    use std::io::Write;
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let mut f = std::fs::File::create(&tmp).map_err(io("writing", &tmp))?;
    f.write_all(bytes).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("syncing", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io("renaming", path))
}

/// Makes the directory's entries (renames, removals) durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), PluginError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}
