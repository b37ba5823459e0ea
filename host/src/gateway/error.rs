//! One error type for every route, rendered as RFC 9457
//! `application/problem+json`.
//!
//! The body says what the client did wrong in words it can act on; an
//! internal cause (a store error, a bug) is logged with the request and
//! never sent.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::session::SessionError;
use crate::storage::StoreError;

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable machine-readable code, also the last part of `type`.
    pub code: &'static str,
    pub detail: String,
    /// Extra members of the problem object.
    pub extra: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// Methods for a 405's `Allow` header.
    pub allow: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            extra: None,
            allow: None,
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), value.into());
        self
    }

    /// A failure whose cause must stay in the logs.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server could not complete the request; see its logs",
        )
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        let mut body = serde_json::json!({
            "type": format!("urn:wasync:problem:{}", self.code),
            "title": title,
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        });
        if let Some(extra) = self.extra
            && let Some(obj) = body.as_object_mut()
        {
            obj.extend(*extra);
        }
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(allow) = self.allow
            && let Ok(v) = HeaderValue::from_str(&allow)
        {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        // After a 408 the rest of the request may still be on its way: the
        // connection cannot be reused, so say it closes (RFC 9110 §15.5.9).
        if self.status == StatusCode::REQUEST_TIMEOUT {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is unreachable right now; retry shortly",
                )
            }
            StoreError::Fenced(cause) => {
                tracing::warn!(%cause, "write fenced off: this host lost the session's lease");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "session_moved",
                    "the session moved to another host meanwhile; retry",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::NotFound(id) => {
                ApiError::not_found(format!("session {id} not found")).with("sessionId", id)
            }
            SessionError::BadRequest(m) => ApiError::bad_request("invalid_body", m),
            SessionError::SyncRunning {
                session_id,
                sync_id,
            } => ApiError::new(
                StatusCode::CONFLICT,
                "sync_running",
                format!("a sync is already running for session {session_id}"),
            )
            .with("sessionId", session_id)
            .with("syncId", sync_id),
            SessionError::NotReady { session_id, status } => ApiError::new(
                StatusCode::CONFLICT,
                "session_not_ready",
                format!(
                    "session {session_id} is not ready (status: {})",
                    status.as_str()
                ),
            )
            .with("sessionId", session_id)
            .with("sessionStatus", status.as_str()),
            SessionError::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            ),
            SessionError::Elsewhere { session_id, owner } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "session_elsewhere",
                format!("session {session_id} runs on host {owner}, which cannot be reached from here"),
            )
            .with("sessionId", session_id)
            .with("ownerHostId", owner),
            SessionError::AtCapacity { max } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "at_capacity",
                format!("every host is at its capacity ({max} sessions here); add a host or stop a session"),
            )
            .with("capacity", max),
            SessionError::Cluster(cause) => {
                tracing::warn!(%cause, "cluster coordination unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cluster_unavailable",
                    "the cluster's coordination store is unreachable right now; retry shortly",
                )
            }
            SessionError::Logout(cause) => {
                tracing::warn!(%cause, "logout failed");
                ApiError::new(
                    StatusCode::CONFLICT,
                    "logout_failed",
                    format!("the login could not be dropped: {cause}"),
                )
            }
            SessionError::Store(e) => e.into(),
        }
    }
}
