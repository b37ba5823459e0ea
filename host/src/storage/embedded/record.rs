//! How a message is stored in the embedded store: a versioned binary
//! record (postcard) of the fields its key does not already hold.
//!
//! The key of a message, `(sessionId, chatId, desc(timestamp), messageId)`,
//! carries its chat, time and id, so the record leaves them out: a record
//! is about half the size of the JSON document it replaced, and encodes in
//! a fraction of the time (the JSON encoding was ~9 % of a sync, P2).
//!
//! postcard writes fields in declaration order with no names, so a record
//! cannot grow a field the way a JSON document can. Instead every record
//! starts with its version byte: a new field means a new `RecordV2` struct
//! written from then on, while [`decode`] keeps reading `V1` records
//! (giving the new field its default). Old records never need rewriting,
//! and a record of a version this build does not know is reported as
//! corrupt rather than misread. The struct below is the storage format:
//! it mirrors [`Message`] on purpose, so a change to the domain type (a
//! renamed field, a serde attribute) cannot change what is on disk.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{ChangeState, Message, Reaction, RemovedReaction};
use crate::storage::{StoreError, StoreResult};

/// The version byte of [`RecordV1`].
const V1: u8 = 1;

/// A message record, version 1. Field order is the format: never reorder
/// or change a field here; add a `RecordV2` instead.
#[derive(Serialize, Deserialize)]
struct RecordV1<'a> {
    #[serde(borrow)]
    from: Cow<'a, str>,
    #[serde(borrow)]
    to: Cow<'a, str>,
    #[serde(borrow)]
    author: Option<Cow<'a, str>>,
    #[serde(borrow)]
    body: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    from_me: bool,
    has_media: bool,
    ack: i32,
    #[serde(borrow)]
    quoted_id: Option<Cow<'a, str>>,
    tags: Cow<'a, [String]>,
    attributes: Cow<'a, BTreeMap<String, String>>,
    edited_at: Option<i64>,
    revoked: bool,
    revoked_at: Option<i64>,
    ack_at: Option<i64>,
    /// `(reactor, emoji, at)`, by reactor.
    reactions: Vec<(Cow<'a, str>, Cow<'a, str>, i64)>,
    /// `(reactor, at)`, by reactor.
    reactions_removed: Vec<(Cow<'a, str>, i64)>,
}

/// Appends the record of `m` to `out` (which it does not clear, so one
/// buffer serves a whole commit).
pub(super) fn encode_into(m: &Message, out: &mut Vec<u8>) -> StoreResult<()> {
    let c = &m.changes;
    let rec = RecordV1 {
        from: Cow::Borrowed(&m.from),
        to: Cow::Borrowed(&m.to),
        author: m.author.as_deref().map(Cow::Borrowed),
        body: m.body.as_deref().map(Cow::Borrowed),
        kind: Cow::Borrowed(&m.kind),
        from_me: m.from_me,
        has_media: m.has_media,
        ack: m.ack,
        quoted_id: m.quoted_id.as_deref().map(Cow::Borrowed),
        tags: Cow::Borrowed(&m.tags),
        attributes: Cow::Borrowed(&m.attributes),
        edited_at: c.edited_at,
        revoked: c.revoked,
        revoked_at: c.revoked_at,
        ack_at: c.ack_at,
        reactions: c
            .reactions
            .iter()
            .map(|r| {
                (
                    Cow::Borrowed(r.reactor.as_str()),
                    Cow::Borrowed(r.emoji.as_str()),
                    r.at,
                )
            })
            .collect(),
        reactions_removed: c
            .reactions_removed
            .iter()
            .map(|r| (Cow::Borrowed(r.reactor.as_str()), r.at))
            .collect(),
    };
    out.push(V1);
    postcard::to_extend(&rec, std::mem::take(out))
        .map(|v| *out = v)
        .map_err(|e| StoreError::Backend(format!("encode message {}: {e}", m.id)))
}

/// The record of `m`.
pub(super) fn encode(m: &Message) -> StoreResult<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    encode_into(m, &mut out)?;
    Ok(out)
}

/// The message stored under `(chat_id, timestamp, id)` with record
/// `bytes`.
pub(super) fn decode(
    chat_id: &str,
    timestamp: i64,
    id: &str,
    bytes: &[u8],
) -> StoreResult<Message> {
    let corrupt = |what: String| StoreError::Corrupt(format!("message {id}: {what}"));
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| corrupt("empty record".into()))?;
    let rec: RecordV1 = match version {
        V1 => postcard::from_bytes(body).map_err(|e| corrupt(format!("decode: {e}")))?,
        v => {
            return Err(corrupt(format!(
                "record version {v} is newer than this build reads ({V1}); \
                 run the wasync that wrote it"
            )));
        }
    };
    Ok(Message {
        id: id.to_owned(),
        chat_id: chat_id.to_owned(),
        from: rec.from.into_owned(),
        to: rec.to.into_owned(),
        author: rec.author.map(Cow::into_owned),
        body: rec.body.map(Cow::into_owned),
        kind: rec.kind.into_owned(),
        timestamp,
        from_me: rec.from_me,
        has_media: rec.has_media,
        ack: rec.ack,
        quoted_id: rec.quoted_id.map(Cow::into_owned),
        tags: rec.tags.into_owned(),
        attributes: rec.attributes.into_owned(),
        changes: ChangeState {
            edited_at: rec.edited_at,
            revoked: rec.revoked,
            revoked_at: rec.revoked_at,
            ack_at: rec.ack_at,
            reactions: rec
                .reactions
                .into_iter()
                .map(|(reactor, emoji, at)| Reaction {
                    reactor: reactor.into_owned(),
                    emoji: emoji.into_owned(),
                    at,
                })
                .collect(),
            reactions_removed: rec
                .reactions_removed
                .into_iter()
                .map(|(reactor, at)| RemovedReaction {
                    reactor: reactor.into_owned(),
                    at,
                })
                .collect(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Message {
        Message {
            id: "true_49151@c.us_3EB0".into(),
            chat_id: "49151@c.us".into(),
            from: "me@c.us".into(),
            to: "49151@c.us".into(),
            author: Some("4917@c.us".into()),
            body: Some("héllo ✓".into()),
            kind: "image".into(),
            timestamp: -5,
            from_me: true,
            has_media: true,
            ack: -1,
            quoted_id: Some("q".into()),
            tags: vec!["a".into(), "b".into()],
            attributes: BTreeMap::from([("k".into(), "v".into())]),
            changes: ChangeState {
                edited_at: Some(7),
                revoked: true,
                revoked_at: Some(8),
                ack_at: Some(i64::MAX),
                reactions: vec![Reaction {
                    reactor: "r1".into(),
                    emoji: "👍".into(),
                    at: 9,
                }],
                reactions_removed: vec![RemovedReaction {
                    reactor: "r2".into(),
                    at: i64::MIN,
                }],
            },
        }
    }

    #[test]
    fn a_message_round_trips() {
        let mut bare = full();
        bare.author = None;
        bare.body = None;
        bare.quoted_id = None;
        bare.tags.clear();
        bare.attributes.clear();
        bare.changes = ChangeState::default();
        for m in [full(), bare] {
            let bytes = encode(&m).unwrap();
            assert_eq!(bytes[0], V1);
            assert_eq!(decode(&m.chat_id, m.timestamp, &m.id, &bytes).unwrap(), m);
        }
    }

    /// The bytes of a version-1 record are fixed: a change that moves them
    /// breaks every stored message, so it needs a `RecordV2` instead.
    #[test]
    fn the_version_1_format_does_not_move() {
        let bytes = encode(&full()).unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "01076d6540632e75730a343931353140632e757301093439313740632e7573010a68c3a96c6c6f20e29c93\
             05696d616765010101010171020161016201016b0176010e01011001feffffffffffffffff010102723104\
             f09f918d1201027232ffffffffffffffffff01"
        );
    }

    #[test]
    fn bad_records_are_corrupt_not_panics() {
        let m = full();
        let bytes = encode(&m).unwrap();
        for bad in [
            &[][..],
            &[2u8, 0][..],
            &bytes[..bytes.len() / 2],
            &[1u8, 0xff, 0xff][..],
        ] {
            let err = decode("c", 0, "m", bad).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        }
        let err = decode("c", 0, "m", &[9, 0]).unwrap_err();
        assert!(err.to_string().contains("version 9"), "{err}");
    }
}
