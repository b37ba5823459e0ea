//! Packing the part of a Chromium profile that holds the WhatsApp Web
//! login into a `tar.gz` archive, and unpacking one, safely, into a
//! profile.
//!
//! # What is archived, and why it is enough
//!
//! WhatsApp Web keeps its whole login in the page's own storage: the
//! device's keys, the Signal sessions and the pairing data in IndexedDB,
//! a few ids and salts in localStorage. Chromium stores those per profile
//! under `Default/IndexedDB/` and `Default/Local Storage/`, keyed by
//! origin, in LevelDB folders that open on any machine. Cookies
//! (`Default/Cookies`, a SQLite file) are taken too, for the few the page
//! sets; they are encrypted, but with `--password-store=basic` (which the
//! provider passes) Linux Chromium uses its fixed built-in key (`v10`
//! values), not a per-machine keyring, so they decrypt on another host.
//! `Local State` holds no cookie key on Linux, so it is not needed.
//! Everything else in a profile is caches, history and settings Chromium
//! rebuilds, so it is left out. LevelDB's `LOCK` and `LOG` files are
//! skipped: they belong to the process that had the folder open.
//!
//! # Safety of unpacking
//!
//! An archive is read from a database other hosts write to, so it is
//! treated as hostile: only regular files are accepted, under one of
//! [`LOGIN_PATHS`], with relative paths free of `..`; links and devices
//! refuse the whole archive; the unpacked size is bounded. Files are
//! unpacked into a fresh staging folder inside the profile and moved into
//! place only when the whole archive passed, so a refused archive changes
//! nothing.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// The profile paths (relative, `/`-separated) whose contents are the
/// login; files and folders, taken when present.
const LOGIN_PATHS: &[&str] = &[
    "Default/IndexedDB",
    "Default/Local Storage",
    "Default/Cookies",
    "Default/Cookies-journal",
    // Where newer Chromium builds on some platforms keep cookies.
    "Default/Network/Cookies",
    "Default/Network/Cookies-journal",
];

/// Where an archive is unpacked before it is moved into the profile.
const STAGING: &str = ".wasync-restore";

/// File names that are never archived: LevelDB's lock file (held by the
/// running browser) and its text logs.
const SKIPPED_NAMES: &[&str] = &["LOCK", "LOG", "LOG.old"];

/// Errors of packing and unpacking.
#[derive(Debug, thiserror::Error)]
pub(super) enum ArchiveError {
    #[error("profile i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the login is {size} bytes or more, over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("unsafe archive entry: {0}")]
    Unsafe(String),
}

/// A packed login.
#[derive(Debug)]
pub(super) struct Packed {
    /// The `tar.gz` bytes.
    pub(super) archive: Vec<u8>,
    /// Files in it.
    pub(super) files: usize,
    /// Their total size before compression.
    pub(super) raw_bytes: u64,
}

/// What an unpack wrote.
#[derive(Debug)]
pub(super) struct Unpacked {
    pub(super) files: usize,
    pub(super) raw_bytes: u64,
}

/// Whether `profile` already holds a login (its IndexedDB or localStorage
/// folder has something in it).
pub(super) fn has_login(profile: &Path) -> bool {
    ["Default/IndexedDB", "Default/Local Storage"]
        .iter()
        .any(|p| {
            std::fs::read_dir(profile.join(p)).is_ok_and(|mut entries| entries.next().is_some())
        })
}

/// Packs the login paths of `profile`, refusing more than `limit` bytes of
/// files. Reading a profile a running browser writes to is a best-effort
/// copy (see `docs/webdriver.md`); a file that disappears while it is read
/// (a LevelDB compaction) restarts the pack, up to three times.
pub(super) fn pack(profile: &Path, limit: u64) -> Result<Packed, ArchiveError> {
    let mut last = None;
    for _ in 0..3 {
        match pack_once(profile, limit) {
            Err(ArchiveError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                last = Some(e);
            }
            other => return other,
        }
    }
    Err(ArchiveError::Io(last.unwrap_or_else(|| {
        std::io::Error::other("files kept disappearing")
    })))
}

fn pack_once(profile: &Path, limit: u64) -> Result<Packed, ArchiveError> {
    let mut files = Vec::new();
    for rel in LOGIN_PATHS {
        collect(profile, Path::new(rel), &mut files)?;
    }
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut raw_bytes = 0u64;
    for rel in &files {
        let data = read_bounded(&profile.join(rel), limit - raw_bytes.min(limit))?;
        raw_bytes += data.len() as u64;
        if raw_bytes > limit {
            return Err(ArchiveError::TooLarge {
                size: raw_bytes,
                limit,
            });
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(0);
        tar.append_data(&mut header, rel, &data[..])?;
    }
    let archive = tar.into_inner()?.finish()?;
    Ok(Packed {
        archive,
        files: files.len(),
        raw_bytes,
    })
}

/// Reads at most `left + 1` bytes, so an oversized file is noticed
/// without being read whole.
fn read_bounded(path: &Path, left: u64) -> Result<Vec<u8>, ArchiveError> {
    let mut data = Vec::new();
    std::fs::File::open(path)?
        .take(left + 1)
        .read_to_end(&mut data)?;
    Ok(data)
}

/// Regular files at or below `rel`, in an order that suits LevelDB: a
/// folder's `CURRENT` and `MANIFEST-*` before its tables and logs, so a
/// table a compaction replaces while the pack runs is missing (and the
/// pack restarts) rather than silently unreferenced. Links and special
/// files are skipped; a path that does not exist adds nothing.
fn collect(profile: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), ArchiveError> {
    let meta = match std::fs::symlink_metadata(profile.join(rel)) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if meta.is_file() {
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !SKIPPED_NAMES.contains(&name) {
            out.push(rel.to_path_buf());
        }
    } else if meta.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(profile.join(rel))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort_by_key(|n| {
            let rank = match n.as_str() {
                "CURRENT" => 0,
                n if n.starts_with("MANIFEST-") => 1,
                _ => 2,
            };
            (rank, n.clone())
        });
        for name in names {
            collect(profile, &rel.join(name), out)?;
        }
    }
    Ok(())
}

/// Unpacks `archive` into `profile`, replacing the login paths it
/// contains; at most `limit` bytes of files. Nothing in `profile` changes
/// unless the whole archive is valid.
pub(super) fn unpack(archive: &[u8], profile: &Path, limit: u64) -> Result<Unpacked, ArchiveError> {
    std::fs::create_dir_all(profile)?;
    let staging = profile.join(STAGING);
    remove_path(&staging)?;
    create_private_dir(&staging)?;
    let unpacked = unpack_into(archive, &staging, limit);
    let result = unpacked.and_then(|(files, raw_bytes)| {
        for rel in LOGIN_PATHS {
            let from = staging.join(rel);
            if std::fs::symlink_metadata(&from).is_err() {
                continue;
            }
            let to = profile.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            remove_path(&to)?;
            std::fs::rename(&from, &to)?;
        }
        Ok(Unpacked { files, raw_bytes })
    });
    let _ = remove_path(&staging);
    result
}

fn unpack_into(archive: &[u8], staging: &Path, limit: u64) -> Result<(usize, u64), ArchiveError> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut files = 0;
    let mut raw_bytes = 0u64;
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let rel = checked_path(&path)?;
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Directory => {
                create_dirs(staging, &rel)?;
                continue;
            }
            other => {
                return Err(ArchiveError::Unsafe(format!(
                    "{}: {other:?} entries are not accepted",
                    path.display()
                )));
            }
        }
        if let Some(parent) = rel.parent() {
            create_dirs(staging, parent)?;
        }
        let dest = staging.join(&rel);
        if std::fs::symlink_metadata(&dest).is_ok() {
            return Err(ArchiveError::Unsafe(format!(
                "{}: appears twice",
                path.display()
            )));
        }
        let mut out = private_file(&dest)?;
        let left = limit.saturating_sub(raw_bytes);
        let n = std::io::copy(&mut (&mut entry).take(left + 1), &mut out)?;
        raw_bytes += n;
        if raw_bytes > limit {
            return Err(ArchiveError::TooLarge {
                size: raw_bytes,
                limit,
            });
        }
        out.flush()?;
        files += 1;
    }
    Ok((files, raw_bytes))
}

/// The entry's path if it is relative, made of plain names only, and under
/// one of [`LOGIN_PATHS`].
fn checked_path(path: &Path) -> Result<PathBuf, ArchiveError> {
    let unsafe_path = |why: &str| ArchiveError::Unsafe(format!("{}: {why}", path.display()));
    let mut clean = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => clean.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_path("`..` in the path")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_path("absolute path"));
            }
        }
    }
    let allowed = LOGIN_PATHS.iter().any(|p| clean.starts_with(p));
    if !allowed {
        return Err(unsafe_path("not a login path"));
    }
    Ok(clean)
}

/// Creates `base/rel` folder by folder, refusing to pass through anything
/// that is not a plain folder (a link an earlier entry could not have made,
/// but a tampered staging folder might hold).
fn create_dirs(base: &Path, rel: &Path) -> Result<(), ArchiveError> {
    let mut at = base.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ArchiveError::Unsafe(format!(
                    "{}: not a folder",
                    rel.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_private_dir(&at)?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Removes a file, link or folder; a missing path is fine.
fn remove_path(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{sample_profile, write};
    use super::*;

    const LIMIT: u64 = 1 << 20;

    fn files_under(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let m = std::fs::symlink_metadata(e.path()).unwrap();
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                    out.push(rel);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn round_trip_takes_the_login_and_nothing_else() {
        let src = sample_profile();
        let packed = pack(src.path(), LIMIT).unwrap();
        assert_eq!(
            packed.files, 5,
            "LOCK, LOG, caches and settings are left out"
        );
        let dst = tempfile::tempdir().unwrap();
        let profile = dst.path().join("session-x");
        assert!(!has_login(&profile));
        let unpacked = unpack(&packed.archive, &profile, LIMIT).unwrap();
        assert_eq!(unpacked.files, 5);
        assert_eq!(unpacked.raw_bytes, packed.raw_bytes);
        assert!(has_login(&profile));
        let idb = "Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.leveldb";
        assert_eq!(
            files_under(&profile),
            vec![
                "Default/Cookies".to_owned(),
                format!("{idb}/000003.log"),
                format!("{idb}/CURRENT"),
                format!("{idb}/MANIFEST-000001"),
                "Default/Local Storage/leveldb/000003.log".to_owned(),
            ]
        );
        for rel in files_under(&profile) {
            assert_eq!(
                std::fs::read(profile.join(&rel)).unwrap(),
                std::fs::read(src.path().join(&rel)).unwrap(),
                "{rel}"
            );
        }
    }

    #[test]
    fn an_empty_profile_packs_to_no_files() {
        let dir = tempfile::tempdir().unwrap();
        let packed = pack(&dir.path().join("missing"), LIMIT).unwrap();
        assert_eq!(packed.files, 0);
    }

    #[test]
    fn links_in_the_profile_are_not_followed() {
        let src = sample_profile();
        let secret = tempfile::tempdir().unwrap();
        write(secret.path(), "key", b"not for the archive");
        std::os::unix::fs::symlink(
            secret.path().join("key"),
            src.path().join("Default/Local Storage/leveldb/link"),
        )
        .unwrap();
        let packed = pack(src.path(), LIMIT).unwrap();
        assert_eq!(packed.files, 5);
    }

    #[test]
    fn oversized_logins_are_refused_both_ways() {
        let src = sample_profile();
        match pack(src.path(), 1000) {
            Err(ArchiveError::TooLarge { .. }) => {}
            other => panic!("{other:?}"),
        }
        let packed = pack(src.path(), LIMIT).unwrap();
        let dst = tempfile::tempdir().unwrap();
        match unpack(&packed.archive, dst.path(), 1000) {
            Err(ArchiveError::TooLarge { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(!has_login(dst.path()), "a refused archive changes nothing");
    }

    /// Raw tar bytes with one entry, whatever its path or type: the `tar`
    /// builder itself refuses some of these, a tampered archive need not.
    fn tampered(name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_old();
        {
            let raw = header.as_old_mut();
            raw.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        let mut tar_bytes = header.as_bytes().to_vec();
        tar_bytes.extend_from_slice(data);
        tar_bytes.resize(tar_bytes.len().div_ceil(512) * 512 + 1024, 0);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar_bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn tampered_archives_are_refused_and_write_nothing() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("pwned");
        let abs = target.display().to_string();
        let cases = [
            (
                "Default/IndexedDB/../../../pwned".to_owned(),
                tar::EntryType::Regular,
                None,
                "..",
            ),
            ("../pwned".to_owned(), tar::EntryType::Regular, None, ".."),
            (abs.clone(), tar::EntryType::Regular, None, "absolute"),
            (
                "Default/Preferences".to_owned(),
                tar::EntryType::Regular,
                None,
                "not a login path",
            ),
            (
                "Default/IndexedDB/x".to_owned(),
                tar::EntryType::Symlink,
                Some(outside.path().display().to_string()),
                "Symlink",
            ),
            (
                "Default/IndexedDB/x".to_owned(),
                tar::EntryType::Link,
                Some(abs.clone()),
                "Link",
            ),
        ];
        for (name, kind, link, needle) in cases {
            let archive = tampered(&name, kind, link.as_deref(), b"evil");
            let dst = tempfile::tempdir().unwrap();
            let profile = dst.path().join("session-x");
            let e = unpack(&archive, &profile, LIMIT).unwrap_err();
            assert!(matches!(e, ArchiveError::Unsafe(_)), "{name}: {e}");
            assert!(e.to_string().contains(needle), "{name}: {e}");
            assert!(!target.exists(), "{name} wrote outside the profile");
            assert!(files_under(dst.path()).is_empty(), "{name} left files");
        }
    }

    #[test]
    fn a_symlink_then_a_file_through_it_is_refused() {
        // The classic escape: a link entry pointing outside, then a file
        // "inside" the link. The link is refused before anything is written.
        let outside = tempfile::tempdir().unwrap();
        let mut tar_bytes = Vec::new();
        for (name, kind, link, data) in [
            (
                "Default/IndexedDB/db",
                tar::EntryType::Symlink,
                Some(outside.path().display().to_string()),
                &b""[..],
            ),
            (
                "Default/IndexedDB/db/file",
                tar::EntryType::Regular,
                None,
                &b"x"[..],
            ),
        ] {
            let mut h = tar::Header::new_old();
            {
                let raw = h.as_old_mut();
                raw.name[..name.len()].copy_from_slice(name.as_bytes());
                if let Some(l) = &link {
                    raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
                }
            }
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            tar_bytes.extend_from_slice(h.as_bytes());
            tar_bytes.extend_from_slice(data);
            tar_bytes.resize(tar_bytes.len().div_ceil(512) * 512, 0);
        }
        tar_bytes.extend_from_slice(&[0u8; 1024]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar_bytes).unwrap();
        let archive = gz.finish().unwrap();
        let dst = tempfile::tempdir().unwrap();
        assert!(matches!(
            unpack(&archive, dst.path(), LIMIT),
            Err(ArchiveError::Unsafe(_))
        ));
        assert!(files_under(outside.path()).is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dst = tempfile::tempdir().unwrap();
        assert!(unpack(b"not a gzip stream", dst.path(), LIMIT).is_err());
        assert!(!has_login(dst.path()));
    }

    #[test]
    fn a_restore_replaces_stale_login_paths() {
        let src = sample_profile();
        let packed = pack(src.path(), LIMIT).unwrap();
        let dst = tempfile::tempdir().unwrap();
        write(dst.path(), "Default/Cookies", b"old");
        write(dst.path(), "Default/Preferences", b"kept");
        unpack(&packed.archive, dst.path(), LIMIT).unwrap();
        assert_eq!(
            std::fs::read(dst.path().join("Default/Cookies")).unwrap(),
            b"sqlite"
        );
        assert_eq!(
            std::fs::read(dst.path().join("Default/Preferences")).unwrap(),
            b"kept"
        );
        assert!(!dst.path().join(STAGING).exists());
    }
}
