//! The OpenAPI document at `/openapi.json`, generated from the handlers'
//! `#[utoipa::path]` annotations and the types' `ToSchema` derives, so it
//! cannot drift from the code; a test checks that every route of the router
//! is in it, and the integration suite fuzzes the server against it
//! (`tests/it/api_fuzz.rs`).
//!
//! What holds for every operation is written once, in [`tighten`], instead
//! of on each annotation: errors are `application/problem+json`, the
//! `Host`/`Origin` guard may answer 403 anywhere, a session id has one
//! pattern, and the create body carries the checks the session registry
//! makes.

use serde_json::{Value, json};
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
        description = "Links WhatsApp accounts through WhatsApp Web, syncs chats and messages, streams progress over WebSocket (/ws, /socket.io/), publishes session_ready to RabbitMQ. Auth applies only when the server has WASYNC_API_KEY; the apiKey query parameter is taken only by /ws and /socket.io/. Every request is refused (403) when its Host is not a name of this server or its Origin is a page elsewhere (WASYNC_ALLOWED_HOSTS, WASYNC_ALLOWED_ORIGINS); JSON bodies must be sent as application/json.",
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
        rest::get_pairing_code,
        rest::list_chats,
        rest::list_messages,
        rest::list_contacts,
        rest::get_contact,
        rest::sync_chats,
        rest::sync_history,
        rest::get_sync,
        rest::cluster,
        rest::list_quarantine,
        rest::clear_quarantine,
        super::plugins_api::list_plugins,
        super::plugins_api::upload_plugin,
        super::plugins_api::get_plugin,
        super::plugins_api::remove_plugin,
        super::plugins_api::reload_plugins,
        super::webhooks_api::create_webhook,
        super::webhooks_api::list_webhooks,
        super::webhooks_api::get_webhook,
        super::webhooks_api::delete_webhook,
        super::webhooks_api::list_deliveries,
        super::webhooks_api::redeliver,
        super::ws::upgrade,
        super::socketio::endpoint,
        super::socketio::post_endpoint,
        document_route,
    ),
    components(schemas(Problem, crate::session::CreateOptions, rest::SyncBody, rest::HistoryBody, rest::ManualSyncMode, crate::domain::SyncMode, rest::QrFormat,
        super::socketio::Transport, crate::domain::MessageUpdate, crate::domain::MessageChange)),
    modifiers(&Security),
    security(("bearer" = []), ("apiKeyHeader" = [])),
    tags(
        (name = "sessions", description = "Create, inspect and stop sessions"),
        (name = "data", description = "Stored chats, messages and contacts (reads never sync)"),
        (name = "sync", description = "Manual syncs and their runs"),
        (name = "events", description = "Live events: native WebSocket and Socket.IO"),
        (name = "plugins", description = "Sandboxed WASM plugins (when WASYNC_PLUGINS_DIR is set)"),
        (name = "webhooks", description = "Signed HTTP webhooks: endpoints, deliveries, redelivery"),
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
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    tighten(&mut doc);
    doc
}

/// The document as this server serves it: without an API key nothing asks
/// for credentials, so it declares no security requirement.
pub fn served(has_key: bool) -> serde_json::Value {
    let mut doc = document();
    if !has_key {
        if let Some(d) = doc.as_object_mut() {
            d.remove("security");
        }
        if let Some(c) = doc["components"].as_object_mut() {
            c.remove("securitySchemes");
        }
        for item in doc["paths"]
            .as_object_mut()
            .into_iter()
            .flat_map(|p| p.values_mut())
        {
            for op in item
                .as_object_mut()
                .into_iter()
                .flat_map(|i| i.values_mut())
            {
                if let Some(op) = op.as_object_mut() {
                    op.remove("security");
                    if let Some(r) = op.get_mut("responses").and_then(Value::as_object_mut) {
                        r.remove("401");
                    }
                }
            }
        }
    }
    doc
}

/// What `SessionId::parse` lets through.
const SESSION_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// Applies the rules that hold for every operation (see the module doc).
/// Members are reached with `get_mut`: indexing would insert `null`s.
fn tighten(doc: &mut Value) {
    let problem = json!({"$ref": "#/components/schemas/Problem"});
    let ops = doc
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(Value::as_object_mut);
    for op in ops {
        let params = op.get_mut("parameters").and_then(Value::as_array_mut);
        for p in params.into_iter().flatten() {
            if p["in"] == "path" && p["name"] == "id" {
                p["schema"]["pattern"] = json!(SESSION_ID_PATTERN);
                p["schema"]["minLength"] = json!(1);
                p["schema"]["maxLength"] = json!(crate::domain::SessionId::MAX_LEN);
            }
        }
        let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
            continue;
        };
        for r in responses.values_mut() {
            let Some(content) = r.get_mut("content").and_then(Value::as_object_mut) else {
                continue;
            };
            if content
                .get("application/json")
                .is_some_and(|m| m["schema"] == problem)
                && let Some(m) = content.remove("application/json")
            {
                content.insert("application/problem+json".into(), m);
            }
        }
        responses.entry("403").or_insert_with(|| {
            json!({
                "description": "the request's `Host` (`host_not_allowed`) or `Origin` (`origin_not_allowed`) is not one this server serves",
                "content": {"application/problem+json": {"schema": problem}},
            })
        });
    }
    // The create body as the session registry checks it.
    let create = &mut doc["components"]["schemas"]["CreateOptions"]["properties"];
    let limits = crate::session::LIMIT_PER_CHAT;
    create["limitPerChat"]["minimum"] = json!(limits.start());
    create["limitPerChat"]["maximum"] = json!(limits.end());
    create["provider"]["enum"] = json!(["simulator", "webdriver", null]);
    let metadata = json!({
        "type": ["object", "null"],
        "maxProperties": crate::domain::METADATA_MAX_ENTRIES,
        "propertyNames": {
            "pattern": "^[A-Za-z0-9_.-]{1,64}$",
        },
        "additionalProperties": {
            "type": "string",
            "maxLength": crate::domain::METADATA_MAX_VALUE,
        },
        "description": "Your own labels, echoed in the session's snapshots, lists and every event (`metadata` in the event's data): at most 32 entries, keys 1-64 of letters, digits, `_`, `-`, `.`, values up to 512 bytes, 4 KiB in all.",
    });
    create["metadata"] = metadata.clone();
    let snapshot = &mut doc["components"]["schemas"]["SessionSnapshot"]["properties"];
    if snapshot.is_object() {
        let mut m = metadata;
        m["type"] = json!("object");
        m["description"] = json!("The session's metadata; absent when it has none.");
        snapshot["metadata"] = m;
    }
}
