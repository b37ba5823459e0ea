//! Changes after the sync on MongoDB when writers race on one message: a
//! write is conditional on the version it read, and its writer learns
//! which of its statements landed even when another writer rewrote the
//! document before it could read back.

use wasync::domain::{ChangeOutcome, MessageChange, MessageUpdate};

use super::*;

fn reaction(m: &Message, who: &str, at: i64) -> MessageUpdate {
    MessageUpdate {
        chat_id: m.chat_id.clone(),
        message_id: m.id.clone(),
        change: MessageChange::Reaction {
            reactor: who.into(),
            emoji: Some("👍".into()),
            at,
        },
    }
}

fn edit(m: &Message, body: &str, at: i64) -> MessageUpdate {
    MessageUpdate {
        chat_id: m.chat_id.clone(),
        message_id: m.id.clone(),
        change: MessageChange::Edit {
            body: Some(body.into()),
            at,
        },
    }
}

/// One writer reacts to two messages. While its update is held, another
/// writer edits the second message, so the update lands on the first only
/// and the writer reads back. While that read is held, the other writer
/// edits the first message too, on top of the reaction. The first writer
/// must still know its reaction landed (the document keeps the versions
/// before its current one), retry only the second message, and report
/// both reactions applied; every change is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_a_change_rewritten_before_its_writer_reads_back_counts_as_applied() {
    let _failpoint = wasync_tests::mongo::fail_command_lock(&test_mongodb_uri()).await;
    let (first, other, db, first_app, _) = two_hosts("casread").await;
    let s = sid("casread");
    let c = "cas@c.us";
    first.upsert_chats(&s, &[chat(c, Some(1))]).await.unwrap();
    let ms: Vec<Message> = (0..2).map(|n| msg(c, n)).collect();
    first.put_messages(&s, &ms).await.unwrap();

    hold_command("update", &first_app, 1, 1500).await;
    let reacting = {
        let (first, s) = (first.clone(), s.clone());
        let updates = vec![
            reaction(&ms[0], "a@c.us", 100),
            reaction(&ms[1], "a@c.us", 100),
        ];
        tokio::spawn(async move { first.apply_changes(&s, &updates, false).await })
    };
    // The first writer has read both messages and waits in its update.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let out = other
        .apply_changes(&s, &[edit(&ms[1], "edited 1", 200)], false)
        .await
        .unwrap();
    assert_eq!(out, [ChangeOutcome::Applied]);
    hold_command("find", &first_app, 1, 2000).await;
    // Its update lands on the first message, then its read back waits.
    let raw = raw_db(&db).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = raw
            .collection::<Document>("messages")
            .find_one(doc! { "sessionId": s.as_str(), "messageId": &ms[0].id })
            .await
            .unwrap()
            .unwrap();
        if d.get_array("reactions").is_ok_and(|r| !r.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the held update never landed: {d}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = other
        .apply_changes(&s, &[edit(&ms[0], "edited 0", 200)], false)
        .await
        .unwrap();
    assert_eq!(out, [ChangeOutcome::Applied]);

    let outcomes = reacting.await.unwrap().unwrap();
    fail_command_off(&test_mongodb_uri()).await;
    assert_eq!(
        outcomes,
        [ChangeOutcome::Applied, ChangeOutcome::Applied],
        "the first writer's reactions"
    );
    for (i, m) in ms.iter().enumerate() {
        let got = first.get_message(&s, &m.id).await.unwrap().unwrap().message;
        assert_eq!(
            got.body.as_deref(),
            Some(format!("edited {i}").as_str()),
            "{}",
            m.id
        );
        assert_eq!(got.changes.reactions.len(), 1, "{}: {got:?}", m.id);
    }
    let _ = raw.drop().await;
}

/// Documents written before versions existed (no `rev`) and documents
/// whose `rev` is null take a change.
#[tokio::test]
async fn mongo_changes_apply_to_unversioned_documents() {
    let (store, db) = store().await;
    let s = sid("norev");
    let c = "norev@c.us";
    store.upsert_chats(&s, &[chat(c, Some(1))]).await.unwrap();
    let ms: Vec<Message> = (0..2).map(|n| msg(c, n)).collect();
    store.put_messages(&s, &ms).await.unwrap();
    let raw = raw_db(&db).await;
    let messages = raw.collection::<Document>("messages");
    messages
        .update_one(
            doc! { "sessionId": s.as_str(), "messageId": &ms[0].id },
            doc! { "$unset": { "rev": "" } },
        )
        .await
        .unwrap();
    messages
        .update_one(
            doc! { "sessionId": s.as_str(), "messageId": &ms[1].id },
            doc! { "$set": { "rev": Bson::Null } },
        )
        .await
        .unwrap();
    let updates: Vec<MessageUpdate> = ms.iter().map(|m| reaction(m, "a@c.us", 100)).collect();
    let out = store.apply_changes(&s, &updates, false).await.unwrap();
    assert_eq!(out, [ChangeOutcome::Applied, ChangeOutcome::Applied]);
    for m in &ms {
        let got = store.get_message(&s, &m.id).await.unwrap().unwrap().message;
        assert_eq!(got.changes.reactions.len(), 1, "{}", m.id);
        let d = messages
            .find_one(doc! { "sessionId": s.as_str(), "messageId": &m.id })
            .await
            .unwrap()
            .unwrap();
        assert!(d.get_i64("rev").is_ok_and(|r| r != 0), "a new version: {d}");
        assert_eq!(
            d.get_str("body").unwrap(),
            m.body.as_deref().unwrap(),
            "{d}"
        );
    }
    let _ = raw.drop().await;
}

/// A message deleted (a purge) between a change's read and its write is
/// not brought back, and the change is not reported applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_a_message_deleted_under_a_change_stays_deleted() {
    let _failpoint = wasync_tests::mongo::fail_command_lock(&test_mongodb_uri()).await;
    let (store, db, app) = named_store("casgone").await;
    let s = sid("casgone");
    let c = "gone@c.us";
    store.upsert_chats(&s, &[chat(c, Some(1))]).await.unwrap();
    let m = msg(c, 0);
    store
        .put_messages(&s, std::slice::from_ref(&m))
        .await
        .unwrap();
    let store = Arc::new(store);
    hold_command("update", &app, 1, 1000).await;
    let reacting = {
        let (store, s, u) = (store.clone(), s.clone(), reaction(&m, "a@c.us", 100));
        tokio::spawn(async move { store.apply_changes(&s, &[u], false).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let raw = raw_db(&db).await;
    let messages = raw.collection::<Document>("messages");
    let deleted = messages
        .delete_one(doc! { "sessionId": s.as_str(), "messageId": &m.id })
        .await
        .unwrap();
    assert_eq!(deleted.deleted_count, 1);
    let out = reacting.await.unwrap().unwrap();
    fail_command_off(&test_mongodb_uri()).await;
    assert_eq!(out, [ChangeOutcome::Unchanged]);
    let left = messages
        .count_documents(doc! { "sessionId": s.as_str() })
        .await
        .unwrap();
    assert_eq!(left, 0, "the deleted message came back");
    let _ = raw.drop().await;
}
