//! Lifecycle commands of one session run one after the other: creates and
//! deletes racing on one id never leave two actors, and a purge never
//! deletes the data of the session created after it.

use std::time::Duration;

use serde_json::json;
use wasync_tests::TestHost;

async fn actors(host: &TestHost) -> f64 {
    host.metric("wasync_session_actors")
        .await
        .expect("wasync_session_actors in /metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_and_deletes_never_run_two_actors() {
    let host = std::sync::Arc::new(TestHost::spawn().await);
    let body = json!({"provider": "simulator", "simulator": {
        "chats": 4, "messagesPerChat": 5, "qrEveryMs": 50, "scanAfterMs": 1, "fetchLatencyMs": 1
    }});
    let stop = tokio_util::sync::CancellationToken::new();
    // Samples the actor count while the commands race.
    let sampler = {
        let (host, stop) = (host.clone(), stop.clone());
        tokio::spawn(async move {
            let mut max = 0.0f64;
            while !stop.is_cancelled() {
                max = max.max(actors(&host).await);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            max
        })
    };
    let mut tasks = Vec::new();
    for t in 0..6 {
        let (host, body) = (host.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..8 {
                if (t + i) % 2 == 0 {
                    let (status, b) = host.post("/whatsapp-web/session/race", body.clone()).await;
                    assert!(status == 201 || status == 200, "create: {status} {b}");
                } else {
                    let (status, b) = host.delete("/whatsapp-web/session/race?purge=true").await;
                    assert!(status == 200 || status == 404, "delete: {status} {b}");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stop.cancel();
    let max = sampler.await.unwrap();
    assert!(max <= 1.0, "{max} actors of one session at once");
    // A last create after the storm: its data is whole, nothing purged it.
    host.delete("/whatsapp-web/session/race?purge=true").await;
    let (status, b) = host.post("/whatsapp-web/session/race", body).await;
    assert_eq!(status, 201, "{b}");
    let run = host.wait_sync_done("race").await;
    assert_eq!(run["status"], "completed", "{run}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, chats) = host.get("/whatsapp-web/session/race/chats").await;
    let stored: u64 = chats["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["messageCount"].as_u64().unwrap())
        .sum();
    assert_eq!(stored, 20);
    assert_eq!(actors(&host).await, 1.0);
}

#[tokio::test]
async fn the_simulator_can_be_switched_off() {
    let host = TestHost::spawn_with(
        wasync_tests::HostOptions::default()
            .var(wasync::config::WASYNC_SIMULATOR, "off")
            .var(wasync::config::WASYNC_PROVIDER, "webdriver"),
    )
    .await;
    let (status, body) = host
        .post(
            "/whatsapp-web/session/nosim",
            json!({"provider": "simulator"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("simulator"),
        "{body}"
    );
    host.stop().await;
}
