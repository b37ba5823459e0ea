//! The engine without a server: simulator client, embedded store, a sink
//! that records what it is told.

use std::sync::Mutex;

use tokio::sync::mpsc;

use super::*;
use crate::browser::ClientError;
use crate::browser::Provider;
use crate::browser::simulator::SimulatorProvider;
use crate::domain::SyncTrigger;
use crate::plugins::NoPlugins;
use crate::storage::ChatCommit;
use crate::storage::embedded::EmbeddedStore;

#[derive(Default)]
struct Recorder(Mutex<Vec<serde_json::Value>>, Mutex<WriteStats>);

impl Recorder {
    fn take(&self) -> (Vec<serde_json::Value>, WriteStats) {
        (
            std::mem::take(&mut *self.0.lock().unwrap()),
            std::mem::take(&mut *self.1.lock().unwrap()),
        )
    }
}

impl ProgressSink for Recorder {
    fn written(&self, s: &WriteStats) {
        let mut w = self.1.lock().unwrap();
        w.inserted += s.inserted;
        w.updated += s.updated;
        w.unchanged += s.unchanged;
    }
    fn progress(&self, p: &SyncProgress) {
        self.0
            .lock()
            .unwrap()
            .push(serde_json::to_value(p).unwrap());
    }
    fn complete(&self, c: &SyncComplete) {
        let mut v = serde_json::to_value(c).unwrap();
        v["event"] = "sync_complete".into();
        self.0.lock().unwrap().push(v);
    }
    fn failed(&self, f: &SyncFailed) {
        let mut v = serde_json::to_value(f).unwrap();
        v["event"] = "sync_failed".into();
        self.0.lock().unwrap().push(v);
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    rec: Arc<Recorder>,
    deps: SyncDeps,
    sid: SessionId,
}

async fn fixture(sim: serde_json::Value) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("db.redb")).unwrap());
    let sid = SessionId::parse("engine").unwrap();
    let (tx, _rx) = mpsc::channel(16);
    let mut sim = sim;
    sim["fetchLatencyMs"] = 0.into();
    let client = SimulatorProvider
        .start(&sid, &serde_json::json!({ "simulator": sim }), true, tx)
        .await
        .unwrap();
    let rec = Arc::new(Recorder::default());
    let deps = SyncDeps {
        client,
        store: store.clone(),
        chain: Arc::new(NoPlugins),
        sink: rec.clone(),
        relay: RelaySignal::default(),
        options: SyncOptions {
            retry_backoff: Duration::from_millis(1),
            group_window: Duration::ZERO,
            ..Default::default()
        },
    };
    Fixture {
        _dir: dir,
        store,
        rec,
        deps,
        sid,
    }
}

fn never() -> CancellationToken {
    CancellationToken::new()
}

#[tokio::test]
async fn three_chats_follow_the_design_sequence() {
    let f = fixture(serde_json::json!({"chats": 3, "messagesPerChat": [50, 75, 100]})).await;
    let run = new_run(&f.sid, SyncTrigger::Auto, 100, None);
    let end = super::run(&f.deps, run, &never(), &never()).await;
    let SyncEnd::Completed(run) = end else {
        panic!("{end:?}")
    };
    assert_eq!(run.total_messages_synced, 225);
    let ev = f.rec.0.lock().unwrap().clone();
    assert_eq!(ev.len(), 10, "{ev:#?}");
    let phases: Vec<_> = ev[..9]
        .iter()
        .map(|e| e["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "start", "contacts", "chat", "messages", "chat", "messages", "chat", "messages", "done"
        ]
    );
    for (i, e) in ev[..9].iter().enumerate() {
        assert_eq!(e["seq"], i as u64);
        assert_eq!(e["nChats"], 3);
        assert_eq!(e["done"], i == 8);
        assert_eq!(e.get("contacts").is_some(), i == 1, "{e}");
    }
    let expected_contacts =
        crate::browser::simulator::Account::new(crate::browser::simulator::SimulatorConfig {
            chats: 3,
            ..Default::default()
        })
        .expected_contacts();
    assert_eq!(ev[1]["contacts"], expected_contacts);
    assert_eq!(
        f.store.count_contacts(&f.sid).await.unwrap(),
        expected_contacts
    );
    assert_eq!(ev[3]["messagesSynced"], 50);
    assert_eq!(ev[5]["messagesSynced"], 75);
    assert_eq!(ev[7]["messagesSynced"], 100);
    assert_eq!(ev[7]["totalMessagesSynced"], 225);
    assert_eq!(ev[2]["currentChat"], 1);
    assert_eq!(ev[6]["currentChat"], 3);
    assert_eq!(ev[8]["currentChat"], 3);
    assert_eq!(ev[9]["event"], "sync_complete");
    assert_eq!(ev[9]["totalMessagesSynced"], 225);
    assert_eq!(f.store.count_messages(&f.sid, None).await.unwrap(), 225);
    let events = f.store.session_events(&f.sid).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data["chats"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn grouped_commits_keep_the_event_order() {
    let mut f = fixture(serde_json::json!({"chats": 40, "messagesPerChat": 3})).await;
    f.deps.options.group_window = Duration::from_secs(60);
    f.deps.options.group_messages = Some(25);
    let run = new_run(&f.sid, SyncTrigger::Auto, 100, None);
    let end = super::run(&f.deps, run, &never(), &never()).await;
    assert!(matches!(end, SyncEnd::Completed(_)));
    let ev = f.rec.0.lock().unwrap().clone();
    assert_eq!(ev.len(), 2 + 80 + 1 + 1);
    let mut total = 0;
    for (i, e) in ev[..83].iter().enumerate() {
        assert_eq!(e["seq"], i as u64);
        if e["phase"] == "messages" {
            total += 3;
            assert_eq!(e["totalMessagesSynced"], total);
        }
    }
}

#[tokio::test]
async fn a_failing_chat_is_retried_then_recorded_and_the_sync_goes_on() {
    let f =
        fixture(serde_json::json!({"chats": 3, "messagesPerChat": 10, "failFetch": {"2": 100}}))
            .await;
    let run = new_run(&f.sid, SyncTrigger::Manual, 100, None);
    let SyncEnd::Completed(run) = super::run(&f.deps, run, &never(), &never()).await else {
        panic!()
    };
    assert_eq!(run.failed_chats.len(), 1);
    assert_eq!(run.failed_chats[0].attempts, 3);
    assert_eq!(run.total_messages_synced, 20);
    let ev = f.rec.0.lock().unwrap().clone();
    assert_eq!(ev[5]["phase"], "messages");
    assert_eq!(ev[5]["messagesSynced"], 0);

    // Two failures are absorbed by the retries.
    let f = fixture(serde_json::json!({"chats": 3, "messagesPerChat": 10, "failFetch": {"2": 2}}))
        .await;
    let run = new_run(&f.sid, SyncTrigger::Manual, 100, None);
    let SyncEnd::Completed(run) = super::run(&f.deps, run, &never(), &never()).await else {
        panic!()
    };
    assert!(run.failed_chats.is_empty());
    assert_eq!(run.total_messages_synced, 30);
}

#[tokio::test]
async fn cancellation_reports_cancelled_and_shutdown_leaves_a_resumable_run() {
    let f = fixture(serde_json::json!({"chats": 5, "messagesPerChat": 4})).await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let run = new_run(&f.sid, SyncTrigger::Manual, 100, None);
    let SyncEnd::Cancelled(run) = super::run(&f.deps, run, &cancel, &never()).await else {
        panic!()
    };
    assert_eq!(run.status, SyncStatus::Cancelled);
    let last = f.rec.0.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last["event"], "sync_failed");
    assert_eq!(last["reason"], "cancelled");

    // A run interrupted after its checkpoint resumes where it stopped.
    let f = fixture(serde_json::json!({"chats": 5, "messagesPerChat": 4})).await;
    let mut run = new_run(&f.sid, SyncTrigger::Auto, 100, None);
    run.next_seq = 6; // start, contacts and two chats' events were reported
    run.checkpoint = 2;
    run.total_messages_synced = 8;
    let chats = f.deps.client.list_chats().await.unwrap();
    run.checkpoint_chat_id = Some(chats[1].id.clone());
    f.store.upsert_chats(&f.sid, &chats).await.unwrap();
    for c in &chats[..2] {
        let msgs = f.deps.client.fetch_messages(c, 100).await.unwrap();
        f.store
            .commit_chats(
                &f.sid,
                &[ChatCommit {
                    chat_id: c.id.clone(),
                    messages: msgs.into(),
                    quarantined: vec![],
                    synced_at: now_ms(),
                }],
                &run,
            )
            .await
            .unwrap();
    }
    let SyncEnd::Completed(run) = super::run(&f.deps, run, &never(), &never()).await else {
        panic!()
    };
    assert_eq!(run.total_messages_synced, 20);
    assert_eq!(f.store.count_messages(&f.sid, None).await.unwrap(), 20);
    let ev = f.rec.0.lock().unwrap().clone();
    assert_eq!(ev[0]["seq"], 6, "resume continues the sequence");
    assert_eq!(ev[0]["currentChat"], 3);
    assert_eq!(ev.iter().filter(|e| e["done"] == true).count(), 1);

    let shutdown = CancellationToken::new();
    shutdown.cancel();
    let run = new_run(&f.sid, SyncTrigger::Manual, 100, None);
    assert_eq!(
        super::run(&f.deps, run, &never(), &shutdown).await,
        SyncEnd::Interrupted
    );
}

#[tokio::test]
async fn zero_chats_still_completes() {
    let f = fixture(serde_json::json!({"chats": 0})).await;
    let run = new_run(&f.sid, SyncTrigger::Auto, 100, None);
    assert!(matches!(
        super::run(&f.deps, run, &never(), &never()).await,
        SyncEnd::Completed(_)
    ));
    let ev = f.rec.0.lock().unwrap().clone();
    let phases: Vec<_> = ev.iter().map(|e| e["phase"].clone()).collect();
    assert_eq!(phases[..3], ["start", "contacts", "done"]);
    assert_eq!(ev[1]["contacts"], 12, "the address book's pool");
    assert_eq!(ev[2]["done"], true);
    assert_eq!(ev[3]["event"], "sync_complete");
}

/// A provider whose account changes between calls, as a real one does
/// while a host is down.
#[derive(Default)]
struct Account {
    chats: Mutex<Vec<Chat>>,
    messages: Mutex<std::collections::HashMap<String, Vec<crate::domain::Message>>>,
}

impl Account {
    fn message(chat: &str, n: i64) -> crate::domain::Message {
        crate::domain::Message {
            id: format!("{chat}-{n}"),
            chat_id: chat.into(),
            from: chat.into(),
            to: "me@c.us".into(),
            author: None,
            body: Some(format!("m{n}")),
            kind: "chat".into(),
            timestamp: 1_700_000_000_000 + n,
            from_me: false,
            has_media: false,
            ack: 1,
            quoted_id: None,
            tags: vec![],
            attributes: Default::default(),
            changes: Default::default(),
        }
    }

    /// Moves `chat` to the top of the list with one more message.
    fn new_message(&self, chat: &str, n: i64) {
        let mut chats = self.chats.lock().unwrap();
        let i = chats.iter().position(|c| c.id == chat).unwrap();
        let mut c = chats.remove(i);
        c.last_message_at = Some(1_800_000_000_000 + n);
        chats.insert(0, c);
        self.messages
            .lock()
            .unwrap()
            .entry(chat.into())
            .or_default()
            .push(Self::message(chat, n));
    }
}

#[async_trait::async_trait]
impl WhatsAppClient for Account {
    async fn list_chats(&self) -> Result<Vec<Chat>, ClientError> {
        Ok(self.chats.lock().unwrap().clone())
    }
    async fn fetch_messages(
        &self,
        chat: &Chat,
        limit: u32,
    ) -> Result<Vec<crate::domain::Message>, ClientError> {
        let all = self
            .messages
            .lock()
            .unwrap()
            .get(&chat.id)
            .cloned()
            .unwrap_or_default();
        let skip = all.len().saturating_sub(limit as usize);
        Ok(all[skip..].to_vec())
    }
    async fn stop(&self, _logout: bool) {}
}

/// Interrupted after some chats; meanwhile new messages move chats (synced
/// and not yet synced ones) around the list. The resumed run syncs every
/// chat it had not written, whatever its new position, and the data ends
/// exact.
#[tokio::test]
async fn a_resumed_run_syncs_by_membership_when_the_chat_order_changed() {
    let mut f = fixture(serde_json::json!({"chats": 0})).await;
    let account = Arc::new(Account::default());
    for i in 0..10 {
        let id = format!("c{i}@c.us");
        account.chats.lock().unwrap().push(Chat {
            id: id.clone(),
            name: None,
            is_group: false,
            unread_count: 0,
            archived: false,
            pinned: false,
            last_message_at: Some(1_700_000_000_000 - i),
        });
        for n in 0..5 {
            account
                .messages
                .lock()
                .unwrap()
                .entry(id.clone())
                .or_default()
                .push(Account::message(&id, n));
        }
    }
    f.deps.client = account.clone();
    f.deps.options.group_window = Duration::ZERO;
    // The first run writes c0..c3, then the host goes down.
    let mut run = new_run(&f.sid, SyncTrigger::Auto, 100, None);
    run.next_seq = 1;
    let chats = account.list_chats().await.unwrap();
    f.store.upsert_chats(&f.sid, &chats).await.unwrap();
    f.store.put_sync_run(&run).await.unwrap();
    for c in &chats[..4] {
        let msgs = account.fetch_messages(c, 100).await.unwrap();
        let synced_at = now_ms();
        run.checkpoint += 1;
        run.checkpoint_chat_id = Some(c.id.clone());
        run.checkpoint_synced_at = Some(synced_at);
        run.total_messages_synced += msgs.len() as u64;
        f.store
            .commit_chats(
                &f.sid,
                &[ChatCommit {
                    chat_id: c.id.clone(),
                    messages: msgs.into(),
                    quarantined: vec![],
                    synced_at,
                }],
                &run,
            )
            .await
            .unwrap();
    }
    // c4's messages and counters landed, but the host died before its
    // checkpoint did (the MongoDB store writes the run last): the run in
    // the store still ends at c3, and c4 must be synced (and counted) again.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let c4 = chats[4].clone();
    let mut ahead = run.clone();
    ahead.checkpoint_synced_at = Some(now_ms());
    f.store
        .commit_chats(
            &f.sid,
            &[ChatCommit {
                chat_id: c4.id.clone(),
                messages: account.fetch_messages(&c4, 100).await.unwrap().into(),
                quarantined: vec![],
                synced_at: now_ms(),
            }],
            &ahead,
        )
        .await
        .unwrap();
    f.store.put_sync_run(&run).await.unwrap();
    // While it is down: an unsynced chat from the end jumps to the top, and
    // a synced one gets a new message too.
    account.new_message("c9@c.us", 100);
    account.new_message("c1@c.us", 101);
    let SyncEnd::Completed(done) = super::run(&f.deps, run, &never(), &never()).await else {
        panic!("resume did not complete")
    };
    // Every chat is stored whole; the new message of the already synced c1
    // waits for the next sync (the run wrote c1 before it arrived).
    for i in 0..10 {
        let id = format!("c{i}@c.us");
        let want = if i == 9 { 6 } else { 5 };
        assert_eq!(
            f.store.count_messages(&f.sid, Some(&id)).await.unwrap(),
            want,
            "{id}"
        );
    }
    assert_eq!(done.total_messages_synced, 51);
    let events = f.store.session_events(&f.sid).await.unwrap();
    assert_eq!(events[0].data["chats"].as_array().unwrap().len(), 10);
    // Only the six chats the first attempt had not written were fetched.
    let ev = f.rec.0.lock().unwrap().clone();
    let fetched: Vec<&str> = ev
        .iter()
        .filter(|e| e["phase"] == "messages")
        .filter_map(|e| e["chatId"].as_str())
        .collect();
    assert_eq!(fetched.len(), 6, "{fetched:?}");
    assert!(fetched.contains(&"c9@c.us") && !fetched.contains(&"c1@c.us"));
}

/// A simulator client of the same account, with new messages since.
async fn grown(sim: serde_json::Value) -> Arc<dyn WhatsAppClient> {
    let (tx, _rx) = mpsc::channel(16);
    let mut sim = sim;
    sim["fetchLatencyMs"] = 0.into();
    SimulatorProvider
        .start(
            &SessionId::parse("engine").unwrap(),
            &serde_json::json!({ "simulator": sim }),
            true,
            tx,
        )
        .await
        .unwrap()
}

fn incremental(sid: &SessionId) -> SyncRun {
    let mut run = new_run(sid, SyncTrigger::Auto, 100, None);
    run.mode = SyncMode::Incremental;
    run
}

async fn synced_at(store: &dyn Store, sid: &SessionId) -> Vec<(String, Option<i64>, u64)> {
    let mut out: Vec<_> = store
        .list_chats(sid, 10_000, None)
        .await
        .unwrap()
        .chats
        .into_iter()
        .map(|c| (c.chat.id, c.synced_at, c.message_count))
        .collect();
    out.sort();
    out
}

/// Issue 16: an unchanged 10k-message account re-syncs with no message
/// writes, with the same event sequence (every chat's two events, 0 each).
#[tokio::test]
async fn an_unchanged_account_resyncs_incrementally_without_writes() {
    let sim = serde_json::json!({"chats": 100, "messagesPerChat": 100});
    let f = fixture(sim).await;
    let full = new_run(&f.sid, SyncTrigger::Auto, 100, None);
    assert!(matches!(
        super::run(&f.deps, full, &never(), &never()).await,
        SyncEnd::Completed(_)
    ));
    let (_, w) = f.rec.take();
    assert_eq!(w.inserted, 10_000);
    let before = synced_at(&*f.store, &f.sid).await;

    let SyncEnd::Completed(run) =
        super::run(&f.deps, incremental(&f.sid), &never(), &never()).await
    else {
        panic!("incremental run did not complete")
    };
    let (ev, w) = f.rec.take();
    assert_eq!(w, WriteStats::default(), "no message written");
    assert_eq!(run.total_messages_synced, 0);
    assert_eq!(run.mode, SyncMode::Incremental);
    assert_eq!(f.store.count_messages(&f.sid, None).await.unwrap(), 10_000);
    assert_eq!(
        synced_at(&*f.store, &f.sid).await,
        before,
        "no chat written"
    );
    // start, contacts, 100 × (chat, messages), done, sync_complete.
    assert_eq!(ev.len(), 204);
    assert_eq!(ev[0]["phase"], "start");
    assert_eq!(ev[1]["phase"], "contacts");
    for (i, e) in ev[2..202].iter().enumerate() {
        assert_eq!(e["phase"], if i % 2 == 0 { "chat" } else { "messages" });
        assert_eq!(e["currentChat"], i as u64 / 2 + 1);
        assert_eq!(e["messagesSynced"], 0);
        assert_eq!(e["seq"], i as u64 + 2);
    }
    assert_eq!(ev[202]["done"], true);
    assert_eq!(ev[203]["totalMessagesSynced"], 0);
    // `session_ready` as before.
    let events = f.store.session_events(&f.sid).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].data["chats"].as_array().unwrap().len(), 100);
    assert_eq!(events[1].data["totalMessagesSynced"], 0);

    // A full re-sync still reads (and rewrites nothing new).
    let again = new_run(&f.sid, SyncTrigger::Manual, 100, None);
    super::run(&f.deps, again, &never(), &never()).await;
    let (_, w) = f.rec.take();
    assert_eq!((w.inserted, w.unchanged), (0, 10_000));
}

/// Issue 16: 10 new messages in 3 chats become exactly 10 new documents,
/// each chat's `messageCount` exact, and only they are counted.
#[tokio::test]
async fn ten_new_messages_in_three_chats_become_ten_documents() {
    let sim = serde_json::json!({"chats": 100, "messagesPerChat": 100});
    let mut f = fixture(sim.clone()).await;
    let full = new_run(&f.sid, SyncTrigger::Auto, 100, None);
    super::run(&f.deps, full, &never(), &never()).await;
    f.rec.take();
    let mut more = sim;
    more["newMessages"] = serde_json::json!({"2": 3, "50": 3, "100": 4});
    f.deps.client = grown(more).await;

    let SyncEnd::Completed(run) =
        super::run(&f.deps, incremental(&f.sid), &never(), &never()).await
    else {
        panic!("incremental run did not complete")
    };
    let (ev, w) = f.rec.take();
    assert_eq!(
        w,
        WriteStats {
            inserted: 10,
            ..Default::default()
        }
    );
    assert_eq!(run.total_messages_synced, 10);
    assert_eq!(f.store.count_messages(&f.sid, None).await.unwrap(), 10_010);
    for (id, _, count) in synced_at(&*f.store, &f.sid).await {
        assert_eq!(
            count,
            f.store.count_messages(&f.sid, Some(&id)).await.unwrap(),
            "{id}"
        );
    }
    let mut per_chat: Vec<u64> = ev
        .iter()
        .filter(|e| e["phase"] == "messages")
        .map(|e| e["messagesSynced"].as_u64().unwrap())
        .filter(|n| *n > 0)
        .collect();
    per_chat.sort();
    assert_eq!(per_chat, [3, 3, 4]);
    // The chats with new messages moved to the top of the list.
    assert!(ev[3]["messagesSynced"].as_u64().unwrap() > 0, "{:?}", ev[3]);
}

/// A run interrupted mid-way resumes with its mode: still incremental,
/// nothing read twice, the new messages stored once.
#[tokio::test]
async fn a_resumed_incremental_run_stays_incremental() {
    let sim = serde_json::json!({"chats": 20, "messagesPerChat": 50});
    let mut f = fixture(sim.clone()).await;
    super::run(
        &f.deps,
        new_run(&f.sid, SyncTrigger::Auto, 100, None),
        &never(),
        &never(),
    )
    .await;
    f.rec.take();
    let mut more = sim;
    more["newMessages"] = serde_json::json!({"3": 2, "17": 5});
    f.deps.client = grown(more).await;
    // As the host left it: started and recorded, then stopped.
    let mut run = incremental(&f.sid);
    run.next_seq = 1;
    f.store.put_sync_run(&run).await.unwrap();
    let stored = f.store.get_sync_run(&run.sync_id).await.unwrap().unwrap();
    assert_eq!(stored.mode, SyncMode::Incremental);
    assert_eq!(
        serde_json::to_value(&stored).unwrap()["mode"],
        "incremental"
    );
    let SyncEnd::Completed(done) = super::run(&f.deps, stored, &never(), &never()).await else {
        panic!("resume did not complete")
    };
    let (_, w) = f.rec.take();
    assert_eq!(done.mode, SyncMode::Incremental);
    assert_eq!((w.inserted, w.unchanged, w.updated), (7, 0, 0));
    assert_eq!(done.total_messages_synced, 7);
    assert_eq!(f.store.count_messages(&f.sid, None).await.unwrap(), 1_007);
}

/// A provider that reports no `lastMessageAt` (and has no native early
/// stop): every chat is read from its mark and only new messages count.
#[tokio::test]
async fn chats_without_last_activity_are_read_from_their_mark() {
    let mut f = fixture(serde_json::json!({"chats": 0})).await;
    let account = Arc::new(Account::default());
    for i in 0..4 {
        let id = format!("n{i}@c.us");
        account.chats.lock().unwrap().push(Chat {
            id: id.clone(),
            name: None,
            is_group: false,
            unread_count: 0,
            archived: false,
            pinned: false,
            last_message_at: None,
        });
        let mut m = account.messages.lock().unwrap();
        for n in 0..5 {
            m.entry(id.clone())
                .or_default()
                .push(Account::message(&id, n));
        }
    }
    f.deps.client = account.clone();
    super::run(
        &f.deps,
        new_run(&f.sid, SyncTrigger::Auto, 100, None),
        &never(),
        &never(),
    )
    .await;
    f.rec.take();
    account
        .messages
        .lock()
        .unwrap()
        .get_mut("n2@c.us")
        .unwrap()
        .push(Account::message("n2@c.us", 9));
    let SyncEnd::Completed(run) =
        super::run(&f.deps, incremental(&f.sid), &never(), &never()).await
    else {
        panic!("incremental run did not complete")
    };
    let (ev, w) = f.rec.take();
    assert_eq!((w.inserted, w.unchanged), (1, 0));
    assert_eq!(run.total_messages_synced, 1);
    assert_eq!(ev.iter().filter(|e| e["phase"] == "messages").count(), 4);
    assert_eq!(
        f.store
            .count_messages(&f.sid, Some("n2@c.us"))
            .await
            .unwrap(),
        6
    );
}

mod history;

/// The contacts phase stores the address book before the chats, counts it
/// exactly in the `contacts` event and in `session_ready`, sets the groups'
/// members, and writes nothing new when an incremental run finds the same
/// book.
#[tokio::test]
async fn contacts_are_stored_before_the_chats_and_counted_exactly() {
    let sim = serde_json::json!({"chats": 12, "messagesPerChat": 5, "contacts": 9});
    let f = fixture(sim).await;
    let account =
        crate::browser::simulator::Account::new(crate::browser::simulator::SimulatorConfig {
            chats: 12,
            contacts: 9,
            ..Default::default()
        });
    let want = account.expected_contacts();
    let SyncEnd::Completed(_) = super::run(
        &f.deps,
        new_run(&f.sid, SyncTrigger::Auto, 100, None),
        &never(),
        &never(),
    )
    .await
    else {
        panic!("sync did not complete")
    };
    let (ev, _) = f.rec.take();
    assert_eq!(ev[1]["phase"], "contacts");
    assert_eq!(ev[1]["contacts"], want);
    assert_eq!(f.store.count_contacts(&f.sid).await.unwrap(), want);
    let events = f.store.session_events(&f.sid).await.unwrap();
    assert_eq!(events[0].data["contacts"], want);

    // Every group stores its members, the creator first.
    let book = account.address_book();
    assert!(!book.groups.is_empty());
    for g in &book.groups {
        let chat = f.store.get_chat(&f.sid, &g.chat_id).await.unwrap().unwrap();
        assert_eq!(chat.participants, g.participants);
        assert!(
            chat.participants
                .iter()
                .filter(|p| p.is_super_admin)
                .count()
                == 1
        );
    }

    // Each group author, by `@lid` or by number, is a stored contact.
    for i in 0..12 {
        let chat = account.chat(i);
        for m in account.newest(i, 5) {
            if let Some(author) = &m.author {
                let c = f.store.find_contact(&f.sid, author).await.unwrap();
                let c = c.unwrap_or_else(|| panic!("no contact for {author} in {}", chat.id));
                assert!(c.contact.answers_to(author));
            }
        }
    }

    // The same book again: same count, nothing duplicated.
    let SyncEnd::Completed(_) = super::run(&f.deps, incremental(&f.sid), &never(), &never()).await
    else {
        panic!("incremental run did not complete")
    };
    assert_eq!(f.store.count_contacts(&f.sid).await.unwrap(), want);
    let events = f.store.session_events(&f.sid).await.unwrap();
    assert_eq!(events[1].data["contacts"], want);
}

/// A message deleted for everyone while the host was not listening: the
/// next sync finds it revoked, without its body, and keeps the stored body
/// exactly where the session keeps revoked bodies.
#[tokio::test]
async fn a_revoke_found_by_a_sync_keeps_the_body_only_where_the_session_keeps_them() {
    for keep in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("db.redb")).unwrap());
        let sid = SessionId::parse("revoked").unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let sim = serde_json::json!({ "simulator": {
            "chats": 1, "messagesPerChat": 3, "fetchLatencyMs": 0,
            "changes": { "revokes": 1, "afterMs": 1500 },
        }});
        let client = SimulatorProvider.start(&sid, &sim, true, tx).await.unwrap();
        let deps = SyncDeps {
            client,
            store: store.clone(),
            chain: Arc::new(NoPlugins),
            sink: Arc::new(Recorder::default()),
            relay: RelaySignal::default(),
            options: SyncOptions {
                retry_backoff: Duration::from_millis(1),
                group_window: Duration::ZERO,
                keep_revoked_bodies: keep,
                ..Default::default()
            },
        };
        let first = super::run(
            &deps,
            new_run(&sid, SyncTrigger::Auto, 10, None),
            &never(),
            &never(),
        )
        .await;
        assert!(matches!(first, SyncEnd::Completed(_)), "{first:?}");
        // The phone revokes a message; no actor applies the live event.
        let update = loop {
            match rx.recv().await {
                Some(crate::browser::ClientEvent::MessageChanged { update }) => break update,
                Some(_) => continue,
                None => panic!("the simulator stopped before its revoke"),
            }
        };
        let before = store
            .get_message(&sid, &update.message_id)
            .await
            .unwrap()
            .unwrap();
        assert!(before.message.body.is_some() && !before.message.changes.revoked);

        let second = super::run(
            &deps,
            new_run(&sid, SyncTrigger::Manual, 10, None),
            &never(),
            &never(),
        )
        .await;
        assert!(matches!(second, SyncEnd::Completed(_)), "{second:?}");
        let after = store
            .get_message(&sid, &update.message_id)
            .await
            .unwrap()
            .unwrap();
        assert!(after.message.changes.revoked, "keep={keep}");
        if keep {
            assert_eq!(after.message.body, before.message.body);
        } else {
            assert_eq!(after.message.body, None);
        }
    }
}
