//! Portable logins: the GridFS vault against a real MongoDB-wire server,
//! and a webdriver session that moves between two hosts (each with its own
//! data folder, one MongoDB database) without a second QR code: after a
//! clean stop, and after a "crash" that left only a periodic save.

use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc, oid::ObjectId};
use wasync::browser::vault::gridfs::{BUCKET, GridFsVault};
use wasync::browser::vault::{LoginVault, contract};
use wasync::domain::SessionId;
use wasync_tests::mongo::{fresh_db_name, test_mongodb_uri};
use wasync_tests::whatsapp_fixture::WhatsAppFixture;
use wasync_tests::{HostOptions, TestHost, fast_tuning};

use crate::webdriver::{
    LONG, assert_no_processes_left, is, log_in, profile, require_browser, wait_for,
};

async fn database(name: &str) -> mongodb::Database {
    mongodb::Client::with_uri_str(test_mongodb_uri())
        .await
        .expect("connect to the test MongoDB server")
        .database(name)
}

/// The `files` documents of a session, newest revision first.
async fn login_files(db: &mongodb::Database, session: &str) -> Vec<Document> {
    db.collection::<Document>(&format!("{BUCKET}.files"))
        .find(doc! {"_id.session": session})
        .sort(doc! {"_id.rev": -1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn chunk_count(db: &mongodb::Database, session: &str) -> u64 {
    db.collection::<Document>(&format!("{BUCKET}.chunks"))
        .count_documents(doc! {"files_id.session": session})
        .await
        .unwrap()
}

fn rev(file: &Document) -> ObjectId {
    file.get_document("_id")
        .unwrap()
        .get_object_id("rev")
        .unwrap()
}

/// Save, load, replace and delete through the official driver's GridFS
/// (SecantusDB serves it as the two plain collections the spec describes).
#[tokio::test]
async fn gridfs_vault_passes_the_contract() {
    let name = fresh_db_name("logins");
    let vault = GridFsVault::connect(&test_mongodb_uri(), &name)
        .await
        .unwrap();
    contract::run(&vault).await;
    database(&name).await.drop().await.unwrap();
}

/// What the contract cannot see: one revision is kept, a save that died
/// half way hides nothing and its chunks are swept by the next save, and
/// the file is a standard GridFS file any tool can read by name.
#[tokio::test]
async fn gridfs_vault_keeps_one_revision_and_survives_a_crashed_save() {
    let name = fresh_db_name("logins");
    let db = database(&name).await;
    let vault = GridFsVault::new(&db);
    let sid = SessionId::parse("crashy").unwrap();

    let first = contract::sample(300 * 1024, 1);
    vault.save(&sid, first.clone()).await.unwrap();
    let second = contract::sample(280 * 1024, 2);
    vault.save(&sid, second.clone()).await.unwrap();
    let files = login_files(&db, "crashy").await;
    assert_eq!(files.len(), 1, "older revisions are purged: {files:?}");
    assert_eq!(chunk_count(&db, "crashy").await, 2);
    let meta = files[0].get_document("metadata").unwrap();
    assert_eq!(meta.get_i64("bytes").unwrap(), second.len() as i64);

    // A save that crashed after writing chunks but before its `files`
    // document: a newer revision's chunks, no file.
    let orphan_rev = ObjectId::new();
    db.collection::<Document>(&format!("{BUCKET}.chunks"))
        .insert_one(doc! {
            "files_id": {"session": "crashy", "rev": orphan_rev},
            "n": 0,
            "data": mongodb::bson::Binary {
                subtype: mongodb::bson::spec::BinarySubtype::Generic,
                bytes: vec![9; 100],
            },
        })
        .await
        .unwrap();
    assert_eq!(
        vault.load(&sid).await.unwrap().map(|s| s.archive),
        Some(second),
        "a half-written save does not hide the complete one"
    );

    let third = contract::sample(1000, 3);
    vault.save(&sid, third.clone()).await.unwrap();
    assert_eq!(chunk_count(&db, "crashy").await, 1, "orphan chunks swept");
    assert_eq!(
        vault.load(&sid).await.unwrap().map(|s| s.archive),
        Some(third.clone())
    );

    // Readable as a plain GridFS file by name.
    let bucket = db.gridfs_bucket(
        mongodb::options::GridFsBucketOptions::builder()
            .bucket_name(BUCKET.to_owned())
            .build(),
    );
    let mut by_name = Vec::new();
    futures_util::io::AsyncReadExt::read_to_end(
        &mut bucket
            .open_download_stream_by_name("session-crashy")
            .await
            .unwrap(),
        &mut by_name,
    )
    .await
    .unwrap();
    assert_eq!(by_name, third);

    vault.delete(&sid).await.unwrap();
    assert!(login_files(&db, "crashy").await.is_empty());
    assert_eq!(chunk_count(&db, "crashy").await, 0);
    db.drop().await.unwrap();
}

/// A host on the fixture page and the given MongoDB database, in its own
/// data folder.
async fn host_on(fixture: &WhatsAppFixture, db: &str, save_secs: Option<u64>) -> TestHost {
    require_browser();
    let mut opts = HostOptions {
        tuning: fast_tuning(),
        ..Default::default()
    }
    .var(wasync::config::WHATSAPP_WEB_URL, fixture.url.clone())
    .var(wasync::config::MONGODB_URI, test_mongodb_uri())
    .var(wasync::config::MONGODB_DB, db);
    if let Some(s) = save_secs {
        opts = opts.var(wasync::config::WASYNC_LOGIN_SAVE_SECS, s.to_string());
    }
    TestHost::spawn_with(opts).await
}

/// Waits until the vault holds a revision of `session` other than `not`.
async fn wait_for_save(db: &mongodb::Database, session: &str, not: Option<ObjectId>) -> Document {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(LONG);
    loop {
        if let Some(f) = login_files(db, session).await.into_iter().next()
            && Some(rev(&f)) != not
        {
            return f;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new saved login for {session} within {LONG}s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Host B, restoring the session at its start: `ready` with no QR code.
async fn assert_ready_without_qr(host: &TestHost, id: &str) {
    let mut ws = host.ws().await;
    let snap = ws.join(id).await;
    assert!(snap["qr"].is_null(), "a QR code on the new host: {snap}");
    if snap["status"] != "ready" {
        let evs = wait_for(&mut ws, LONG, "ready on the new host", is("ready")).await;
        assert!(
            evs.iter().all(|e| e["event"] != "qr"),
            "a QR code on the new host: {evs:?}"
        );
    }
    let restored = profile(host, id).join("Default/IndexedDB");
    assert!(
        std::fs::read_dir(&restored).is_ok_and(|mut d| d.next().is_some()),
        "no restored IndexedDB in {}",
        restored.display()
    );
}

/// Host A logs in and stops cleanly (its stop saves the login once the
/// browser has quit); host B, with an empty data folder, takes the session
/// over from the shared database and is ready without a QR code. Logout on
/// B deletes the saved login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdriver_login_moves_to_another_host_after_a_clean_stop() {
    let fixture = WhatsAppFixture::start().await;
    let name = fresh_db_name("logins_move");
    let db = database(&name).await;
    let id = "wd-move";

    let a = host_on(&fixture, &name, None).await;
    let _ws = log_in(&a, &fixture, id, 5, "ready").await;
    let at_ready = wait_for_save(&db, id, None).await;
    let a_dir = a.data_dir().to_path_buf();
    a.stop().await;
    assert_no_processes_left(&a_dir).await;
    let files = login_files(&db, id).await;
    assert_eq!(files.len(), 1, "one revision kept: {files:?}");
    assert_ne!(
        rev(&files[0]),
        rev(&at_ready),
        "the clean stop saved the login again"
    );
    eprintln!(
        "saved fixture login: {} bytes compressed, {} chunk(s)",
        files[0].get_i64("length").unwrap_or_default(),
        chunk_count(&db, id).await
    );

    let b = host_on(&fixture, &name, None).await;
    assert_ready_without_qr(&b, id).await;

    let (status, body) = b
        .delete(&format!("/whatsapp-web/session/{id}?logout=true"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        login_files(&db, id).await.is_empty(),
        "logout deletes the saved login"
    );
    assert_eq!(chunk_count(&db, id).await, 0);
    let b_dir = b.data_dir().to_path_buf();
    b.stop().await;
    assert_no_processes_left(&b_dir).await;
    db.drop().await.unwrap();
}

/// The periodic save alone is enough. Host A saves every second while it
/// runs; once a periodic save (a second revision, taken from the live
/// profile) is in the vault, its documents are copied, A is stopped, and
/// the vault is put back to exactly that copy: the state a crash of A
/// right then would have left (no stop save). Host B still gets `ready`
/// without a QR code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdriver_periodic_save_is_enough_after_a_crash() {
    let fixture = WhatsAppFixture::start().await;
    let name = fresh_db_name("logins_crash");
    let db = database(&name).await;
    let id = "wd-crash";

    let a = host_on(&fixture, &name, Some(1)).await;
    let _ws = log_in(&a, &fixture, id, 5, "ready").await;
    let at_ready = wait_for_save(&db, id, None).await;
    let mut not = rev(&at_ready);
    let files = db.collection::<Document>(&format!("{BUCKET}.files"));
    let chunks = db.collection::<Document>(&format!("{BUCKET}.chunks"));
    // The next save may purge a revision while it is being copied; take
    // one whose chunks were all there.
    let (file_doc, chunk_docs) = loop {
        let periodic = wait_for_save(&db, id, Some(not)).await;
        let chunk_docs: Vec<Document> = chunks
            .find(doc! {"files_id": periodic.get("_id").unwrap()})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let length = periodic.get_i64("length").unwrap() as u64;
        let chunk_size = periodic.get_i32("chunkSize").unwrap() as u64;
        if chunk_docs.len() as u64 == length.div_ceil(chunk_size) {
            break (periodic, chunk_docs);
        }
        not = rev(&periodic);
    };

    let a_dir = a.data_dir().to_path_buf();
    a.stop().await;
    assert_no_processes_left(&a_dir).await;
    files.delete_many(doc! {"_id.session": id}).await.unwrap();
    chunks
        .delete_many(doc! {"files_id.session": id})
        .await
        .unwrap();
    files.insert_one(file_doc).await.unwrap();
    chunks.insert_many(chunk_docs).await.unwrap();

    let b = host_on(&fixture, &name, None).await;
    assert_ready_without_qr(&b, id).await;
    let b_dir = b.data_dir().to_path_buf();
    b.stop().await;
    assert_no_processes_left(&b_dir).await;
    db.drop().await.unwrap();
}
