//! Who this host is, and the lock that keeps its data directory its own.
//!
//! The host id is `WASYNC_HOST_ID` or, by default, an id made once and kept
//! in `<data>/host-id`, so a restarted host is the same host (its leases are
//! its own again). The data directory (browser profiles, plugin cache, the
//! embedded store) belongs to one running host: a second host started on it
//! is refused at start with an error that names the directory.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Errors finding this host's identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "the data directory {dir} is in use by another running wasync host; give each host its own WASYNC_DATA_DIR"
    )]
    InUse { dir: PathBuf },
    #[error("data directory {dir}: {cause}")]
    Io { dir: PathBuf, cause: std::io::Error },
    #[error("{file} holds {found:?}, not a host id (letters, digits, '.', '_', '-'; 1 to 64)")]
    BadStoredId { file: PathBuf, found: String },
}

/// Whether `id` can name a host (also in metrics labels and URLs).
pub fn valid_host_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Held for the life of the host: the lock on its data directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Locks `dir` for this process (an OS file lock on `<dir>/.lock`, released
/// by the kernel when the process dies, so a crash leaves nothing to clean).
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, IdentityError> {
    let io = |cause| IdentityError::Io {
        dir: dir.to_owned(),
        cause,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(IdentityError::InUse {
            dir: dir.to_owned(),
        }),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

/// The configured id, or the one kept in `<dir>/host-id` (made on first
/// start).
pub fn host_id(dir: &Path, configured: Option<&str>) -> Result<String, IdentityError> {
    if let Some(id) = configured {
        return Ok(id.to_owned());
    }
    let path = dir.join("host-id");
    let io = |cause| IdentityError::Io {
        dir: dir.to_owned(),
        cause,
    };
    match File::open(&path) {
        Ok(mut f) => {
            let mut s = String::new();
            f.read_to_string(&mut s).map_err(io)?;
            let id = s.trim().to_owned();
            if valid_host_id(&id) {
                Ok(id)
            } else {
                Err(IdentityError::BadStoredId {
                    file: path,
                    found: id,
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = format!("host-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            let tmp = dir.join("host-id.tmp");
            let mut f = File::create(&tmp).map_err(io)?;
            f.write_all(id.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            Ok(id)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_host_on_one_data_dir_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_data_dir(dir.path()).unwrap();
        let err = lock_data_dir(dir.path()).unwrap_err();
        assert!(matches!(err, IdentityError::InUse { .. }));
        assert!(err.to_string().contains("WASYNC_DATA_DIR"), "{err}");
        drop(first);
        lock_data_dir(dir.path()).expect("free again once the first host is gone");
    }

    #[test]
    fn the_host_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = host_id(dir.path(), None).unwrap();
        assert!(valid_host_id(&a), "{a}");
        assert_eq!(host_id(dir.path(), None).unwrap(), a);
        assert_eq!(host_id(dir.path(), Some("h-7")).unwrap(), "h-7");
        std::fs::write(dir.path().join("host-id"), "no spaces allowed").unwrap();
        assert!(matches!(
            host_id(dir.path(), None),
            Err(IdentityError::BadStoredId { .. })
        ));
    }

    #[test]
    fn host_ids_are_checked() {
        assert!(valid_host_id("host-1.eu_west"));
        assert!(!valid_host_id(""));
        assert!(!valid_host_id("a/b"));
        assert!(!valid_host_id(&"x".repeat(65)));
    }
}
