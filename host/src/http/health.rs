//! Liveness with the plugin list, and readiness. Nothing secret is ever here.

use super::AppState;
use crate::runtime::SlotState;
use crate::store::{FIGURES_WAIT, within};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::time::SystemTime;

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `GET /api/health`: always 200 while the process serves; says what is loaded.
#[utoipa::path(
    get,
    path = "/api/health",
    tag = "health",
    responses((status = 200, description = "The process runs: integrations, plugins (name, version, mount, routes, state, sha256, loaded_at, error), DLQ and outbox figures; no secrets", body = serde_json::Value))
)]
pub async fn health(State(app): State<AppState>) -> Json<Value> {
    let set = app.runtime.snapshot();
    let plugins: Vec<Value> = set
        .slots
        .iter()
        .map(|slot| {
            let spec = &slot.spec;
            let mount = format!("/api/integrations/{}", spec.mount);
            match &slot.state {
                SlotState::Loaded(p) => {
                    let mut routes: Vec<String> = p
                        .manifest
                        .routes
                        .iter()
                        .map(|r| format!("{} {mount}/{}", r.method, r.path))
                        .collect();
                    routes.extend(
                        spec.aliases
                            .iter()
                            .map(|(alias, route)| format!("{alias} -> {route}")),
                    );
                    json!({
                        "name": spec.name,
                        "version": p.manifest.version,
                        "mount": mount,
                        "routes": routes,
                        "state": "loaded",
                        "sha256": p.sha256,
                        "loaded_at": rfc3339(p.loaded_at),
                        "reloads": slot.reloads,
                        // A refused reload: this version keeps serving.
                        "error": slot.last_error.as_ref().map(|(e, _)| e),
                        "error_at": slot.last_error.as_ref().map(|(_, at)| rfc3339(*at)),
                        "warnings": p.manifest.warnings,
                    })
                }
                SlotState::Failed { error, at } => json!({
                    "name": spec.name,
                    "version": null,
                    "mount": mount,
                    "routes": [],
                    "state": "failed",
                    "sha256": null,
                    "loaded_at": null,
                    "reloads": slot.reloads,
                    "error": error,
                    "error_at": rfc3339(*at),
                }),
                SlotState::Disabled => json!({
                    "name": spec.name,
                    "version": null,
                    "mount": mount,
                    "routes": [],
                    "state": "disabled",
                    "sha256": null,
                    "loaded_at": null,
                    "reloads": slot.reloads,
                    "error": null,
                }),
            }
        })
        .collect();
    let dlq = match within(FIGURES_WAIT, app.store.dlq_stats()).await {
        Ok(stats) => json!(stats),
        Err(e) => json!({"error": format!("cannot read the DLQ: {e}")}),
    };
    Json(json!({
        "status": "ok",
        "integrations": app.toggles,
        "plugins": plugins,
        "dlq": dlq,
        "outbox": outbox_block(&app).await,
    }))
}

/// The outbox as plugins declare it: every declared kind with its backlog, and
/// whether its delivery is stopped (and why).
async fn outbox_block(app: &AppState) -> Value {
    let backlog = match within(FIGURES_WAIT, app.store.outbox_backlog()).await {
        Ok(b) => b,
        Err(e) => return json!({"error": format!("cannot read the outbox backlog: {e}")}),
    };
    let status = app.outbox.lock().map(|s| s.clone()).unwrap_or_default();
    let mut kinds = Vec::new();
    for slot in &app.runtime.snapshot().slots {
        let SlotState::Loaded(p) = &slot.state else {
            continue;
        };
        for decl in &p.manifest.outbox {
            let waiting = backlog
                .iter()
                .find(|b| b.plugin == p.spec.name && b.kind == decl.kind);
            kinds.push(json!({
                "plugin": p.spec.name,
                "kind": decl.kind,
                "pending": waiting.map_or(0, |b| b.pending),
                "oldest_pending_age_seconds": waiting.and_then(|b| b.oldest_pending_age_seconds),
                "stopped": status.stopped.get(&format!("{}/{}", p.spec.name, decl.kind)),
            }));
        }
    }
    json!({
        "kinds": kinds,
        "delivered": status.delivered,
        "failed": status.failed,
        "last_error": status.last_error,
    })
}

/// `GET /api/health/ready`: 200 when the database answers and every enabled plugin is loaded.
#[utoipa::path(
    get,
    path = "/api/health/ready",
    tag = "health",
    responses(
        (status = 200, description = "The database answers and every enabled plugin is loaded", body = serde_json::Value),
        (status = 503, description = "Not ready, with the reasons", body = super::openapi::ErrorBody)
    )
)]
pub async fn ready(State(app): State<AppState>) -> Response {
    let mut problems = Vec::new();
    if let Err(e) = within(FIGURES_WAIT * 3, app.store.ping()).await {
        problems.push(format!("database: {e}"));
    }
    for slot in &app.runtime.snapshot().slots {
        if let SlotState::Failed { error, .. } = &slot.state {
            problems.push(format!("plugin {}: {error}", slot.spec.name));
        }
    }
    if problems.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ready"}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "error": "not_ready", "message": problems.join("; ")})),
        )
            .into_response()
    }
}
