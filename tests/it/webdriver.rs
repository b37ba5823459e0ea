//! The webdriver provider end to end: the real host, real chromedriver and
//! real headless Chromium, against the local WhatsApp Web fixture page.
//!
//! Browser launches are expensive on a small machine, so each test walks a
//! whole story with as few launches as it can, and every wait is bounded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use wasync::domain::{Chat, Message, SessionId};
use wasync_tests::whatsapp_fixture::{ME, WhatsAppFixture};
use wasync_tests::{HostOptions, TestHost, WsClient, fast_tuning};

/// Generous but bounded: a cold Chromium start on a busy 2-core machine.
pub(crate) const LONG: u64 = 90;

/// Fails loudly (never skips) when the browser is not installed.
pub(crate) fn require_browser() {
    let on_path = |names: &[&str]| {
        std::env::var_os("PATH").is_some_and(|p| {
            std::env::split_paths(&p).any(|d| names.iter().any(|n| d.join(n).is_file()))
        })
    };
    let driver = std::env::var_os("CHROMEDRIVER_PATH").is_some() || on_path(&["chromedriver"]);
    let browser = std::env::var_os("CHROMIUM_PATH").is_some()
        || on_path(&["chromium", "chromium-browser", "google-chrome"]);
    assert!(
        driver && browser,
        "chromium and chromedriver are needed: run scripts/setup.sh (apt-get install chromium chromium-driver) or set CHROMIUM_PATH and CHROMEDRIVER_PATH"
    );
}

/// A host whose webdriver provider opens `fixture` (the browser is required).
pub(crate) async fn host_for(fixture: &WhatsAppFixture) -> TestHost {
    require_browser();
    TestHost::spawn_with(
        HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        }
        .var(wasync::config::WHATSAPP_WEB_URL, fixture.url.clone()),
    )
    .await
}

pub(crate) fn create_body(limit: u32, extra: Value) -> Value {
    let mut wd = json!({"pollMs": 100, "maxQrAttempts": 40, "callTimeoutMs": 30000, "pageLoadTimeoutMs": 30000});
    if let (Some(o), Some(e)) = (wd.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    json!({"provider": "webdriver", "limitPerChat": limit, "webdriver": wd})
}

/// Creates webdriver session `id` (`limit` messages per chat), scans its
/// QR code on the fixture and reads events until `until`; returns the
/// joined client.
pub(crate) async fn log_in(
    host: &TestHost,
    fixture: &WhatsAppFixture,
    id: &str,
    limit: u32,
    until: &'static str,
) -> WsClient {
    let (status, body) = host
        .post(
            &format!("/whatsapp-web/session/{id}"),
            create_body(limit, json!({})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut ws = host.ws().await;
    let snap = ws.join(id).await;
    if snap["qr"].is_null() {
        wait_for(&mut ws, LONG, "qr", is("qr")).await;
    }
    fixture.scan().await;
    wait_for(&mut ws, LONG, until, is(until)).await;
    ws
}

/// Events until one satisfies `done` (included), within `secs`.
pub(crate) async fn wait_for(
    ws: &mut WsClient,
    secs: u64,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(ev) = ws.try_recv(left).await else {
            panic!(
                "no {what} within {secs}s; saw: {:?}",
                seen.iter()
                    .map(|e: &Value| e["event"].clone())
                    .collect::<Vec<_>>()
            );
        };
        let hit = done(&ev);
        seen.push(ev);
        if hit {
            return seen;
        }
    }
}

pub(crate) fn is(event: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["event"] == event
}

/// Processes whose command line mentions `dir` (the test host's data
/// folder): the chromedrivers and Chromiums this test started, nothing else.
pub(crate) fn processes_under(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.display().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(&needle) {
            out.push((pid, cmd));
        }
    }
    out
}

pub(crate) async fn assert_no_processes_left(dir: &Path) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = processes_under(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "browser processes left behind: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn profile(host: &TestHost, id: &str) -> PathBuf {
    host.data_path(&format!("profiles/session-{id}"))
}

/// Checks what the sync stored against the seed, field by field.
async fn assert_seed_stored(host: &TestHost, fixture: &WhatsAppFixture, id: &str, limit: usize) {
    let store = host.app().store();
    let sid = SessionId::parse(id).unwrap();
    let page = store.list_chats(&sid, 100, None).await.unwrap();
    let stored: Vec<Chat> = page.chats.iter().map(|c| c.chat.clone()).collect();
    assert_eq!(stored, fixture.seed.expected_chats(), "chats");
    for chat in &fixture.seed.chats {
        let mut got: Vec<Message> = store
            .list_messages(&sid, &chat.id, 1000, None)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.message)
            .collect();
        got.reverse();
        assert_eq!(
            got,
            fixture.seed.expected_messages(&chat.id, limit),
            "messages of {}",
            chat.id
        );
    }
}

/// Login with rotating QR codes, exact sync, live messages (also after a
/// page reload), a host restart that reuses the login, logout that deletes
/// the profile, and no processes left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdriver_login_sync_live_restart_logout() {
    let fixture = WhatsAppFixture::start().await;
    let mut host = host_for(&fixture).await;
    let id = "wd-main";
    let (status, body) = host
        .post(
            &format!("/whatsapp-web/session/{id}"),
            create_body(20, json!({})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut ws = host.ws().await;
    let snap = ws.join(id).await;
    let mut attempts: Vec<u64> = snap["qr"]["attempt"].as_u64().into_iter().collect();

    // At least two codes (rotation), each with its attempt number.
    while attempts.len() < 2 {
        let evs = wait_for(&mut ws, LONG, "qr", is("qr")).await;
        let qr = &evs.last().unwrap()["data"];
        let code = qr["qr"].as_str().unwrap();
        assert_eq!(
            code.split(',').count(),
            5,
            "ref,noise,identity,adv,platform: {code}"
        );
        assert!(code.ends_with(",WEB"), "{code}");
        assert!(qr["expiresAt"].as_i64().unwrap() > wasync::domain::now_ms());
        attempts.push(qr["attempt"].as_u64().unwrap());
    }
    assert!(
        attempts.windows(2).all(|w| w[1] == w[0] + 1),
        "{attempts:?}"
    );
    let (_, qr) = host.get(&format!("/whatsapp-web/session/{id}/qr")).await;
    assert!(qr["qr"].is_string(), "{qr}");

    fixture.scan().await;
    wait_for(&mut ws, LONG, "authenticated", is("authenticated")).await;
    wait_for(&mut ws, LONG, "ready", is("ready")).await;
    let evs = wait_for(&mut ws, LONG, "sync_complete", is("sync_complete")).await;
    let done = evs.last().unwrap();
    assert_eq!(done["data"]["nChats"], 4);
    // 20 of 30 + 11 (one of 12 is a notification) + 3 + 4.
    assert_eq!(done["data"]["totalMessagesSynced"], 38);
    assert_seed_stored(&host, &fixture, id, 20).await;
    let (_, snap) = host.get(&format!("/whatsapp-web/session/{id}")).await;
    assert_eq!(snap["me"]["id"], ME, "{snap}");

    // A live message: stored and emitted as `message`.
    let ana = "4915100000001@c.us";
    let live = fixture.incoming(ana, "hello from the phone").await;
    let evs = wait_for(&mut ws, 30, "message", is("message")).await;
    let m = &evs.last().unwrap()["data"];
    assert_eq!(m["id"], live.as_str());
    assert_eq!(m["chatId"], ana);
    assert_eq!(m["body"], "hello from the phone");
    assert_eq!(m["from"], ana);
    assert_eq!(m["to"], ME);
    assert_eq!(m["fromMe"], false);
    let sid = SessionId::parse(id).unwrap();
    let stored = host
        .app()
        .store()
        .list_messages(&sid, ana, 1, None)
        .await
        .unwrap();
    assert_eq!(stored[0].message.id, live);
    fixture.ack(&live, 3).await;

    // The page reloads: the bridge is injected again and live messages
    // keep coming.
    let loads = fixture.page_loads();
    fixture.reload().await;
    wasync_tests::assert_eventually!(fixture.page_loads() > loads, 30);
    // A message in the moment between the page's boot and the bridge's
    // re-injection is not a live event (a re-sync picks it up), so give
    // the host a few polls.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live2 = fixture.incoming(ana, "after the reload").await;
    let evs = wait_for(&mut ws, 30, "message after reload", |e| {
        e["event"] == "message" && e["data"]["id"] == live2.as_str()
    })
    .await;
    assert!(evs.iter().all(|e| e["event"] != "disconnected"), "{evs:?}");
    drop(ws);

    // Restart: the same profile keeps the login, so no QR, straight to ready.
    host.restart().await;
    let mut ws = host.ws().await;
    let snap = ws.join(id).await;
    assert!(snap["qr"].is_null(), "{snap}");
    if snap["status"] != "ready" {
        let evs = wait_for(&mut ws, LONG, "ready after restart", is("ready")).await;
        assert!(
            evs.iter().all(|e| e["event"] != "qr"),
            "a QR after restart: {evs:?}"
        );
    }

    // Logout drops the login and deletes the profile.
    assert!(profile(&host, id).exists());
    let (status, body) = host
        .delete(&format!("/whatsapp-web/session/{id}?logout=true"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!profile(&host, id).exists(), "profile kept after logout");
    assert_no_processes_left(host.data_dir()).await;

    // The next start asks for a QR code again.
    let (status, body) = host
        .post(
            &format!("/whatsapp-web/session/{id}"),
            create_body(20, json!({})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut ws = host.ws().await;
    let snap = ws.join(id).await;
    if snap["qr"].is_null() {
        wait_for(&mut ws, LONG, "qr after logout", is("qr")).await;
    }
    let (status, _) = host.delete(&format!("/whatsapp-web/session/{id}")).await;
    assert_eq!(status, 200);
    assert!(
        profile(&host, id).exists(),
        "a plain stop keeps the profile"
    );
    let dir = host.data_dir().to_path_buf();
    host.stop().await;
    assert_no_processes_left(&dir).await;
}

/// The pre-2026 `loadEarlierMsgs(chat, msgs)` style syncs the same data,
/// and a page without `WAWebCollections` is a named error, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdriver_old_load_style_and_missing_module() {
    let fixture = WhatsAppFixture::start().await;
    fixture.configure(|c| c.load_style = "old".into());
    let host = host_for(&fixture).await;
    let id = "wd-old";
    let _ws = log_in(&host, &fixture, id, 25, "sync_complete").await;
    assert_seed_stored(&host, &fixture, id, 25).await;
    let styles: Vec<Value> = fixture
        .reports()
        .into_iter()
        .filter_map(|r| r.get("loadEarlierMsgs").cloned())
        .collect();
    assert!(
        !styles.is_empty() && styles.iter().all(|s| s == "old"),
        "{styles:?}"
    );
    let (status, _) = host.delete(&format!("/whatsapp-web/session/{id}")).await;
    assert_eq!(status, 200);

    fixture.configure(|c| {
        c.load_style = "new".into();
        c.missing_module = Some("WAWebCollections".into());
    });
    let id = "wd-missing";
    let (status, body) = host
        .post(
            &format!("/whatsapp-web/session/{id}"),
            create_body(25, json!({})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut ws = host.ws().await;
    ws.join(id).await;
    let evs = wait_for(&mut ws, LONG, "disconnected", is("disconnected")).await;
    let reason = evs.last().unwrap()["data"]["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("page module WAWebCollections not found"),
        "{reason}"
    );
    assert_no_processes_left(host.data_dir()).await;

    // Nobody scans: after the configured number of codes, `disconnected`.
    fixture.configure(|c| c.missing_module = None);
    let id = "wd-noscan";
    let (status, body) = host
        .post(
            &format!("/whatsapp-web/session/{id}"),
            create_body(5, json!({"maxQrAttempts": 3})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut ws = host.ws().await;
    let snap = ws.join(id).await;
    let evs = wait_for(&mut ws, LONG, "disconnected", is("disconnected")).await;
    assert_eq!(evs.last().unwrap()["data"]["reason"], "qr_timeout");
    let qrs = evs.iter().filter(|e| e["event"] == "qr").count() + snap["qr"].is_object() as usize;
    assert_eq!(qrs, 3, "{evs:?}");

    let dir = host.data_dir().to_path_buf();
    assert_no_processes_left(&dir).await;
    host.stop().await;
    assert_no_processes_left(&dir).await;
}

/// After a crash nothing runs the host's cleanup, so a new host on the same
/// data folder kills what the old one left (found by the profiles folder on
/// the command line) and nothing else.
#[tokio::test]
async fn webdriver_startup_sweeps_processes_left_by_a_crash() {
    let data = tempfile::tempdir().unwrap();
    let profiles = data.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    let spawn = |arg: String| {
        std::process::Command::new("bash")
            .args(["-c", "sleep 30; :", "stale", &arg])
            .spawn()
            .unwrap()
    };
    let mut stale = spawn(format!(
        "--user-data-dir={}/session-old",
        profiles.display()
    ));
    let other = tempfile::tempdir().unwrap();
    let mut unrelated = spawn(format!(
        "--user-data-dir={}/session-old",
        other.path().display()
    ));
    let host = TestHost::spawn_with(
        HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        }
        .var(
            wasync::config::WASYNC_DATA_DIR,
            data.path().display().to_string(),
        ),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stale.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "stale process not killed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        unrelated.try_wait().unwrap().is_none(),
        "an unrelated process was killed"
    );
    let _ = unrelated.kill();
    let _ = unrelated.wait();
    host.stop().await;
}

/// Chromium killed under a ready session: `disconnected`, nothing left
/// running, and the session starts again (its login kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdriver_browser_killed_mid_session() {
    let fixture = WhatsAppFixture::start().await;
    let host = host_for(&fixture).await;
    let id = "wd-kill";
    let mut ws = log_in(&host, &fixture, id, 5, "sync_complete").await;

    let data_arg = format!("--user-data-dir={}", profile(&host, id).display());
    let chromium: Vec<u32> = processes_under(host.data_dir())
        .into_iter()
        .filter(|(_, cmd)| cmd.split(' ').any(|a| a == data_arg))
        .map(|(pid, _)| pid)
        .collect();
    assert!(!chromium.is_empty(), "no Chromium found for {data_arg}");
    for pid in chromium {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let evs = wait_for(&mut ws, LONG, "disconnected", is("disconnected")).await;
    let reason = evs.last().unwrap()["data"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("browser closed") || !reason.is_empty(),
        "{reason}"
    );
    assert_no_processes_left(host.data_dir()).await;

    // Started again on the same profile: logged in, straight to ready.
    // (Until the old actor has finished exiting, a create answers 200
    // "already running"; it turns 201 within moments.)
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = host
            .post(
                &format!("/whatsapp-web/session/{id}"),
                create_body(5, json!({})),
            )
            .await;
        if status == 201 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "the session did not end: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ws = host.ws().await;
    let snap = ws.join(id).await;
    if snap["status"] != "ready" {
        let evs = wait_for(&mut ws, LONG, "ready again", is("ready")).await;
        assert!(evs.iter().all(|e| e["event"] != "qr"), "{evs:?}");
    }

    // Killed again, then logged out while nothing runs: there is no
    // browser to log out through, so the host drops the profile itself,
    // and the next start asks for a QR code again.
    for (pid, cmd) in processes_under(host.data_dir()) {
        if cmd.split(' ').any(|a| a == data_arg) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
    wait_for(&mut ws, LONG, "disconnected", is("disconnected")).await;
    let (status, body) = host
        .delete(&format!("/whatsapp-web/session/{id}?logout=true"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["loggedOut"], true);
    assert!(
        !profile(&host, id).exists(),
        "the profile of a logged-out session is gone"
    );
    let (status, body) = host
        .post(
            &format!("/whatsapp-web/session/{id}"),
            create_body(5, json!({})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut ws = host.ws().await;
    ws.join(id).await;
    wait_for(&mut ws, LONG, "a QR code after the logout", is("qr")).await;

    let dir = host.data_dir().to_path_buf();
    host.stop().await;
    assert_no_processes_left(&dir).await;
}

/// `WEBDRIVER_URL`: the host starts no chromedriver and uses the endpoint
/// it is given (here a chromedriver the test runs, as a grid node would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdriver_remote_endpoint() {
    require_browser();
    let fixture = WhatsAppFixture::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let driver_bin = std::env::var("CHROMEDRIVER_PATH").unwrap_or_else(|_| "chromedriver".into());
    // The log path puts the data folder on the command line, so the leak
    // check below sees this chromedriver too.
    let mut driver = tokio::process::Command::new(driver_bin)
        .arg(format!("--port={port}"))
        .arg(format!(
            "--log-path={}/remote-chromedriver.log",
            data.path().display()
        ))
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "chromedriver did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let host = TestHost::spawn_with(
        HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        }
        .var(wasync::config::WHATSAPP_WEB_URL, fixture.url.clone())
        .var(wasync::config::WEBDRIVER_URL, url)
        .var(
            wasync::config::WASYNC_DATA_DIR,
            data.path().display().to_string(),
        ),
    )
    .await;
    let id = "wd-remote";
    let _ws = log_in(&host, &fixture, id, 5, "sync_complete").await;
    assert_seed_stored(&host, &fixture, id, 5).await;
    let (status, _) = host.delete(&format!("/whatsapp-web/session/{id}")).await;
    assert_eq!(status, 200);
    host.stop().await;
    // Closing the WebDriver session ended the browser; only the endpoint
    // itself (the test's own chromedriver) is still running.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left: Vec<_> = processes_under(data.path())
            .into_iter()
            .filter(|(pid, _)| Some(*pid) != driver.id())
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "browser left running: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = driver.kill().await;
}

/// A WebDriver endpoint that accepts connections and never answers (a
/// blackholed grid): the start gives up at `connectTimeoutMs`, and a
/// `DELETE` during the start returns at once instead of waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdriver_a_silent_endpoint_neither_hangs_the_start_nor_the_delete() {
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", hole.local_addr().unwrap());
    // Accepts and holds every connection, saying nothing.
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = hole.accept().await {
            conns.push(c);
        }
    });
    let host = TestHost::spawn_with(
        HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        }
        .var(wasync::config::WEBDRIVER_URL, url),
    )
    .await;
    let (status, body) = host
        .post(
            "/whatsapp-web/session/hole",
            create_body(5, json!({"connectTimeoutMs": 1000})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut ws = host.ws().await;
    let snap = ws.join("hole").await;
    if snap["status"] != "disconnected" {
        let evs = wait_for(&mut ws, 15, "disconnected", is("disconnected")).await;
        let reason = evs.last().unwrap()["data"]["reason"].as_str().unwrap_or("");
        assert!(reason.contains("new session"), "{reason}");
    }

    let (status, body) = host
        .post(
            "/whatsapp-web/session/hole2",
            create_body(5, json!({"connectTimeoutMs": 600000})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let (status, body) = host.delete("/whatsapp-web/session/hole2").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "DELETE waited {:?} for a start that never ends",
        started.elapsed()
    );
    host.stop().await;
    held.abort();
}

/// WhatsApp Web's "link with phone number" flow, driven through the
/// fixture's screens: the host opens the phone login, types the number
/// (the page reports what it got), reads each code the page shows (a new
/// one when it is replaced) and never shows a QR code. A host restart
/// before the link asks for a new pairing code, not a QR; the code read
/// from `GET .../pairing-code` is the one the page takes (a wrong one it
/// refuses), and the rest is the QR lifecycle: ready, an exact sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdriver_pairing_code_login_and_restart() {
    let fixture = WhatsAppFixture::start().await;
    fixture.configure(|c| {
        c.pairing_code_every_ms = 2_500;
        c.qr_rotations = 40;
    });
    let mut host = host_for(&fixture).await;
    let id = "wd-pair";
    let mut body = create_body(20, json!({}));
    body["login"] = json!({"phoneNumber": "+49 151 0000-0000"});
    let (status, snap) = host
        .post(&format!("/whatsapp-web/session/{id}"), body)
        .await;
    assert_eq!(status, 201, "{snap}");
    let mut ws = host.ws().await;
    ws.join(id).await;
    let pairing = |e: &Value| e["event"] == "pairing_code";
    let no_qr = |evs: &[Value]| {
        assert!(evs.iter().all(|e| e["event"] != "qr"), "a QR code: {evs:?}");
    };
    let mut codes = Vec::new();
    while codes.len() < 2 {
        let evs = wait_for(&mut ws, LONG, "pairing_code", pairing).await;
        no_qr(&evs);
        let c = evs.last().unwrap()["data"].clone();
        let code = c["code"].as_str().unwrap();
        assert_eq!((code.len(), &code[4..5]), (9, "-"), "ABCD-EFGH: {code}");
        assert!(c["expiresAt"].as_i64().unwrap() > wasync::domain::now_ms());
        codes.push(c);
    }
    assert_eq!(codes[0]["attempt"], 1, "{codes:?}");
    assert_eq!(codes[1]["attempt"], 2, "{codes:?}");
    assert_ne!(codes[0]["code"], codes[1]["code"], "the page replaced it");
    assert!(
        fixture
            .reports()
            .contains(&json!({"phoneNumber": "+4915100000000"})),
        "the page got the normalised number: {:?}",
        fixture.reports()
    );
    let (s, no) = host.get(&format!("/whatsapp-web/session/{id}/qr")).await;
    assert_eq!((s, no["code"].as_str()), (404, Some("no_qr")), "{no}");
    drop(ws);

    // A restart before the link: the stored login body asks for a new
    // pairing code (attempt 1 again, a new browser), not a QR code.
    host.restart().await;
    let mut ws = host.ws().await;
    let snap = ws.join(id).await;
    assert!(snap["qr"].is_null(), "{snap}");
    if snap["pairingCode"].is_null() {
        let evs = wait_for(&mut ws, LONG, "pairing_code after restart", pairing).await;
        no_qr(&evs);
    }
    let (s, pending) = host
        .get(&format!("/whatsapp-web/session/{id}/pairing-code"))
        .await;
    assert_eq!(s, 200, "{pending}");

    // The phone's user types a wrong code (refused), then the shown one.
    fixture.enter_code("ZZZZ-ZZZZ").await;
    wasync_tests::assert_eventually!(
        fixture
            .reports()
            .iter()
            .any(|r| r["enterCode"] == "refused"),
        30
    );
    // The code may be replaced between the read and the typing: type the
    // pending one until the page takes one.
    let accepted = |f: &WhatsAppFixture| f.reports().iter().any(|r| r["enterCode"] == "accepted");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(LONG);
    while !accepted(&fixture) {
        assert!(tokio::time::Instant::now() < deadline, "no code accepted");
        let (_, pending) = host
            .get(&format!("/whatsapp-web/session/{id}/pairing-code"))
            .await;
        if let Some(code) = pending["code"].as_str() {
            fixture.enter_code(code).await;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let evs = wait_for(&mut ws, LONG, "sync_complete", is("sync_complete")).await;
    no_qr(&evs);
    assert!(evs.iter().any(|e| e["event"] == "ready"), "{evs:?}");
    assert_seed_stored(&host, &fixture, id, 20).await;
    let (s, gone) = host
        .get(&format!("/whatsapp-web/session/{id}/pairing-code"))
        .await;
    assert_eq!(
        (s, gone["code"].as_str()),
        (404, Some("no_pairing_code")),
        "{gone}"
    );
    let (status, _) = host
        .delete(&format!("/whatsapp-web/session/{id}?logout=true"))
        .await;
    assert_eq!(status, 200);
    let dir = host.data_dir().to_path_buf();
    host.stop().await;
    assert_no_processes_left(&dir).await;
}
