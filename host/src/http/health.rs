//! Liveness with the plugin list, and readiness. Nothing secret is ever here.

use super::AppState;
use crate::runtime::SlotState;
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
    let dlq = match app.store.dlq_stats().await {
        Ok(stats) => json!(stats),
        Err(e) => json!({"error": format!("cannot read the DLQ: {e}")}),
    };
    let backlog = match app.store.conversion_backlog().await {
        Ok(b) => json!(b),
        Err(e) => json!({"error": format!("cannot read the upload backlog: {e}")}),
    };
    let uploader = app
        .uploader
        .lock()
        .map(|s| json!(*s))
        .unwrap_or(Value::Null);
    Json(json!({
        "status": "ok",
        "integrations": app.toggles,
        "plugins": plugins,
        "dlq": dlq,
        "googleAds": {"enabled": app.toggles.google_ads, "backlog": backlog, "uploader": uploader},
    }))
}

/// `GET /api/health/ready`: 200 when the database answers and every enabled plugin is loaded.
pub async fn ready(State(app): State<AppState>) -> Response {
    let mut problems = Vec::new();
    if let Err(e) = app.store.ping().await {
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
