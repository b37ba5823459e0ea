//! The page bridge: `bridge.js` (the only JavaScript the host evaluates),
//! the calls into it, and the shapes of what it hands back, mapped onto the
//! domain's chats and messages.

use serde::Deserialize;
use serde_json::{Value, json};

use super::browser::Browser;
use super::error::WebDriverError;
use crate::browser::{ClientError, HistoryRequest};
use crate::domain::{
    AddressBook, Chat, Contact, GroupParticipants, Message, MessageChange, MessageMark,
    MessageUpdate,
};

/// The page bridge, injected as the body of an `execute` call.
const BRIDGE: &str = include_str!("bridge.js");

/// Drains the bridge's queue; `null` when the bridge is gone (a reload).
const DRAIN: &str =
    "return window.__wasync ? window.__wasync.drain(arguments[0], arguments[1]) : null;";

impl Browser {
    /// Installs the bridge in the page.
    pub(super) async fn inject(&self) -> Result<(), WebDriverError> {
        self.exec("inject", BRIDGE, vec![]).await.map(|_| ())
    }

    /// Takes up to 200 page events after `ack` off the bridge's queue (see
    /// [`DRAIN`]).
    pub(super) async fn drain(&self, ack: u64) -> Result<Value, WebDriverError> {
        self.exec("drain", DRAIN, vec![json!(ack), json!(200)])
            .await
    }

    /// Runs a bridge call; a missing bridge (after a reload) is injected
    /// and the call tried once more.
    async fn bridge_call(
        &self,
        what: &'static str,
        expr: &str,
        args: Vec<Value>,
    ) -> Result<Value, WebDriverError> {
        let script = format!(
            "if (!window.__wasync) return {{__missing: true}}; return await window.__wasync.{expr};"
        );
        let v = self.exec(what, &script, args.clone()).await?;
        if v.get("__missing").is_some() {
            self.inject().await?;
            let v = self.exec(what, &script, args).await?;
            if v.get("__missing").is_some() {
                return Err(WebDriverError::Page(
                    "the page bridge could not be installed".into(),
                ));
            }
            return Ok(v);
        }
        Ok(v)
    }

    /// The page's chats, most recently active first.
    pub(super) async fn chats(&self) -> Result<Vec<Chat>, ClientError> {
        let v = self.bridge_call("chats", "chats()", vec![]).await?;
        let chats: Vec<PageChat> = serde_json::from_value(v)
            .map_err(|e| ClientError::Transient(format!("unreadable chat list: {e}")))?;
        let mut chats: Vec<Chat> = chats.into_iter().map(Chat::from).collect();
        chats.sort_by_key(|c| std::cmp::Reverse(c.last_message_at));
        Ok(chats)
    }

    /// The page's address book: contacts (by phone-number id where the
    /// page maps the `@lid`) and group members.
    pub(super) async fn contacts(&self) -> Result<AddressBook, ClientError> {
        #[derive(Deserialize)]
        struct PageBook {
            contacts: Vec<Contact>,
            groups: Vec<GroupParticipants>,
        }
        let v = self.bridge_call("contacts", "contacts()", vec![]).await?;
        let book: PageBook = serde_json::from_value(v)
            .map_err(|e| ClientError::Transient(format!("unreadable contacts: {e}")))?;
        Ok(AddressBook {
            contacts: book.contacts,
            groups: book.groups,
        })
    }

    /// Up to `limit` messages of one chat; with `after`, only those newer
    /// than that mark, and the page stops loading earlier pages once it
    /// holds a message the mark covers.
    pub(super) async fn messages(
        &self,
        chat_id: &str,
        limit: u32,
        after: Option<&MessageMark>,
    ) -> Result<Vec<Message>, ClientError> {
        let after = after.map(|m| json!({ "t": m.timestamp, "ids": m.ids }));
        let v = self
            .bridge_call(
                "messages",
                "messages(arguments[0], arguments[1], arguments[2])",
                vec![json!(chat_id), json!(limit), after.unwrap_or(Value::Null)],
            )
            .await?;
        let page: PageMessages = serde_json::from_value(v)
            .map_err(|e| ClientError::Transient(format!("unreadable messages: {e}")))?;
        tracing::debug!(chat_id, style = %page.style, n = page.messages.len(), "messages fetched");
        Ok(page
            .messages
            .into_iter()
            .map(|m| m.into_message(Some(chat_id)))
            .collect())
    }

    /// A deepen's read (see `W.earlier` in the bridge): up to `req.limit`
    /// messages of one chat older than `req.before`, loading earlier pages
    /// until the page holds them, the history starts, or `req.not_before`.
    pub(super) async fn earlier(
        &self,
        chat_id: &str,
        req: &HistoryRequest,
    ) -> Result<Vec<Message>, ClientError> {
        let before = json!({ "t": req.before.timestamp, "ids": req.before.ids });
        let v = self
            .bridge_call(
                "earlier",
                "earlier(arguments[0], arguments[1], arguments[2], arguments[3])",
                vec![
                    json!(chat_id),
                    json!(req.limit),
                    before,
                    json!(req.not_before),
                ],
            )
            .await?;
        let page: PageMessages = serde_json::from_value(v)
            .map_err(|e| ClientError::Transient(format!("unreadable messages: {e}")))?;
        tracing::debug!(chat_id, style = %page.style, n = page.messages.len(), "earlier messages fetched");
        Ok(page
            .messages
            .into_iter()
            .map(|m| m.into_message(Some(chat_id)))
            .collect())
    }

    /// Starts WhatsApp Web's "link with phone number" flow for `phone`
    /// (`+` and digits): the bridge walks the login screens and queues a
    /// `pairing_code` event each time the page shows a new code.
    pub(super) async fn link_with_phone(&self, phone: &str) -> Result<(), WebDriverError> {
        self.bridge_call(
            "link_with_phone",
            "linkWithPhone(arguments[0])",
            vec![json!(phone)],
        )
        .await
        .map(|_| ())
    }

    /// Logs the device out in the page; `false` when there is no bridge.
    pub(super) async fn logout(&self) -> Result<Value, WebDriverError> {
        self.exec(
            "logout",
            "if (window.__wasync) { return await window.__wasync.logout(); } return false;",
            vec![],
        )
        .await
    }
}

/// One drained batch.
#[derive(Debug, Deserialize)]
pub(super) struct Drained {
    pub(super) instance: String,
    pub(super) loaded: bool,
    pub(super) error: Option<String>,
    pub(super) events: Vec<PageEvent>,
}

#[derive(Debug, Deserialize)]
pub(super) struct PageEvent {
    pub(super) seq: u64,
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) data: Value,
}

/// A chat as the bridge serializes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageChat {
    id: String,
    name: Option<String>,
    is_group: bool,
    /// WhatsApp Web reports -1 for a chat the user marked unread.
    unread_count: i64,
    /// Seconds.
    t: i64,
    archive: bool,
    pin: bool,
}

impl From<PageChat> for Chat {
    fn from(c: PageChat) -> Chat {
        Chat {
            id: c.id,
            name: c.name,
            is_group: c.is_group,
            // -1 ("marked unread") and anything out of range would fail the
            // whole chat list, and with it every sync of the account.
            unread_count: c.unread_count.clamp(0, i64::from(u32::MAX)) as u32,
            archived: c.archive,
            pinned: c.pin,
            last_message_at: (c.t > 0).then_some(c.t * 1000),
        }
    }
}

/// A message as the bridge serializes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PageMessage {
    id: String,
    from_me: bool,
    remote: Option<String>,
    from: Option<String>,
    to: Option<String>,
    author: Option<String>,
    body: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    /// Seconds.
    t: i64,
    ack: i32,
    has_media: bool,
    quoted_id: Option<String>,
    /// When its newest edit was sent (ms), if it was edited.
    #[serde(default)]
    edited_at: Option<f64>,
    /// Deleted for everyone.
    #[serde(default)]
    revoked: bool,
    /// Its current reactions, where it has any.
    #[serde(default)]
    reactions: Vec<PageReaction>,
}

/// One reaction of a fetched message.
#[derive(Debug, Deserialize)]
struct PageReaction {
    reactor: String,
    emoji: String,
    /// ms.
    at: f64,
}

impl PageMessage {
    pub(super) fn into_message(self, chat_id: Option<&str>) -> Message {
        let chat_id = chat_id
            .map(str::to_owned)
            .or(self.remote)
            .unwrap_or_default();
        let mut changes = crate::domain::ChangeState {
            edited_at: self.edited_at.map(|t| t as i64),
            revoked: self.revoked,
            ..Default::default()
        };
        for r in self.reactions {
            changes.set_reaction(&r.reactor, &r.emoji, r.at as i64);
        }
        Message {
            id: self.id,
            chat_id,
            from: self.from.unwrap_or_default(),
            to: self.to.unwrap_or_default(),
            author: self.author,
            body: self.body,
            kind: self.kind,
            timestamp: self.t * 1000,
            from_me: self.from_me,
            has_media: self.has_media,
            ack: self.ack,
            quoted_id: self.quoted_id,
            tags: vec![],
            attributes: Default::default(),
            changes,
        }
    }
}

/// A change of a message as the bridge reports it (`edit`, `revoke`,
/// `ack`, `reaction`).
#[derive(Debug, Deserialize)]
pub(super) struct PageChange {
    id: String,
    remote: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    ack: Option<i32>,
    #[serde(default)]
    reactor: Option<String>,
    #[serde(default)]
    emoji: Option<String>,
    /// Ms (the page's numbers are floats).
    at: f64,
}

impl PageChange {
    /// The change of page event `kind`; `None` for one that names no
    /// chat, ack or reactor.
    pub(super) fn into_update(self, kind: &str) -> Option<MessageUpdate> {
        let at = self.at as i64;
        let change = match kind {
            "edit" => MessageChange::Edit {
                body: self.body,
                at,
            },
            "revoke" => MessageChange::Revoke { at },
            "ack" => MessageChange::Ack { ack: self.ack?, at },
            "reaction" => MessageChange::Reaction {
                reactor: self.reactor?,
                emoji: self.emoji.filter(|e| !e.is_empty()),
                at,
            },
            _ => return None,
        };
        // `fromMe_remote_id`: the chat is the key's second part.
        let chat_id = self
            .remote
            .or_else(|| self.id.split('_').nth(1).map(str::to_owned))
            .filter(|c| !c.is_empty())?;
        Some(MessageUpdate {
            chat_id,
            message_id: self.id,
            change,
        })
    }
}

#[derive(Debug, Deserialize)]
struct PageMessages {
    style: String,
    messages: Vec<PageMessage>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_fields_map_onto_the_domain() {
        let c: Chat = serde_json::from_value::<PageChat>(json!({
            "id": "1@g.us", "name": "G", "isGroup": true, "unreadCount": 2,
            "t": 1_700_000_000, "archive": false, "pin": true, "muteExpiration": 0
        }))
        .unwrap()
        .into();
        assert_eq!(c.last_message_at, Some(1_700_000_000_000));
        assert!(c.pinned && c.is_group && !c.archived);
        for (raw, want) in [(-1i64, 0u32), (i64::from(u32::MAX) + 5, u32::MAX)] {
            let c: Chat = serde_json::from_value::<PageChat>(json!({
                "id": "2@c.us", "name": null, "isGroup": false, "unreadCount": raw,
                "t": 0, "archive": false, "pin": false
            }))
            .unwrap()
            .into();
            assert_eq!(c.unread_count, want, "unreadCount {raw}");
        }
        let m = serde_json::from_value::<PageMessage>(json!({
            "id": "true_1@g.us_ABC", "fromMe": true, "remote": "1@g.us", "from": "me@c.us",
            "to": "1@g.us", "author": null, "body": "hi", "type": "chat", "t": 5, "ack": 3,
            "hasMedia": false, "quotedId": null, "isNotification": false
        }))
        .unwrap()
        .into_message(None);
        assert_eq!(m.chat_id, "1@g.us");
        assert_eq!(m.timestamp, 5000);
        assert!(m.from_me);
    }

    #[test]
    fn page_changes_map_onto_message_updates() {
        let change = |kind: &str, v: Value| {
            serde_json::from_value::<PageChange>(v)
                .unwrap()
                .into_update(kind)
        };
        let u = change(
            "edit",
            json!({"id": "true_1@c.us_A", "remote": "1@c.us", "body": "new", "at": 5.0}),
        )
        .unwrap();
        assert_eq!(u.chat_id, "1@c.us");
        assert_eq!(
            u.change,
            MessageChange::Edit {
                body: Some("new".into()),
                at: 5
            }
        );
        // The chat from the key when the page gives none; an empty emoji
        // takes a reaction back.
        let u = change(
            "reaction",
            json!({"id": "false_2@g.us_B_3@c.us", "remote": null, "reactor": "3@c.us", "emoji": null, "at": 9}),
        )
        .unwrap();
        assert_eq!(u.chat_id, "2@g.us");
        assert!(matches!(
            u.change,
            MessageChange::Reaction { emoji: None, .. }
        ));
        assert!(change("ack", json!({"id": "x_1@c.us_C", "at": 1})).is_none());
        assert!(change("nope", json!({"id": "x_1@c.us_C", "at": 1})).is_none());
    }
}
