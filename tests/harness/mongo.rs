//! MongoDB test support: the shared test server's URI, per-test database
//! names, a private server a test may kill and restart, and the insert
//! benchmark (raw driver vs. the store).
//!
//! The servers are SecantusDB (PyPI), a single-node server speaking the
//! MongoDB wire protocol; `scripts/test.sh` starts the shared one and
//! exports its URI. Nothing here is specific to it but the binary name: the
//! tests talk to it only through the official driver.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mongodb::bson::Document;
use mongodb::options::{Acknowledgment, WriteConcern};
use tokio::process::{Child, Command};
use wasync::domain::{Chat, Message, SessionId, SyncRun, SyncStatus, SyncTrigger, now_ms};
use wasync::storage::mongo::MongoStore;
use wasync::storage::mongo::schema::{self, MessageDoc};
use wasync::storage::{ChatCommit, Store};

/// Env var with the shared test server's URI.
pub const URI_ENV: &str = "WASYNC_TEST_MONGODB_URI";
/// Env var with the server binary, for tests that run a private server.
pub const SERVER_BIN_ENV: &str = "WASYNC_SECANTUSD";

/// The shared test server. Panics (never skips) when it is not configured.
pub fn test_mongodb_uri() -> String {
    match std::env::var(URI_ENV) {
        Ok(uri) if !uri.is_empty() => uri,
        _ => panic!(
            "{URI_ENV} is not set: the MongoDB tests need a real server. Run them through \
             `just test` (scripts/test.sh starts one), or start one yourself: \
             `scripts/setup.sh && source scripts/mongo-test-server.sh && mongo_test_server_start`"
        ),
    }
}

/// Held by a test while it relies on the server's `failCommand` failpoint.
///
/// A server has one `failCommand`: arming it replaces what another test
/// armed, and turning it off turns theirs off, whatever `appName` each
/// gave (a late-increment test once saw its held update run at once, the
/// failpoint re-armed by a test beside it). Tests run in parallel, as
/// threads of one binary or, under nextest, as processes, so the lock is
/// on a file named after the server: taken before arming, released when
/// the value is dropped (the end of the test).
pub struct FailCommandLock(#[allow(dead_code)] std::fs::File);

/// Waits for and takes [`FailCommandLock`] for the server at `uri`.
pub async fn fail_command_lock(uri: &str) -> FailCommandLock {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    uri.hash(&mut h);
    let path = std::env::temp_dir().join(format!("wasync-failcommand-{:016x}.lock", h.finish()));
    let file = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        file.lock()
            .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
        file
    })
    .await
    .expect("the failpoint lock");
    FailCommandLock(file)
}

/// Arms the `failCommand` failpoint of the server at `uri`: `mode` is
/// `{ "times": n }`, `{ "skip": n, "times": m }` or `"alwaysOn"`; `data`
/// names the commands, the connections (`appName`) and what they do. The
/// caller holds [`fail_command_lock`].
pub async fn fail_command(uri: &str, mode: impl Into<mongodb::bson::Bson>, data: Document) {
    admin_db(uri)
        .await
        .run_command(mongodb::bson::doc! {
            "configureFailPoint": "failCommand",
            "mode": mode.into(),
            "data": data,
        })
        .await
        .expect("configureFailPoint (is the server started with --enable-test-commands?)");
}

/// Makes `commands` of connections of `app` fail `times` times with error
/// 2 (BadValue: neither a state change nor retryable, so the driver hands
/// it to the store); the caller holds [`fail_command_lock`].
pub async fn fail_commands(uri: &str, commands: &[&str], times: i32, app: &str) {
    fail_command(
        uri,
        mongodb::bson::doc! { "times": times },
        mongodb::bson::doc! { "failCommands": commands, "errorCode": 2, "appName": app },
    )
    .await;
}

/// Turns the `failCommand` failpoint of the server at `uri` off.
pub async fn fail_command_off(uri: &str) {
    let _ = admin_db(uri)
        .await
        .run_command(mongodb::bson::doc! { "configureFailPoint": "failCommand", "mode": "off" })
        .await;
}

async fn admin_db(uri: &str) -> mongodb::Database {
    mongodb::Client::with_uri_str(uri)
        .await
        .expect("connect to the MongoDB-wire server")
        .database("admin")
}

/// A database name no other test uses.
pub fn fresh_db_name(tag: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("wasync_{tag}_{}", &suffix[..12])
}

/// A private server on its own port and data directory, for tests that
/// stop and restart it. Killed when dropped.
pub struct MongoServer {
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl MongoServer {
    /// Starts the server named by `WASYNC_SECANTUSD`; panics if unset.
    pub async fn start() -> Self {
        let bin = std::env::var(SERVER_BIN_ENV).unwrap_or_else(|_| {
            panic!(
                "{SERVER_BIN_ENV} is not set: this test starts its own MongoDB-wire server. \
                 Run it through `just test`, or `scripts/setup.sh` and export \
                 {SERVER_BIN_ENV}=$PWD/.venv/bin/secantusd-py"
            )
        });
        Self::start_bin(PathBuf::from(bin)).await
    }

    /// Starts the server binary at `bin`.
    pub async fn start_bin(bin: PathBuf) -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            l.local_addr().unwrap().port()
        };
        let mut server = Self {
            bin,
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        server.restart().await;
        server
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    /// Kills the server (like a crash: no clean shutdown).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port and data directory, and
    /// waits until it answers.
    pub async fn restart(&mut self) {
        self.stop().await;
        let data = self.dir.path().join("data");
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let child = Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(&data)
            .args(["--enable-test-commands", "--log-level", "WARNING"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log =
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                panic!("the MongoDB-wire server exited ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "the MongoDB-wire server did not listen on port {} within 60 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What [`bench_insert`] measured.
#[derive(Debug, Clone)]
pub struct MongoBenchReport {
    pub messages: usize,
    pub chats: usize,
    /// The raw driver: one `insert_many` of every document.
    pub raw: Duration,
    /// The store path being measured (`what`).
    pub store: Duration,
    /// What `store` measured: the store's `commit_chats`, or a whole host
    /// sync.
    pub what: &'static str,
}

impl MongoBenchReport {
    /// Store time over raw time; the target is at most 1.15.
    pub fn ratio(&self) -> f64 {
        self.store.as_secs_f64() / self.raw.as_secs_f64().max(f64::EPSILON)
    }
}

impl std::fmt::Display for MongoBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = |d: Duration| self.messages as f64 / d.as_secs_f64().max(f64::EPSILON);
        write!(
            f,
            "{} messages in {} chats into MongoDB: raw insert_many {:.2?} ({:.0} msg/s), \
             {} {:.2?} ({:.0} msg/s), ratio {:.2}x (target <= 1.15x)",
            self.messages,
            self.chats,
            self.raw,
            rate(self.raw),
            self.what,
            self.store,
            rate(self.store),
            self.ratio()
        )
    }
}

fn bench_message(chat: usize, n: usize) -> Message {
    Message {
        id: format!("true_{chat}@c.us_3EB0{n:016X}"),
        chat_id: format!("{chat}@c.us"),
        from: format!("{chat}@c.us"),
        to: "me@c.us".into(),
        author: None,
        body: Some(format!(
            "message {n} of chat {chat}: a line of ordinary text, about as long as a chat message"
        )),
        kind: "chat".into(),
        timestamp: 1_700_000_000_000 + (n as i64) * 1000,
        from_me: n.is_multiple_of(3),
        has_media: false,
        ack: 2,
        quoted_id: None,
        tags: vec![],
        attributes: Default::default(),
        changes: Default::default(),
    }
}

/// Inserts `chats * per_chat` generated messages twice into the same
/// server in the same run: once with the raw driver's `insert_many` (into a
/// fresh database with the same indexes and write concern), once through
/// [`MongoStore::commit_chats`], whole chats grouped up to `group_messages`
/// per commit as the sync engine does (its default is 2,000). Both
/// databases are dropped afterwards.
pub async fn bench_insert(
    uri: &str,
    chats: usize,
    per_chat: usize,
    group_messages: usize,
) -> MongoBenchReport {
    let sid = SessionId::parse("bench").unwrap();
    let messages: Vec<Vec<Message>> = (0..chats)
        .map(|c| (0..per_chat).map(|n| bench_message(c, n)).collect())
        .collect();

    // Raw driver.
    let client = mongodb::Client::with_uri_str(uri)
        .await
        .expect("connect to the bench server");
    let raw_db = client.database(&fresh_db_name("bench_raw"));
    let coll = raw_messages::<MessageDoc>(&raw_db).await;
    let docs: Vec<MessageDoc> = messages
        .iter()
        .flatten()
        .map(|m| MessageDoc::new(sid.as_str(), m))
        .collect();
    let t = Instant::now();
    coll.insert_many(&docs).await.expect("raw insert_many");
    let raw = t.elapsed();
    drop(docs);

    // The store, as the sync uses it.
    let store_db = fresh_db_name("bench_store");
    let store = MongoStore::connect(uri, &store_db)
        .await
        .expect("connect the store");
    let chat_list: Vec<Chat> = (0..chats)
        .map(|c| Chat {
            id: format!("{c}@c.us"),
            name: Some(format!("Chat {c}")),
            is_group: false,
            unread_count: 0,
            archived: false,
            pinned: false,
            last_message_at: Some(1_700_000_000_000 + (per_chat as i64) * 1000),
        })
        .collect();
    store.upsert_chats(&sid, &chat_list).await.unwrap();
    let mut run = SyncRun {
        sync_id: uuid::Uuid::now_v7().to_string(),
        session_id: sid.to_string(),
        trigger: SyncTrigger::Manual,
        mode: Default::default(),
        limit_per_chat: per_chat as u32,
        chat_ids: None,
        status: SyncStatus::Running,
        started_at: now_ms(),
        finished_at: None,
        n_chats: chats as u32,
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
    };
    let t = Instant::now();
    let mut group: Vec<ChatCommit> = Vec::new();
    let mut in_group = 0;
    let n_chats = messages.len();
    for (i, batch) in messages.into_iter().enumerate() {
        let chat_id = format!("{i}@c.us");
        in_group += batch.len();
        run.current_chat = i as u32 + 1;
        run.checkpoint = i as u32 + 1;
        run.checkpoint_chat_id = Some(chat_id.clone());
        run.total_messages_synced += batch.len() as u64;
        group.push(ChatCommit {
            chat_id,
            messages: batch.into(),
            quarantined: vec![],
            synced_at: now_ms(),
        });
        if in_group >= group_messages || i + 1 == n_chats {
            store
                .commit_chats(&sid, &group, &run)
                .await
                .expect("store commit");
            group.clear();
            in_group = 0;
        }
    }
    let store_time = t.elapsed();
    assert_eq!(
        store.count_messages(&sid, None).await.unwrap(),
        (chats * per_chat) as u64
    );

    let _ = raw_db.drop().await;
    let _ = store.database().drop().await;
    MongoBenchReport {
        messages: chats * per_chat,
        chats,
        raw,
        store: store_time,
        what: "store commit_chats",
    }
}

/// A fresh `messages` collection for the raw baseline: the store's indexes
/// and write concern, so the comparison measures the adapter, not the
/// schema.
async fn raw_messages<T: Send + Sync>(db: &mongodb::Database) -> mongodb::Collection<T> {
    raw_collection(db, schema::MESSAGES).await
}

/// A fresh collection `name` for a raw baseline, with the store's indexes
/// on it and its write concern (`w: majority, j: true`).
async fn raw_collection<T: Send + Sync>(
    db: &mongodb::Database,
    name: &str,
) -> mongodb::Collection<T> {
    let wc = WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .build();
    db.create_collection(name)
        .await
        .expect("create the raw collection");
    for spec in schema::indexes()
        .into_iter()
        .filter(|s| s.collection == name)
    {
        db.collection::<Document>(name)
            .create_index(spec.model())
            .await
            .expect("create the raw indexes");
    }
    db.collection_with_options::<T>(
        name,
        mongodb::options::CollectionOptions::builder()
            .write_concern(wc)
            .build(),
    )
}

/// Where the P1 measurements run: one server for all (the URI given), or
/// a fresh private server per measurement (the server binary), since
/// SecantusDB slows down as it holds more data and after a database is
/// dropped, which would favour whichever path runs first.
pub enum BenchServers {
    Shared(String),
    Fresh(PathBuf),
}

impl BenchServers {
    /// The servers the benchmarks measure on: `WASYNC_BENCH_MONGODB_URI`
    /// when set (one for every measurement); else a fresh private
    /// SecantusDB per measurement ([`SERVER_BIN_ENV`], else
    /// `.venv/bin/secantusd-py`); else the test suite's server
    /// ([`URI_ENV`]). `None` without any.
    pub fn from_env() -> Option<Self> {
        let bin = std::env::var(SERVER_BIN_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(".venv/bin/secantusd-py"));
        match std::env::var("WASYNC_BENCH_MONGODB_URI") {
            Ok(uri) => Some(Self::Shared(uri)),
            Err(_) if bin.exists() => Some(Self::Fresh(bin)),
            Err(_) => std::env::var(URI_ENV).ok().map(Self::Shared),
        }
    }

    /// A server for one measurement; keep the handle while it runs.
    pub async fn server(&self) -> (String, Option<MongoServer>) {
        match self {
            Self::Shared(uri) => (uri.clone(), None),
            Self::Fresh(bin) => {
                let server = MongoServer::start_bin(bin.clone()).await;
                (server.uri(), Some(server))
            }
        }
    }
}

/// One way of putting the documents into the server, measured in every
/// round.
#[derive(Debug, Clone)]
pub struct PathTime {
    /// What it is, for the row.
    pub what: String,
    /// The median of [`Self::runs`].
    pub took: Duration,
    /// Each round's time, in order.
    pub runs: Vec<Duration>,
}

impl PathTime {
    fn new(what: String, runs: Vec<Duration>) -> Self {
        Self {
            what,
            took: median(&runs),
            runs,
        }
    }
}

/// The median of `runs` (the mean of the middle two for an even count).
fn median(runs: &[Duration]) -> Duration {
    let mut sorted = runs.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

/// What [`bench_sync_paths`] measured: the host's sync beside the raw
/// driver's paths for the same documents and the seed's storage path.
#[derive(Debug, Clone)]
pub struct SyncPathsReport {
    pub messages: usize,
    pub chats: usize,
    /// The contacts the sync stored (the raw paths insert them too).
    pub contacts: usize,
    /// The host's whole sync (`finishedAt - startedAt`), one run per
    /// round, each round's before its raw paths, so that a machine whose
    /// speed drifts during the bench (a shared VM) moves the host's
    /// figure as it moves the baselines'.
    pub host: PathTime,
    /// The raw driver (`insert_many` batches), each batch shape tried.
    pub raw: Vec<PathTime>,
    /// The seed's path (Node driver) at `w: majority, j: true`, then at
    /// the driver's default write concern, one run each after the rounds.
    pub seed: Vec<PathTime>,
}

impl SyncPathsReport {
    pub fn rate(&self, d: Duration) -> f64 {
        self.messages as f64 / d.as_secs_f64().max(f64::EPSILON)
    }

    /// The raw path with the lowest median: the baseline. A median per
    /// shape, not the lowest single run of any: identical runs of one
    /// shape spread by ±8 % on SecantusDB, and the lowest of many noisy
    /// runs would be a baseline no path reaches on average.
    pub fn fastest_raw(&self) -> &PathTime {
        self.raw
            .iter()
            .min_by_key(|p| p.took)
            .expect("at least one raw path")
    }
}

/// The whole sync through a real host into MongoDB (simulator account of
/// `chats * per_chat` messages, no plugins, no clients; timed by the run's
/// own `finishedAt - startedAt`) beside the raw driver, in `rounds`
/// interleaved rounds, each measurement on a server of its own when
/// `servers` gives fresh ones. A round is the host's sync, then the raw
/// driver inserting exactly the account's documents the first sync
/// stored (its chats and contacts, one command each, then its messages),
/// `w: majority, j: true`, the store's indexes, once per
/// `(batch, in flight)` shape of `raw_shapes` (the messages in unordered
/// `insert_many` batches of `batch` documents, `in flight` at a time); the
/// host's own records (the session, the run, the outbox) are not part of
/// the account, and what they cost is what the host adds. After the rounds,
/// with `seed`, the seed's storage path once (`tests/node/mongo-bench.mjs`,
/// the official Node driver in a process of its own: per chat one
/// `updateOne` upsert and one `insertMany`) at the host's durability and
/// at the driver's default.
pub async fn bench_sync_paths(
    servers: &BenchServers,
    chats: u32,
    per_chat: u32,
    raw_shapes: &[(usize, usize)],
    rounds: usize,
    seed: bool,
) -> SyncPathsReport {
    use futures_util::{StreamExt, TryStreamExt};

    let messages = (chats * per_chat) as usize;
    let mut host_runs = Vec::new();
    let mut raw_runs: Vec<Vec<Duration>> = vec![Vec::new(); raw_shapes.len()];
    let mut docs: Vec<Document> = Vec::new();
    let mut account: Vec<(&str, Vec<Document>)> = Vec::new();
    for round in 0..rounds.max(1) {
        let (uri, server) = servers.server().await;
        let db_name = fresh_db_name("bench_sync");
        host_runs.push(host_sync(&uri, &db_name, chats, per_chat).await);
        let client = mongodb::Client::with_uri_str(&uri)
            .await
            .expect("connect to the bench server");
        let sync_db = client.database(&db_name);
        if round == 0 {
            // The same documents, as stored, minus their ids: the account's
            // chats and contacts, and its messages.
            for name in [schema::CHATS, schema::CONTACTS] {
                account.push((name, read_back(&sync_db, name).await));
            }
            docs = read_back(&sync_db, schema::MESSAGES).await;
            assert_eq!(docs.len(), messages);
            assert_eq!(account[0].1.len(), chats as usize);
        }
        let _ = sync_db.drop().await;
        drop(server);

        for (&(batch, in_flight), runs) in raw_shapes.iter().zip(&mut raw_runs) {
            let (uri, server) = servers.server().await;
            let client = mongodb::Client::with_uri_str(&uri)
                .await
                .expect("connect to the bench server");
            let raw_db = client.database(&fresh_db_name("bench_raw"));
            let mut others = Vec::new();
            for (name, docs) in &account {
                others.push((raw_collection::<Document>(&raw_db, name).await, docs));
            }
            let coll = raw_messages::<Document>(&raw_db).await;
            let t = Instant::now();
            // The chats and contacts first, each in one command (as the
            // host writes them before the messages), then the messages.
            for (coll, docs) in &others {
                if !docs.is_empty() {
                    coll.insert_many(docs.iter())
                        .ordered(false)
                        .await
                        .expect("raw insert_many of the chats and contacts");
                }
            }
            let _: Vec<_> = futures_util::stream::iter(docs.chunks(batch.max(1)))
                .map(|chunk| {
                    let coll = coll.clone();
                    async move { coll.insert_many(chunk).ordered(false).await }
                })
                .buffer_unordered(in_flight.max(1))
                .try_collect()
                .await
                .expect("raw insert_many");
            runs.push(t.elapsed());
            assert_eq!(
                coll.count_documents(mongodb::bson::doc! {}).await.unwrap(),
                messages as u64
            );
            let _ = raw_db.drop().await;
            drop(server);
        }
    }
    let raw = raw_shapes
        .iter()
        .zip(raw_runs)
        .map(|(&(batch, in_flight), runs)| {
            PathTime::new(format!("batches of {batch}, {in_flight} in flight"), runs)
        })
        .collect();

    let mut seed_paths = Vec::new();
    if seed {
        for (durability, what) in [
            ("durable", "w: majority, j: true"),
            ("default", "driver default write concern"),
        ] {
            let (uri, server) = servers.server().await;
            let took = seed_path(&uri, chats, per_chat, durability).await;
            seed_paths.push(PathTime::new(what.into(), vec![took]));
            drop(server);
        }
    }
    SyncPathsReport {
        messages,
        chats: chats as usize,
        contacts: account
            .iter()
            .find(|(name, _)| *name == schema::CONTACTS)
            .map_or(0, |(_, docs)| docs.len()),
        host: PathTime::new("the host's sync".into(), host_runs),
        raw,
        seed: seed_paths,
    }
}

/// Every document of collection `name` in `db`, minus its `_id`.
async fn read_back(db: &mongodb::Database, name: &str) -> Vec<Document> {
    use futures_util::TryStreamExt;
    db.collection::<Document>(name)
        .find(mongodb::bson::doc! {})
        .projection(mongodb::bson::doc! {"_id": 0})
        .await
        .expect("read back")
        .try_collect()
        .await
        .expect("read back")
}

/// One sync of `chats * per_chat` messages through a real host into
/// database `db` on `uri`: the run's `finishedAt - startedAt`.
async fn host_sync(uri: &str, db: &str, chats: u32, per_chat: u32) -> Duration {
    let opts = crate::HostOptions::default()
        .var(wasync::config::MONGODB_URI, uri.to_owned())
        .var(wasync::config::MONGODB_DB, db.to_owned());
    let run = crate::bench_sync(opts, chats, per_chat).await;
    assert_eq!(run["totalMessagesSynced"], u64::from(chats * per_chat));
    Duration::from_millis(crate::run_ms(&run))
}

/// Runs the seed's storage path (`tests/node/mongo-bench.mjs seed`) in a
/// Node process against `uri` and returns the time it reports.
pub async fn seed_path(uri: &str, chats: u32, per_chat: u32, durability: &str) -> Duration {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node");
    assert!(
        dir.join("node_modules/mongodb").exists(),
        "tests/node/node_modules/mongodb is missing: run scripts/setup.sh (npm ci in tests/node)"
    );
    let out = Command::new("node")
        .current_dir(&dir)
        .arg("mongo-bench.mjs")
        .args(["seed", uri, &fresh_db_name("bench_seed")])
        .args([chats.to_string(), per_chat.to_string()])
        .arg(durability)
        .output()
        .await
        .expect("run node (Node.js 18+ is needed: scripts/setup.sh)");
    assert!(
        out.status.success(),
        "the seed path failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("the seed path's JSON");
    assert_eq!(v["messages"], u64::from(chats * per_chat));
    Duration::from_secs_f64(v["ms"].as_f64().expect("ms") / 1000.0)
}
