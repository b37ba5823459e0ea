//! Delivery signatures: `X-Wasync-Signature: sha256=<hex HMAC-SHA256 of
//! "<timestamp>.<body>">` with the webhook's secret as the key.
//!
//! The timestamp (`X-Wasync-Timestamp`, seconds since the epoch) is inside
//! the signed text, so a receiver that refuses old timestamps (five minutes
//! is usual) also refuses a captured request replayed later; the body is
//! signed as the exact bytes sent, so a receiver verifies the raw body
//! before parsing it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The value of `X-Wasync-Signature`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// A short, non-reversible name of a secret for the API (`secretHint`), so
/// an operator can tell which secret is configured without it being shown.
pub fn fingerprint(secret: &str) -> String {
    use sha2::Digest;
    let digest = Sha256::digest(format!("wasync-webhook-secret:{secret}").as_bytes());
    format!("sha256:{}", &hex(&digest)[..8])
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_known_hmac() {
        // RFC 4231 test case 2: the primitive is the standard HMAC-SHA256.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let s = signature("secret", 1_700_000_000, br#"{"a":1}"#);
        // The value docs/webhooks.md's Python and Node.js snippets compute
        // for the same secret, timestamp and body.
        assert_eq!(
            s,
            "sha256=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
        assert_ne!(s, signature("secret", 1_700_000_001, br#"{"a":1}"#));
        assert_ne!(s, signature("other", 1_700_000_000, br#"{"a":1}"#));
    }

    #[test]
    fn fingerprints_are_short_and_stable() {
        assert_eq!(fingerprint("abc"), fingerprint("abc"));
        assert_ne!(fingerprint("abc"), fingerprint("abd"));
        assert_eq!(fingerprint("abc").len(), "sha256:".len() + 8);
    }
}
