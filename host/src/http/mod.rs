//! HTTP: routes, correlation ids, and the mapping of outcomes to statuses.

pub(crate) mod admin;
pub mod auth;
mod console;
mod error;
mod health;
pub mod listener;
pub mod openapi;
mod webhook;

pub use error::ApiError;

use crate::config::IntegrationToggles;
use crate::config::limits::Tunables;
use crate::runtime::Runtime;
use crate::store::Store;
use axum::Extension;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub runtime: Arc<Runtime>,
    pub store: Store,
    pub toggles: IntegrationToggles,
    pub credentials: auth::Credentials,
    /// The keys of PORTICO_SECRET_KEY: sources' secrets are sealed with them.
    pub secret_keys: Option<Arc<crate::secrets::SecretKeys>>,
    pub tunables: Tunables,
    /// This process, as it signs event leases.
    pub owner: String,
    pub outbox: crate::jobs::outbox::SharedStatus,
    /// Processes stored deliveries after their answer.
    pub pipeline: crate::jobs::pipeline::Pipeline,
}

/// The correlation id of the request being served.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

pub fn router(state: AppState) -> Router {
    let limits = Arc::new(Guard {
        in_flight: Arc::new(tokio::sync::Semaphore::new(
            state.tunables.server.max_in_flight,
        )),
        server: state.tunables.server,
        credentials: state.credentials.clone(),
    });
    let (routes, mut api) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(metrics))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(console::page))
        .routes(routes!(console::script))
        .routes(routes!(console::style))
        .routes(routes!(admin::list))
        .routes(routes!(admin::event))
        .routes(routes!(admin::deliveries))
        .routes(routes!(admin::replay_many))
        .routes(routes!(admin::replay_one))
        .routes(routes!(admin::delivery))
        .routes(routes!(admin::add_tenant, admin::list_tenants))
        .routes(routes!(admin::add_source, admin::list_sources))
        .routes(routes!(admin::change_source))
        .routes(routes!(webhook::integration))
        .split_for_parts();
    openapi::normalize(&mut api);
    let document = openapi::Document(std::sync::Arc::new(
        serde_json::to_value(&api).unwrap_or_else(
            |e| serde_json::json!({"error": format!("the document did not render: {e}")}),
        ),
    ));
    routes
        // Matched routes only: their template is the label (never the raw path).
        .route_layer(middleware::from_fn(count_request))
        .fallback(webhook::fallback)
        // Plugin routes read their bodies under each plugin's own limit; the
        // admin routes' JSON is read under this one.
        .layer(DefaultBodyLimit::max(
            usize::try_from(state.tunables.server.admin_body_bytes).unwrap_or(usize::MAX),
        ))
        .layer(Extension(document))
        .layer(middleware::from_fn_with_state(limits, guard))
        .layer(middleware::from_fn(correlate))
        .with_state(state)
}

/// Prometheus' text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Counters, histograms and gauges; low-cardinality labels only", body = String, content_type = "text/plain"))
)]
async fn metrics(State(app): State<AppState>) -> Response {
    let text = crate::telemetry::metrics::render(&app.store, &app.runtime.snapshot()).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Count and time every request to a matched route.
async fn count_request(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().clone();
    tracing::Span::current().record("otel.name", format!("{method} {route}"));
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    crate::telemetry::metrics::http_request(
        &route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// What every request passes before its route: the cap on requests in flight,
/// the request deadline, and for admin routes the token and the body size,
/// both checked before a byte of the body is read.
struct Guard {
    in_flight: Arc<tokio::sync::Semaphore>,
    server: crate::config::limits::ServerLimits,
    credentials: auth::Credentials,
}

/// Routes an operator needs most when the server is overloaded.
fn always_served(path: &str) -> bool {
    path.starts_with("/api/health") || path == "/metrics"
}

async fn guard(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let _place = if always_served(path) {
        None
    } else {
        match guard.in_flight.clone().try_acquire_owned() {
            Ok(place) => Some(place),
            Err(_) => {
                crate::telemetry::metrics::request_refused();
                return ApiError::overloaded(format!(
                    "{} requests are being served (PORTICO_MAX_IN_FLIGHT); retry in a moment",
                    guard.server.max_in_flight
                ))
                .into_response();
            }
        }
    };
    let admin = path == "/api/admin" || path.starts_with("/api/admin/");
    if admin {
        if let Err(e) = guard.credentials.check(auth::Access::Admin, req.headers()) {
            return e.into_response();
        }
        let limit = guard.server.admin_body_bytes;
        if declared_length(req.headers()).is_some_and(|n| n > limit) {
            return ApiError::payload_too_large(format!(
                "admin bodies are limited to {limit} bytes (PORTICO_ADMIN_MAX_BODY_BYTES)"
            ))
            .into_response();
        }
    }
    // The deadline bounds receiving the request, not serving it: cutting a
    // handler short could leave work committed behind a "timed out" answer
    // (a send that then goes out while the caller sends it again).
    let limit = guard.server.request_timeout;
    let req = req.map(|body| {
        // A request without a body (most GETs) has nothing to wait for.
        if http_body::Body::is_end_stream(&body) {
            body
        } else {
            axum::body::Body::new(listener::DeadlineBody::new(body, limit))
        }
    });
    let mut response = next.run(req).await;
    if admin {
        // Admin answers carry payloads and personal data: no cache keeps them.
        response.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
    }
    response
}

/// The body length a request declares, if it declares one.
pub(crate) fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Longest incoming X-Request-Id honoured; longer or odd ones are replaced.
const MAX_REQUEST_ID: usize = 128;

fn incoming_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?.trim();
    let ok = !s.is_empty() && s.len() <= MAX_REQUEST_ID && s.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| s.to_string())
}

/// Honour an incoming X-Request-Id or make one; log under it; return it.
async fn correlate(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(incoming_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(CorrelationId(id.clone()));
    // Named after its route template once routed (see count_request): a raw
    // path would make a name per URL.
    let span = tracing::info_span!(
        "request",
        otel.name = %req.method(),
        otel.kind = "server",
        correlation_id = %id,
        method = %req.method(),
        path = %req.uri().path()
    );
    crate::telemetry::traces::continue_trace(&span, req.headers());
    let mut response = next.run(req).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
