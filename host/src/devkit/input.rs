//! Reading `run`'s inputs: messages and chats in the JSON the REST API
//! returns, so stored data can be replayed as it was read.
//!
//! Messages: an array of messages, or a page of `GET .../messages`
//! (`{"messages": [...], ...}`); each one as the API shows it
//! (`sessionId` and other extra members are ignored). Chats: one chat, an
//! array, or a page of `GET .../chats` (`{"chats": [...]}`).
//!
//! So that a batch can also be written by hand, only a message's `id` and
//! `chatId` and a chat's `id` are required; the other members default to
//! what an empty text message or a plain chat would say.

use std::io::Read;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{DevkitError, read_text};
use crate::domain::{Chat, Message};

/// `-` reads standard input.
fn text(path: &Path) -> Result<String, DevkitError> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|source| DevkitError::Read {
                path: path.to_owned(),
                source,
            })?;
        return Ok(s);
    }
    read_text(path)
}

fn bad(path: &Path, reason: impl Into<String>) -> DevkitError {
    DevkitError::BadInput {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// The items of an array, or of the array under `key` of an object.
fn items(path: &Path, value: Value, key: &str, single: bool) -> Result<Vec<Value>, DevkitError> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Object(mut o) => match o.remove(key) {
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(bad(path, format!("`{key}` is not an array"))),
            None if single => Ok(vec![Value::Object(o)]),
            None => Err(bad(
                path,
                format!("expected an array, or an object with a `{key}` array"),
            )),
        },
        other => Err(bad(
            path,
            format!("expected an array or an object, found {}", kind(&other)),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A member and its default.
type Member = (&'static str, fn() -> Value);

/// Defaults for what a hand-written message leaves out.
const MESSAGE_DEFAULTS: &[Member] = &[
    ("from", || Value::from("")),
    ("to", || Value::from("")),
    ("type", || Value::from("chat")),
    ("timestamp", || Value::from(0)),
    ("fromMe", || Value::from(false)),
    ("hasMedia", || Value::from(false)),
    ("ack", || Value::from(0)),
];

/// Defaults for what a hand-written chat leaves out.
const CHAT_DEFAULTS: &[Member] = &[
    ("isGroup", || Value::from(false)),
    ("unreadCount", || Value::from(0)),
    ("archived", || Value::from(false)),
    ("pinned", || Value::from(false)),
];

fn parse<T: DeserializeOwned>(
    path: &Path,
    what: &str,
    items: Vec<Value>,
    defaults: &[Member],
) -> Result<Vec<T>, DevkitError> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, mut v)| {
            let n = i + 1;
            let Value::Object(o) = &mut v else {
                return Err(bad(
                    path,
                    format!("{what} {n} is {}, not an object", kind(&v)),
                ));
            };
            for (key, value) in defaults {
                o.entry(*key).or_insert_with(value);
            }
            serde_json::from_value(v).map_err(|e| bad(path, format!("{what} {n}: {e}")))
        })
        .collect()
}

fn json(path: &Path) -> Result<Value, DevkitError> {
    serde_json::from_str(&text(path)?).map_err(|e| bad(path, format!("not JSON: {e}")))
}

/// The messages of `path`.
pub fn messages(path: &Path) -> Result<Vec<Message>, DevkitError> {
    let items = items(path, json(path)?, "messages", false)?;
    let messages: Vec<Message> = parse(path, "message", items, MESSAGE_DEFAULTS)?;
    if let Some(m) = messages
        .iter()
        .find(|m| m.id.is_empty() || m.chat_id.is_empty())
    {
        return Err(bad(
            path,
            format!(
                "a message needs an `id` and a `chatId` (found {:?} in chat {:?})",
                m.id, m.chat_id
            ),
        ));
    }
    Ok(messages)
}

/// The chats of `path`.
pub fn chats(path: &Path) -> Result<Vec<Chat>, DevkitError> {
    let items = items(path, json(path)?, "chats", true)?;
    let chats: Vec<Chat> = parse(path, "chat", items, CHAT_DEFAULTS)?;
    if chats.iter().any(|c| c.id.is_empty()) {
        return Err(bad(path, "a chat needs an `id`"));
    }
    Ok(chats)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::PathBuf;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.json");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    const MESSAGE: &str = r#"{"sessionId":"s","id":"m1","chatId":"c@c.us","from":"a","to":"b",
        "author":null,"body":"hi","type":"chat","timestamp":1,"fromMe":false,"hasMedia":false,
        "ack":1,"quotedId":null}"#;

    #[test]
    fn messages_are_read_from_an_array_or_an_api_page() {
        let (_d, p) = file(&format!("[{MESSAGE}]"));
        assert_eq!(messages(&p).unwrap()[0].id, "m1");
        let (_d, p) = file(&format!(r#"{{"messages":[{MESSAGE}],"nextCursor":null}}"#));
        assert_eq!(messages(&p).unwrap()[0].chat_id, "c@c.us");
    }

    #[test]
    fn a_hand_written_message_needs_only_its_ids() {
        let (_d, p) = file(r#"[{"id":"m1","chatId":"c@c.us","body":"call me"}]"#);
        let m = &messages(&p).unwrap()[0];
        assert_eq!(
            (m.kind.as_str(), m.timestamp, m.body.as_deref()),
            ("chat", 0, Some("call me"))
        );
    }

    #[test]
    fn bad_message_input_names_the_file_and_the_item() {
        for (text, says) in [
            ("not json", "not JSON"),
            ("42", "found a number"),
            (r#"{"chats":[]}"#, "`messages` array"),
            (r#"{"messages":{}}"#, "not an array"),
            (r#"[{"id":"m1"}]"#, "message 1: missing field `chatId`"),
            (
                r#"[{"id":"m1","chatId":"c","ack":"read"}]"#,
                "message 1: invalid type",
            ),
            (&format!("[{MESSAGE}, 7]"), "message 2 is a number"),
            (
                &format!("[{}]", MESSAGE.replace("\"m1\"", "\"\"")),
                "needs an `id`",
            ),
        ] {
            let (_d, p) = file(text);
            let e = messages(&p).unwrap_err();
            assert_eq!(e.code(), "bad_input");
            let shown = e.to_string();
            assert!(
                shown.contains("in.json") && shown.contains(says),
                "{text}: {shown}"
            );
        }
    }

    #[test]
    fn chats_are_one_an_array_or_an_api_page() {
        let chat = r#"{"sessionId":"s","id":"c@c.us","name":"C","isGroup":false,"unreadCount":0,
            "archived":false,"pinned":false,"lastMessageAt":null,"syncedAt":null,"messageCount":0}"#;
        for text in [
            chat.to_owned(),
            format!("[{chat}]"),
            format!(r#"{{"chats":[{chat}]}}"#),
        ] {
            let (_d, p) = file(&text);
            assert_eq!(chats(&p).unwrap()[0].name.as_deref(), Some("C"), "{text}");
        }
        let (_d, p) = file("[1]");
        assert!(chats(&p).unwrap_err().to_string().contains("chat 1"));
        // Written by hand: the id is enough.
        let (_d, p) = file(r#"{"id":"g@g.us","isGroup":true}"#);
        let c = &chats(&p).unwrap()[0];
        assert!(c.is_group && !c.pinned && c.unread_count == 0);
    }
}
