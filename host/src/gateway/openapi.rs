//! The OpenAPI document at `/openapi.json`, generated from the handlers'
//! `#[utoipa::path]` annotations and the types' `ToSchema` derives, so it
//! cannot drift from the code; a test checks that every route of the router
//! is in it.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::rest;

/// An `application/problem+json` error (RFC 9457).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:wasync:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong, in words a client can act on.
    pub detail: String,
    /// Stable machine-readable code (`invalid_session_id`, `sync_running`, ...).
    pub code: String,
}

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "apiKeyHeader",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
        components.add_security_scheme(
            "apiKeyQuery",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("apiKey"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wasync",
        description = "Links WhatsApp accounts through WhatsApp Web, syncs chats and messages, streams progress over WebSocket (/ws, /socket.io/), publishes session_ready to RabbitMQ. Auth applies only when the server has WASYNC_API_KEY.",
    ),
    paths(
        rest::dashboard,
        rest::healthz,
        rest::readyz,
        rest::metrics,
        rest::list_sessions,
        rest::create_session,
        rest::get_session,
        rest::stop_session,
        rest::get_qr,
        rest::list_chats,
        rest::list_messages,
        rest::sync_chats,
        rest::get_sync,
        rest::cluster,
        rest::list_quarantine,
        rest::clear_quarantine,
        super::plugins_api::list_plugins,
        super::plugins_api::upload_plugin,
        super::plugins_api::get_plugin,
        super::plugins_api::remove_plugin,
        super::plugins_api::reload_plugins,
        super::ws::upgrade,
        super::socketio::endpoint,
        document_route,
    ),
    components(schemas(Problem)),
    modifiers(&Security),
    security(("bearer" = []), ("apiKeyHeader" = []), ("apiKeyQuery" = [])),
    tags(
        (name = "sessions", description = "Create, inspect and stop sessions"),
        (name = "data", description = "Stored chats and messages (reads never sync)"),
        (name = "sync", description = "Manual syncs and their runs"),
        (name = "events", description = "Live events: native WebSocket and Socket.IO"),
        (name = "plugins", description = "Sandboxed WASM plugins (when WASYNC_PLUGINS_DIR is set)"),
        (name = "operations", description = "Health, readiness, metrics, the cluster, this document"),
    )
)]
struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 JSON", body = Object), (status = 401, body = Problem)))]
#[allow(dead_code)]
fn document_route() {}

/// The document as JSON.
pub fn document() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_default()
}
