//! `GET /api/openapi.json`: an OpenAPI 3.1 document of every host route, built
//! from the annotated handlers as the router registers them (utoipa-axum's
//! `routes!`), so a route cannot be served without being described.
//!
//! The plugins' own routes live under one documented catch-all,
//! `/api/integrations/{mount}/{route}`: which mounts and routes exist depends
//! on plugins.toml and is listed by `GET /api/health`.

use std::collections::HashMap;
use std::sync::Arc;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Portico",
        description = "Integration host: provider webhooks and CRM intake through sandboxed adapters."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness, readiness, metrics and this document"),
        (name = "admin", description = "Operators: the DLQ, deliveries, tenants and sources (bearer PORTICO_ADMIN_TOKEN)"),
        (name = "integrations", description = "Routes of the loaded plugins (see GET /api/health)"),
        (name = "console", description = "The operator console: a page over the admin API")
    )
)]
pub struct ApiDoc;

/// The admin token as a bearer scheme.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// Every error: a code to branch on and a message that says what to fix.
#[derive(ToSchema)]
#[allow(dead_code)] // describes ApiError's body; never built as such
pub struct ErrorBody {
    /// Machine-readable, e.g. `invalid_signature`, `store_unavailable`.
    pub error: String,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Problems by field path, for bad input.
    pub fields: Option<HashMap<String, String>>,
}

fn operations(item: &mut PathItem) -> [(&'static str, &mut Option<Operation>); 8] {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
}

/// What axum's route syntax leaves for OpenAPI to mend: a wildcard `{*rest}`
/// is `{rest}` there, and a handler serving several methods gets one operation
/// id per method.
pub fn normalize(api: &mut utoipa::openapi::OpenApi) {
    let paths = std::mem::take(&mut api.paths.paths);
    api.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (path.replace("{*", "{"), item))
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for item in api.paths.paths.values_mut() {
        for (_, op) in operations(item) {
            if let Some(id) = op.as_ref().and_then(|o| o.operation_id.clone()) {
                *seen.entry(id).or_default() += 1;
            }
        }
    }
    for item in api.paths.paths.values_mut() {
        for (method, op) in operations(item) {
            if let Some(id) = op.as_mut().and_then(|o| o.operation_id.as_mut())
                && seen.get(id.as_str()).copied().unwrap_or(0) > 1
            {
                id.push('_');
                id.push_str(method);
            }
        }
    }
}

/// The document, built once at start.
#[derive(Clone)]
pub struct Document(pub Arc<serde_json::Value>);

/// This document. The catch-all's `mount` and `route` list what the plugins
/// loaded now serve (they change with plugins.toml and hot reloads).
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document of every host route", body = serde_json::Value))
)]
pub async fn openapi_json(
    axum::extract::State(app): axum::extract::State<super::AppState>,
    axum::Extension(doc): axum::Extension<Document>,
) -> axum::Json<serde_json::Value> {
    let mut doc = (*doc.0).clone();
    let set = app.runtime.snapshot();
    let mut mounts = Vec::new();
    let mut routes = Vec::new();
    for slot in &set.slots {
        if let crate::runtime::SlotState::Loaded(p) = &slot.state {
            mounts.push(slot.spec.mount.clone());
            for r in &p.manifest.routes {
                if !routes.contains(&r.path) {
                    routes.push(r.path.clone());
                }
            }
        }
    }
    if let Some(item) = doc
        .pointer_mut("/paths/~1api~1integrations~1{mount}~1{route}")
        .and_then(serde_json::Value::as_object_mut)
    {
        for op in item.values_mut() {
            let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) else {
                continue;
            };
            for param in params {
                let values = match param.get("name").and_then(|n| n.as_str()) {
                    Some("mount") => &mounts,
                    Some("route") => &routes,
                    _ => continue,
                };
                if !values.is_empty() {
                    param["schema"]["enum"] = serde_json::json!(values);
                }
            }
        }
    }
    axum::Json(doc)
}
