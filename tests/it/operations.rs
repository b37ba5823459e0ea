//! What operators touch: metrics, the OpenAPI document, QR images.

use serde_json::json;
use wasync_tests::{TestHost, assert_eventually};

fn metric(text: &str, name: &str) -> f64 {
    wasync_tests::metric_value(text, name)
        .unwrap_or_else(|| panic!("{name} not in metrics:\n{text}"))
}

#[tokio::test]
async fn metrics_parse_and_move_after_a_sync() {
    let host = TestHost::spawn().await;
    let resp = host.http.get(host.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let before = resp.text().await.unwrap();
    assert_eq!(metric(&before, "wasync_syncs_completed_total"), 0.0);
    // Every sample line is `name{labels} value`.
    for line in before.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf",
            "bad sample {line:?}"
        );
    }

    host.create_sim(
        "metered",
        json!({"chats": 3, "messagesPerChat": 10, "qrEveryMs": 40, "scanAfterMs": 50}),
    )
    .await;
    host.wait_sync_done("metered").await;
    assert_eventually!({
        let (_, t) = host.get("/metrics").await;
        let t = t.as_str().unwrap().to_owned();
        metric(&t, "wasync_syncs_completed_total") == 1.0
            && metric(&t, "wasync_messages_synced_total") == 30.0
            && metric(&t, "wasync_sessions{status=\"ready\"}") == 1.0
            && metric(&t, "wasync_sync_duration_seconds_count") == 1.0
            && metric(&t, "wasync_syncs_started_total") == 1.0
            && metric(&t, "wasync_outbox_published_total") == 1.0
    });
    host.stop().await;
}

#[tokio::test]
async fn openapi_document_is_served() {
    let host = TestHost::spawn().await;
    let (status, doc) = host.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/whatsapp-web/session/{id}/sync-chats"]["post"].is_object());
    assert!(doc["components"]["schemas"]["SyncRun"].is_object());
    host.stop().await;
}

#[tokio::test]
async fn qr_renders_as_svg_and_png() {
    let host = TestHost::spawn().await;
    host.create_sim("qrimg", json!({"scanAfterMs": null, "qrEveryMs": 60000}))
        .await;
    assert_eventually!(host.get("/whatsapp-web/session/qrimg/qr").await.0 == 200);
    let svg = host
        .http
        .get(host.url("/whatsapp-web/session/qrimg/qr?format=svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(svg.status(), 200);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.unwrap().contains("<svg"));
    let png = host
        .http
        .get(host.url("/whatsapp-web/session/qrimg/qr?format=png"))
        .send()
        .await
        .unwrap();
    assert_eq!(png.status(), 200);
    assert_eq!(png.headers()["content-type"], "image/png");
    assert_eq!(&png.bytes().await.unwrap()[..4], b"\x89PNG");
    host.stop().await;
}
