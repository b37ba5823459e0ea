//! For operators: health, readiness, metrics, the dashboard.

use super::*;

/// `GET /healthz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves.
    pub status: String,
}

/// One dependency in `GET /readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DependencyState {
    /// Adapter (`embedded`, `mongo`, `local`, `amqp`).
    pub kind: String,
    pub ok: bool,
    /// Why it is not ok: `unreachable` or `timed out`; the cause is in the
    /// server's logs, never here.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^(unreachable|timed out)$")]
    pub error: Option<String>,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: String,
    pub store: DependencyState,
    pub events: DependencyState,
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "alive", body = Health)))]
pub(in crate::gateway) fn healthz() -> Response<Body> {
    json(
        StatusCode::OK,
        &Health {
            status: "ok".into(),
        },
    )
}

/// Readiness: the store and the event broker are reachable.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness), (status = 401, body = Problem)))]
pub(in crate::gateway) async fn readyz(gw: &Gateway) -> Response<Body> {
    let timeout = std::time::Duration::from_secs(3);
    let state = |kind: &str, r: Result<Result<(), String>, tokio::time::error::Elapsed>| match r {
        Ok(Ok(())) => DependencyState {
            kind: kind.into(),
            ok: true,
            error: None,
        },
        Ok(Err(e)) => {
            // The cause (addresses, driver messages) stays in the logs.
            tracing::warn!(dependency = kind, error = %e, "readiness check failed");
            DependencyState {
                kind: kind.into(),
                ok: false,
                error: Some("unreachable".into()),
            }
        }
        Err(_) => DependencyState {
            kind: kind.into(),
            ok: false,
            error: Some("timed out".into()),
        },
    };
    let store = state(
        gw.store.kind(),
        tokio::time::timeout(timeout, async {
            gw.store.ping().await.map_err(|e| e.to_string())
        })
        .await,
    );
    let events = state(
        gw.bus.kind(),
        tokio::time::timeout(timeout, async {
            gw.bus.ping().await.map_err(|e| e.to_string())
        })
        .await,
    );
    let ok = store.ok && events.ok;
    json(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &Readiness {
            status: if ok { "ready" } else { "unavailable" }.into(),
            store,
            events,
        },
    )
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, body = Problem)))]
pub(in crate::gateway) async fn metrics(gw: &Gateway) -> Response<Body> {
    use crate::telemetry::StatusLabel;
    let counts = gw.sessions.status_counts();
    for status in crate::domain::SessionStatus::ALL {
        gw.metrics
            .sessions
            .get_or_create(&StatusLabel {
                status: status.as_str().into(),
            })
            .set(counts.get(&status).copied().unwrap_or(0) as i64);
    }
    // A scrape never waits on an unreachable store: the gauge keeps its
    // last value and everything else is answered at once.
    if let Ok(Ok(pending)) = tokio::time::timeout(
        std::time::Duration::from_millis(250),
        gw.store.count_pending_events(),
    )
    .await
    {
        gw.metrics.outbox_pending.set(pending as i64);
    }
    // The host's registry, then the plugin runtime's own counters, in the
    // Prometheus text format.
    let mut text = gw.metrics.render();
    if let Some(i) = text.rfind("# EOF") {
        text.truncate(i);
    }
    if let Some(mgr) = &gw.plugins {
        text.push_str(&mgr.render_prometheus());
    }
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// The dashboard page.
#[utoipa::path(get, path = "/", tag = "operations", security(()),
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)))]
pub(in crate::gateway) fn dashboard() -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(include_bytes!(
        "../../../assets/index.html"
    ))));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}
