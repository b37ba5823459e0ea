//! The dashboard in real headless Chromium (fantoccini + chromedriver):
//! create a simulator session, see the QR image, watch the progress bar
//! reach "Sync complete!", open a chat and see its messages. Screenshots go
//! to `target/screenshots/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use wasync_tests::TestHost;

struct Browser {
    client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

async fn browser() -> Browser {
    let driver_bin = std::env::var("CHROMEDRIVER_PATH").unwrap_or_else(|_| "chromedriver".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = tokio::process::Command::new(&driver_bin)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{driver_bin} does not start ({e}): run scripts/setup.sh (apt-get install chromium chromium-driver)")
        });
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let profile = tempfile::tempdir().unwrap();
    let mut opts = json!({
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--window-size=1280,900",
            format!("--user-data-dir={}", profile.path().display()),
        ]
    });
    if let Ok(bin) = std::env::var("CHROMIUM_PATH") {
        opts["binary"] = bin.into();
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), opts);
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a headless Chromium session");
    Browser {
        client,
        _driver: driver,
        _profile: profile,
    }
}

async fn text_of(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn until(c: &Client, what: &str, secs: u64, mut check: impl AsyncFnMut(&Client) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check(c).await {
        assert!(
            Instant::now() < deadline,
            "dashboard: {what} not seen within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn screenshot(c: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(name), png).unwrap();
}

/// Creates `id` from the page and follows it to "Sync complete!".
async fn drive(c: &Client, id: &str, shot: &str) {
    c.find(Locator::Css("#sid"))
        .await
        .unwrap()
        .send_keys(id)
        .await
        .unwrap();
    c.find(Locator::Css("#create button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The QR is shown as an image rendered by the server.
    until(c, "the QR image", 20, async |c| {
        c.execute(
            "const i = document.querySelector('#qr img'); return !!(i && i.complete && i.naturalWidth > 0);",
            vec![],
        )
        .await
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
    })
    .await;
    screenshot(c, &format!("{shot}-qr.png")).await;
    until(c, "Sync complete!", 40, async |c| {
        text_of(c, "#ptext").await == "Sync complete!"
    })
    .await;
    let width = c
        .execute(
            "return document.getElementById('pbar').style.width;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(width, json!("100%"));
    // Open the first chat and see its messages.
    until(c, "the chat list", 10, async |c| {
        c.find_all(Locator::Css("#chats li"))
            .await
            .map(|v| !v.is_empty())
            .unwrap_or(false)
    })
    .await;
    c.find(Locator::Css("#chats li"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(c, "messages of the chat", 10, async |c| {
        c.find_all(Locator::Css("#messages .msg"))
            .await
            .map(|v| !v.is_empty())
            .unwrap_or(false)
    })
    .await;
    screenshot(c, &format!("{shot}-complete.png")).await;
}

#[tokio::test]
async fn the_dashboard_follows_a_session_to_sync_complete() {
    let host = TestHost::spawn().await;
    let b = browser().await;
    b.client.goto(&format!("{}/", host.base)).await.unwrap();
    drive(&b.client, "dash", "dashboard").await;
    // What the page showed is what was stored.
    let (_, chats) = host.get("/whatsapp-web/session/dash/chats").await;
    assert_eq!(chats["chats"].as_array().unwrap().len(), 8);
    // Changes after the sync: the open chat shows edited and deleted
    // markers and reactions.
    let chat = chats["chats"][0]["id"].as_str().unwrap().to_owned();
    let sid = wasync::domain::SessionId::parse("dash").unwrap();
    let store = host.app().store();
    let newest = store.list_messages(&sid, &chat, 2, None).await.unwrap();
    let update = |i: usize, change| wasync::domain::MessageUpdate {
        chat_id: chat.clone(),
        message_id: newest[i].message.id.clone(),
        change,
    };
    use wasync::domain::MessageChange;
    store
        .apply_changes(
            &sid,
            &[
                update(
                    0,
                    MessageChange::Edit {
                        body: Some("changed text".into()),
                        at: 5,
                    },
                ),
                update(1, MessageChange::Revoke { at: 6 }),
                update(
                    0,
                    MessageChange::Reaction {
                        reactor: "1@c.us".into(),
                        emoji: Some("👍".into()),
                        at: 7,
                    },
                ),
            ],
            false,
        )
        .await
        .unwrap();
    b.client
        .find(Locator::Css("#chats li"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(&b.client, "the change markers", 10, async |c| {
        let t = text_of(c, "#messages").await;
        t.contains("changed text")
            && t.contains("edited")
            && t.contains("This message was deleted")
            && t.contains("👍")
    })
    .await;
    screenshot(&b.client, "dashboard-changes.png").await;
    // A group's messages show their senders by contact name, whether the
    // message names them by number or by `@lid`.
    let c = &b.client;
    for li in c.find_all(Locator::Css("#chats li")).await.unwrap() {
        if li.text().await.unwrap().contains("(group)") {
            li.click().await.unwrap();
            break;
        }
    }
    until(c, "contact names of the senders", 10, async |c| {
        let names: Vec<String> = c
            .execute(
                "return Array.from(document.querySelectorAll('#messages .sender')).map(e => e.textContent);",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        !names.is_empty() && names.iter().all(|n| !n.contains('@'))
    })
    .await;
    screenshot(c, "dashboard-senders.png").await;
    b.client.close().await.unwrap();
    host.stop().await;
}

#[tokio::test]
async fn the_dashboard_asks_for_the_api_key() {
    let key = "dash-key-0123456789abcdef";
    let host = TestHost::spawn_with_key(key).await;
    let b = browser().await;
    let c = &b.client;
    c.goto(&format!("{}/", host.base)).await.unwrap();
    until(c, "the API key prompt", 10, async |c| {
        c.find(Locator::Css("#keybox"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap_or(false)
    })
    .await;
    assert!(text_of(c, "#err").await.contains("API key"));
    let input = c.find(Locator::Css("#apikey")).await.unwrap();
    input.send_keys(key).await.unwrap();
    c.execute(
        "document.getElementById('apikey').dispatchEvent(new Event('change'));",
        vec![],
    )
    .await
    .unwrap();
    drive(c, "dashkey", "dashboard-key").await;
    // The key never went into a URL: the QR was fetched with the header.
    let srcs = c
        .execute(
            "return [...document.querySelectorAll('img')].map(i => i.src).join(' ');",
            vec![],
        )
        .await
        .unwrap();
    assert!(!srcs.as_str().unwrap().contains(key), "{srcs}");
    assert!(!srcs.as_str().unwrap().contains("apiKey"), "{srcs}");
    let seen = c
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('ws')).join(' ');",
            vec![],
        )
        .await
        .unwrap();
    assert!(!seen.as_str().unwrap().contains("apiKey"), "{seen}");
    b.client.clone().close().await.unwrap();
    host.stop().await;
}
