//! Test fixtures shared by the login tests: a profile on disk with a
//! login, caches and LevelDB's own files.

use std::path::Path;

pub(super) fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// A profile with a login, caches and LevelDB's own files.
pub(super) fn sample_profile() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let idb = "Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.leveldb";
    write(p, &format!("{idb}/CURRENT"), b"MANIFEST-000001\n");
    write(p, &format!("{idb}/MANIFEST-000001"), b"manifest");
    write(p, &format!("{idb}/000003.log"), &[7u8; 5000]);
    write(p, &format!("{idb}/LOCK"), b"");
    write(p, &format!("{idb}/LOG"), b"log text");
    write(p, "Default/Local Storage/leveldb/000003.log", b"salt");
    write(p, "Default/Cookies", b"sqlite");
    write(p, "Default/Cache/Cache_Data/data_0", &[1u8; 9000]);
    write(p, "Default/Preferences", b"{}");
    write(p, "Local State", b"{}");
    dir
}
