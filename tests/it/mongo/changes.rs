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

    hold_command("update", &first_app, 1, 2500).await;
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
    hold_command("find", &first_app, 1, 4000).await;
    // Its update lands on the first message, then its read back waits.
    let raw = raw_db(&db).await;
    let messages = raw.collection::<Document>("messages");
    let first_stored = || async {
        messages
            .find_one(doc! { "sessionId": s.as_str(), "messageId": &ms[0].id })
            .await
            .unwrap()
            .unwrap()
    };
    assert!(
        first_stored()
            .await
            .get_array("reactions")
            .is_ok_and(|r| r.is_empty()),
        "the update landed before its read back was held: the test would not reach it"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = first_stored().await;
        if d.get_array("reactions").is_ok_and(|r| !r.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the held update never landed: {d}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let landed = Instant::now();
    let out = other
        .apply_changes(&s, &[edit(&ms[0], "edited 0", 200)], false)
        .await
        .unwrap();
    assert_eq!(out, [ChangeOutcome::Applied]);
    assert!(
        landed.elapsed() < Duration::from_millis(3000),
        "the rewrite came after the held read back: the test would not reach the race"
    );

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

/// The store checks at start that the server counts only the documents an
/// update changed (what lets a conditional write skip its read back), and
/// leaves nothing of the check behind; a store told to read back every
/// write does not rely on it.
#[tokio::test]
async fn mongo_the_store_checks_how_the_server_counts_modified_documents() {
    let (store, db) = store().await;
    assert!(
        store.trusts_modified_counts(),
        "the test server counts only changed documents"
    );
    let raw = raw_db(&db).await;
    let left = raw
        .collection::<Document>("serverChecks")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(left, 0, "the check's documents are deleted");
    let reading = MongoStore::connect_with(
        &test_mongodb_uri(),
        &db,
        MongoOptions {
            read_back_every_write: true,
            ..MongoOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(!reading.trusts_modified_counts());
    let _ = raw.drop().await;
}

/// Two writers apply changes to the same 120 messages at once, several
/// rounds, each change a statement of its own kind (reactions from one,
/// edits from the other): every change is stored, none overwritten by the
/// other writer's read-modify-write, with the count of modified documents
/// trusted and with every write read back. 120 messages take three
/// statements, one of them with a body that starts with `$` and one whose
/// body alone fills a statement; every edit's body starts with `$` (a
/// value the pipeline must not read as a field path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_two_writers_changing_the_same_messages_lose_nothing() {
    for read_back in [false, true] {
        let db = fresh_db_name("casmany");
        let uri = test_mongodb_uri();
        let connect = || {
            MongoStore::connect_with(
                &uri,
                &db,
                MongoOptions {
                    read_back_every_write: read_back,
                    ..MongoOptions::default()
                },
            )
        };
        let (a, b) = (
            Arc::new(connect().await.unwrap()),
            Arc::new(connect().await.unwrap()),
        );
        let s = sid("casmany");
        let c = "many@c.us";
        a.upsert_chats(&s, &[chat(c, Some(1))]).await.unwrap();
        let mut ms: Vec<Message> = (0..120).map(|n| msg(c, n)).collect();
        ms[7].body = Some("$literal body".into());
        ms[60].body = Some("x".repeat(1_100_000));
        a.put_messages(&s, &ms).await.unwrap();
        // Statements that carry the two bodies as they are.
        let acks: Vec<MessageUpdate> = ms
            .iter()
            .map(|m| MessageUpdate {
                chat_id: m.chat_id.clone(),
                message_id: m.id.clone(),
                change: MessageChange::Ack { ack: 3, at: 50 },
            })
            .collect();
        let out = a.apply_changes(&s, &acks, false).await.unwrap();
        assert!(out.iter().all(|o| *o == ChangeOutcome::Applied));
        for i in [7, 60] {
            let got = b.get_message(&s, &ms[i].id).await.unwrap().unwrap().message;
            assert_eq!(got.body, ms[i].body, "read back {read_back}, message {i}");
            assert_eq!(got.ack, 3);
        }
        for round in 0..3_i64 {
            let reactions: Vec<MessageUpdate> = ms
                .iter()
                .map(|m| reaction(m, &format!("r{round}@c.us"), 100 + round))
                .collect();
            let edits: Vec<MessageUpdate> = ms
                .iter()
                .map(|m| edit(m, &format!("${} edited {round}", m.id), 100 + round))
                .collect();
            let (ra, rb) = tokio::join!(
                {
                    let (a, s) = (a.clone(), s.clone());
                    async move { a.apply_changes(&s, &reactions, false).await }
                },
                {
                    let (b, s) = (b.clone(), s.clone());
                    async move { b.apply_changes(&s, &edits, false).await }
                },
            );
            assert!(ra.unwrap().iter().all(|o| *o == ChangeOutcome::Applied));
            assert!(rb.unwrap().iter().all(|o| *o == ChangeOutcome::Applied));
        }
        for m in &ms {
            let got = b.get_message(&s, &m.id).await.unwrap().unwrap().message;
            assert_eq!(
                got.body.as_deref(),
                Some(format!("${} edited 2", m.id).as_str()),
                "read back {read_back}"
            );
            assert_eq!(
                got.changes.reactions.len(),
                3,
                "read back {read_back}, {}: {:?}",
                m.id,
                got.changes.reactions
            );
        }
        assert_eq!(count_of(&a, &s, c).await, 120);
        let _ = raw_db(&db).await.drop().await;
    }
}
