//! The contract every [`LoginVault`] adapter passes: run by the memory
//! adapter's unit test and, against a real server, by the integration
//! suite for GridFS. Panics on the first broken promise.

use super::{LoginVault, MAX_ARCHIVE_BYTES, SavedLogin, VaultError};
use crate::domain::SessionId;

/// A deterministic archive of `len` bytes, different per `seed` (and not
/// all zeros, so a chunk lost in the middle would show).
pub fn sample(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Save, load, replace, delete; each save a new revision; sessions stay
/// apart; oversized archives are refused without touching the stored one.
pub async fn run(vault: &dyn LoginVault) {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let a = SessionId::parse(&format!("vault-a-{}", &suffix[..8])).unwrap();
    let b = SessionId::parse(&format!("vault-b-{}", &suffix[..8])).unwrap();

    assert_eq!(vault.load(&a).await.unwrap(), None, "nothing saved yet");
    vault.delete(&a).await.expect("deleting nothing is fine");

    // Larger than one GridFS chunk (255 KiB), with a partial last chunk.
    let first = sample(600 * 1024 + 17, 1);
    let rev1 = vault.save(&a, first.clone()).await.unwrap();
    assert_eq!(
        vault.load(&a).await.unwrap(),
        Some(SavedLogin {
            revision: rev1.clone(),
            archive: first
        })
    );
    assert_eq!(vault.load(&b).await.unwrap(), None, "sessions stay apart");

    let second = sample(1000, 2);
    let rev2 = vault.save(&a, second.clone()).await.unwrap();
    assert_ne!(rev1, rev2, "every save is a new revision");
    let loaded = vault.load(&a).await.unwrap().unwrap();
    assert_eq!(
        (loaded.revision.as_str(), &loaded.archive[..]),
        (rev2.as_str(), &second[..]),
        "a save replaces the previous login"
    );

    let empty = Vec::new();
    vault.save(&b, empty.clone()).await.unwrap();
    assert_eq!(vault.load(&b).await.unwrap().unwrap().archive, empty);

    let huge = vec![0u8; MAX_ARCHIVE_BYTES + 1];
    match vault.save(&a, huge).await {
        Err(VaultError::TooLarge { .. }) => {}
        other => panic!("an oversized archive was not refused: {other:?}"),
    }
    assert_eq!(
        vault.load(&a).await.unwrap().map(|s| s.revision),
        Some(rev2),
        "a refused save keeps the stored login"
    );

    vault.delete(&a).await.unwrap();
    assert_eq!(vault.load(&a).await.unwrap(), None, "deleted");
    assert!(vault.load(&b).await.unwrap().is_some(), "only `a` deleted");
    vault.delete(&b).await.unwrap();
}
