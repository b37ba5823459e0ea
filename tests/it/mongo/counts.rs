//! `messageCount` stays exact while commits increment it: a lost
//! acknowledgement of the insert or of the counter update, a commit that
//! meets duplicates, and a live message racing a sync's commit of the same
//! chat.

use super::*;

/// Arms `failCommand` so that `commands` of connections of `app` run
/// normally and then answer with a `writeConcernError` (64,
/// WriteConcernFailed: not a state change, so the driver keeps the
/// server): the write is applied, its acknowledgement is lost.
async fn lose_acknowledgement(commands: &[&str], app: &str) {
    raw_db("admin")
        .await
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": { "times": 1 },
            "data": {
                "failCommands": commands,
                "appName": app,
                "writeConcernError": { "code": 64, "errmsg": "test: acknowledgement lost" },
            },
        })
        .await
        .expect("configureFailPoint (is the server started with --enable-test-commands?)");
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

async fn count_of(store: &MongoStore, s: &SessionId, chat_id: &str) -> u64 {
    store
        .get_chat(s, chat_id)
        .await
        .unwrap()
        .unwrap()
        .message_count
}

#[tokio::test]
async fn mongo_a_lost_insert_acknowledgement_ends_with_an_exact_count() {
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
    raw_db("admin")
        .await
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": { "times": 1 },
            "data": {
                "failCommands": ["update"],
                "appName": &app,
                "blockConnection": true,
                "blockTimeMS": 1500,
            },
        })
        .await
        .expect("configureFailPoint (is the server started with --enable-test-commands?)");
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
