//! The MongoDB adapter against a real MongoDB-wire server (SecantusDB,
//! started by `scripts/test.sh`): the storage contract, the schema as
//! stored, fault injection, a server that goes away and comes back, and
//! concurrent writers.
//!
//! Every test uses its own database (random suffix), so they run in
//! parallel on the one shared server; tests that kill a server start a
//! private one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use wasync::domain::{Chat, Message, SessionId, SyncRun, SyncStatus, SyncTrigger, now_ms};
use wasync::storage::mongo::{MongoOptions, MongoStore};
use wasync::storage::{ChatCommit, Store, StoreError, contract};
use wasync_tests::mongo::{
    BenchServers, MongoServer, bench_insert, bench_sync_paths, fail_command, fail_command_off,
    fail_commands, fresh_db_name, test_mongodb_uri,
};

mod changes;
mod counts;

async fn store() -> (MongoStore, String) {
    let db = fresh_db_name("it");
    let store = MongoStore::connect(&test_mongodb_uri(), &db)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test MongoDB server: {e}"));
    (store, db)
}

/// A store whose connections carry an app name of their own, for
/// failpoints that must not hit parallel tests.
async fn named_store(tag: &str) -> (MongoStore, String, String) {
    let db = fresh_db_name(tag);
    let app = format!("wasync-{db}");
    let uri = format!(
        "{}/?appName={app}",
        test_mongodb_uri().trim_end_matches('/')
    );
    let store = MongoStore::connect(&uri, &db).await.unwrap();
    (store, db, app)
}

/// Two hosts on one database, each with connections of its own app name:
/// `(old holder, new holder, database, old holder's app, new holder's app)`.
async fn two_hosts(tag: &str) -> (Arc<MongoStore>, Arc<MongoStore>, String, String, String) {
    let (old, db, old_app) = named_store(tag).await;
    let new_app = format!("{old_app}-new");
    let uri = format!(
        "{}/?appName={new_app}",
        test_mongodb_uri().trim_end_matches('/')
    );
    let new = MongoStore::connect(&uri, &db).await.unwrap();
    (Arc::new(old), Arc::new(new), db, old_app, new_app)
}

/// Holds the `n`-th `command` (from 1) of connections of `app` on the
/// server for `ms` milliseconds; the ones before it run normally.
async fn hold_command(command: &str, app: &str, n: u32, ms: i32) {
    fail_command(
        &test_mongodb_uri(),
        doc! { "skip": n - 1, "times": 1 },
        doc! {
            "failCommands": [command],
            "appName": app,
            "blockConnection": true,
            "blockTimeMS": ms,
        },
    )
    .await;
}

async fn count_of(store: &MongoStore, s: &SessionId, chat_id: &str) -> u64 {
    store
        .get_chat(s, chat_id)
        .await
        .unwrap()
        .unwrap()
        .message_count
}

fn sid(tag: &str) -> SessionId {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    SessionId::parse(&format!("{tag}-{}", &suffix[..10])).unwrap()
}

fn chat(id: &str, last: Option<i64>) -> Chat {
    Chat {
        id: id.into(),
        name: Some(format!("Chat {id}")),
        is_group: false,
        unread_count: 0,
        archived: false,
        pinned: false,
        last_message_at: last,
    }
}

fn msg(chat: &str, n: i64) -> Message {
    Message {
        id: format!("{chat}-m{n}"),
        chat_id: chat.into(),
        from: chat.into(),
        to: "me@c.us".into(),
        author: None,
        body: Some(format!("body {n}")),
        kind: "chat".into(),
        timestamp: 1_700_000_000_000 + n * 1000,
        from_me: false,
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
        trigger: SyncTrigger::Manual,
        mode: Default::default(),
        limit_per_chat: 100,
        chat_ids: None,
        status: SyncStatus::Running,
        started_at: now_ms(),
        finished_at: None,
        n_chats: 1,
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

fn commit(chat_id: &str, messages: Vec<Message>) -> ChatCommit {
    ChatCommit {
        chat_id: chat_id.into(),
        messages: messages.into(),
        quarantined: vec![],
        synced_at: now_ms(),
    }
}

/// The raw driver on the same server, to look at what was stored.
async fn raw_db(db: &str) -> mongodb::Database {
    mongodb::Client::with_uri_str(test_mongodb_uri())
        .await
        .unwrap()
        .database(db)
}

/// No `(sessionId, messageId)` appears twice, whatever the index says.
async fn assert_no_duplicate_messages(db: &mongodb::Database, s: &SessionId) -> u64 {
    let docs: Vec<Document> = db
        .collection::<Document>("messages")
        .find(doc! { "sessionId": s.as_str() })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for d in &docs {
        let id = d.get_str("messageId").unwrap().to_owned();
        assert!(seen.insert(id.clone()), "message {id} stored twice");
    }
    docs.len() as u64
}

// ---- the storage contract, each check in its own database -------------

#[tokio::test]
async fn mongo_contract_contacts() {
    contract::contacts::run_all(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_sessions_round_trip() {
    contract::sessions_round_trip(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_chats_upsert_and_page() {
    contract::chats_upsert_and_page(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_messages_are_idempotent_and_paged() {
    contract::messages_are_idempotent_and_paged(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_sync_runs_and_checkpoints() {
    contract::sync_runs_and_checkpoints(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_outbox_lifecycle() {
    contract::outbox_lifecycle(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_quarantine_and_purge() {
    contract::quarantine_and_purge(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_stale_epochs_are_fenced_off() {
    contract::stale_epochs_are_fenced_off(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_an_event_is_queued_once() {
    contract::an_event_is_queued_once(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_claims_share_the_outbox() {
    contract::claims_share_the_outbox(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_a_burst_in_one_second_pages_whole() {
    contract::a_burst_in_one_second_pages_whole(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_retention_and_purge_leave_no_bodies() {
    contract::retention_and_purge_leave_no_bodies(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_changes_apply_in_place_newest_wins() {
    contract::changes::changes_apply_in_place_newest_wins(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_a_change_before_its_message_waits_for_it() {
    contract::changes::a_change_before_its_message_waits_for_it(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_a_resync_keeps_what_changed_after_the_sync() {
    contract::changes::a_resync_keeps_what_changed_after_the_sync(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_pending_changes_expire_and_go_with_a_purge() {
    contract::changes::pending_changes_expire_and_go_with_a_purge(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_changes_and_rewrites_at_once_lose_nothing() {
    contract::changes::changes_and_rewrites_at_once_lose_nothing(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_webhooks_round_trip() {
    contract::webhooks::webhooks_round_trip(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_deliveries_are_queued_once_in_order() {
    contract::webhooks::deliveries_are_queued_once_in_order(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_deliveries_page_by_status_and_age_out() {
    contract::webhooks::deliveries_page_by_status_and_age_out(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_a_purge_deletes_the_sessions_deliveries() {
    contract::webhooks::a_purge_deletes_the_sessions_deliveries(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_webhook_claims_are_exclusive() {
    contract::webhooks::webhook_claims_are_exclusive(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_marks_are_the_newest_stored_messages() {
    contract::marks_are_the_newest_stored_messages(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_oldest_marks_are_the_oldest_stored_messages() {
    contract::history::oldest_marks_are_the_oldest_stored_messages(&store().await.0).await;
}

#[tokio::test]
async fn mongo_contract_run_all_in_one_database() {
    contract::run_all(&store().await.0).await;
}

// ---- schema -------------------------------------------------------------

#[tokio::test]
async fn mongo_creates_design_indexes_idempotently() {
    let (_store, db) = store().await;
    // A second start on the same database is a no-op, not an error.
    let _again = MongoStore::connect(&test_mongodb_uri(), &db).await.unwrap();
    let raw = raw_db(&db).await;
    let expect: &[(&str, Document, bool)] = &[
        ("chats", doc! {"sessionId": 1, "chatId": 1}, true),
        (
            "chats",
            doc! {"sessionId": 1, "lastMessageAt": -1, "chatId": 1},
            false,
        ),
        ("messages", doc! {"sessionId": 1, "messageId": 1}, true),
        (
            "messages",
            doc! {"sessionId": 1, "chatId": 1, "timestamp": -1, "messageId": 1},
            false,
        ),
        ("sync_runs", doc! {"sessionId": 1, "startedAt": -1}, false),
        ("outbox", doc! {"publishedAt": 1, "createdAt": 1}, false),
        ("quarantine", doc! {"sessionId": 1, "messageId": 1}, true),
        ("contacts", doc! {"sessionId": 1, "contactId": 1}, true),
        ("contacts", doc! {"sessionId": 1, "lid": 1}, false),
    ];
    for (coll, keys, unique) in expect {
        let indexes: Vec<mongodb::IndexModel> = raw
            .collection::<Document>(coll)
            .list_indexes()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let found = indexes.iter().find(|i| {
            // Key order matters for a compound index; compare as lists.
            let a: Vec<_> = i.keys.iter().collect();
            let b: Vec<_> = keys.iter().collect();
            a.len() == b.len()
                && a.iter().zip(&b).all(|((ka, va), (kb, vb))| {
                    ka == kb
                        && va.as_i32().map(i64::from).or(va.as_i64()) == vb.as_i32().map(i64::from)
                })
        });
        let found = found.unwrap_or_else(|| panic!("{coll}: no index {keys}; have {indexes:?}"));
        let is_unique = found
            .options
            .as_ref()
            .and_then(|o| o.unique)
            .unwrap_or(false);
        assert_eq!(is_unique, *unique, "{coll} {keys}: unique");
    }
}

/// A database an earlier version made keeps working: its paging index
/// without the message id is replaced at start, and its redundant
/// `(sessionId, messageId, rev)` index is dropped.
#[tokio::test]
async fn mongo_the_old_indexes_are_replaced() {
    let db = fresh_db_name("oldidx");
    let raw = raw_db(&db).await;
    for (name, keys) in [
        (
            "session_chat_time",
            doc! {"sessionId": 1, "chatId": 1, "timestamp": -1},
        ),
        (
            "session_message_rev",
            doc! {"sessionId": 1, "messageId": 1, "rev": 1},
        ),
    ] {
        raw.collection::<Document>("messages")
            .create_index(
                mongodb::IndexModel::builder()
                    .keys(keys)
                    .options(
                        mongodb::options::IndexOptions::builder()
                            .name(name.to_owned())
                            .build(),
                    )
                    .build(),
            )
            .await
            .unwrap();
    }
    MongoStore::connect(&test_mongodb_uri(), &db)
        .await
        .expect("opens a database of the earlier schema");
    let names: Vec<String> = raw
        .collection::<Document>("messages")
        .list_index_names()
        .await
        .unwrap();
    assert!(
        names.contains(&"session_chat_time_id".to_string()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"session_chat_time".to_string()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"session_message_rev".to_string()),
        "{names:?}"
    );
}

#[tokio::test]
async fn mongo_duplicates_block_a_unique_index_with_a_clear_error() {
    let db = fresh_db_name("dups");
    let raw = raw_db(&db).await;
    let m = raw.collection::<Document>("messages");
    for _ in 0..2 {
        m.insert_one(doc! {"sessionId": "s", "messageId": "m1"})
            .await
            .unwrap();
    }
    let err = MongoStore::connect(&test_mongodb_uri(), &db)
        .await
        .expect_err("a unique index over duplicates must not be skipped");
    let text = err.to_string();
    assert!(
        text.contains("`messages`") && text.contains("duplicate"),
        "{text}"
    );
}

#[tokio::test]
async fn mongo_documents_match_design() {
    let (store, db) = store().await;
    let s = sid("doc");
    store
        .upsert_chats(&s, &[chat("a@c.us", Some(1_700_000_050_000))])
        .await
        .unwrap();
    let mut m = msg("a@c.us", 1);
    m.author = Some("x@c.us".into());
    m.tags = vec!["t".into()];
    m.attributes.insert("k".into(), "v".into());
    let run = run_for(&s);
    store
        .commit_chats(&s, &[commit("a@c.us", vec![m.clone()])], &run)
        .await
        .unwrap();
    let raw = raw_db(&db).await;

    let stored = raw
        .collection::<Document>("messages")
        .find_one(doc! {"sessionId": s.as_str()})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_str("messageId").unwrap(), m.id);
    assert_eq!(stored.get_str("chatId").unwrap(), "a@c.us");
    assert_eq!(stored.get_str("type").unwrap(), "chat");
    assert_eq!(
        stored.get_datetime("timestamp").unwrap().timestamp_millis(),
        m.timestamp
    );
    assert!(!stored.get_bool("fromMe").unwrap());
    assert!(!stored.get_bool("hasMedia").unwrap());
    assert_eq!(stored.get_i32("ack").unwrap(), 1);
    assert_eq!(stored.get_str("author").unwrap(), "x@c.us");
    assert_eq!(stored.get_array("tags").unwrap().len(), 1);
    assert_eq!(
        stored
            .get_document("attributes")
            .unwrap()
            .get_str("k")
            .unwrap(),
        "v"
    );

    let c = raw
        .collection::<Document>("chats")
        .find_one(doc! {"sessionId": s.as_str(), "chatId": "a@c.us"})
        .await
        .unwrap()
        .unwrap();
    for k in [
        "name",
        "isGroup",
        "unreadCount",
        "archived",
        "pinned",
        "lastMessageAt",
        "syncedAt",
        "messageCount",
    ] {
        assert!(c.contains_key(k), "chat field {k} missing: {c}");
    }
    assert!(matches!(c.get("lastMessageAt"), Some(Bson::DateTime(_))));
    assert!(matches!(c.get("syncedAt"), Some(Bson::DateTime(_))));
    assert_eq!(c.get_i64("messageCount").unwrap(), 1);

    let r = raw
        .collection::<Document>("sync_runs")
        .find_one(doc! {"_id": run.sync_id.as_str()})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.get_str("sessionId").unwrap(), s.as_str());
    assert_eq!(r.get_str("status").unwrap(), "running");
    assert_eq!(r.get_str("trigger").unwrap(), "manual");
    assert!(matches!(r.get("startedAt"), Some(Bson::DateTime(_))));
    for k in [
        "limitPerChat",
        "nChats",
        "currentChat",
        "checkpoint",
        "failedChats",
    ] {
        assert!(r.contains_key(k), "run field {k} missing: {r}");
    }
}

// ---- faults ---------------------------------------------------------------

#[tokio::test]
async fn mongo_failpoints_fail_writes_and_a_repeat_is_exact() {
    let _failpoint = wasync_tests::mongo::fail_command_lock(&test_mongodb_uri()).await;
    let db = fresh_db_name("fp");
    let app = format!("wasync-{db}");
    let uri = format!(
        "{}/?appName={app}",
        test_mongodb_uri().trim_end_matches('/')
    );
    let store = MongoStore::connect(&uri, &db).await.unwrap();
    let raw = raw_db(&db).await;
    let s = sid("fp");
    let chats = [chat("a@c.us", Some(1)), chat("b@c.us", Some(2))];
    store.upsert_chats(&s, &chats).await.unwrap();
    let a: Vec<Message> = (0..60).map(|n| msg("a@c.us", n)).collect();
    let b: Vec<Message> = (0..40).map(|n| msg("b@c.us", n)).collect();
    let mut run = run_for(&s);

    // The first chat goes in cleanly.
    store
        .commit_chats(&s, &[commit("a@c.us", a.clone())], &run)
        .await
        .unwrap();

    // Inserts fail twice: both attempts error, nothing half-counted.
    fail_commands(&test_mongodb_uri(), &["insert"], 2, &app).await;
    for _ in 0..2 {
        let err = store
            .commit_chats(&s, &[commit("b@c.us", b.clone())], &run)
            .await
            .expect_err("an armed insert failpoint must surface as an error");
        assert!(!err.to_string().is_empty());
    }
    // Then updates fail: the messages land, the counters do not.
    fail_commands(&test_mongodb_uri(), &["update"], 1, &app).await;
    assert!(
        store
            .commit_chats(&s, &[commit("b@c.us", b.clone())], &run)
            .await
            .is_err()
    );
    assert_eq!(store.count_messages(&s, Some("b@c.us")).await.unwrap(), 40);

    // The repeat completes, with exact counts and no duplicates.
    run.checkpoint = 2;
    let stats = store
        .commit_chats(
            &s,
            &[commit("a@c.us", a.clone()), commit("b@c.us", b.clone())],
            &run,
        )
        .await
        .unwrap();
    assert_eq!(stats[0].inserted, 0);
    assert_eq!(stats[0].unchanged, 60);
    assert_eq!(stats[1].inserted + stats[1].unchanged, 40);
    fail_command_off(&test_mongodb_uri()).await;
    assert_eq!(assert_no_duplicate_messages(&raw, &s).await, 100);
    assert_eq!(store.count_messages(&s, None).await.unwrap(), 100);
    for (c, n) in [("a@c.us", 60), ("b@c.us", 40)] {
        assert_eq!(
            store.get_chat(&s, c).await.unwrap().unwrap().message_count,
            n,
            "{c}: messageCount after failures and a repeat"
        );
    }
    assert_eq!(
        store
            .get_sync_run(&run.sync_id)
            .await
            .unwrap()
            .unwrap()
            .checkpoint,
        2
    );
}

#[tokio::test]
async fn mongo_server_stopped_is_unavailable_and_the_store_recovers() {
    let mut server = MongoServer::start().await;
    let db = fresh_db_name("down");
    let store = MongoStore::connect_with(
        &server.uri(),
        &db,
        MongoOptions {
            server_selection_timeout: Duration::from_millis(1500),
            ..MongoOptions::default()
        },
    )
    .await
    .unwrap();
    let s = sid("down");
    store
        .upsert_chats(&s, &[chat("a@c.us", Some(1))])
        .await
        .unwrap();
    let run = run_for(&s);
    let first: Vec<Message> = (0..30).map(|n| msg("a@c.us", n)).collect();
    store
        .commit_chats(&s, &[commit("a@c.us", first.clone())], &run)
        .await
        .unwrap();

    server.stop().await;
    let t = Instant::now();
    let err = store.ping().await.expect_err("ping with the server down");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "ping took {:?}",
        t.elapsed()
    );
    let more: Vec<Message> = (0..50).map(|n| msg("a@c.us", n)).collect();
    let err = store
        .commit_chats(&s, &[commit("a@c.us", more.clone())], &run)
        .await
        .expect_err("a write with the server down");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(matches!(
        store.list_chats(&s, 10, None).await,
        Err(StoreError::Unavailable(_))
    ));

    // Same port, same data directory: the same store object works again.
    server.restart().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.ping().await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for reconnect: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("store did not reconnect: {e}"),
        }
    }
    let stats = store
        .commit_chats(&s, &[commit("a@c.us", more)], &run)
        .await
        .unwrap();
    assert_eq!(stats[0].inserted, 20);
    assert_eq!(stats[0].unchanged, 30);
    assert_eq!(store.count_messages(&s, None).await.unwrap(), 50);
    assert_eq!(
        store
            .get_chat(&s, "a@c.us")
            .await
            .unwrap()
            .unwrap()
            .message_count,
        50
    );
}

#[tokio::test]
async fn mongo_unreachable_at_start_is_unavailable_quickly() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = Instant::now();
    let err = MongoStore::connect_with(
        &format!("mongodb://127.0.0.1:{port}"),
        "wasync",
        MongoOptions {
            server_selection_timeout: Duration::from_millis(800),
            ..MongoOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

// ---- concurrency ------------------------------------------------------------

#[tokio::test]
async fn mongo_two_writers_of_one_session_never_duplicate() {
    let (store_a, db) = store().await;
    // A second store (its own connection pool), like a second host.
    let store_b = MongoStore::connect(&test_mongodb_uri(), &db).await.unwrap();
    let s = sid("race");
    store_a
        .upsert_chats(&s, &[chat("a@c.us", Some(1)), chat("b@c.us", Some(2))])
        .await
        .unwrap();
    // Overlapping halves: 0..150 and 50..200 of chat a, all of b twice.
    let a1: Vec<Message> = (0..150).map(|n| msg("a@c.us", n)).collect();
    let a2: Vec<Message> = (50..200).map(|n| msg("a@c.us", n)).collect();
    let b: Vec<Message> = (0..80).map(|n| msg("b@c.us", n)).collect();
    let run_a = run_for(&s);
    let run_b = run_for(&s);
    let first = [commit("a@c.us", a1), commit("b@c.us", b.clone())];
    let second = [commit("a@c.us", a2), commit("b@c.us", b)];
    let (ra, rb) = tokio::join!(
        store_a.commit_chats(&s, &first, &run_a),
        store_b.commit_chats(&s, &second, &run_b),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        ra[0].inserted + rb[0].inserted,
        200,
        "each message inserted by exactly one writer"
    );
    assert_eq!(ra[1].inserted + rb[1].inserted, 80);
    let raw = raw_db(&db).await;
    assert_eq!(assert_no_duplicate_messages(&raw, &s).await, 280);
    assert_eq!(
        store_a
            .get_chat(&s, "a@c.us")
            .await
            .unwrap()
            .unwrap()
            .message_count,
        200
    );
    assert_eq!(
        store_b
            .get_chat(&s, "b@c.us")
            .await
            .unwrap()
            .unwrap()
            .message_count,
        80
    );
    // Two writers creating the same new chats at once do not duplicate them.
    let new_chats: Vec<Chat> = (0..20).map(|i| chat(&format!("n{i}@c.us"), None)).collect();
    let (x, y) = tokio::join!(
        store_a.upsert_chats(&s, &new_chats),
        store_b.upsert_chats(&s, &new_chats)
    );
    x.unwrap();
    y.unwrap();
    assert_eq!(
        store_a
            .list_chats(&s, 1000, None)
            .await
            .unwrap()
            .chats
            .len(),
        22
    );
}

#[tokio::test]
async fn mongo_two_sessions_at_once() {
    let (store, db) = store().await;
    let s1 = sid("one");
    let s2 = sid("two");
    let work = |s: SessionId| {
        let store = &store;
        async move {
            let chats: Vec<Chat> = (0..5)
                .map(|i| chat(&format!("c{i}@c.us"), Some(i)))
                .collect();
            store.upsert_chats(&s, &chats).await.unwrap();
            let run = run_for(&s);
            for c in &chats {
                let msgs: Vec<Message> = (0..40).map(|n| msg(&c.id, n)).collect();
                store
                    .commit_chats(&s, &[commit(&c.id, msgs)], &run)
                    .await
                    .unwrap();
            }
        }
    };
    tokio::join!(work(s1.clone()), work(s2.clone()));
    let raw = raw_db(&db).await;
    for s in [&s1, &s2] {
        // Both sessions use the same chat and message ids: the session is
        // part of every key.
        assert_eq!(assert_no_duplicate_messages(&raw, s).await, 200);
        let page = store.list_chats(s, 100, None).await.unwrap();
        assert_eq!(page.chats.len(), 5);
        assert!(page.chats.iter().all(|c| c.message_count == 40));
    }
}

// ---- the benchmark code stays working -------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_bench_smoke() {
    let uri = test_mongodb_uri();
    let r = bench_insert(&uri, 10, 50, 120).await;
    assert_eq!(r.messages, 500);
    eprintln!("{r}");
    let r = bench_sync_paths(
        &BenchServers::Shared(uri),
        5,
        40,
        &[(50, 2), (200, 1)],
        2,
        true,
    )
    .await;
    assert_eq!(r.messages, 200);
    assert_eq!((r.raw.len(), r.seed.len(), r.host.runs.len()), (2, 2, 2));
    assert!(r.raw.iter().all(|p| p.runs.len() == 2));
    eprintln!("{r:?}");
}

#[tokio::test]
async fn mongo_rewrites_only_changed_messages_even_when_the_time_moved() {
    let (store, db) = store().await;
    let s = sid("chg");
    store
        .upsert_chats(&s, &[chat("a@c.us", Some(1)), chat("b@c.us", Some(2))])
        .await
        .unwrap();
    let a: Vec<Message> = (0..30).map(|n| msg("a@c.us", n)).collect();
    let b: Vec<Message> = (0..20).map(|n| msg("b@c.us", n)).collect();
    let run = run_for(&s);
    store
        .commit_chats(
            &s,
            &[commit("a@c.us", a.clone()), commit("b@c.us", b.clone())],
            &run,
        )
        .await
        .unwrap();
    // One ack moves on in each chat, and one message's time moves far
    // outside the batch's window (found by id, not by the time range).
    let mut a2 = a.clone();
    a2[3].ack = 3;
    a2[29].timestamp += 10_000_000;
    let mut b2 = b.clone();
    b2[7].ack = 4;
    let stats = store
        .commit_chats(
            &s,
            &[commit("a@c.us", a2.clone()), commit("b@c.us", b2)],
            &run,
        )
        .await
        .unwrap();
    assert_eq!(
        (stats[0].inserted, stats[0].updated, stats[0].unchanged),
        (0, 2, 28)
    );
    assert_eq!(
        (stats[1].inserted, stats[1].updated, stats[1].unchanged),
        (0, 1, 19)
    );
    let newest = store.list_messages(&s, "a@c.us", 1, None).await.unwrap();
    assert_eq!(newest[0].message, a2[29]);
    let raw = raw_db(&db).await;
    assert_eq!(assert_no_duplicate_messages(&raw, &s).await, 50);
    assert_eq!(
        store
            .get_chat(&s, "a@c.us")
            .await
            .unwrap()
            .unwrap()
            .message_count,
        30
    );
}

/// A write of 1,500 messages: messages stored already, early and late in
/// it, are reported
/// and rewritten as themselves (not as their neighbours), and the chat's
/// count is exact.
#[tokio::test]
async fn mongo_a_large_write_reports_each_message() {
    let (store, db) = store().await;
    let s = sid("halves");
    store
        .upsert_chats(&s, &[chat("a@c.us", Some(1))])
        .await
        .unwrap();
    let ms: Vec<Message> = (0..1_500).map(|n| msg("a@c.us", n)).collect();
    // Two stored already, one early and one late, with an older ack.
    let early: Vec<Message> = [100, 1_200].iter().map(|&i| ms[i].clone()).collect();
    store.put_messages(&s, &early).await.unwrap();
    let mut next = ms.clone();
    for i in [100, 1_200] {
        next[i].ack = 3;
    }
    let stats = store.put_messages(&s, &next).await.unwrap();
    assert_eq!(
        (stats.inserted, stats.updated, stats.unchanged),
        (1_498, 2, 0)
    );
    for i in [99, 100, 101, 1_199, 1_200, 1_201] {
        let got = store.get_message(&s, &ms[i].id).await.unwrap().unwrap();
        assert_eq!(got.message, next[i], "message {i}");
    }
    let raw = raw_db(&db).await;
    assert_eq!(assert_no_duplicate_messages(&raw, &s).await, 1_500);
    assert_eq!(count_of(&store, &s, "a@c.us").await, 1_500);
    let _ = raw.drop().await;
}

/// A large write that holds one message twice (its copies far apart)
/// ends as the last copy, stored once, also when the server takes the
/// write's insert late (held 1 s).
#[tokio::test]
async fn mongo_a_large_write_holding_a_message_twice_ends_as_its_last_copy() {
    let _failpoint = wasync_tests::mongo::fail_command_lock(&test_mongodb_uri()).await;
    let (store, db, app) = named_store("twice").await;
    let s = sid("twice");
    store
        .upsert_chats(&s, &[chat("a@c.us", Some(1))])
        .await
        .unwrap();
    let mut twice: Vec<Message> = (0..1_200).map(|n| msg("a@c.us", n)).collect();
    let mut last = twice[10].clone();
    last.body = Some("the last copy".into());
    twice.push(last.clone());
    hold_command("insert", &app, 1, 1000).await;
    let stored = store.put_messages(&s, &twice).await;
    fail_command_off(&test_mongodb_uri()).await;
    stored.unwrap();
    let got = store.get_message(&s, &last.id).await.unwrap().unwrap();
    assert_eq!(got.message.body.as_deref(), Some("the last copy"));
    let raw = raw_db(&db).await;
    assert_eq!(assert_no_duplicate_messages(&raw, &s).await, 1_200);
    assert_eq!(count_of(&store, &s, "a@c.us").await, 1_200);
    let _ = raw.drop().await;
}

/// A sync stores the chat list, the contacts and the group members on
/// every run; what is stored already is not written again: with every
/// `update` and `delete` of this store failing, an unchanged re-write still
/// succeeds (it sends none). Then a change stream on the database sees
/// exactly the documents that changed.
#[tokio::test]
async fn mongo_unchanged_chats_contacts_and_members_are_not_rewritten() {
    use futures_util::StreamExt;
    use wasync::domain::{Contact, GroupParticipants, Participant};

    let _failpoint = wasync_tests::mongo::fail_command_lock(&test_mongodb_uri()).await;
    let db = fresh_db_name("unchanged");
    let app = format!("wasync-{db}");
    let uri = format!(
        "{}/?appName={app}",
        test_mongodb_uri().trim_end_matches('/')
    );
    let store = MongoStore::connect(&uri, &db).await.unwrap();
    let raw = raw_db(&db).await;
    let s = sid("unchanged");
    let mut chats: Vec<Chat> = (0..20)
        .map(|i| chat(&format!("49151{i:08}@c.us"), Some(1_700_000_000_000 + i)))
        .collect();
    chats.push(Chat {
        is_group: true,
        ..chat("120363000000000009@g.us", None)
    });
    let mut contacts: Vec<Contact> = (0..20)
        .map(|i| Contact {
            id: format!("49151{i:08}@c.us"),
            name: Some(format!("Person {i}")),
            pushname: None,
            number: Some(format!("49151{i:08}")),
            is_business: false,
            lid: (i % 2 == 0).then(|| format!("{i}00000000@lid")),
        })
        .collect();
    let member = |id: &str, admin: bool| Participant {
        id: id.into(),
        is_admin: admin,
        is_super_admin: false,
    };
    let mut groups = vec![GroupParticipants {
        chat_id: "120363000000000009@g.us".into(),
        participants: vec![
            member("4915100000000@c.us", true),
            member("4915100000001@c.us", false),
        ],
    }];
    let write = |chats: Vec<Chat>, contacts: Vec<Contact>, groups: Vec<GroupParticipants>| {
        let store = &store;
        let s = &s;
        async move {
            store.upsert_chats(s, &chats).await.unwrap();
            store.upsert_contacts(s, &contacts).await.unwrap();
            store.put_participants(s, &groups).await.unwrap();
        }
    };
    write(chats.clone(), contacts.clone(), groups.clone()).await;

    let mut stream = raw
        .watch()
        .full_document(mongodb::options::FullDocumentType::UpdateLookup)
        .await
        .expect("a change stream on the test database");
    // Unchanged: nothing is written (any write would fail).
    fail_commands(&test_mongodb_uri(), &["update", "delete"], 1_000, &app).await;
    write(chats.clone(), contacts.clone(), groups.clone()).await;
    fail_command_off(&test_mongodb_uri()).await;
    // One chat renamed, one contact's push name, one member promoted.
    chats[3].name = Some("Renamed".into());
    contacts[5].pushname = Some("Five".into());
    groups[0].participants[1].is_admin = true;
    write(chats.clone(), contacts.clone(), groups.clone()).await;

    let mut seen: Vec<(String, String)> = Vec::new();
    while seen.len() < 3 {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("only these changes came: {seen:?}"))
            .expect("the change stream ended")
            .expect("a change event");
        let coll = next.ns.and_then(|n| n.coll).unwrap_or_default();
        let doc = next.full_document.clone().unwrap_or_default();
        let key = doc
            .get_str("chatId")
            .or_else(|_| doc.get_str("contactId"))
            .map(str::to_owned)
            .unwrap_or_else(|_| format!("{:?}", next.document_key));
        seen.push((coll, key));
    }
    // Nothing else follows.
    let extra = tokio::time::timeout(Duration::from_millis(500), stream.next()).await;
    assert!(
        extra.is_err(),
        "an unexpected write: {extra:?} after {seen:?}"
    );
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("chats".to_owned(), "120363000000000009@g.us".to_owned()),
            ("chats".to_owned(), chats[3].id.clone()),
            ("contacts".to_owned(), contacts[5].id.clone()),
        ]
    );
}
