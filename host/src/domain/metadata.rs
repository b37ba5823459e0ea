//! A session's own labels (`metadata`), and their bounds.

use std::collections::BTreeMap;

/// A team's own labels on a session (`{"team": "sales", "crm": "4711"}`):
/// given at create, stored with the session, returned in snapshots and
/// lists, and echoed in every event of the session (WebSocket, Socket.IO,
/// RabbitMQ), so a consumer can route by its own ids without a lookup.
pub type Metadata = BTreeMap<String, String>;

/// Most metadata entries a session may carry.
pub const METADATA_MAX_ENTRIES: usize = 32;
/// Longest metadata key, bytes (letters, digits, `_`, `-`, `.`).
pub const METADATA_MAX_KEY: usize = 64;
/// Longest metadata value, bytes.
pub const METADATA_MAX_VALUE: usize = 512;
/// Most bytes of all keys and values together.
pub const METADATA_MAX_TOTAL: usize = 4096;

/// Whether `key` may name a metadata entry: 1 to 64 of letters, digits,
/// `_`, `-` and `.`, so it reads the same in JSON and in a
/// `metadata.KEY=VALUE` filter.
pub fn valid_metadata_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= METADATA_MAX_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Checks metadata against its bounds; the error names the entry.
pub fn validate_metadata(m: &Metadata) -> Result<(), String> {
    if m.len() > METADATA_MAX_ENTRIES {
        return Err(format!(
            "metadata has {} entries; at most {METADATA_MAX_ENTRIES}",
            m.len()
        ));
    }
    let mut total = 0;
    for (k, v) in m {
        if !valid_metadata_key(k) {
            return Err(format!(
                "metadata key {k:?} must be 1 to {METADATA_MAX_KEY} of letters, digits, '_', '-', '.'"
            ));
        }
        if v.len() > METADATA_MAX_VALUE {
            return Err(format!(
                "metadata value of {k:?} is {} bytes; at most {METADATA_MAX_VALUE}",
                v.len()
            ));
        }
        total += k.len() + v.len();
    }
    if total > METADATA_MAX_TOTAL {
        return Err(format!(
            "metadata is {total} bytes; at most {METADATA_MAX_TOTAL} in all"
        ));
    }
    Ok(())
}
