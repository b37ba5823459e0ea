//! The storage contract of changes after the sync: edits, revokes, acks
//! and reactions applied in place, newest per field; changes that wait for
//! their message; a re-sync that keeps them; expiry and purge.

use super::{chat, msg, run_for, sid};
use crate::domain::{
    ChangeOutcome, Message, MessageChange, MessageUpdate, Reaction, SessionId, now_ms,
};
use crate::storage::{ChatCommit, Store};

/// Runs every check of this file.
pub async fn run_all(store: &dyn Store) {
    changes_apply_in_place_newest_wins(store).await;
    a_change_before_its_message_waits_for_it(store).await;
    a_resync_keeps_what_changed_after_the_sync(store).await;
    pending_changes_expire_and_go_with_a_purge(store).await;
    changes_and_rewrites_at_once_lose_nothing(store).await;
}

fn update(message: &Message, change: MessageChange) -> MessageUpdate {
    MessageUpdate {
        chat_id: message.chat_id.clone(),
        message_id: message.id.clone(),
        change,
    }
}

fn edit(body: &str, at: i64) -> MessageChange {
    MessageChange::Edit {
        body: Some(body.into()),
        at,
    }
}

fn react(who: &str, emoji: Option<&str>, at: i64) -> MessageChange {
    MessageChange::Reaction {
        reactor: who.into(),
        emoji: emoji.map(str::to_owned),
        at,
    }
}

async fn stored(store: &dyn Store, s: &SessionId, m: &Message) -> Message {
    store
        .get_message(s, &m.id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{}: {} is stored", store.kind(), m.id))
        .message
}

/// Each change kind lands in place, per field the newest wins whatever
/// the order (and a batch applied twice changes nothing the second time);
/// the message keeps its place in its chat; a revoke keeps the record and,
/// unless asked to keep it, not the body.
pub async fn changes_apply_in_place_newest_wins(store: &dyn Store) {
    let s = sid("changes");
    let c = "ch@c.us";
    store.upsert_chats(&s, &[chat(c, None)]).await.unwrap();
    let ms: Vec<Message> = (0..4).map(|n| msg(c, n)).collect();
    store.put_messages(&s, &ms).await.unwrap();
    let batch = vec![
        update(&ms[0], edit("newest text", 30)),
        update(&ms[0], edit("older text", 20)),
        update(&ms[1], MessageChange::Revoke { at: 40 }),
        update(&ms[2], MessageChange::Ack { ack: 3, at: 50 }),
        update(&ms[2], MessageChange::Ack { ack: 2, at: 45 }),
        update(&ms[3], react("x@c.us", Some("👍"), 60)),
        update(&ms[3], react("y@c.us", Some("❤️"), 61)),
        update(&ms[3], react("x@c.us", None, 62)),
    ];
    let out = store.apply_changes(&s, &batch, false).await.unwrap();
    assert_eq!(out.len(), batch.len(), "{}", store.kind());
    assert!(
        !out.contains(&ChangeOutcome::Pending),
        "{}: {out:?}",
        store.kind()
    );
    assert_eq!(out[0], ChangeOutcome::Applied, "{}", store.kind());
    assert_eq!(
        out[1],
        ChangeOutcome::Unchanged,
        "{}: older edit",
        store.kind()
    );
    let check = |m0: &Message, m1: &Message, m2: &Message, m3: &Message| {
        let k = store.kind();
        assert_eq!(m0.body.as_deref(), Some("newest text"), "{k}");
        assert_eq!(m0.changes.edited_at, Some(30), "{k}");
        assert!(m1.changes.revoked, "{k}");
        assert_eq!(m1.changes.revoked_at, Some(40), "{k}");
        assert_eq!(m1.body, None, "{k}: a revoked body goes");
        assert_eq!(m1.timestamp, ms[1].timestamp, "{k}");
        assert_eq!((m2.ack, m2.changes.ack_at), (3, Some(50)), "{k}");
        assert_eq!(
            m3.changes.reactions,
            [Reaction {
                reactor: "y@c.us".into(),
                emoji: "❤️".into(),
                at: 61
            }],
            "{k}"
        );
        assert_eq!(m3.changes.reactions_removed.len(), 1, "{k}");
    };
    let got = [
        stored(store, &s, &ms[0]).await,
        stored(store, &s, &ms[1]).await,
        stored(store, &s, &ms[2]).await,
        stored(store, &s, &ms[3]).await,
    ];
    check(&got[0], &got[1], &got[2], &got[3]);
    // Again, and reversed: the same documents, nothing applied.
    let mut reversed = batch.clone();
    reversed.reverse();
    let again = store.apply_changes(&s, &reversed, false).await.unwrap();
    assert!(
        again.iter().all(|o| *o == ChangeOutcome::Unchanged),
        "{}: {again:?}",
        store.kind()
    );
    for (m, want) in ms.iter().zip(&got) {
        assert_eq!(&stored(store, &s, m).await, want, "{}", store.kind());
    }
    // The listing shows them, in their places.
    let page = store.list_messages(&s, c, 10, None).await.unwrap();
    assert_eq!(page.len(), 4, "{}", store.kind());
    assert_eq!(page[3].message.body.as_deref(), Some("newest text"));
    assert!(page[2].message.changes.revoked);
    assert_eq!(store.count_messages(&s, Some(c)).await.unwrap(), 4);
    // A session that keeps revoked bodies keeps them.
    let kept = store
        .apply_changes(
            &s,
            &[update(&ms[0], MessageChange::Revoke { at: 70 })],
            true,
        )
        .await
        .unwrap();
    assert_eq!(kept, [ChangeOutcome::Applied]);
    let m0 = stored(store, &s, &ms[0]).await;
    assert!(m0.changes.revoked && m0.body.as_deref() == Some("newest text"));
    assert!(
        store
            .apply_changes(&s, &[], false)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A change for a message not stored yet waits for it (the newest per
/// field) and is applied when the message is stored, by a live write or a
/// sync's commit; then nothing is pending any more.
pub async fn a_change_before_its_message_waits_for_it(store: &dyn Store) {
    let s = sid("early");
    let c = "early@c.us";
    store.upsert_chats(&s, &[chat(c, None)]).await.unwrap();
    let live = msg(c, 1);
    let synced = msg(c, 2);
    let out = store
        .apply_changes(
            &s,
            &[
                update(&live, react("r@c.us", Some("🔥"), 10)),
                update(&live, edit("first edit", 11)),
                update(&live, edit("second edit", 12)),
                update(&synced, MessageChange::Revoke { at: 13 }),
            ],
            false,
        )
        .await
        .unwrap();
    assert_eq!(out, [ChangeOutcome::Pending; 4], "{}", store.kind());
    assert!(store.get_message(&s, &live.id).await.unwrap().is_none());
    let st = store
        .put_messages(&s, std::slice::from_ref(&live))
        .await
        .unwrap();
    assert_eq!(st.inserted, 1, "{}", store.kind());
    assert!(st.changes_applied >= 2, "{}: {st:?}", store.kind());
    let m = stored(store, &s, &live).await;
    assert_eq!(m.body.as_deref(), Some("second edit"), "{}", store.kind());
    assert_eq!(m.changes.edited_at, Some(12));
    assert_eq!(m.changes.reactions.len(), 1);
    let stats = store
        .commit_chats(
            &s,
            &[ChatCommit {
                chat_id: c.into(),
                messages: vec![synced.clone()].into(),
                synced_at: now_ms(),
                ..Default::default()
            }],
            &run_for(&s),
        )
        .await
        .unwrap();
    assert_eq!(stats[0].changes_applied, 1, "{}", store.kind());
    let m = stored(store, &s, &synced).await;
    assert!(m.changes.revoked && m.body.is_none(), "{}", store.kind());
    // Applied once: storing the messages again applies nothing.
    let st = store.put_messages(&s, &[live, synced]).await.unwrap();
    assert_eq!(st.changes_applied, 0, "{}", store.kind());
    assert_eq!(st.unchanged, 2, "{}: {st:?}", store.kind());
}

/// A re-sync (or a repeated live message) of a message that changed since
/// it was written keeps the changes: the sync's copy only wins a field it
/// has newer news of; new plugin output (tags) is taken.
pub async fn a_resync_keeps_what_changed_after_the_sync(store: &dyn Store) {
    let s = sid("resync");
    let c = "rs@c.us";
    store.upsert_chats(&s, &[chat(c, None)]).await.unwrap();
    let m = msg(c, 1);
    let commit = |messages: Vec<Message>| ChatCommit {
        chat_id: c.into(),
        messages: messages.into(),
        synced_at: now_ms(),
        ..Default::default()
    };
    let run = run_for(&s);
    store
        .commit_chats(&s, &[commit(vec![m.clone()])], &run)
        .await
        .unwrap();
    store
        .apply_changes(
            &s,
            &[
                update(&m, edit("edited", 10)),
                update(&m, MessageChange::Ack { ack: 4, at: 11 }),
                update(&m, react("r@c.us", Some("👍"), 12)),
            ],
            false,
        )
        .await
        .unwrap();
    let changed = stored(store, &s, &m).await;
    // The same old copy again: nothing to write.
    let stats = store
        .commit_chats(&s, &[commit(vec![m.clone()])], &run)
        .await
        .unwrap();
    assert_eq!(
        (stats[0].updated, stats[0].unchanged),
        (0, 1),
        "{}",
        store.kind()
    );
    assert_eq!(stored(store, &s, &m).await, changed, "{}", store.kind());
    // A copy with new tags: the tags change, the changes stay.
    let mut tagged = m.clone();
    tagged.tags = vec!["new".into()];
    let st = store.put_messages(&s, &[tagged]).await.unwrap();
    assert_eq!(st.updated, 1, "{}", store.kind());
    let now = stored(store, &s, &m).await;
    assert_eq!(now.tags, ["new"]);
    assert_eq!(now.body.as_deref(), Some("edited"), "{}", store.kind());
    assert_eq!((now.ack, now.changes.ack_at), (4, Some(11)));
    assert_eq!(now.changes.reactions, changed.changes.reactions);
}

/// Pending changes whose message never came expire; a purge takes the
/// session's pending changes (an edit carries a body) with it.
pub async fn pending_changes_expire_and_go_with_a_purge(store: &dyn Store) {
    let s = sid("expire");
    let m = msg("gone@c.us", 1);
    store
        .apply_changes(&s, &[update(&m, edit("secret edit", 5))], false)
        .await
        .unwrap();
    // Not yet expired.
    let pruned = store
        .prune_pending_changes(now_ms() - 60_000)
        .await
        .unwrap();
    let _ = pruned;
    let early = msg("gone@c.us", 2);
    store
        .apply_changes(&s, &[update(&early, edit("other edit", 5))], false)
        .await
        .unwrap();
    assert!(
        store.prune_pending_changes(now_ms() + 1_000).await.unwrap() >= 2,
        "{}",
        store.kind()
    );
    // Gone: the messages arrive without the edits.
    let st = store
        .put_messages(&s, std::slice::from_ref(&m))
        .await
        .unwrap();
    assert_eq!(st.changes_applied, 0, "{}", store.kind());
    assert_eq!(stored(store, &s, &m).await.body, m.body);
    // Kept again, then purged with the session.
    let p = sid("purge-pending");
    store
        .apply_changes(&p, &[update(&early, edit("edit", 6))], false)
        .await
        .unwrap();
    store.delete_session(&p, true).await.unwrap();
    let st = store
        .put_messages(&p, std::slice::from_ref(&early))
        .await
        .unwrap();
    assert_eq!(st.changes_applied, 0, "{}: purged", store.kind());
}

/// A sync rewriting messages while changes land on them (the session's
/// sync task and its actor write at once): every change and every rewrite
/// is kept.
pub async fn changes_and_rewrites_at_once_lose_nothing(store: &dyn Store) {
    let s = sid("race");
    let c = "race@c.us";
    store.upsert_chats(&s, &[chat(c, None)]).await.unwrap();
    let ms: Vec<Message> = (0..30).map(|n| msg(c, n)).collect();
    store.put_messages(&s, &ms).await.unwrap();
    let changes = async {
        for (i, batch) in ms.chunks(5).enumerate() {
            let updates: Vec<MessageUpdate> = batch
                .iter()
                .map(|m| update(m, react("r@c.us", Some("👍"), 100 + i as i64)))
                .collect();
            store.apply_changes(&s, &updates, false).await.unwrap();
        }
    };
    let rewrites = async {
        for round in 0..4 {
            let tagged: Vec<Message> = ms
                .iter()
                .map(|m| {
                    let mut m = m.clone();
                    m.tags = vec![format!("round-{round}")];
                    m
                })
                .collect();
            store.put_messages(&s, &tagged).await.unwrap();
        }
    };
    futures_util::join!(changes, rewrites);
    for m in &ms {
        let got = stored(store, &s, m).await;
        assert_eq!(got.changes.reactions.len(), 1, "{}: {}", store.kind(), m.id);
        assert_eq!(got.tags, ["round-3"], "{}: {}", store.kind(), m.id);
    }
}
