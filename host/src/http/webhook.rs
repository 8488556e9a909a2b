//! `/api/integrations/{mount}/{route}` and legacy aliases: route to the plugin,
//! read the body under its limit, and run the webhook or custom flow.
//!
//! Status mapping for webhooks (the statuses themselves are chosen in error.rs):
//! - signature refused by verify → 401, nothing stored;
//! - the delivery cannot be stored → 503, so the provider retries;
//! - stored → 200 `{"event_id","status":"received"}` at once; the items are processed
//!   right after the answer (jobs::pipeline), and failures wait in the DLQ;
//! - the adapter traps before the delivery is stored → 500, so the provider retries.

use super::auth::Access;
use super::error::ApiError;
use super::{AppState, CorrelationId};
use crate::jobs::ingest::{self, ItemStatus, Pass};
use crate::jobs::pipeline::StoredDelivery;
use crate::runtime::session::{AdapterRequest, AdapterResponse, CallError, Verdict};
use crate::runtime::{LoadedPlugin, Resolved, RouteKind, Session};
use crate::store::types::EventStatus;
use crate::store::{Durability, ItemSlot, NewDelivery};
use crate::telemetry::metrics::{self, DeliveryOutcome};
use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// A plugin's route: webhooks (verified, stored, answered 200 with the event
/// id, processed after), intake (the CRM's calls: 400 with fields, or the
/// adapter's answer), or custom routes. Which exist is in `GET /api/health`.
#[utoipa::path(
    method(get, post, put, patch, delete),
    path = "/api/integrations/{mount}/{*route}",
    tag = "integrations",
    params(
        ("mount" = String, Path, description = "Where plugins.toml mounts the plugin, e.g. meta, whatsapp, google"),
        ("route" = String, Path, description = "The plugin's route, e.g. webhook, send, offline-conversion")
    ),
    request_body(content = Option<String>, description = "Whatever the provider or caller sends; the plugin reads it", content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "A webhook stored (`{\"event_id\", \"status\": \"received\"}`), a handshake, or the adapter's answer", body = serde_json::Value),
        (status = 202, description = "Stored; its processing failed for now and is retried", body = serde_json::Value),
        (status = 400, description = "Bad input, by field", body = super::openapi::ErrorBody),
        (status = 401, description = "A signature or bearer token that does not match", body = super::openapi::ErrorBody),
        (status = 404, description = "No plugin at that mount, or no such route", body = super::openapi::ErrorBody),
        (status = 405, description = "The route does not take that method", body = super::openapi::ErrorBody),
        (status = 413, description = "A body over the plugin's limit", body = super::openapi::ErrorBody),
        (status = 502, description = "The provider refused or failed a call made for the request", body = super::openapi::ErrorBody),
        (status = 503, description = "Integration disabled, plugin not loaded or busy, or the database unavailable: retry later", body = super::openapi::ErrorBody)
    )
)]
pub async fn integration(
    State(app): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    Path((mount, route)): Path<(String, String)>,
    req: Request,
) -> Response {
    let set = app.runtime.snapshot();
    let method = req.method().as_str().to_string();
    let resolved = set.resolve(&mount, &method, route.trim_matches('/'));
    serve(
        &app,
        &cid.0,
        resolved,
        route.trim_matches('/'),
        req,
        &format!("/api/integrations/{mount}"),
    )
    .await
}

/// Legacy aliases from plugins.toml, else a JSON 404.
pub async fn fallback(
    State(app): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    req: Request,
) -> Response {
    let started = std::time::Instant::now();
    let set = app.runtime.snapshot();
    let path = req.uri().path().to_string();
    let method = req.method().as_str().to_string();
    // Outside the router's matched routes: an alias is its own route label
    // (plugins.toml bounds them), anything else is "unmatched".
    let (label, response) = match set.resolve_alias(&path, &method) {
        // The alias as plugins.toml names it (resolve_alias ignores trailing '/').
        Some((resolved, route)) => (
            path.trim_end_matches('/'),
            serve(&app, &cid.0, resolved, route, req, &path).await,
        ),
        None => (
            "unmatched",
            ApiError::not_found(format!(
                "no route {method} {path}; integrations live under /api/integrations/{{mount}}/..., see GET /api/health for the list"
            ))
            .into_response(),
        ),
    };
    metrics::http_request(
        label,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn serve(
    app: &AppState,
    cid: &str,
    resolved: Resolved<'_>,
    route: &str,
    req: Request,
    shown: &str,
) -> Response {
    let (plugin, kind) = match resolved {
        Resolved::Found(plugin, kind, admin_only) => {
            // Checked before a byte of the body is read. Intake routes are the
            // CRM's own calls: never open to whoever reaches the port.
            let access = if admin_only {
                Some(Access::Admin)
            } else if kind == RouteKind::Intake {
                Some(Access::Intake)
            } else {
                None
            };
            if let Some(access) = access
                && let Err(e) = app.credentials.check(access, req.headers())
            {
                return e.into_response();
            }
            (plugin.clone(), kind)
        }
        Resolved::NoMount => {
            return ApiError::not_found(format!(
                "no integration is mounted at {shown}; see GET /api/health for the loaded plugins"
            ))
            .into_response();
        }
        Resolved::Disabled(spec) => {
            return ApiError::integration_disabled(format!(
                "the {} integration is disabled; enable it in plugins.toml or its env switch",
                spec.name
            ))
            .into_response();
        }
        Resolved::Unavailable(spec, _) => {
            // The load error names paths on this machine: it stays in the
            // log and in health for operators.
            return ApiError::plugin_unavailable(format!(
                "the {} plugin is not loaded; GET /api/health says why",
                spec.name
            ))
            .into_response();
        }
        Resolved::MethodNotAllowed(plugin) => {
            return ApiError::method_not_allowed(format!(
                "{shown}/{route} of plugin {} does not take {}",
                plugin.spec.name,
                req.method()
            ))
            .into_response();
        }
        Resolved::NoRoute(plugin) => {
            return ApiError::not_found(format!(
                "plugin {} has no route {route:?}; its routes are listed in GET /api/health",
                plugin.spec.name
            ))
            .into_response();
        }
    };
    let request = match read_request(&plugin, route, req).await {
        Ok(r) => r,
        Err(e) => {
            if kind == RouteKind::Webhook {
                metrics::webhook_delivery(&plugin.spec.name, delivery_outcome(&e));
            }
            return e.into_response();
        }
    };
    let result = match kind {
        RouteKind::Webhook => {
            let result = webhook(app, cid, &plugin, request).await;
            let outcome = match &result {
                Ok(_) => DeliveryOutcome::Accepted,
                Err(e) => delivery_outcome(e),
            };
            metrics::webhook_delivery(&plugin.spec.name, outcome);
            result
        }
        RouteKind::Intake => intake(app, cid, &plugin, request).await,
        RouteKind::Custom => custom(cid, &plugin, request).await,
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// A webhook refused before or at the store, as the deliveries counter names it.
fn delivery_outcome(e: &ApiError) -> DeliveryOutcome {
    match e.code() {
        "invalid_signature" => DeliveryOutcome::RejectedSignature,
        "payload_too_large" => DeliveryOutcome::TooLarge,
        "store_unavailable" => DeliveryOutcome::StoreUnavailable,
        _ => DeliveryOutcome::Failed,
    }
}

/// Headers adapters never see (credentials meant for the host).
fn hidden_header(name: &HeaderName) -> bool {
    name == header::AUTHORIZATION || name == header::COOKIE
}

async fn read_request(
    plugin: &LoadedPlugin,
    route: &str,
    req: Request,
) -> Result<AdapterRequest, ApiError> {
    let limit = plugin.spec.limits.max_body_bytes;
    let too_large = || {
        ApiError::payload_too_large(format!(
            "body is larger than the {limit} bytes plugin {} accepts (limits.max_body_bytes in plugins.toml)",
            plugin.spec.name
        ))
    };
    // Refuse on the declared length before reading a byte of the body.
    if super::declared_length(req.headers()).is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, limit as usize)
        .await
        .map_err(|e| {
            let text = format!("{e:#}");
            if text.contains("length limit") {
                too_large()
            } else if text.contains("PORTICO_REQUEST_TIMEOUT_MS") {
                ApiError::request_timeout(text)
            } else {
                ApiError::bad_request("bad_body", format!("cannot read the request body: {text}"))
            }
        })?;
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| !hidden_header(name))
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    Ok(AdapterRequest {
        method: parts.method.as_str().to_string(),
        route: route.to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers,
        // Takes the buffer over when nothing else holds it (no copy).
        body: Vec::from(bytes),
    })
}

/// A failed guest call before anything was stored: 503 when the plugin is only
/// busy (the provider should retry), 500 otherwise. The details of a trap
/// (stderr, paths) go to the log, not to the caller.
fn call_failed(plugin: &LoadedPlugin, e: CallError) -> ApiError {
    if let CallError::Busy(_) = e {
        return ApiError::plugin_busy(format!(
            "plugin {} is busy, retry later: {e}",
            plugin.spec.name
        ));
    }
    tracing::error!(plugin = %plugin.spec.name, "adapter call failed: {e}");
    adapter_failed(plugin, e.public())
}

fn adapter_failed(plugin: &LoadedPlugin, e: impl std::fmt::Display) -> ApiError {
    ApiError::adapter_failed(format!("plugin {} failed: {e}", plugin.spec.name))
}

async fn start(plugin: &LoadedPlugin, cid: &str) -> Result<Session, ApiError> {
    Session::start(plugin, cid).await.map_err(|e| match e {
        CallError::Busy(_) => call_failed(plugin, e),
        e => {
            tracing::error!(plugin = %plugin.spec.name, "cannot start an instance: {e}");
            ApiError::plugin_unavailable(format!(
                "plugin {} cannot start; the server log says why",
                plugin.spec.name
            ))
        }
    })
}

fn pass<'a>(app: &'a AppState, cid: &'a str, plugin: &'a LoadedPlugin) -> Pass<'a> {
    Pass {
        store: &app.store,
        plugin,
        correlation_id: cid,
        owner: &app.owner,
        lease: app.tunables.lease,
        // The caller's answer reports what was stored.
        durability: Durability::Synced,
    }
}

async fn webhook(
    app: &AppState,
    cid: &str,
    plugin: &Arc<LoadedPlugin>,
    request: AdapterRequest,
) -> Result<Response, ApiError> {
    let mut session = start(plugin, cid).await?;
    match session
        .verify(&request)
        .await
        .map_err(|e| call_failed(plugin, e))?
    {
        Verdict::Accept => {}
        Verdict::Reject(reason) => {
            tracing::warn!(plugin = %plugin.spec.name, "delivery refused by verify: {reason}");
            return Err(ApiError::invalid_signature(reason));
        }
    }
    let event_id = store_request(app, cid, plugin, &request).await?;
    tracing::info!(plugin = %plugin.spec.name, event_id, bytes = request.body.len(), "delivery stored");
    // On disk: answer now; the items are processed after the answer, on this instance.
    app.pipeline.submit(StoredDelivery {
        plugin: plugin.clone(),
        session,
        correlation_id: cid.to_string(),
        event_id,
        request,
    });
    Ok(
        Json(serde_json::json!({"event_id": event_id, "status": EventStatus::Received}))
            .into_response(),
    )
}

/// Store a verified request durably, leased to this process; 503 when the store cannot.
async fn store_request(
    app: &AppState,
    cid: &str,
    plugin: &LoadedPlugin,
    request: &AdapterRequest,
) -> Result<i64, ApiError> {
    let delivery = NewDelivery {
        source: &plugin.spec.name,
        correlation_id: cid,
        payload: &request.body,
        headers_json: headers_json(&request.headers),
        lease_owner: &app.owner,
        lease: app.tunables.lease,
    };
    app.store.insert_delivery(&delivery).await.map_err(|e| {
        tracing::error!(plugin = %plugin.spec.name, "cannot store the request: {e}");
        ApiError::store_unavailable(
            "the request could not be stored; it was not accepted, retry later",
        )
    })
}

/// An intake route: the caller hears about bad input (400 with fields) before
/// anything is stored; what it sends is stored before any 2xx; the answer is
/// the adapter's `respond` over the records the request made or found (after
/// any immediate outbox delivery).
async fn intake(
    app: &AppState,
    cid: &str,
    plugin: &Arc<LoadedPlugin>,
    request: AdapterRequest,
) -> Result<Response, ApiError> {
    let mut session = start(plugin, cid).await?;
    if let Verdict::Reject(reason) = session
        .verify(&request)
        .await
        .map_err(|e| call_failed(plugin, e))?
    {
        return Err(ApiError::unauthorized(reason));
    }
    let items = match session
        .parse(&request)
        .await
        .map_err(|e| call_failed(plugin, e))?
    {
        Ok(items) => items,
        Err(e) if !e.retryable => {
            tracing::info!(plugin = %plugin.spec.name, "request refused: {}", e.message);
            return Err(ApiError::invalid_fields(e.code, e.message, &e.fields));
        }
        Err(e) => return Err(ApiError::try_again(e.to_string())),
    };
    let event_id = store_request(app, cid, plugin, &request).await?;
    let pass = pass(app, cid, plugin);
    let slots = ingest::split(pass, event_id, &items).await.map_err(|e| {
        tracing::error!(plugin = %plugin.spec.name, "cannot record request items: {e}");
        ApiError::store_unavailable("the request could not be stored; retry later")
    })?;
    let mut records = Vec::new();
    for (item, slot) in items.iter().zip(slots) {
        // A repeat is applied again on purpose: writes are idempotent, and the
        // caller must get the same records back (an outbox record is never
        // delivered twice: its idempotency key finds the first one).
        let (id, attempts) = match slot {
            ItemSlot::New(id) => (id, 0),
            ItemSlot::Again { id, attempts } => (id, attempts),
            ItemSlot::Duplicate { id, attempts, .. } => (id, attempts),
            ItemSlot::InProgress { id } => (id, 0),
        };
        let report = ingest::process_item(pass, &mut session, id, attempts, item).await;
        match report.status {
            // The same request (its idempotency key) is being applied right now
            // by another request or process: its records are not known yet.
            ItemStatus::InProgress => {
                return Err(ApiError::try_again(
                    "the same request is being processed right now; send it again in a moment for its answer",
                ));
            }
            ItemStatus::Dead => {
                let message = report.public_error.unwrap_or_default();
                return Err(ApiError::bad_request("invalid_request", message));
            }
            ItemStatus::Failed => {
                return Ok(super::error::queued(
                    report.event_id,
                    report.public_error.unwrap_or_default(),
                ));
            }
            _ => records.extend(report.records),
        }
    }
    let answer = session
        .respond(&request, &records)
        .await
        .map_err(|e| call_failed(plugin, e))?;
    adapter_response(plugin, answer)
}

/// An adapter's own answer, with its status and headers.
fn adapter_response(plugin: &LoadedPlugin, answer: AdapterResponse) -> Result<Response, ApiError> {
    let status = axum::http::StatusCode::from_u16(answer.status)
        .map_err(|_| adapter_failed(plugin, format!("invalid status {}", answer.status)))?;
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            headers.append(name, value);
        }
    }
    Ok((status, headers, Body::from(answer.body)).into_response())
}

async fn custom(
    cid: &str,
    plugin: &Arc<LoadedPlugin>,
    request: AdapterRequest,
) -> Result<Response, ApiError> {
    let mut session = start(plugin, cid).await?;
    let answer = session
        .handle(&request)
        .await
        .map_err(|e| call_failed(plugin, e))?;
    let Some(answer) = answer else {
        return Err(ApiError::not_found(format!(
            "plugin {} does not serve {} {}",
            plugin.spec.name, request.method, request.route
        )));
    };
    adapter_response(plugin, answer)
}

/// Headers kept with a delivery, for the DLQ and replays.
fn headers_json(headers: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(map).to_string()
}
