//! A small store with a bit of everything, and a snapshot of what the
//! store answers about it, for the layout migration tests.
//!
//! `tests/fixtures/embedded-layout1.redb` was written by [`write`] with the
//! store's first layout (JSON documents keyed by message id, commit
//! 040787c), and `embedded-layout1.json` is [`snapshot`] of it read by that
//! same code. A store of a later layout must open the file (migrating it)
//! and answer the same snapshot.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::domain::{
    Chat, Contact, GroupParticipants, Message, MessageChange, MessageUpdate, OutboxEvent,
    Participant, QuarantinedMessage, SessionId, SyncRun, SyncStatus, SyncTrigger,
};
use crate::storage::{ChatCommit, SessionRecord, Store};

/// The sessions [`write`] fills.
pub const SESSIONS: [&str; 2] = ["fixture", "fixture-2"];

const T0: i64 = 1_760_000_000_000;

fn chat(id: &str, last: Option<i64>) -> Chat {
    Chat {
        id: id.into(),
        name: Some(format!("Chat {id}")),
        is_group: id.ends_with("@g.us"),
        unread_count: 2,
        archived: id.starts_with('z'),
        pinned: false,
        last_message_at: last,
    }
}

/// Message `n` of `chat`; `t` seconds after [`T0`].
fn msg(chat: &str, n: u32, t: i64) -> Message {
    let group = chat.ends_with("@g.us");
    Message {
        id: format!("{}_{chat}_{n:016X}", n.is_multiple_of(3)),
        chat_id: chat.into(),
        from: if n.is_multiple_of(3) {
            "me@c.us".into()
        } else {
            chat.into()
        },
        to: if n.is_multiple_of(3) {
            chat.into()
        } else {
            "me@c.us".into()
        },
        author: (group && !n.is_multiple_of(3)).then(|| format!("49170{n:07}@c.us")),
        body: (n % 7 != 5).then(|| format!("message {n} of {chat} — ünïcødé ✓")),
        kind: if n % 4 == 1 {
            "image".into()
        } else {
            "chat".into()
        },
        timestamp: T0 + t * 1000,
        from_me: n.is_multiple_of(3),
        has_media: n % 4 == 1,
        ack: (n % 5) as i32 - 1,
        quoted_id: (n % 6 == 2).then(|| format!("quoted-{n}")),
        tags: if n.is_multiple_of(2) {
            vec!["tagged".into(), format!("n{n}")]
        } else {
            vec![]
        },
        attributes: if n % 3 == 1 {
            BTreeMap::from([("k".into(), format!("v{n}")), ("lang".into(), "de".into())])
        } else {
            BTreeMap::new()
        },
        changes: Default::default(),
    }
}

fn run(session: &str, sync_id: &str, status: SyncStatus) -> SyncRun {
    SyncRun {
        sync_id: sync_id.into(),
        session_id: session.into(),
        trigger: SyncTrigger::Auto,
        mode: Default::default(),
        limit_per_chat: 100,
        chat_ids: None,
        status,
        started_at: T0 + 500_000,
        finished_at: None,
        n_chats: 3,
        current_chat: 0,
        checkpoint: 0,
        checkpoint_chat_id: None,
        total_messages_synced: 0,
        next_seq: 0,
        failed_chats: vec![],
        skipped_chats: 0,
        quarantined: 0,
        reason: None,
        epoch: 0,
        checkpoint_synced_at: None,
        before: None,
        max_age_days: None,
    }
}

fn update(m: &Message, change: MessageChange) -> MessageUpdate {
    MessageUpdate {
        chat_id: m.chat_id.clone(),
        message_id: m.id.clone(),
        change,
    }
}

/// The message whose edit [`write`] kept pending: it never came.
pub fn waiting() -> Message {
    msg("491511111111@c.us", 20, 300)
}

/// Fills `store` through the port: two sessions, chats (a group with
/// members, one without messages), messages with every optional field, a
/// burst sharing one second, changes applied, one change waiting for its
/// message, a live message, quarantine, contacts, runs and events.
pub async fn write(store: &dyn Store) {
    let s = SessionId::parse(SESSIONS[0]).unwrap();
    let (a, g, e) = ("491511111111@c.us", "120363000000000001@g.us", "zz@c.us");
    store
        .put_session(&SessionRecord {
            session_id: s.to_string(),
            status: "ready".into(),
            provider: "simulator".into(),
            options: json!({"limitPerChat": 100}),
            created_at: T0,
            updated_at: T0 + 1,
            me: None,
            last_sync: None,
            active: true,
            epoch: 0,
        })
        .await
        .unwrap();
    store
        .upsert_chats(
            &s,
            &[
                chat(a, Some(T0 + 100_000)),
                chat(g, Some(T0 + 90_000)),
                chat(e, None),
            ],
        )
        .await
        .unwrap();
    store
        .put_participants(
            &s,
            &[GroupParticipants {
                chat_id: g.into(),
                participants: vec![
                    Participant {
                        id: "491701111111@c.us".into(),
                        is_admin: true,
                        is_super_admin: true,
                    },
                    Participant {
                        id: "123456789@lid".into(),
                        is_admin: false,
                        is_super_admin: false,
                    },
                ],
            }],
        )
        .await
        .unwrap();
    store
        .upsert_contacts(
            &s,
            &[
                Contact {
                    id: "491701111111@c.us".into(),
                    name: Some("Anna".into()),
                    pushname: Some("anna".into()),
                    number: Some("491701111111".into()),
                    is_business: false,
                    lid: Some("987654321@lid".into()),
                },
                Contact {
                    id: "123456789@lid".into(),
                    name: None,
                    pushname: Some("lid only".into()),
                    number: None,
                    is_business: true,
                    lid: None,
                },
            ],
        )
        .await
        .unwrap();
    // Chat a: 12 messages, 4..=6 in one second; oldest first, as a sync
    // writes them. Group g: 6 messages, one refused by a plugin.
    let a_msgs: Vec<Message> = (0..12)
        .map(|n| {
            msg(
                a,
                n,
                if (4..=6).contains(&n) {
                    40
                } else {
                    n as i64 * 10
                },
            )
        })
        .collect();
    let g_msgs: Vec<Message> = (0..6).map(|n| msg(g, n, 5 + n as i64 * 15)).collect();
    let refused = msg(g, 6, 99);
    let mut r = run(
        SESSIONS[0],
        "01990000-0000-7000-8000-000000000001",
        SyncStatus::Running,
    );
    r.checkpoint = 2;
    r.total_messages_synced = 18;
    store
        .commit_chats(
            &s,
            &[
                ChatCommit {
                    chat_id: a.into(),
                    messages: a_msgs.clone().into(),
                    quarantined: vec![],
                    synced_at: T0 + 200_000,
                },
                ChatCommit {
                    chat_id: g.into(),
                    messages: g_msgs.clone().into(),
                    quarantined: vec![QuarantinedMessage {
                        session_id: s.to_string(),
                        sync_id: Some(r.sync_id.clone()),
                        plugin: "chat-filter".into(),
                        reason: "refused".into(),
                        quarantined_at: T0 + 200_001,
                        message: refused,
                    }],
                    synced_at: T0 + 200_002,
                },
            ],
            &r,
        )
        .await
        .unwrap();
    let waiting = waiting();
    store
        .apply_changes(
            &s,
            &[
                update(
                    &a_msgs[1],
                    MessageChange::Edit {
                        body: Some("edited ✎".into()),
                        at: T0 + 400_000,
                    },
                ),
                update(
                    &a_msgs[2],
                    MessageChange::Reaction {
                        reactor: "491701111111@c.us".into(),
                        emoji: Some("👍".into()),
                        at: T0 + 400_001,
                    },
                ),
                update(
                    &a_msgs[2],
                    MessageChange::Reaction {
                        reactor: "123456789@lid".into(),
                        emoji: None,
                        at: T0 + 400_002,
                    },
                ),
                update(&a_msgs[3], MessageChange::Revoke { at: T0 + 400_003 }),
                update(
                    &g_msgs[0],
                    MessageChange::Ack {
                        ack: 4,
                        at: T0 + 400_004,
                    },
                ),
                // Its message is not stored: it waits.
                update(
                    &waiting,
                    MessageChange::Edit {
                        body: Some("edited before it came".into()),
                        at: T0 + 400_005,
                    },
                ),
            ],
            false,
        )
        .await
        .unwrap();
    // A live message.
    store.put_messages(&s, &[msg(a, 12, 130)]).await.unwrap();
    let mut done = r.clone();
    done.status = SyncStatus::Completed;
    done.finished_at = Some(T0 + 500_000);
    store
        .finish_sync(
            &done,
            &[OutboxEvent {
                event_id: "01990000-0000-7000-8000-0000000000e1".into(),
                pattern: "session_ready".into(),
                session_id: s.to_string(),
                data: json!({"sessionId": s.to_string(), "syncId": done.sync_id}),
                created_at: T0 + 500_001,
                published_at: None,
                attempts: 0,
            }],
        )
        .await
        .unwrap();

    // A second session with a chat of the same id.
    let s2 = SessionId::parse(SESSIONS[1]).unwrap();
    store
        .upsert_chats(&s2, &[chat(a, Some(T0 + 20_000))])
        .await
        .unwrap();
    let r2 = run(
        SESSIONS[1],
        "01990000-0000-7000-8000-000000000002",
        SyncStatus::Running,
    );
    store
        .commit_chats(
            &s2,
            &[ChatCommit {
                chat_id: a.into(),
                messages: (0..3).map(|n| msg(a, 100 + n, n as i64)).collect(),
                quarantined: vec![],
                synced_at: T0 + 600_000,
            }],
            &r2,
        )
        .await
        .unwrap();
}

/// Everything the store answers about the sessions [`write`] fills, as
/// JSON: records, chats, every message in listing order, counts, marks,
/// single-message reads, quarantine, runs, events and contacts.
pub async fn snapshot(store: &dyn Store) -> Value {
    let mut out = serde_json::Map::new();
    for name in SESSIONS {
        let s = SessionId::parse(name).unwrap();
        let chats = store.list_chats(&s, 100, None).await.unwrap().chats;
        let ids: Vec<String> = chats.iter().map(|c| c.chat.id.clone()).collect();
        let marks = store.message_marks(&s, &ids).await.unwrap();
        let mut per_chat = serde_json::Map::new();
        for id in &ids {
            let all = store.list_messages(&s, id, 1000, None).await.unwrap();
            // Paged two at a time, the listing is the same.
            let mut paged = Vec::new();
            let mut before = None;
            loop {
                let page = store
                    .list_messages(&s, id, 2, before.as_ref())
                    .await
                    .unwrap();
                let Some(last) = page.last() else { break };
                before = Some(crate::storage::MessageCursor {
                    timestamp: last.message.timestamp,
                    message_id: Some(last.message.id.clone()),
                });
                paged.extend(page);
            }
            assert_eq!(paged, all, "{name}/{id}: paging two at a time");
            let mut single = Vec::new();
            for m in &all {
                single.push(store.get_message(&s, &m.message.id).await.unwrap());
            }
            assert_eq!(single, all.iter().cloned().map(Some).collect::<Vec<_>>());
            let oldest = store.oldest_mark(&s, id).await.unwrap();
            per_chat.insert(
                id.clone(),
                json!({
                    "count": store.count_messages(&s, Some(id)).await.unwrap(),
                    "newest": marks.get(id).map(|m| json!([m.timestamp, m.ids])),
                    "oldest": oldest.map(|m| json!([m.timestamp, m.ids])),
                    "messages": all,
                }),
            );
        }
        out.insert(
            name.into(),
            json!({
                "session": store.get_session(&s).await.unwrap(),
                "chats": chats,
                "count": store.count_messages(&s, None).await.unwrap(),
                "messages": per_chat,
                "quarantine": store.list_quarantine(&s).await.unwrap(),
                "latestRun": store.latest_sync_run(&s).await.unwrap(),
                "events": store.session_events(&s).await.unwrap(),
                "contacts": store.list_contacts(&s, 100, None).await.unwrap(),
            }),
        );
    }
    Value::Object(out)
}
