//! A webhook receiver for tests and the benchmark: a real hyper server on
//! `127.0.0.1:0` that records every request (headers, raw body, the status
//! it answered) and answers as told: fail the next N requests, fail all
//! (down), take a while (slow).
//!
//! Signatures are checked here with `hmac`/`sha2` directly, not with the
//! host's own signing code, so a test compares two implementations.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: Bytes,
    /// What the receiver answered.
    pub status: u16,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// `X-Wasync-Delivery`.
    pub fn delivery(&self) -> &str {
        self.header("x-wasync-delivery")
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether `X-Wasync-Signature` is `sha256=` HMAC-SHA256(secret,
    /// timestamp + "." + body).
    pub fn signed_with(&self, secret: &str) -> bool {
        use hmac::Mac;
        let Some(given) = self.header("x-wasync-signature").strip_prefix("sha256=") else {
            return false;
        };
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(self.header("x-wasync-timestamp").as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        want == given
    }
}

#[derive(Debug, Default)]
struct Policy {
    /// Answer 500 to this many more requests.
    fail_next: u32,
    /// Answer 503 to everything.
    down: bool,
    /// Wait this long before answering.
    delay: Duration,
}

#[derive(Debug, Default)]
struct State {
    policy: Policy,
    got: Vec<Received>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let (st, sp) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = sp.cancelled() => return,
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                };
                let st = st.clone();
                let sp = sp.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(st.clone(), req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = sp.cancelled() => {}
                    }
                });
            }
        });
        Receiver { addr, state, stop }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer 500 to the next `n` requests.
    pub fn fail_next(&self, n: u32) {
        self.state.lock().unwrap().policy.fail_next = n;
    }

    /// Answer 503 to everything (`true`) or go back to answering 200.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().policy.down = down;
    }

    /// Take `d` before answering each request.
    pub fn set_delay(&self, d: Duration) {
        self.state.lock().unwrap().policy.delay = d;
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().got.clone()
    }

    /// The requests answered 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.received().into_iter().filter(Received::ok).collect()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().got.len()
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let delay = state.lock().unwrap().policy.delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = {
        let mut s = state.lock().unwrap();
        let status = if s.policy.down {
            503
        } else if s.policy.fail_next > 0 {
            s.policy.fail_next -= 1;
            500
        } else {
            200
        };
        s.got.push(Received {
            path,
            headers,
            body,
            status,
            at: Instant::now(),
        });
        status
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    Ok(resp)
}

/// What [`bench_deliveries`] measured.
#[derive(Debug, Clone)]
pub struct DeliveryBench {
    pub deliveries: usize,
    pub sessions: usize,
    pub concurrency: usize,
    /// From the dispatcher's start to the receiver's last 2xx.
    pub elapsed: Duration,
}

impl DeliveryBench {
    pub fn per_sec(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }
}

impl std::fmt::Display for DeliveryBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "webhooks -> local receiver, signed: {} deliveries over {} sessions, concurrency {}: {:.0}/s ({:.2?})",
            self.deliveries,
            self.sessions,
            self.concurrency,
            self.per_sec(),
            self.elapsed
        )
    }
}

/// Webhook delivery throughput: `n` `message_received` events of
/// `sessions` sessions queued in a fresh embedded store's outbox and
/// fanned out, then delivered, signed, to a [`Receiver`] on loopback by the
/// real dispatcher (each result recorded durably, as in production).
pub async fn bench_deliveries(n: usize, sessions: usize, concurrency: usize) -> DeliveryBench {
    use wasync::domain::{OutboxEvent, SessionId};
    use wasync::events::relay::OutboxTap;
    use wasync::storage::Store;
    use wasync::storage::embedded::EmbeddedStore;
    use wasync::storage::webhooks::{WebhookRecord, WebhookStore};
    use wasync::webhooks::target::{AllowList, Net};
    use wasync::webhooks::{WebhookSettings, Webhooks};

    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("bench.redb")).expect("store"));
    let settings = WebhookSettings {
        allow_private: AllowList::new(vec![Net::parse("127.0.0.0/8").unwrap()]),
        concurrency,
        ..WebhookSettings::default()
    };
    let hooks = Arc::new(Webhooks {
        store: store.clone(),
        gate: Default::default(),
        settings,
        wake: Default::default(),
        metrics: Arc::new(wasync::telemetry::Metrics::new()),
    });
    store
        .put_webhook(&WebhookRecord {
            webhook_id: "bench".into(),
            url: rx.url("/hook"),
            events: vec!["message_received".into()],
            session_id: None,
            secret: Some("bench-secret-0123456789".into()),
            created_at: 0,
        })
        .await
        .expect("webhook");
    let events: Vec<OutboxEvent> = (0..n)
        .map(|i| {
            let sid = SessionId::parse(&format!("s{}", i % sessions)).unwrap();
            OutboxEvent::new(
                "message_received",
                &sid,
                serde_json::json!({"sessionId": sid.as_str(), "message": {"id": format!("m{i}"), "body": "hello there"}}),
            )
        })
        .collect();
    for ev in &events {
        store.enqueue_event(ev).await.expect("enqueue");
    }
    let tap = wasync::webhooks::fanout::Fanout(hooks.clone());
    for chunk in events.chunks(256) {
        tap.take(chunk).await.expect("fan-out");
    }
    let stop = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(wasync::webhooks::dispatch::run(hooks.clone(), stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(600);
    while rx.delivered().len() < n {
        assert!(Instant::now() < deadline, "deliveries did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let _ = task.await;
    assert!(
        rx.delivered()
            .iter()
            .all(|r| r.signed_with("bench-secret-0123456789"))
    );
    DeliveryBench {
        deliveries: n,
        sessions,
        concurrency,
        elapsed,
    }
}
