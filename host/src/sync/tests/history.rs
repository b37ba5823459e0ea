//! History runs and `maxAgeDays` in the engine, without a server.

use super::*;
use crate::browser::simulator::{Account, SimulatorConfig};

fn account(sim: serde_json::Value) -> Account {
    Account::new(SimulatorConfig::from_options(&serde_json::json!({ "simulator": sim })).unwrap())
}

fn history_run(f: &Fixture, chat: &str, depth: u32) -> SyncRun {
    let mut run = new_run(
        &f.sid,
        SyncTrigger::Manual,
        depth,
        Some(vec![chat.to_owned()]),
    );
    run.mode = SyncMode::History;
    run
}

async fn stored_ids(f: &Fixture, chat: &str) -> HashSet<String> {
    let msgs = f
        .store
        .list_messages(&f.sid, chat, 10_000, None)
        .await
        .unwrap();
    let ids: HashSet<String> = msgs.iter().map(|m| m.message.id.clone()).collect();
    assert_eq!(ids.len(), msgs.len(), "a message listed twice");
    ids
}

#[tokio::test]
async fn a_history_run_reads_what_the_chat_lacks_and_a_resume_goes_on() {
    let sim = serde_json::json!({"chats": 2, "messagesPerChat": [500, 30]});
    let f = fixture(sim.clone()).await;
    let acc = account(sim);
    let chat = acc.chat(0).id;
    let first = new_run(&f.sid, SyncTrigger::Auto, 100, None);
    assert!(matches!(
        run(&f.deps, first, &never(), &never()).await,
        SyncEnd::Completed(_)
    ));
    f.rec.take();

    let deeper = history_run(&f, &chat, 300);
    let SyncEnd::Completed(done) = run(&f.deps, deeper, &never(), &never()).await else {
        panic!("the history run completes");
    };
    assert_eq!((done.n_chats, done.total_messages_synced), (1, 200));
    let (events, stats) = f.rec.take();
    let phases: Vec<&str> = events.iter().filter_map(|e| e["phase"].as_str()).collect();
    assert_eq!(phases, ["start", "chat", "messages", "done"]);
    assert_eq!(events[2]["messagesSynced"], 200);
    assert_eq!(stats.inserted, 200, "only new messages were written");
    let want: HashSet<String> = acc.newest(0, 300).into_iter().map(|m| m.id).collect();
    assert_eq!(stored_ids(&f, &chat).await, want);
    let stored = f.store.get_chat(&f.sid, &chat).await.unwrap().unwrap();
    assert_eq!(stored.message_count, 300);

    // A run interrupted after its start event resumes from what is stored.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut resumed = history_run(&f, &chat, 450);
    resumed.next_seq = 1;
    f.store.put_sync_run(&resumed).await.unwrap();
    let SyncEnd::Completed(done) = run(&f.deps, resumed, &never(), &never()).await else {
        panic!("the resumed run completes");
    };
    assert_eq!(done.total_messages_synced, 150);
    assert_eq!(stored_ids(&f, &chat).await.len(), 450);
    // The other chat was not read.
    assert_eq!(
        f.store
            .count_messages(&f.sid, Some(&acc.chat(1).id))
            .await
            .unwrap(),
        30
    );
}

#[tokio::test]
async fn max_age_days_trims_every_mode_by_the_provider_clock() {
    let sim = serde_json::json!({"chats": 1, "messagesPerChat": [5000]});
    let f = fixture(sim.clone()).await;
    let chat = account(sim).chat(0).id;
    let mut full = new_run(&f.sid, SyncTrigger::Auto, 2500, None);
    full.max_age_days = Some(1);
    assert!(matches!(
        run(&f.deps, full, &never(), &never()).await,
        SyncEnd::Completed(_)
    ));
    // 45 s apart from 2025-01-01T00:00:00Z: a day back holds 1,921.
    assert_eq!(
        f.store.count_messages(&f.sid, Some(&chat)).await.unwrap(),
        1921
    );
    let mut deeper = history_run(&f, &chat, 5000);
    deeper.max_age_days = Some(2);
    assert!(matches!(
        run(&f.deps, deeper, &never(), &never()).await,
        SyncEnd::Completed(_)
    ));
    assert_eq!(
        f.store.count_messages(&f.sid, Some(&chat)).await.unwrap(),
        3841,
        "two days back"
    );
}
