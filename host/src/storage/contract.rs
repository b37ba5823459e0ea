//! The storage contract: behaviour every [`Store`] adapter must show.
//!
//! Each check uses its own random session ids, so the suite can run against
//! a shared server (and in parallel with itself). Adapters call
//! [`run_all`] from their tests; a failing check panics with the adapter's
//! name and what differed.

pub mod changes;
pub mod contacts;
pub mod history;
pub mod webhooks;

use std::collections::HashMap;

use super::{ChatCommit, SessionRecord, Store};
use crate::domain::{
    Chat, Message, OutboxEvent, QuarantinedMessage, SessionId, SyncRun, SyncStatus, SyncTrigger,
    now_ms,
};

fn sid(tag: &str) -> SessionId {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    SessionId::parse(&format!("c-{tag}-{}", &suffix[..12])).unwrap()
}

fn chat(id: &str, last: Option<i64>) -> Chat {
    Chat {
        id: id.into(),
        name: Some(format!("Chat {id}")),
        is_group: id.ends_with("@g.us"),
        unread_count: 1,
        archived: false,
        pinned: false,
        last_message_at: last,
    }
}

pub(super) fn msg(chat: &str, n: i64) -> Message {
    Message {
        id: format!("{chat}-m{n}"),
        chat_id: chat.into(),
        from: chat.into(),
        to: "me@c.us".into(),
        author: None,
        body: Some(format!("hello {n}")),
        kind: "chat".into(),
        timestamp: 1_700_000_000_000 + n * 1000,
        from_me: n % 2 == 0,
        has_media: false,
        ack: 1,
        quoted_id: None,
        tags: vec![],
        attributes: Default::default(),
        changes: Default::default(),
    }
}

fn run_for(s: &SessionId) -> SyncRun {
    SyncRun {
        sync_id: uuid::Uuid::now_v7().to_string(),
        session_id: s.to_string(),
        trigger: SyncTrigger::Auto,
        mode: Default::default(),
        limit_per_chat: 100,
        chat_ids: None,
        status: SyncStatus::Running,
        started_at: now_ms(),
        finished_at: None,
        n_chats: 0,
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

/// Runs every check.
pub async fn run_all(store: &dyn Store) {
    sessions_round_trip(store).await;
    chats_upsert_and_page(store).await;
    messages_are_idempotent_and_paged(store).await;
    sync_runs_and_checkpoints(store).await;
    outbox_lifecycle(store).await;
    quarantine_and_purge(store).await;
    stale_epochs_are_fenced_off(store).await;
    an_event_is_queued_once(store).await;
    a_burst_in_one_second_pages_whole(store).await;
    retention_and_purge_leave_no_bodies(store).await;
    marks_are_the_newest_stored_messages(store).await;
    changes::run_all(store).await;
    history::oldest_marks_are_the_oldest_stored_messages(store).await;
    contacts::run_all(store).await;
}

/// A chat's mark is its newest stored timestamp with every id stored at
/// it (a burst in one second included, more than a page of it too); live
/// messages move it; chats without messages, and other sessions' chats,
/// have none; the adapter's answer equals the listing's.
pub async fn marks_are_the_newest_stored_messages(store: &dyn Store) {
    let s = sid("marks");
    let other = sid("marks-other");
    let (a, b, c, empty) = ("a@c.us", "b@g.us", "c@c.us", "e@c.us");
    let mut burst: Vec<Message> = (0..40).map(|n| msg(b, n)).collect();
    // 37 messages of `b` share its newest second.
    for (i, m) in burst.iter_mut().enumerate().skip(3) {
        m.timestamp = 1_700_000_100_000;
        m.id = format!("{b}-burst{i:02}");
    }
    let commits = vec![
        ChatCommit {
            chat_id: a.into(),
            messages: (0..5).map(|n| msg(a, n)).collect(),
            synced_at: now_ms(),
            ..Default::default()
        },
        ChatCommit {
            chat_id: b.into(),
            messages: burst.into(),
            synced_at: now_ms(),
            ..Default::default()
        },
    ];
    store
        .upsert_chats(
            &s,
            &[
                chat(a, None),
                chat(b, None),
                chat(c, None),
                chat(empty, None),
            ],
        )
        .await
        .unwrap();
    store
        .commit_chats(&s, &commits, &run_for(&s))
        .await
        .unwrap();
    store
        .put_messages(&s, &[msg(c, 7), msg(c, 9)])
        .await
        .unwrap();
    store.put_messages(&other, &[msg(a, 50)]).await.unwrap();

    let ids: Vec<String> = [a, b, c, empty].iter().map(|x| x.to_string()).collect();
    let marks = store.message_marks(&s, &ids).await.unwrap();
    assert_eq!(marks.len(), 3, "{}: {marks:?}", store.kind());
    assert_eq!(marks[a].timestamp, msg(a, 4).timestamp, "{}", store.kind());
    assert_eq!(marks[a].ids, vec![msg(a, 4).id]);
    assert_eq!(marks[b].timestamp, 1_700_000_100_000);
    let mut want: Vec<String> = (3..40).map(|i| format!("{b}-burst{i:02}")).collect();
    want.sort();
    let mut got = marks[b].ids.clone();
    got.sort();
    assert_eq!(got, want, "{}: the whole burst", store.kind());
    assert_eq!(marks[c].ids, vec![msg(c, 9).id]);
    assert!(!marks.contains_key(empty));
    for id in &ids {
        let listed = super::mark_from_listing(store, &s, id).await.unwrap();
        let mut listed_ids = listed.as_ref().map(|m| m.ids.clone()).unwrap_or_default();
        listed_ids.sort();
        let mut own = marks.get(id).map(|m| m.ids.clone()).unwrap_or_default();
        own.sort();
        assert_eq!(
            listed.map(|m| m.timestamp),
            marks.get(id).map(|m| m.timestamp),
            "{}: {id}",
            store.kind()
        );
        assert_eq!(listed_ids, own, "{}: {id}", store.kind());
    }
    // A live message moves the mark; `is_new` sees only what is newer.
    store.put_messages(&s, &[msg(a, 6)]).await.unwrap();
    let moved = store.message_marks(&s, &ids[..1]).await.unwrap();
    assert_eq!(moved[a].ids, vec![msg(a, 6).id]);
    assert!(!moved[a].is_new(&msg(a, 6)) && !moved[a].is_new(&msg(a, 5)));
    assert!(moved[a].is_new(&msg(a, 7)));
    assert!(store.message_marks(&s, &[]).await.unwrap().is_empty());

    // The newest times agree with the marks, and an older message written
    // later does not lower them.
    store.put_messages(&s, &[msg(c, -5)]).await.unwrap();
    let marks = store.message_marks(&s, &ids).await.unwrap();
    let times = store.newest_message_times(&s, &ids).await.unwrap();
    let want: HashMap<String, i64> = marks
        .iter()
        .map(|(chat, m)| (chat.clone(), m.timestamp))
        .collect();
    assert_eq!(times, want, "{}", store.kind());
    assert_eq!(times[c], msg(c, 9).timestamp);
    assert!(
        store
            .newest_message_times(&s, &[])
            .await
            .unwrap()
            .is_empty()
    );
}

/// Published events and quarantined messages go once old enough (pending
/// events never); a purge takes the session's outbox and quarantine with
/// it; the quarantine pages by message id and can be cleared.
pub async fn retention_and_purge_leave_no_bodies(store: &dyn Store) {
    let s = sid("retain");
    let mut old = OutboxEvent::new(
        "message_received",
        &s,
        serde_json::json!({"body": "secret"}),
    );
    old.created_at = 1_000;
    let fresh = OutboxEvent::new("message_received", &s, serde_json::json!({"body": "new"}));
    let pending = OutboxEvent::new("session_ready", &s, serde_json::json!({}));
    for e in [&old, &fresh, &pending] {
        store.enqueue_event(e).await.unwrap();
    }
    store
        .mark_published(std::slice::from_ref(&old.event_id), 5_000)
        .await
        .unwrap();
    store
        .mark_published(std::slice::from_ref(&fresh.event_id), 9_000)
        .await
        .unwrap();
    let q = |n: i64, at: i64| QuarantinedMessage {
        session_id: s.to_string(),
        sync_id: None,
        plugin: "redact".into(),
        reason: "trap".into(),
        quarantined_at: at,
        message: msg("q@c.us", n),
    };
    store
        .put_quarantine(&s, &[q(1, 100), q(2, 8_000), q(3, 8_000), q(4, 8_000)])
        .await
        .unwrap();
    let pruned = store.prune(6_000, 6_000).await.unwrap();
    assert!(
        pruned.events >= 1 && pruned.quarantined >= 1,
        "{}: {pruned:?}",
        store.kind()
    );
    let left: Vec<String> = store
        .session_events(&s)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(
        left.len(),
        2,
        "{}: the fresh and the pending stay",
        store.kind()
    );
    assert!(!left.contains(&old.event_id));
    // Paged by message id.
    let first = store.quarantine_page(&s, 2, None).await.unwrap();
    let ids: Vec<&str> = first.iter().map(|x| x.message.id.as_str()).collect();
    assert_eq!(ids, ["q@c.us-m2", "q@c.us-m3"], "{}", store.kind());
    let next = store
        .quarantine_page(&s, 2, Some("q@c.us-m3"))
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].message.id, "q@c.us-m4");
    assert_eq!(store.clear_quarantine(&s).await.unwrap(), 3);
    assert!(store.list_quarantine(&s).await.unwrap().is_empty());
    // A purge takes what is left of the session's outbox.
    store.delete_session(&s, true).await.unwrap();
    assert!(
        store.session_events(&s).await.unwrap().is_empty(),
        "{}: purge leaves no event bodies",
        store.kind()
    );
}

/// WhatsApp timestamps are whole seconds: 500 messages of one second,
/// paged 7 at a time with the cursor, come back each exactly once, in the
/// listing order (newest first, ties by message id).
pub async fn a_burst_in_one_second_pages_whole(store: &dyn Store) {
    use super::MessageCursor;
    let s = sid("burst");
    store
        .upsert_chats(&s, &[chat("b@c.us", Some(1))])
        .await
        .unwrap();
    let mut messages: Vec<Message> = (0..500).map(|n| msg("b@c.us", n)).collect();
    for m in &mut messages {
        m.timestamp = 1_700_000_000_000;
    }
    // One older message, so the end of the burst is not the end of the chat.
    let mut older = msg("b@c.us", 999);
    older.timestamp = 1_699_999_999_000;
    messages.push(older);
    store
        .commit_chats(
            &s,
            &[ChatCommit {
                chat_id: "b@c.us".into(),
                messages: messages.into(),
                quarantined: vec![],
                synced_at: 1,
            }],
            &run_for(&s),
        )
        .await
        .unwrap();
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<MessageCursor> = None;
    loop {
        let page = store
            .list_messages(&s, "b@c.us", 7, cursor.as_ref())
            .await
            .unwrap();
        seen.extend(page.iter().map(|m| m.message.id.clone()));
        if page.len() < 7 {
            break;
        }
        let last = &page[page.len() - 1].message;
        cursor = Some(MessageCursor {
            timestamp: last.timestamp,
            message_id: Some(last.id.clone()),
        });
        assert!(seen.len() <= 501, "{}: paging does not end", store.kind());
    }
    let mut burst: Vec<String> = (0..500).map(|n| format!("b@c.us-m{n}")).collect();
    burst.sort();
    burst.push("b@c.us-m999".into());
    assert_eq!(
        seen,
        burst,
        "{}: every message once, in order",
        store.kind()
    );
}

/// A writer with an older lease epoch than the stored record's writes
/// nothing: not the session record, not the run, not the run's messages or
/// its event.
pub async fn stale_epochs_are_fenced_off(store: &dyn Store) {
    use super::StoreError;
    let s = sid("fence");
    let mut rec = SessionRecord {
        session_id: s.to_string(),
        status: "ready".into(),
        provider: "simulator".into(),
        options: serde_json::json!({}),
        created_at: 1,
        updated_at: 1,
        me: None,
        last_sync: None,
        active: true,
        epoch: 3,
    };
    store.put_session(&rec).await.unwrap();
    rec.epoch = 2;
    rec.status = "stopped".into();
    let err = store.put_session(&rec).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Fenced(_)),
        "{}: {err}",
        store.kind()
    );
    let got = store.get_session(&s).await.unwrap().unwrap();
    assert_eq!(
        (got.status.as_str(), got.epoch),
        ("ready", 3),
        "{}",
        store.kind()
    );
    rec.epoch = 4;
    store.put_session(&rec).await.expect("a newer epoch writes");

    store
        .upsert_chats(&s, &[chat("a@c.us", Some(1))])
        .await
        .unwrap();
    let mut run = run_for(&s);
    run.epoch = 5;
    store.put_sync_run(&run).await.unwrap();
    let mut stale = run.clone();
    stale.epoch = 4;
    stale.checkpoint = 1;
    let commit = ChatCommit {
        chat_id: "a@c.us".into(),
        messages: vec![msg("a@c.us", 1)].into(),
        quarantined: vec![],
        synced_at: 5,
    };
    let err = store
        .commit_chats(&s, std::slice::from_ref(&commit), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Fenced(_)),
        "{}: {err}",
        store.kind()
    );
    assert_eq!(
        store.count_messages(&s, None).await.unwrap(),
        0,
        "{}: a fenced commit writes no message",
        store.kind()
    );
    assert!(matches!(
        store.put_sync_run(&stale).await.unwrap_err(),
        StoreError::Fenced(_)
    ));
    stale.status = SyncStatus::Completed;
    let ev = OutboxEvent::for_run("session_ready", &s, &run.sync_id, serde_json::json!({}));
    assert!(matches!(
        store
            .finish_sync(&stale, std::slice::from_ref(&ev))
            .await
            .unwrap_err(),
        StoreError::Fenced(_)
    ));
    assert!(
        store.session_events(&s).await.unwrap().is_empty(),
        "{}: a fenced finish queues no event",
        store.kind()
    );
    let got = store.get_sync_run(&run.sync_id).await.unwrap().unwrap();
    assert_eq!((got.checkpoint, got.epoch), (0, 5), "{}", store.kind());
    // The current owner goes on.
    run.checkpoint = 1;
    store
        .commit_chats(&s, std::slice::from_ref(&commit), &run)
        .await
        .unwrap();
    assert_eq!(store.count_messages(&s, None).await.unwrap(), 1);
}

/// Two hosts completing one run queue its event once, and a published
/// event queued again is not published again.
pub async fn an_event_is_queued_once(store: &dyn Store) {
    let s = sid("once");
    let a = OutboxEvent::for_run("session_ready", &s, "run-1", serde_json::json!({"by": "a"}));
    let b = OutboxEvent::for_run("session_ready", &s, "run-1", serde_json::json!({"by": "b"}));
    assert_eq!(a.event_id, b.event_id, "the id is the run's");
    store.enqueue_event(&a).await.unwrap();
    store.enqueue_event(&b).await.unwrap();
    let events = store.session_events(&s).await.unwrap();
    assert_eq!(events.len(), 1, "{}", store.kind());
    assert_eq!(
        events[0].data["by"],
        "a",
        "{}: the first stays",
        store.kind()
    );
    store
        .mark_published(std::slice::from_ref(&a.event_id), 9)
        .await
        .unwrap();
    store.enqueue_event(&b).await.unwrap();
    let events = store.session_events(&s).await.unwrap();
    assert_eq!(
        events[0].published_at,
        Some(9),
        "{}: not pending again",
        store.kind()
    );
}

/// On a store several relays share, a claimed event is not handed to a
/// second claimer until the claim runs out.
pub async fn claims_share_the_outbox(store: &dyn Store) {
    let s = sid("claim");
    let e = OutboxEvent::new("session_ready", &s, serde_json::json!({}));
    store.enqueue_event(&e).await.unwrap();
    let mine = |v: Vec<OutboxEvent>| v.into_iter().any(|x| x.event_id == e.event_id);
    assert!(mine(
        store.claim_events("h1", 10_000, 60_000).await.unwrap()
    ));
    assert!(
        !mine(store.claim_events("h2", 10_000, 60_000).await.unwrap()),
        "{}: claimed by h1",
        store.kind()
    );
    // A short claim that runs out is taken again (at least once).
    let f = OutboxEvent::new("session_ready", &s, serde_json::json!({}));
    store.enqueue_event(&f).await.unwrap();
    let has_f = |v: Vec<OutboxEvent>| v.into_iter().any(|x| x.event_id == f.event_id);
    assert!(has_f(store.claim_events("h1", 10_000, 1).await.unwrap()));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(has_f(
        store.claim_events("h2", 10_000, 60_000).await.unwrap()
    ));
    store
        .mark_published(&[e.event_id.clone(), f.event_id.clone()], 1)
        .await
        .unwrap();
}

pub async fn sessions_round_trip(store: &dyn Store) {
    let s = sid("sess");
    assert!(store.get_session(&s).await.unwrap().is_none());
    let mut rec = SessionRecord {
        session_id: s.to_string(),
        status: "starting".into(),
        provider: "simulator".into(),
        options: serde_json::json!({"limitPerChat": 5}),
        created_at: now_ms(),
        updated_at: now_ms(),
        me: None,
        last_sync: None,
        active: true,
        epoch: 0,
    };
    store.put_session(&rec).await.unwrap();
    rec.status = "ready".into();
    store.put_session(&rec).await.unwrap();
    assert_eq!(store.get_session(&s).await.unwrap(), Some(rec.clone()));
    assert!(
        store
            .list_sessions()
            .await
            .unwrap()
            .iter()
            .any(|r| r == &rec),
        "{}: list_sessions misses a stored session",
        store.kind()
    );
    store.delete_session(&s, false).await.unwrap();
    assert!(store.get_session(&s).await.unwrap().is_none());
}

pub async fn chats_upsert_and_page(store: &dyn Store) {
    let s = sid("chats");
    let chats = vec![
        chat("a@c.us", Some(3_000)),
        chat("b@g.us", Some(5_000)),
        chat("c@c.us", None),
        chat("d@c.us", Some(4_000)),
        chat("e@c.us", Some(5_000)),
    ];
    store.upsert_chats(&s, &chats).await.unwrap();
    // Upserting again must not duplicate.
    store.upsert_chats(&s, &chats).await.unwrap();

    let page = store.list_chats(&s, 100, None).await.unwrap();
    let ids: Vec<_> = page.chats.iter().map(|c| c.chat.id.as_str()).collect();
    assert_eq!(
        ids,
        ["b@g.us", "e@c.us", "d@c.us", "a@c.us", "c@c.us"],
        "{}: chats must be newest activity first, ties by id, no activity last",
        store.kind()
    );
    assert!(page.next_cursor.is_none());

    // Paging walks the same order without gaps or repeats.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = store.list_chats(&s, 2, cursor.as_deref()).await.unwrap();
        seen.extend(p.chats.iter().map(|c| c.chat.id.clone()));
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ids, "{}: paging", store.kind());

    // Activity moves a chat to the front; counters survive an upsert.
    let run = run_for(&s);
    store
        .commit_chats(
            &s,
            &[ChatCommit {
                chat_id: "c@c.us".into(),
                messages: vec![msg("c@c.us", 1)].into(),
                quarantined: vec![],
                synced_at: 42,
            }],
            &run,
        )
        .await
        .unwrap();
    store
        .upsert_chats(&s, &[chat("c@c.us", Some(9_000))])
        .await
        .unwrap();
    let page = store.list_chats(&s, 1, None).await.unwrap();
    assert_eq!(page.chats[0].chat.id, "c@c.us");
    assert_eq!(page.chats[0].message_count, 1);
    assert_eq!(page.chats[0].synced_at, Some(42));
    let all = store.list_chats(&s, 100, None).await.unwrap();
    assert_eq!(all.chats.len(), 5, "{}: re-upsert duplicated", store.kind());
    assert_eq!(
        store
            .get_chat(&s, "c@c.us")
            .await
            .unwrap()
            .unwrap()
            .chat
            .last_message_at,
        Some(9_000)
    );
    assert!(store.get_chat(&s, "zz").await.unwrap().is_none());
}

pub async fn messages_are_idempotent_and_paged(store: &dyn Store) {
    let s = sid("msgs");
    store
        .upsert_chats(&s, &[chat("a@c.us", Some(1)), chat("b@c.us", Some(2))])
        .await
        .unwrap();
    let a: Vec<Message> = (0..50).map(|n| msg("a@c.us", n)).collect();
    let b: Vec<Message> = (0..7).map(|n| msg("b@c.us", n)).collect();
    let run = run_for(&s);
    let commits = [
        ChatCommit {
            chat_id: "a@c.us".into(),
            messages: a.clone().into(),
            quarantined: vec![],
            synced_at: 1,
        },
        ChatCommit {
            chat_id: "b@c.us".into(),
            messages: b.clone().into(),
            quarantined: vec![],
            synced_at: 1,
        },
    ];
    let stats = store.commit_chats(&s, &commits, &run).await.unwrap();
    assert_eq!(stats[0].inserted, 50);
    assert_eq!(stats[1].inserted, 7);

    // The same write again changes nothing and duplicates nothing.
    let stats = store.commit_chats(&s, &commits, &run).await.unwrap();
    assert_eq!(stats[0].inserted, 0, "{}: re-sync inserted", store.kind());
    assert_eq!(stats[0].unchanged + stats[0].updated, 50);
    assert_eq!(store.count_messages(&s, Some("a@c.us")).await.unwrap(), 50);
    assert_eq!(store.count_messages(&s, None).await.unwrap(), 57);
    assert_eq!(
        store
            .get_chat(&s, "a@c.us")
            .await
            .unwrap()
            .unwrap()
            .message_count,
        50,
        "{}: messageCount must count stored messages once",
        store.kind()
    );

    // A changed field (ack) is an update, not an insert.
    let mut changed = a[10].clone();
    changed.ack = 3;
    let st = store.put_messages(&s, &[changed.clone()]).await.unwrap();
    assert_eq!((st.inserted, st.updated), (0, 1));
    assert_eq!(store.count_messages(&s, Some("a@c.us")).await.unwrap(), 50);

    // A live message adds to the count.
    let st = store.put_messages(&s, &[msg("a@c.us", 99)]).await.unwrap();
    assert_eq!(st.inserted, 1);
    assert_eq!(
        store
            .get_chat(&s, "a@c.us")
            .await
            .unwrap()
            .unwrap()
            .message_count,
        51
    );

    // Newest first, paged with `before`.
    let page = store.list_messages(&s, "a@c.us", 20, None).await.unwrap();
    assert_eq!(page.len(), 20);
    assert_eq!(page[0].message.id, "a@c.us-m99");
    assert_eq!(page[1].message.id, "a@c.us-m49");
    assert!(
        page.windows(2)
            .all(|w| w[0].message.timestamp > w[1].message.timestamp)
    );
    let older = store
        .list_messages(
            &s,
            "a@c.us",
            100,
            Some(&super::MessageCursor {
                timestamp: page[19].message.timestamp,
                message_id: None,
            }),
        )
        .await
        .unwrap();
    assert_eq!(older.len(), 31);
    assert_eq!(older[0].message.id, "a@c.us-m30");
    let updated = store
        .list_messages(&s, "a@c.us", 100, None)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.message.id == changed.id)
        .unwrap();
    assert_eq!(updated.message.ack, 3);
    assert_eq!(updated.session_id, s.as_str());
    assert!(
        store
            .list_messages(&s, "nope", 10, None)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn sync_runs_and_checkpoints(store: &dyn Store) {
    let s = sid("runs");
    assert!(store.latest_sync_run(&s).await.unwrap().is_none());
    let mut first = run_for(&s);
    first.started_at = 1_000;
    store.put_sync_run(&first).await.unwrap();
    let mut second = run_for(&s);
    second.started_at = 2_000;
    second.n_chats = 3;
    store.put_sync_run(&second).await.unwrap();
    assert_eq!(
        store.latest_sync_run(&s).await.unwrap().unwrap().sync_id,
        second.sync_id
    );

    // The checkpoint moves with the data, in one step.
    store
        .upsert_chats(&s, &[chat("a@c.us", Some(1))])
        .await
        .unwrap();
    second.checkpoint = 1;
    second.checkpoint_chat_id = Some("a@c.us".into());
    second.total_messages_synced = 2;
    store
        .commit_chats(
            &s,
            &[ChatCommit {
                chat_id: "a@c.us".into(),
                messages: vec![msg("a@c.us", 1), msg("a@c.us", 2)].into(),
                quarantined: vec![],
                synced_at: 5,
            }],
            &second,
        )
        .await
        .unwrap();
    let got = store.get_sync_run(&second.sync_id).await.unwrap().unwrap();
    assert_eq!(got.checkpoint, 1);
    assert_eq!(got.checkpoint_chat_id.as_deref(), Some("a@c.us"));

    second.status = SyncStatus::Completed;
    second.finished_at = Some(3_000);
    let ev = OutboxEvent::new(
        "session_ready",
        &s,
        serde_json::json!({"chats": ["a@c.us"]}),
    );
    store
        .finish_sync(&second, std::slice::from_ref(&ev))
        .await
        .unwrap();
    let got = store.get_sync_run(&second.sync_id).await.unwrap().unwrap();
    assert_eq!(got.status, SyncStatus::Completed);
    let events = store.session_events(&s).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_id, ev.event_id);
    assert!(store.get_sync_run("missing").await.unwrap().is_none());
}

pub async fn outbox_lifecycle(store: &dyn Store) {
    let s = sid("outbox");
    let e1 = OutboxEvent::new("session_ready", &s, serde_json::json!({"n": 1}));
    let e2 = OutboxEvent::new("session_ready", &s, serde_json::json!({"n": 2}));
    let before = store.count_pending_events().await.unwrap();
    store.enqueue_event(&e1).await.unwrap();
    store.enqueue_event(&e2).await.unwrap();
    assert_eq!(
        store.count_pending_events().await.unwrap(),
        before + 2,
        "{}: both events count as pending",
        store.kind()
    );
    let pending: Vec<_> = store
        .pending_events(10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.session_id == s.as_str())
        .collect();
    assert_eq!(
        pending.iter().map(|e| &e.event_id).collect::<Vec<_>>(),
        [&e1.event_id, &e2.event_id],
        "{}: pending events oldest first",
        store.kind()
    );
    store
        .record_attempt(std::slice::from_ref(&e1.event_id))
        .await
        .unwrap();
    store
        .mark_published(std::slice::from_ref(&e1.event_id), 77)
        .await
        .unwrap();
    let pending: Vec<_> = store
        .pending_events(10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.session_id == s.as_str())
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event_id, e2.event_id);
    assert_eq!(store.count_pending_events().await.unwrap(), before + 1);
    let all = store.session_events(&s).await.unwrap();
    let first = all.iter().find(|e| e.event_id == e1.event_id).unwrap();
    assert_eq!(first.published_at, Some(77));
    assert_eq!(first.attempts, 2);
    store
        .mark_published(std::slice::from_ref(&e2.event_id), 78)
        .await
        .unwrap();
}

pub async fn quarantine_and_purge(store: &dyn Store) {
    let s = sid("purge");
    store
        .upsert_chats(&s, &[chat("a@c.us", Some(1))])
        .await
        .unwrap();
    let mut run = run_for(&s);
    run.started_at = 10;
    store
        .commit_chats(
            &s,
            &[ChatCommit {
                chat_id: "a@c.us".into(),
                messages: vec![msg("a@c.us", 1)].into(),
                quarantined: vec![QuarantinedMessage {
                    session_id: s.to_string(),
                    sync_id: Some(run.sync_id.clone()),
                    plugin: "redact".into(),
                    reason: "trap".into(),
                    quarantined_at: 1,
                    message: msg("a@c.us", 2),
                }],
                synced_at: 1,
            }],
            &run,
        )
        .await
        .unwrap();
    let mut live = store.list_quarantine(&s).await.unwrap()[0].clone();
    live.message.id = "a@c.us-live".into();
    store.put_quarantine(&s, &[live.clone()]).await.unwrap();
    store.put_quarantine(&s, &[live]).await.unwrap();
    let q = store.list_quarantine(&s).await.unwrap();
    assert_eq!(
        q.len(),
        2,
        "{}: quarantine is idempotent per message",
        store.kind()
    );
    let q: Vec<_> = q
        .into_iter()
        .filter(|x| x.message.id != "a@c.us-live")
        .collect();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].message.id, "a@c.us-m2");
    assert_eq!(store.count_messages(&s, None).await.unwrap(), 1);

    // A neighbour whose id shares the prefix must survive the purge, its
    // chats, messages and runs included.
    let neighbour = SessionId::parse(&format!("{s}x")).unwrap();
    store
        .upsert_chats(&neighbour, &[chat("a@c.us", Some(1))])
        .await
        .unwrap();
    store
        .commit_chats(
            &neighbour,
            &[ChatCommit {
                chat_id: "a@c.us".into(),
                messages: vec![msg("a@c.us", 1), msg("a@c.us", 2)].into(),
                quarantined: vec![],
                synced_at: 1,
            }],
            &run_for(&neighbour),
        )
        .await
        .unwrap();

    store.delete_session(&s, false).await.unwrap();
    assert_eq!(
        store.count_messages(&s, None).await.unwrap(),
        1,
        "stop keeps data"
    );
    store.delete_session(&s, true).await.unwrap();
    assert_eq!(store.count_messages(&s, None).await.unwrap(), 0);
    assert!(
        store
            .list_chats(&s, 10, None)
            .await
            .unwrap()
            .chats
            .is_empty()
    );
    assert!(store.list_quarantine(&s).await.unwrap().is_empty());
    assert!(store.latest_sync_run(&s).await.unwrap().is_none());
    assert_eq!(
        store
            .list_chats(&neighbour, 10, None)
            .await
            .unwrap()
            .chats
            .len(),
        1
    );
    assert_eq!(store.count_messages(&neighbour, None).await.unwrap(), 2);
    assert!(store.latest_sync_run(&neighbour).await.unwrap().is_some());
}
