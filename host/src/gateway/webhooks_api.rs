//! `/webhooks`: register, list and delete webhook endpoints, list their
//! deliveries by status, and redeliver one (see docs/webhooks.md).

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;

use super::error::ApiError;
use super::openapi::Problem;
use super::rest::json;
use super::{Body, Gateway, query_param, read_body};
use crate::storage::webhooks::{DeliveryCursor, DeliveryStatus};
use crate::webhooks::target::TargetError;
use crate::webhooks::{CreateWebhook, DeliveryPage, DeliveryView, WebhookError, WebhookView};

/// The webhook routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookRoute {
    /// `GET /webhooks`, `POST /webhooks`.
    List,
    /// `GET /webhooks/:webhookId`, `DELETE /webhooks/:webhookId`.
    One { id: String },
    /// `GET /webhooks/:webhookId/deliveries`.
    Deliveries { id: String },
    /// `POST /webhooks/:webhookId/deliveries/:eventId/redeliver`.
    Redeliver { id: String, event_id: String },
}

impl WebhookRoute {
    pub fn methods(&self) -> &'static [Method] {
        match self {
            WebhookRoute::List => &[Method::GET, Method::POST],
            WebhookRoute::One { .. } => &[Method::GET, Method::DELETE],
            WebhookRoute::Deliveries { .. } => &[Method::GET],
            WebhookRoute::Redeliver { .. } => &[Method::POST],
        }
    }

    pub fn template(&self) -> &'static str {
        match self {
            WebhookRoute::List => "/webhooks",
            WebhookRoute::One { .. } => "/webhooks/{webhookId}",
            WebhookRoute::Deliveries { .. } => "/webhooks/{webhookId}/deliveries",
            WebhookRoute::Redeliver { .. } => {
                "/webhooks/{webhookId}/deliveries/{eventId}/redeliver"
            }
        }
    }
}

/// `GET /webhooks`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// Maps the subsystem's errors onto problem codes.
pub fn api_error(e: WebhookError) -> ApiError {
    let detail = e.to_string();
    match e {
        WebhookError::Url(TargetError::Private { .. }) => {
            ApiError::bad_request("webhook_url_not_allowed", detail)
        }
        WebhookError::Url(TargetError::Unresolvable(_)) => {
            ApiError::bad_request("webhook_url_unresolvable", detail)
        }
        WebhookError::Url(_) => ApiError::bad_request("invalid_webhook_url", detail),
        WebhookError::Invalid(_) => ApiError::bad_request("invalid_webhook", detail),
        WebhookError::UnknownEvent { .. } => ApiError::bad_request("unknown_event", detail)
            .with("events", crate::events::WEBHOOK_EVENTS.to_vec()),
        WebhookError::TooMany { max } => {
            ApiError::new(StatusCode::CONFLICT, "too_many_webhooks", detail).with("limit", max)
        }
        WebhookError::NotFound(id) => {
            ApiError::new(StatusCode::NOT_FOUND, "webhook_not_found", detail).with("webhookId", id)
        }
        WebhookError::DeliveryNotFound { .. } => {
            ApiError::new(StatusCode::NOT_FOUND, "delivery_not_found", detail)
        }
        WebhookError::StillPending(_) => {
            ApiError::new(StatusCode::CONFLICT, "delivery_pending", detail)
        }
        WebhookError::Store(e) => e.into(),
    }
}

pub(super) async fn handle(
    gw: &Arc<Gateway>,
    route: WebhookRoute,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    match (route, method) {
        (WebhookRoute::List, Method::GET) => list_webhooks(gw, req).await,
        (WebhookRoute::List, _) => create_webhook(gw, req).await,
        (WebhookRoute::One { id }, Method::GET) => get_webhook(gw, &id).await,
        (WebhookRoute::One { id }, _) => delete_webhook(gw, &id).await,
        (WebhookRoute::Deliveries { id }, _) => list_deliveries(gw, &id, req).await,
        (WebhookRoute::Redeliver { id, event_id }, _) => redeliver(gw, &id, &event_id).await,
    }
}

/// Registers an endpoint: `{url, events, sessionId?, secret?}`. The URL is
/// checked (scheme, no credentials, every address it resolves to public
/// unless `WASYNC_WEBHOOK_ALLOW_PRIVATE` lists it). The secret is never
/// shown again.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks",
    request_body(content = CreateWebhook, description = "the endpoint"),
    responses((status = 201, description = "created", body = WebhookView),
        (status = 400, description = "bad JSON (`bad_json`), a bad URL (`invalid_webhook_url`), a private or loopback target (`webhook_url_not_allowed`), a host that does not resolve (`webhook_url_unresolvable`), an unknown event (`unknown_event`), a bad secret or session id (`invalid_webhook`)", body = Problem),
        (status = 401, body = Problem),
        (status = 408, description = "the body did not arrive within `WASYNC_BODY_TIMEOUT_MS` (`body_timeout`)", body = Problem),
        (status = 409, description = "`WASYNC_MAX_WEBHOOKS` reached (`too_many_webhooks`)", body = Problem),
        (status = 413, description = "over WASYNC_MAX_BODY_BYTES", body = Problem),
        (status = 415, description = "the body is not application/json", body = Problem),
        (status = 503, body = Problem)))]
pub(super) async fn create_webhook(
    gw: &Gateway,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let headers = req.headers().clone();
    super::rest::require_json(&headers, true)?;
    let bytes = read_body(req, gw.max_body_bytes, gw.body_timeout).await?;
    let input: CreateWebhook = super::rest::json_object(&headers, &bytes)?;
    let view = gw.webhooks.create(input).await.map_err(api_error)?;
    Ok(json(StatusCode::CREATED, &view))
}

/// The endpoints (never their secrets); `?sessionId=` keeps those that
/// get that session's events (its own and the global ones).
#[utoipa::path(get, path = "/webhooks", tag = "webhooks",
    params(("sessionId" = Option<String>, Query, description = "only the endpoints that get this session's events",
        min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses((status = 200, body = WebhookList), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 503, body = Problem)))]
pub(super) async fn list_webhooks(
    gw: &Gateway,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let session = query_param(req.uri().query(), "sessionId");
    if let Some(s) = &session {
        crate::domain::SessionId::parse(s).map_err(|e| {
            ApiError::bad_request("invalid_query", format!("invalid sessionId: {e}"))
        })?;
    }
    let webhooks = gw
        .webhooks
        .list(session.as_deref())
        .await
        .map_err(api_error)?;
    Ok(json(StatusCode::OK, &WebhookList { webhooks }))
}

/// One endpoint.
#[utoipa::path(get, path = "/webhooks/{webhookId}", tag = "webhooks",
    params(("webhookId" = String, Path, description = "the webhook's id", max_length = 64)),
    responses((status = 200, body = WebhookView), (status = 401, body = Problem),
        (status = 404, description = "`webhook_not_found`", body = Problem), (status = 503, body = Problem)))]
pub(super) async fn get_webhook(gw: &Gateway, id: &str) -> Result<Response<Body>, ApiError> {
    let view = gw.webhooks.get(id).await.map_err(api_error)?;
    Ok(json(StatusCode::OK, &view))
}

/// Deletes an endpoint and its deliveries (pending ones are not sent).
#[utoipa::path(delete, path = "/webhooks/{webhookId}", tag = "webhooks",
    params(("webhookId" = String, Path, description = "the webhook's id", max_length = 64)),
    responses((status = 204, description = "deleted"), (status = 401, body = Problem),
        (status = 404, description = "`webhook_not_found`", body = Problem), (status = 503, body = Problem)))]
pub(super) async fn delete_webhook(gw: &Gateway, id: &str) -> Result<Response<Body>, ApiError> {
    gw.webhooks.delete(id).await.map_err(api_error)?;
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// An endpoint's deliveries in one status, oldest event first:
/// `?status=dead` (the default) lists those retried for the whole window.
#[utoipa::path(get, path = "/webhooks/{webhookId}/deliveries", tag = "webhooks",
    params(("webhookId" = String, Path, description = "the webhook's id", max_length = 64),
        ("status" = Option<DeliveryStatus>, Query, description = "pending, delivered or dead (default dead)"),
        ("limit" = Option<u32>, Query, description = "1–200, default 50", minimum = 1, maximum = 200),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page", min_length = 1, max_length = 200)),
    responses((status = 200, body = DeliveryPage), (status = 400, description = "a bad status, limit or cursor (`invalid_query`)", body = Problem),
        (status = 401, body = Problem),
        (status = 404, description = "`webhook_not_found`", body = Problem), (status = 503, body = Problem)))]
pub(super) async fn list_deliveries(
    gw: &Gateway,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let status = match query_param(req.uri().query(), "status") {
        None => DeliveryStatus::Dead,
        Some(s) => DeliveryStatus::parse(&s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("status must be pending, delivered or dead, got {s:?}"),
            )
        })?,
    };
    let limit = match query_param(req.uri().query(), "limit") {
        None => 50,
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if (1..=200).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("limit must be a number between 1 and 200, got {raw:?}"),
                ));
            }
        },
    };
    let cursor = match query_param(req.uri().query(), "cursor") {
        None => None,
        Some(c) => Some(DeliveryCursor::decode(&c).ok_or_else(|| {
            ApiError::bad_request("invalid_query", "cursor is not one this server returned")
        })?),
    };
    let page = gw
        .webhooks
        .deliveries(id, status, limit, cursor.as_ref())
        .await
        .map_err(api_error)?;
    Ok(json(StatusCode::OK, &page))
}

/// Queues a dead (or delivered) delivery again with a fresh retry window;
/// it goes out in its session's order, with the same `X-Wasync-Delivery`.
#[utoipa::path(post, path = "/webhooks/{webhookId}/deliveries/{eventId}/redeliver", tag = "webhooks",
    params(("webhookId" = String, Path, description = "the webhook's id", max_length = 64),
        ("eventId" = String, Path, description = "the delivery's event id (`X-Wasync-Delivery`)", max_length = 128)),
    responses((status = 202, description = "queued again", body = DeliveryView), (status = 401, body = Problem),
        (status = 404, description = "`webhook_not_found` or `delivery_not_found`", body = Problem),
        (status = 409, description = "the delivery is still pending (`delivery_pending`)", body = Problem),
        (status = 503, body = Problem)))]
pub(super) async fn redeliver(
    gw: &Gateway,
    id: &str,
    event_id: &str,
) -> Result<Response<Body>, ApiError> {
    let view = gw
        .webhooks
        .redeliver(id, event_id)
        .await
        .map_err(api_error)?;
    Ok(json(StatusCode::ACCEPTED, &view))
}
