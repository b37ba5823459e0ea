//! `/plugins`: list, upload, remove and reload the WASM plugins.
//!
//! An upload is JSON, `{"manifest": "<TOML text>", "component": "<base64>"}`,
//! so any HTTP client can send it without multipart support; the component
//! is checked (size cap, component not core module, world, sha256) before
//! anything on disk or in the running set changes. A running sync keeps the
//! plugin set it started with.

use std::sync::Arc;

use base64::Engine as _;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::error::ApiError;
use super::rest::json;
use super::{Body, Gateway, read_body};
use crate::plugins::wasm::{PluginError, PluginManager};

/// The plugin routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginRoute {
    /// `GET /plugins`, `POST /plugins`.
    List,
    /// `GET /plugins/:name`, `DELETE /plugins/:name`.
    One { name: String },
    /// `POST /plugins/reload`.
    Reload,
}

impl PluginRoute {
    pub fn methods(&self) -> &'static [Method] {
        match self {
            PluginRoute::List => &[Method::GET, Method::POST],
            PluginRoute::One { .. } => &[Method::GET, Method::DELETE],
            PluginRoute::Reload => &[Method::POST],
        }
    }
}

/// The body of `POST /plugins`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Upload {
    /// The plugin's manifest, as TOML text.
    manifest: String,
    /// The component's bytes, base64 (standard alphabet, padded).
    #[schema(content_encoding = "base64")]
    component: String,
}

/// Maps the adapter's error onto the problem codes clients see.
pub fn api_error(e: PluginError) -> ApiError {
    let Some(code) = e.code() else {
        return ApiError::internal(e);
    };
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    ApiError::new(status, code, e.to_string())
}

fn manager(gw: &Gateway) -> Result<&Arc<PluginManager>, ApiError> {
    gw.plugins.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "plugins_disabled",
            "plugins are not enabled on this host: set WASYNC_PLUGINS_DIR",
        )
    })
}

pub(super) async fn handle(
    gw: &Arc<Gateway>,
    route: PluginRoute,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let mgr = manager(gw)?;
    let method = req.method().clone();
    match (route, method) {
        (PluginRoute::List, Method::GET) => Ok(list_plugins(mgr)),
        (PluginRoute::List, _) => upload_plugin(gw, mgr, req).await,
        (PluginRoute::One { name }, Method::GET) => get_plugin(mgr, name),
        (PluginRoute::One { name }, _) => remove_plugin(mgr, name).await,
        (PluginRoute::Reload, _) => reload_plugins(mgr).await,
    }
}

/// The loaded plugins and their counters.
#[utoipa::path(get, path = "/plugins", tag = "plugins",
    responses((status = 200, description = "`{plugins, counters}`", body = Object),
        (status = 401, body = super::openapi::Problem),
        (status = 404, description = "plugins disabled (`plugins_disabled`)", body = super::openapi::Problem)))]
pub(super) fn list_plugins(mgr: &PluginManager) -> Response<Body> {
    json(
        StatusCode::OK,
        &serde_json::json!({ "plugins": mgr.list(), "counters": mgr.counters() }),
    )
}

/// Uploads (installs or replaces) a plugin: `{"manifest": "<TOML>",
/// "component": "<base64>"}`. Checked before anything changes.
#[utoipa::path(post, path = "/plugins", tag = "plugins",
    request_body(content = Upload, description = "the manifest and the component"),
    responses((status = 201, description = "installed", body = Object),
        (status = 400, description = "not wasm, a core module, wrong world, bad manifest, sha256 mismatch", body = super::openapi::Problem),
        (status = 401, body = super::openapi::Problem),
        (status = 404, description = "plugins disabled (`plugins_disabled`)", body = super::openapi::Problem),
        (status = 408, description = "the body did not arrive within `WASYNC_BODY_TIMEOUT_MS` (`body_timeout`); the connection closes", body = super::openapi::Problem),
        (status = 413, description = "over WASYNC_MAX_PLUGIN_BYTES", body = super::openapi::Problem),
        (status = 415, description = "the body is not application/json", body = super::openapi::Problem)))]
pub(super) async fn upload_plugin(
    gw: &Gateway,
    mgr: &PluginManager,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    // base64 grows the component by a third; leave room for the manifest.
    let limit = gw.max_plugin_bytes / 3 * 4 + 256 * 1024;
    let headers = req.headers().clone();
    super::rest::require_json(&headers, true)?;
    let bytes = read_body(req, limit, gw.body_timeout).await?;
    let up: Upload = super::rest::json_object(&headers, &bytes).map_err(|mut e| {
        if e.code == "bad_json" {
            e.detail = format!(
                "send {{\"manifest\": \"<TOML>\", \"component\": \"<base64>\"}}: {}",
                e.detail
            );
        }
        e
    })?;
    let wasm = base64::engine::general_purpose::STANDARD
        .decode(up.component.trim())
        .map_err(|e| {
            ApiError::bad_request("bad_base64", format!("component is not base64: {e}"))
        })?;
    let info = mgr.install(&up.manifest, wasm).await.map_err(api_error)?;
    Ok(json(StatusCode::CREATED, &info))
}

/// One plugin.
#[utoipa::path(get, path = "/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "plugin name")),
    responses((status = 200, body = Object), (status = 401, body = super::openapi::Problem),
        (status = 404, body = super::openapi::Problem)))]
pub(super) fn get_plugin(mgr: &PluginManager, name: String) -> Result<Response<Body>, ApiError> {
    mgr.list()
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| json(StatusCode::OK, &p))
        .ok_or_else(|| api_error(PluginError::NotFound { name }))
}

/// Removes a plugin; running syncs keep the set they started with.
#[utoipa::path(delete, path = "/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "plugin name")),
    responses((status = 200, description = "`{removed}`", body = Object), (status = 401, body = super::openapi::Problem),
        (status = 404, body = super::openapi::Problem)))]
pub(super) async fn remove_plugin(
    mgr: &PluginManager,
    name: String,
) -> Result<Response<Body>, ApiError> {
    mgr.remove(&name).await.map_err(api_error)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "removed": name }),
    ))
}

/// Reloads the plugin directory as one atomic swap.
#[utoipa::path(post, path = "/plugins/reload", tag = "plugins",
    responses((status = 200, description = "`{plugins}`", body = Object), (status = 401, body = super::openapi::Problem),
        (status = 400, description = "a plugin in the directory is invalid; nothing changed", body = super::openapi::Problem),
        (status = 404, description = "plugins disabled (`plugins_disabled`)", body = super::openapi::Problem)))]
pub(super) async fn reload_plugins(mgr: &PluginManager) -> Result<Response<Body>, ApiError> {
    let plugins = mgr.reload().await.map_err(api_error)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "plugins": plugins }),
    ))
}
