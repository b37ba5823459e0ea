//! `webdriver.proxy` end to end: real Chromium loads the fixture page
//! through real proxies that demand credentials (HTTP `CONNECT` and
//! SOCKS5), wrong credentials end the session with a named reason, and the
//! password shows nowhere: not in the host's logs, Chromium's command line,
//! chromedriver's log, the API's answers or the events.

use serde_json::{Value, json};
use wasync_tests::TestHost;
use wasync_tests::logs::LogCapture;
use wasync_tests::upstream_proxy::{Kind, UpstreamProxy};
use wasync_tests::whatsapp_fixture::WhatsAppFixture;

use crate::webdriver::{
    LONG, assert_no_processes_left, create_body, is, processes_under, require_browser, wait_for,
};

const USER: &str = "wa-user";

/// Creates `id` with `proxy` and returns the events until `until`.
async fn create_until(host: &TestHost, id: &str, proxy: &str, until: &'static str) -> Vec<Value> {
    let (status, body) = host
        .post(
            &format!("/whatsapp-web/session/{id}"),
            create_body(5, json!({"proxy": proxy})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut ws = host.ws().await;
    let snap = ws.join(id).await;
    if until == "qr" && !snap["qr"].is_null() {
        return vec![snap];
    }
    wait_for(&mut ws, LONG, until, is(until)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdriver_proxy_with_credentials_http_and_socks5() {
    require_browser();
    let logs = LogCapture::start();
    let fixture = WhatsAppFixture::start().await;
    let host = crate::webdriver::host_for(&fixture).await;
    let fixture_addr = fixture
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    // Characters that must be percent-encoded in the URL, and a unique
    // value to search for.
    let password = format!("p@ss:w/rd-{}", uuid::Uuid::new_v4().simple());
    let http = UpstreamProxy::start(Kind::Http, USER, &password).await;
    let socks = UpstreamProxy::start(Kind::Socks5, USER, &password).await;
    let mut seen_events = Vec::new();

    // The page comes up through each proxy (the QR code is the bridge
    // working on it), and Chromium was told only of the local forwarder.
    for (id, proxy) in [("wd-proxy-http", &http), ("wd-proxy-socks", &socks)] {
        let evs = create_until(&host, id, &proxy.url(USER, &password), "qr").await;
        seen_events.extend(evs);
        assert!(
            proxy.targets().contains(&fixture_addr),
            "{:?} did not carry the fixture {fixture_addr}: {:?}",
            proxy.kind,
            proxy.targets()
        );
        assert_eq!(proxy.refused(), 0, "{:?}", proxy.kind);
        let data_arg = format!("session-{id}");
        let chromium: Vec<String> = processes_under(host.data_dir())
            .into_iter()
            .map(|(_, cmd)| cmd)
            .filter(|cmd| cmd.contains(&data_arg) && cmd.contains("--proxy-server="))
            .collect();
        assert!(
            !chromium.is_empty(),
            "no Chromium with --proxy-server for {id}"
        );
        for cmd in &chromium {
            assert!(cmd.contains("--proxy-server=http://127.0.0.1:"), "{cmd}");
            assert!(cmd.contains("--proxy-bypass-list=<-loopback>"), "{cmd}");
            assert!(!cmd.contains(&password) && !cmd.contains(USER), "{cmd}");
        }
        let (status, _) = host.delete(&format!("/whatsapp-web/session/{id}")).await;
        assert_eq!(status, 200);
    }

    // Wrong credentials: a named reason at once, not a page that never loads.
    for (id, proxy, needle) in [
        ("wd-proxy-bad-socks", &socks, "credentials refused (SOCKS5)"),
        ("wd-proxy-bad-http", &http, "credentials refused (HTTP 407)"),
    ] {
        let refused = proxy.refused();
        let evs = create_until(&host, id, &proxy.url(USER, "wrong"), "disconnected").await;
        let reason = evs.last().unwrap()["data"]["reason"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(reason.contains(needle), "{reason}");
        assert!(reason.contains(&proxy.addr.to_string()), "{reason}");
        assert!(proxy.refused() > refused);
        seen_events.extend(evs);
    }

    // Nothing readable shows the secret, in any of its spellings.
    let encoded = url_encoded(&password);
    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"))
    };
    let secrets = [password.as_str(), encoded.as_str(), basic.as_str()];
    let mut readable = vec![format!("{seen_events:?}")];
    readable.push(host.get("/whatsapp-web/sessions").await.1.to_string());
    for id in [
        "wd-proxy-http",
        "wd-proxy-socks",
        "wd-proxy-bad-socks",
        "wd-proxy-bad-http",
    ] {
        readable.push(
            host.get(&format!("/whatsapp-web/session/{id}"))
                .await
                .1
                .to_string(),
        );
    }
    for entry in std::fs::read_dir(host.data_path("profiles"))
        .unwrap()
        .flatten()
    {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("chromedriver-")
        {
            readable.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    let logged = logs.text();
    assert!(
        logged.contains(&format!("socks5h://***@{}", socks.addr)),
        "the capture saw no proxied start:\n{logged}"
    );
    readable.push(logged);
    for text in &readable {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret:?} leaked:\n{text}");
        }
    }

    let dir = host.data_dir().to_path_buf();
    host.stop().await;
    assert_no_processes_left(&dir).await;
}

fn url_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
