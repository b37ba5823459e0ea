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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Upload {
    manifest: String,
    component: String,
}

/// Maps the adapter's error onto the problem codes clients see.
pub fn api_error(e: PluginError) -> ApiError {
    let code = match &e {
        PluginError::BadManifest { .. } => "bad_manifest",
        PluginError::NotWasm => "not_wasm",
        PluginError::CoreModule => "core_module",
        PluginError::InvalidComponent { .. } => "invalid_component",
        PluginError::WorldMismatch { .. } => "world_mismatch",
        PluginError::TooLarge { .. } => "component_too_large",
        PluginError::Sha256Mismatch { .. } => "sha256_mismatch",
        PluginError::NotFound { .. } => "plugin_not_found",
        PluginError::Io { .. } | PluginError::Engine { .. } => return ApiError::internal(e),
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
        (PluginRoute::List, Method::GET) => Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "plugins": mgr.list(), "counters": mgr.counters() }),
        )),
        (PluginRoute::List, _) => {
            // base64 grows the component by a third; leave room for the manifest.
            let limit = gw.max_plugin_bytes / 3 * 4 + 256 * 1024;
            let bytes = read_body(req, limit).await?;
            let up: Upload = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::bad_request(
                    "bad_json",
                    format!("send {{\"manifest\": \"<TOML>\", \"component\": \"<base64>\"}}: {e}"),
                )
            })?;
            let wasm = base64::engine::general_purpose::STANDARD
                .decode(up.component.trim())
                .map_err(|e| {
                    ApiError::bad_request("bad_base64", format!("component is not base64: {e}"))
                })?;
            let info = mgr.install(&up.manifest, wasm).await.map_err(api_error)?;
            Ok(json(StatusCode::CREATED, &info))
        }
        (PluginRoute::One { name }, Method::GET) => mgr
            .list()
            .into_iter()
            .find(|p| p.name == name)
            .map(|p| json(StatusCode::OK, &p))
            .ok_or_else(|| api_error(PluginError::NotFound { name })),
        (PluginRoute::One { name }, _) => {
            mgr.remove(&name).await.map_err(api_error)?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "removed": name }),
            ))
        }
        (PluginRoute::Reload, _) => {
            let plugins = mgr.reload().await.map_err(api_error)?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "plugins": plugins }),
            ))
        }
    }
}
