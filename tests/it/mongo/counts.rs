//! `messageCount` stays exact while commits increment it: a lost
//! acknowledgement of the insert or of the counter update, a commit that
//! meets duplicates, a live message racing a sync's commit of the same
//! chat, and a host frozen past its lease racing the host that took over.

use wasync::storage::{StoreResult, WriteStats};

use super::*;

/// Arms `failCommand` so that `commands` of connections of `app` run
/// normally and then answer with a `writeConcernError` (64,
/// WriteConcernFailed: not a state change, so the driver keeps the
/// server): the write is applied, its acknowledgement is lost.
async fn lose_acknowledgement(commands: &[&str], app: &str) {
    fail_command(
        &test_mongodb_uri(),
        doc! { "times": 1 },
        doc! {
            "failCommands": commands,
            "appName": app,
            "writeConcernError": { "code": 64, "errmsg": "test: acknowledgement lost" },
        },
    )
    .await;
}

#[tokio::test]
async fn mongo_a_lost_insert_acknowledgement_ends_with_an_exact_count() {
    let _failpoint = wasync_tests::mongo::fail_command_lock(&test_mongodb_uri()).await;
    let (store, db, app) = named_store("lostins").await;
    let s = sid("lostins");
    store
        .upsert_chats(&s, &[chat("a@c.us", Some(1)), chat("b@c.us", Some(2))])
        .await
        .unwrap();
    let a: Vec<Message> = (0..60).map(|n| msg("a@c.us", n)).collect();
    let b: Vec<Message> = (0..40).map(|n| msg("b@c.us", n)).collect();
    let run = run_for(&s);
    let group = [commit("a@c.us", a), commit("b@c.us", b)];

    lose_acknowledgement(&["insert"], &app).await;
    store
        .commit_chats(&s, &group, &run)
        .await
        .expect_err("a lost acknowledgement is an error");
    // The messages landed; neither the counters nor the checkpoint moved.
    assert_eq!(store.count_messages(&s, None).await.unwrap(), 100);
    assert_eq!(count_of(&store, &s, "a@c.us").await, 0);
    assert!(store.get_sync_run(&run.sync_id).await.unwrap().is_none());

    // The retry meets its own messages as duplicates and recounts.
    let stats = store.commit_chats(&s, &group, &run).await.unwrap();
    assert_eq!((stats[0].inserted, stats[0].unchanged), (0, 60));
    assert_eq!(count_of(&store, &s, "a@c.us").await, 60);
    assert_eq!(count_of(&store, &s, "b@c.us").await, 40);
    assert!(store.get_sync_run(&run.sync_id).await.unwrap().is_some());
    let times = store
        .newest_message_times(&s, &["a@c.us".into(), "b@c.us".into()])
        .await
        .unwrap();
    assert_eq!(times["a@c.us"], 1_700_000_000_000 + 59 * 1000);
    assert_eq!(times["b@c.us"], 1_700_000_000_000 + 39 * 1000);
    let _ = raw_db(&db).await.drop().await;
}

#[tokio::test]
async fn mongo_a_lost_counter_acknowledgement_is_not_counted_twice() {
    let _failpoint = wasync_tests::mongo::fail_command_lock(&test_mongodb_uri()).await;
    let (store, db, app) = named_store("lostinc").await;
    let s = sid("lostinc");
    store
        .upsert_chats(&s, &[chat("a@c.us", Some(1))])
        .await
        .unwrap();
    let a: Vec<Message> = (0..50).map(|n| msg("a@c.us", n)).collect();
    let run = run_for(&s);
    let group = [commit("a@c.us", a)];

    // The increment lands, its acknowledgement does not.
    lose_acknowledgement(&["update"], &app).await;
    store
        .commit_chats(&s, &group, &run)
        .await
        .expect_err("a lost acknowledgement is an error");
    assert_eq!(count_of(&store, &s, "a@c.us").await, 50);
    assert!(store.get_sync_run(&run.sync_id).await.unwrap().is_none());

    // The retry recounts: still 50, not 100.
    store.commit_chats(&s, &group, &run).await.unwrap();
    assert_eq!(count_of(&store, &s, "a@c.us").await, 50);
    let _ = raw_db(&db).await.drop().await;
}

#[tokio::test]
async fn mongo_a_commit_with_duplicates_recounts_and_a_clean_one_increments() {
    let (store, db) = store().await;
    let raw = raw_db(&db).await;
    let s = sid("dups");
    store
        .upsert_chats(&s, &[chat("a@c.us", Some(1)), chat("b@c.us", Some(2))])
        .await
        .unwrap();
    let a: Vec<Message> = (0..30).map(|n| msg("a@c.us", n)).collect();
    let mut run = run_for(&s);
    store
        .commit_chats(&s, &[commit("a@c.us", a[..10].to_vec())], &run)
        .await
        .unwrap();
    assert_eq!(count_of(&store, &s, "a@c.us").await, 10);

    // A count set wrong by hand is repaired by a commit that meets
    // duplicates (it recounts); the clean chat beside it is incremented.
    raw.collection::<Document>("chats")
        .update_one(
            doc! { "sessionId": s.as_str(), "chatId": "a@c.us" },
            doc! { "$set": { "messageCount": 0_i64 } },
        )
        .await
        .unwrap();
    run.checkpoint = 1;
    let b: Vec<Message> = (0..5).map(|n| msg("b@c.us", n)).collect();
    let stats = store
        .commit_chats(
            &s,
            &[commit("a@c.us", a.clone()), commit("b@c.us", b)],
            &run,
        )
        .await
        .unwrap();
    assert_eq!((stats[0].inserted, stats[0].unchanged), (20, 10));
    assert_eq!(stats[1].inserted, 5);
    assert_eq!(count_of(&store, &s, "a@c.us").await, 30);
    assert_eq!(count_of(&store, &s, "b@c.us").await, 5);

    // A live message already stored: recounted, not incremented.
    store.put_messages(&s, &[a[3].clone()]).await.unwrap();
    store.put_messages(&s, &[msg("a@c.us", 30)]).await.unwrap();
    assert_eq!(count_of(&store, &s, "a@c.us").await, 31);
    assert_eq!(assert_no_duplicate_messages(&raw, &s).await, 36);
    let _ = raw.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_a_live_message_racing_a_commit_of_its_chat_keeps_the_count_exact() {
    let _failpoint = wasync_tests::mongo::fail_command_lock(&test_mongodb_uri()).await;
    let (store, db, app) = named_store("race").await;
    let store = std::sync::Arc::new(store);
    let s = sid("race");
    store
        .upsert_chats(&s, &[chat("a@c.us", Some(1))])
        .await
        .unwrap();
    let messages: Vec<Message> = (0..50).map(|n| msg("a@c.us", n)).collect();
    // The commit's counter update (its first `update`) is held up on the
    // server, after its insert landed.
    hold_update(&app, 1, 1500).await;
    let commit_task = {
        let (store, s, run, m) = (store.clone(), s.clone(), run_for(&s), messages.clone());
        tokio::spawn(async move { store.commit_chats(&s, &[commit("a@c.us", m)], &run).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Meanwhile the live path writes one of those messages: a duplicate,
    // so it recounts; had it run before the commit's increment, both
    // would have counted the commit's 50.
    store
        .put_messages(&s, &[messages[0].clone()])
        .await
        .unwrap();
    commit_task.await.unwrap().unwrap();
    assert_eq!(count_of(&store, &s, "a@c.us").await, 50);
    let _ = raw_db(&db).await.drop().await;
}

/// Holds the `n`-th `update` (from 1) of connections of `app` on the
/// server for `ms`; the ones before it run normally.
async fn hold_update(app: &str, n: u32, ms: i32) {
    hold_command("update", app, n, ms).await;
}

/// `store` (connections of `app`) commits `messages` to chat `a@c.us`
/// under `run`, in the background, its counter update (its `update`
/// number `counter_update`: 2 after a claim's update, 1 where the chat was
/// claimed already) held on the server for 3 s.
async fn commit_with_held_count(
    store: &Arc<MongoStore>,
    app: &str,
    s: &SessionId,
    run: &SyncRun,
    messages: &[Message],
    counter_update: u32,
) -> tokio::task::JoinHandle<StoreResult<Vec<WriteStats>>> {
    hold_update(app, counter_update, 3000).await;
    let (store, s, run, m) = (store.clone(), s.clone(), run.clone(), messages.to_vec());
    tokio::spawn(async move { store.commit_chats(&s, &[commit("a@c.us", m)], &run).await })
}

async fn until_stored(store: &MongoStore, s: &SessionId, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store.count_messages(s, None).await.unwrap() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{n} messages never landed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The host holding the lease at epoch 1 is frozen between its insert and
/// its increment (its counter update held on the server) while the host
/// that took over at epoch 2 re-commits the same group: it meets the
/// messages as duplicates and recounts them. The late increment must not
/// count them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_a_late_increment_of_a_taken_over_host_is_refused() {
    late_increment_is_refused("lateinc", false).await;
}

/// As above, where the chat was created claimed by the old holder's chat
/// list (a cluster's first sync): its commit writes no claim, so its first
/// `update` is its counter update, held while the new holder (epoch 2)
/// re-commits the group. The late increment must still be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_a_late_increment_into_a_chat_listed_claimed_is_refused() {
    late_increment_is_refused("lateclaimed", true).await;
}

/// The two tests above: the old holder's chat list stores chat `a@c.us`
/// unclaimed (epoch 0) or `listed_claimed` for epoch 1.
async fn late_increment_is_refused(tag: &str, listed_claimed: bool) {
    let _failpoint = wasync_tests::mongo::fail_command_lock(&test_mongodb_uri()).await;
    let (old, new, db, old_app, _) = two_hosts(tag).await;
    let s = sid(tag);
    let listed = [chat("a@c.us", Some(1))];
    // A commit into an unclaimed chat claims it with an `update` first.
    let counter_update = if listed_claimed {
        old.upsert_chats_fenced(&s, &listed, 1).await.unwrap();
        1
    } else {
        old.upsert_chats(&s, &listed).await.unwrap();
        2
    };
    let messages: Vec<Message> = (0..50).map(|n| msg("a@c.us", n)).collect();
    let mut run = run_for(&s);
    run.epoch = 1;
    let frozen = commit_with_held_count(&old, &old_app, &s, &run, &messages, counter_update).await;
    until_stored(&new, &s, 50).await;
    let mut taken_over = run.clone();
    taken_over.epoch = 2;
    let stats = new
        .commit_chats(&s, &[commit("a@c.us", messages.clone())], &taken_over)
        .await
        .unwrap();
    assert_eq!((stats[0].inserted, stats[0].unchanged), (0, 50));
    assert_eq!(count_of(&new, &s, "a@c.us").await, 50);
    let late = frozen.await.unwrap();
    assert!(matches!(late, Err(StoreError::Fenced(_))), "{late:?}");
    assert_eq!(count_of(&new, &s, "a@c.us").await, 50);
    // A live message of the old holder is refused before it is written.
    let live = msg("a@c.us", 99);
    let refused = old.put_messages_fenced(&s, &[live], 1).await;
    assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
    assert_eq!(new.count_messages(&s, None).await.unwrap(), 50);
    let _ = raw_db(&db).await.drop().await;
}

/// A live message of the host at epoch 1 whose counter update is held on
/// the server while the host at epoch 2 commits the same message: a live
/// write has no checkpoint after it to be refused at, so its counter
/// update itself must report that it was kept out (`Fenced`), and the
/// count stays the new holder's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_a_late_live_increment_of_a_taken_over_host_is_refused() {
    let _failpoint = wasync_tests::mongo::fail_command_lock(&test_mongodb_uri()).await;
    let (old, new, db, old_app, _) = two_hosts("latelive").await;
    let s = sid("latelive");
    old.upsert_chats_fenced(&s, &[chat("a@c.us", Some(1))], 1)
        .await
        .unwrap();
    let live = msg("a@c.us", 7);
    // The chat is claimed already: the write's first `update` is its
    // counter update.
    hold_update(&old_app, 1, 3000).await;
    let frozen = {
        let (old, s, live) = (old.clone(), s.clone(), live.clone());
        tokio::spawn(async move { old.put_messages_fenced(&s, &[live], 1).await })
    };
    until_stored(&new, &s, 1).await;
    let mut run = run_for(&s);
    run.epoch = 2;
    let stats = new
        .commit_chats(&s, &[commit("a@c.us", vec![live])], &run)
        .await
        .unwrap();
    assert_eq!(stats[0].unchanged, 1);
    assert_eq!(count_of(&new, &s, "a@c.us").await, 1);
    let late = frozen.await.unwrap();
    assert!(matches!(late, Err(StoreError::Fenced(_))), "{late:?}");
    assert_eq!(count_of(&new, &s, "a@c.us").await, 1);
    let _ = raw_db(&db).await.drop().await;
}

/// The host that took over (epoch 2) is held between its insert and its
/// increment while the host it took over from (epoch 1) commits the same
/// group: the old holder meets duplicates and would recount, counting the
/// new holder's documents before its increment does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_a_taken_over_host_cannot_recount_inside_the_new_holders_commit() {
    let _failpoint = wasync_tests::mongo::fail_command_lock(&test_mongodb_uri()).await;
    let (old, new, db, _, new_app) = two_hosts("laterecount").await;
    let s = sid("laterecount");
    old.upsert_chats(&s, &[chat("a@c.us", Some(1))])
        .await
        .unwrap();
    let messages: Vec<Message> = (0..50).map(|n| msg("a@c.us", n)).collect();
    let mut run = run_for(&s);
    run.epoch = 2;
    let holder = commit_with_held_count(&new, &new_app, &s, &run, &messages, 2).await;
    until_stored(&old, &s, 50).await;
    let mut stale = run.clone();
    stale.epoch = 1;
    let refused = old
        .commit_chats(&s, &[commit("a@c.us", messages.clone())], &stale)
        .await;
    assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
    holder.await.unwrap().unwrap();
    assert_eq!(count_of(&new, &s, "a@c.us").await, 50);
    let _ = raw_db(&db).await.drop().await;
}

/// A chat the chat list of the lease at epoch 2 stored first is claimed
/// for epoch 2 from its creation: a commit of the host that lost the
/// lease (epoch 1) is refused before it writes, although no commit of the
/// new holder claimed the chat yet.
#[tokio::test]
async fn mongo_a_chat_a_newer_lease_listed_first_refuses_an_older_commit() {
    let (old, new, db, _, _) = two_hosts("listclaim").await;
    let s = sid("listclaim");
    new.upsert_chats_fenced(&s, &[chat("a@c.us", Some(1))], 2)
        .await
        .unwrap();
    let messages: Vec<Message> = (0..50).map(|n| msg("a@c.us", n)).collect();
    let mut stale = run_for(&s);
    stale.epoch = 1;
    let refused = old
        .commit_chats(&s, &[commit("a@c.us", messages.clone())], &stale)
        .await;
    assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
    assert_eq!(new.count_messages(&s, None).await.unwrap(), 0);
    let mut holder = stale.clone();
    holder.epoch = 2;
    new.commit_chats(&s, &[commit("a@c.us", messages)], &holder)
        .await
        .unwrap();
    assert_eq!(count_of(&new, &s, "a@c.us").await, 50);
    let _ = raw_db(&db).await.drop().await;
}

/// Two writers store the same new chats at once: both read them absent,
/// one's insert is held on the server while the other (the lease at epoch
/// 2) inserts them and commits messages to one. The held insert (a writer
/// at epoch 1) meets the unique key and upserts instead: one document a
/// chat, the later writer's fields, and the count and the claim the first
/// writer made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_a_chat_list_racing_another_writer_ends_as_its_upserts_would() {
    let _failpoint = wasync_tests::mongo::fail_command_lock(&test_mongodb_uri()).await;
    let (late, early, db, late_app, _) = two_hosts("listrace").await;
    let s = sid("listrace");
    let named = |id: &str, name: &str| Chat {
        name: Some(name.into()),
        ..chat(id, Some(1))
    };
    hold_command("insert", &late_app, 1, 3000).await;
    let held = {
        let (late, s) = (late.clone(), s.clone());
        let chats = [named("a@c.us", "late"), named("b@c.us", "late")];
        tokio::spawn(async move { late.upsert_chats_fenced(&s, &chats, 1).await })
    };
    // The late writer has read the chats absent and waits in its insert.
    tokio::time::sleep(Duration::from_millis(500)).await;
    early
        .upsert_chats_fenced(&s, &[named("a@c.us", "early"), named("b@c.us", "early")], 2)
        .await
        .unwrap();
    let messages: Vec<Message> = (0..5).map(|n| msg("a@c.us", n)).collect();
    let mut run = run_for(&s);
    run.epoch = 2;
    early
        .commit_chats(&s, &[commit("a@c.us", messages)], &run)
        .await
        .unwrap();
    held.await.unwrap().unwrap();
    fail_command_off(&test_mongodb_uri()).await;

    let raw = raw_db(&db).await;
    for id in ["a@c.us", "b@c.us"] {
        let n = raw
            .collection::<Document>("chats")
            .count_documents(doc! { "sessionId": s.as_str(), "chatId": id })
            .await
            .unwrap();
        assert_eq!(n, 1, "documents of chat {id}");
        let claim = raw
            .collection::<Document>("chats")
            .find_one(doc! { "sessionId": s.as_str(), "chatId": id })
            .await
            .unwrap()
            .unwrap()
            .get_i64("countEpoch")
            .unwrap();
        assert_eq!(claim, 2, "the claim on chat {id}");
        let stored = late.get_chat(&s, id).await.unwrap().unwrap();
        assert_eq!(stored.chat.name.as_deref(), Some("late"), "{id}");
    }
    assert_eq!(count_of(&late, &s, "a@c.us").await, 5);
    let _ = raw.drop().await;
}
