//! Admin endpoints: the DLQ, tenants, lead sources. Every route under
//! `/api/admin` is behind the admin token, checked by `super::guard` before
//! any handler runs or any body is read.

use super::AppState;
use super::error::ApiError;
use crate::jobs::replay::{Replayer, replay_event, replay_matching};
use crate::store::types::EventStatus;
use crate::store::{Durability, EventFilter, EventRow, Timestamp};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// This process as a replayer: replays hold leases like the worker's.
fn replayer(app: &AppState) -> Replayer<'_> {
    Replayer {
        owner: &app.owner,
        lease: app.tunables.lease,
        durability: Durability::Synced,
    }
}

/// Statuses named in a filter, each checked.
fn parse_statuses(names: &[String], allowed: &[EventStatus]) -> Result<Vec<EventStatus>, ApiError> {
    let known: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
    names
        .iter()
        .map(|n| {
            n.parse::<EventStatus>()
                .ok()
                .filter(|s| allowed.contains(s))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_request",
                        format!("status {n:?} is not one of {}", known.join(", ")),
                    )
                })
        })
        .collect()
}

fn parse_time(field: &str, value: Option<String>) -> Result<Option<Timestamp>, ApiError> {
    value
        .map(|v| {
            Timestamp::parse(&v)
                .map_err(|e| ApiError::bad_request("invalid_request", format!("{field}: {e}")))
        })
        .transpose()
}

/// An event as the DLQ shows it (no payload bytes).
pub fn event_json(e: &EventRow) -> Value {
    json!({
        "id": e.id,
        "source": e.source,
        "kind": e.kind,
        "parent_id": e.parent_id,
        "correlation_id": e.correlation_id,
        "dedup_key": e.dedup_key,
        "item_kind": e.item_kind,
        "status": e.status,
        "error": e.error,
        "attempts": e.attempts,
        "next_attempt_at": e.next_attempt_at,
        "created_at": e.created_at,
        "updated_at": e.updated_at,
        "payload_bytes": e.payload.len(),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Comma-separated statuses (received, processed, failed, dead, ignored); default failed,dead.
    status: Option<String>,
    /// Only this plugin's events.
    source: Option<String>,
    /// Created at or after (RFC 3339 or YYYY-MM-DD).
    since: Option<String>,
    /// Created at or before (RFC 3339 or YYYY-MM-DD).
    until: Option<String>,
    /// Only events after this id: the `next_after` of the previous page (oldest first).
    after: Option<i64>,
    /// `oldest` (default) or `newest` first.
    order: Option<String>,
    /// Only events before this id: the `next_before` of the previous page (newest first).
    before: Option<i64>,
    /// At most this many (1 to 10000; default 100).
    limit: Option<i64>,
}

/// `GET /api/admin/dlq?status=failed,dead&source=meta&limit=100&after=ID`
#[utoipa::path(
    get,
    path = "/api/admin/dlq",
    tag = "admin",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Events, oldest first: `{\"events\": [...], \"next_after\"}` without payload bytes; `next_after` (the last id) is set when the page is full: pass it as `after` for the next page. With `order=newest`: newest first, `next_before` for `before`", body = serde_json::Value),
        (status = 400, description = "A status that is not one", body = super::openapi::ErrorBody),
        (status = 401, description = "No or wrong bearer token", body = super::openapi::ErrorBody)
    )
)]
pub async fn list(
    State(app): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let statuses = match q.status {
        Some(s) => {
            let names: Vec<String> = s
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect();
            parse_statuses(&names, EventStatus::ALL)?
        }
        None => vec![EventStatus::Failed, EventStatus::Dead],
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let newest_first = match q.order.as_deref().map(str::trim) {
        None | Some("") | Some("oldest") => false,
        Some("newest") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("order {other:?} is neither oldest nor newest"),
            ));
        }
    };
    let filter = EventFilter {
        statuses,
        source: q.source,
        since: parse_time("since", q.since)?,
        until: parse_time("until", q.until)?,
        after_id: if newest_first { q.before } else { q.after },
        newest_first,
        limit,
        ..Default::default()
    };
    let events = app.store.list_events(&filter).await?;
    let full = i64::try_from(events.len()).unwrap_or(i64::MAX) >= limit;
    let next = events.last().filter(|_| full).map(|e| e.id);
    let events: Vec<Value> = events.iter().map(event_json).collect();
    Ok(Json(if newest_first {
        json!({"events": events, "next_before": next})
    } else {
        json!({"events": events, "next_after": next})
    }))
}

/// Header names whose values are credentials or signatures: shown as a
/// placeholder (the stored bytes keep them for replays).
fn sensitive_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "authorization",
        "auth-",
        "-auth",
        "cookie",
        "signature",
        "hmac",
        "token",
        "secret",
        "password",
        "credential",
        "session",
        "api-key",
        "apikey",
        "api_key",
        "functions-key",
    ]
    .iter()
    .any(|s| name.contains(s))
}

/// `GET /api/admin/dlq/{id}`: one event, with its headers (credentials
/// redacted) and its payload (JSON when it is JSON).
#[utoipa::path(
    get,
    path = "/api/admin/dlq/{id}",
    tag = "admin",
    params(("id" = i64, Path, description = "The event's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The event as in the list, plus `headers` (its delivery's for an item; credentials and signatures redacted) and `payload_json` (parsed) or `payload_text` (UTF-8, lossy)", body = serde_json::Value),
        (status = 401, description = "No or wrong bearer token", body = super::openapi::ErrorBody),
        (status = 404, description = "No such event", body = super::openapi::ErrorBody)
    )
)]
pub async fn event(
    State(app): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let event = app.store.get_event(id).await?.ok_or_else(|| {
        ApiError::not_found(format!("no event {id}; list them with GET /api/admin/dlq"))
    })?;
    let mut view = event_json(&event);
    let mut headers: serde_json::Map<String, Value> =
        serde_json::from_str(&event.headers_json).unwrap_or_default();
    // An item keeps no headers of its own: its delivery's are the ones that came.
    if headers.is_empty()
        && let Some(parent) = event.parent_id
        && let Some(delivery) = app.store.get_event(parent).await?
    {
        headers = serde_json::from_str(&delivery.headers_json).unwrap_or_default();
    }
    let headers: serde_json::Map<String, Value> = headers
        .into_iter()
        .map(|(k, v)| {
            let v = if sensitive_header(&k) {
                Value::String("[redacted]".into())
            } else {
                v
            };
            (k, v)
        })
        .collect();
    view["headers"] = Value::Object(headers);
    match serde_json::from_slice::<Value>(&event.payload) {
        Ok(parsed) => {
            // Pretty-printed here: a browser's JSON.parse would round long numbers.
            view["payload_pretty"] =
                Value::String(serde_json::to_string_pretty(&parsed).unwrap_or_default());
            view["payload_json"] = parsed;
        }
        Err(_) => {
            view["payload_text"] =
                Value::String(String::from_utf8_lossy(&event.payload).into_owned())
        }
    }
    Ok(Json(view))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// At most this many (1 to 1000; default 50).
    limit: Option<i64>,
    /// Only deliveries before this id: the `next_before` of the previous page.
    before: Option<i64>,
}

/// `GET /api/admin/deliveries?limit=50`: the newest deliveries first.
#[utoipa::path(
    get,
    path = "/api/admin/deliveries",
    tag = "admin",
    params(DeliveriesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`{\"deliveries\": [...], \"next_before\"}`, newest first, without payload bytes", body = serde_json::Value),
        (status = 401, description = "No or wrong bearer token", body = super::openapi::ErrorBody)
    )
)]
pub async fn deliveries(
    State(app): State<AppState>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let events = app
        .store
        .list_events(&EventFilter {
            kind: Some(crate::store::types::EventKind::Delivery),
            after_id: q.before,
            newest_first: true,
            limit,
            ..Default::default()
        })
        .await?;
    let full = i64::try_from(events.len()).unwrap_or(i64::MAX) >= limit;
    let next_before = events.last().filter(|_| full).map(|e| e.id);
    Ok(Json(
        json!({"deliveries": events.iter().map(event_json).collect::<Vec<_>>(), "next_before": next_before}),
    ))
}

/// `POST /api/admin/dlq/{id}/replay`
#[utoipa::path(
    post,
    path = "/api/admin/dlq/{id}/replay",
    tag = "admin",
    params(("id" = i64, Path, description = "The event's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What the replay did: `succeeded` and the outcome", body = serde_json::Value),
        (status = 401, description = "No or wrong bearer token", body = super::openapi::ErrorBody),
        (status = 404, description = "No such event", body = super::openapi::ErrorBody)
    )
)]
pub async fn replay_one(
    State(app): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let event = app.store.get_event(id).await?.ok_or_else(|| {
        ApiError::not_found(format!("no event {id}; list them with GET /api/admin/dlq"))
    })?;
    let outcome = replay_event(&app.store, &app.runtime.snapshot(), &event, replayer(&app)).await;
    Ok(Json(
        json!({"succeeded": outcome.succeeded(), "outcome": outcome}),
    ))
}

/// `GET /api/admin/deliveries/{id}`: what became of a delivery and its items
/// (`final` once processing has finished; until then, poll).
#[utoipa::path(
    get,
    path = "/api/admin/deliveries/{id}",
    tag = "admin",
    params(("id" = i64, Path, description = "The delivery's event id, from the webhook's answer")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The delivery and its items; `final` once processing has finished", body = serde_json::Value),
        (status = 401, description = "No or wrong bearer token", body = super::openapi::ErrorBody),
        (status = 404, description = "No such event", body = super::openapi::ErrorBody)
    )
)]
pub async fn delivery(
    State(app): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    if let Some(report) = app.pipeline.report(id) {
        let mut body = serde_json::to_value(&report).unwrap_or(Value::Null);
        body["final"] = Value::Bool(true);
        return Ok(Json(body));
    }
    let event = app.store.get_event(id).await?.ok_or_else(|| {
        ApiError::not_found(format!("no event {id}; list them with GET /api/admin/dlq"))
    })?;
    let items = app
        .store
        .list_events(&EventFilter {
            parent_id: Some(id),
            ..Default::default()
        })
        .await?;
    let done = !app.pipeline.is_running(id)
        && event.status != EventStatus::Received
        && items.iter().all(|i| i.status != EventStatus::Received);
    let items: Vec<Value> = items
        .iter()
        .map(|i| {
            json!({"event_id": i.id, "dedup_key": i.dedup_key, "status": i.status, "error": i.error})
        })
        .collect();
    Ok(Json(json!({
        "event_id": id,
        "status": event.status,
        "error": event.error,
        "items": items,
        "final": done,
    })))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// Statuses to replay; default ["failed"].
    #[serde(default)]
    status: Option<Vec<String>>,
    /// Only this plugin's events.
    #[serde(default)]
    source: Option<String>,
    /// Created at or after (RFC 3339 or YYYY-MM-DD).
    #[serde(default)]
    since: Option<String>,
    /// Created at or before (RFC 3339 or YYYY-MM-DD).
    #[serde(default)]
    until: Option<String>,
    /// List what would be replayed, replay nothing.
    #[serde(default)]
    dry_run: bool,
    /// At most this many (0: no limit).
    #[serde(default)]
    limit: Option<i64>,
}

const REPLAYABLE: [EventStatus; 3] = [
    EventStatus::Failed,
    EventStatus::Dead,
    EventStatus::Received,
];

/// `POST /api/admin/dlq/replay` with an optional JSON filter.
#[utoipa::path(
    post,
    path = "/api/admin/dlq/replay",
    tag = "admin",
    request_body(content = Option<ReplayBody>, description = "A filter; an empty body replays every failed event"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many matched and what became of each", body = serde_json::Value),
        (status = 400, description = "A bad filter", body = super::openapi::ErrorBody),
        (status = 401, description = "No or wrong bearer token", body = super::openapi::ErrorBody)
    )
)]
pub async fn replay_many(
    State(app): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: ReplayBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(
                "invalid_request",
                format!("body must be JSON like {{\"status\":[\"failed\"],\"source\":\"meta\",\"dry_run\":true}}: {e}"),
            )
        })?
    };
    let names = body.status.unwrap_or_else(|| vec!["failed".into()]);
    let filter = EventFilter {
        statuses: parse_statuses(&names, &REPLAYABLE)?,
        source: body.source,
        since: parse_time("since", body.since)?,
        until: parse_time("until", body.until)?,
        limit: body.limit.unwrap_or(0),
        ..Default::default()
    };
    let report = replay_matching(
        &app.store,
        &app.runtime.snapshot(),
        &filter,
        body.dry_run,
        replayer(&app),
    )
    .await?;
    Ok(Json(serde_json::to_value(report).unwrap_or(Value::Null)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    #[schema(min_length = 1)]
    name: String,
}

/// `GET /api/admin/tenants`
#[utoipa::path(
    get,
    path = "/api/admin/tenants",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`{\"tenants\": [{\"id\", \"name\", \"created_at\"}]}`, oldest first", body = serde_json::Value),
        (status = 401, description = "No or wrong bearer token", body = super::openapi::ErrorBody)
    )
)]
pub async fn list_tenants(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let tenants: Vec<Value> = app
        .store
        .tenants()
        .await?
        .into_iter()
        .map(|(id, name, created_at)| json!({"id": id, "name": name, "created_at": created_at}))
        .collect();
    Ok(Json(json!({ "tenants": tenants })))
}

/// `POST /api/admin/tenants {"name"}`
#[utoipa::path(
    post,
    path = "/api/admin/tenants",
    tag = "admin",
    request_body = NewTenant,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "`{\"id\", \"name\"}`", body = serde_json::Value),
        (status = 400, description = "An empty name", body = super::openapi::ErrorBody),
        (status = 401, description = "No or wrong bearer token", body = super::openapi::ErrorBody)
    )
)]
pub async fn add_tenant(
    State(app): State<AppState>,
    Json(body): Json<NewTenant>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = body.name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "name must not be empty",
        ));
    }
    let id = app.store.create_tenant(name).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id, "name": name}))))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSource {
    tenant_id: i64,
    /// meta (page id), whatsapp (phone number id), google (customer id), standard (source key), …
    #[schema(min_length = 1)]
    kind: String,
    #[serde(alias = "key")]
    #[schema(min_length = 1)]
    external_key: String,
    /// The source's own credentials, e.g. `{"page_access_token": "EAAB…"}`: sealed with
    /// PORTICO_SECRET_KEY, never shown again (only their names).
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    /// The source's settings, e.g. `{"conversion_action": "123"}`.
    #[serde(default)]
    settings: BTreeMap<String, String>,
}

/// Names of secrets and settings, checked.
fn check_names<'a>(names: impl IntoIterator<Item = &'a String>) -> Result<(), ApiError> {
    match names.into_iter().find(|n| !crate::secrets::valid_name(n)) {
        Some(bad) => Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "{bad:?} is not a secret or setting name: use a-z, A-Z, 0-9, '_' and '-' (at most 64)"
            ),
        )),
        None => Ok(()),
    }
}

fn secrets_error(e: crate::secrets::SecretsError) -> ApiError {
    match e {
        // The request cannot be honoured as sent: without secrets it can.
        crate::secrets::SecretsError::MissingKey => ApiError::bad_request(
            "secret_key_missing",
            format!(
                "this server cannot keep secrets (send the source without them, or have the operator set the key): {e}"
            ),
        ),
        e => {
            tracing::error!("source secrets: {e}");
            ApiError::not_configured(
                "the source's secrets cannot be opened with PORTICO_SECRET_KEY; the server log says why",
            )
        }
    }
}

/// `POST /api/admin/lead-sources {"tenant_id","kind","external_key","secrets"?,"settings"?}`
#[utoipa::path(
    post,
    path = "/api/admin/lead-sources",
    tag = "admin",
    request_body = NewSource,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The source: `{\"id\", \"tenant_id\", \"kind\", \"external_key\", \"settings\", \"secrets\": [names]}`", body = serde_json::Value),
        (status = 400, description = "An empty kind or key, a bad secret or setting name, or secrets while PORTICO_SECRET_KEY is not set", body = super::openapi::ErrorBody),
        (status = 401, description = "No or wrong bearer token", body = super::openapi::ErrorBody),
        (status = 404, description = "No such tenant", body = super::openapi::ErrorBody),
        (status = 409, description = "The key is mapped already", body = super::openapi::ErrorBody)
    )
)]
pub async fn add_source(
    State(app): State<AppState>,
    Json(body): Json<NewSource>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (kind, key) = (body.kind.trim(), body.external_key.trim());
    if kind.is_empty() || key.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "kind and external_key must not be empty",
        ));
    }
    check_names(body.secrets.keys().chain(body.settings.keys()))?;
    let credentials = if body.secrets.is_empty() && body.settings.is_empty() {
        None
    } else {
        Some(
            crate::secrets::stored(
                app.secret_keys.as_deref(),
                kind,
                key,
                &body.settings,
                &body.secrets,
            )
            .map_err(secrets_error)?,
        )
    };
    let id = app
        .store
        .add_lead_source_with(body.tenant_id, kind, key, credentials)
        .await?;
    let row = app
        .store
        .source(kind, key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("source {id} vanished")))?;
    Ok((StatusCode::CREATED, Json(crate::secrets::source_view(&row))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SourcesQuery {
    /// Only this tenant's sources.
    tenant_id: Option<i64>,
}

/// `GET /api/admin/lead-sources?tenant_id=1`
#[utoipa::path(
    get,
    path = "/api/admin/lead-sources",
    tag = "admin",
    params(SourcesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`{\"sources\": [...]}`: each with its settings and the names (never the values) of its secrets", body = serde_json::Value),
        (status = 401, description = "No or wrong bearer token", body = super::openapi::ErrorBody)
    )
)]
pub async fn list_sources(
    State(app): State<AppState>,
    Query(q): Query<SourcesQuery>,
) -> Result<Json<Value>, ApiError> {
    let rows = app.store.sources(q.tenant_id).await?;
    let sources: Vec<Value> = rows.iter().map(crate::secrets::source_view).collect();
    Ok(Json(json!({ "sources": sources })))
}

/// Secrets and settings to set (a value) or remove (null).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceChanges {
    #[serde(default)]
    secrets: BTreeMap<String, Option<String>>,
    #[serde(default)]
    settings: BTreeMap<String, Option<String>>,
}

/// `PATCH /api/admin/lead-sources/{id} {"secrets": {"access_token": "…"|null}, "settings": {…}}`
#[utoipa::path(
    patch,
    path = "/api/admin/lead-sources/{id}",
    tag = "admin",
    params(("id" = i64, Path, description = "The source's id")),
    request_body = SourceChanges,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The source as changed; the next item uses it", body = serde_json::Value),
        (status = 400, description = "A bad secret or setting name, or secrets while PORTICO_SECRET_KEY is not set", body = super::openapi::ErrorBody),
        (status = 401, description = "No or wrong bearer token", body = super::openapi::ErrorBody),
        (status = 404, description = "No such source", body = super::openapi::ErrorBody),
        (status = 500, description = "PORTICO_SECRET_KEY does not open the source's secrets", body = super::openapi::ErrorBody)
    )
)]
pub async fn change_source(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Json(body): Json<SourceChanges>,
) -> Result<Json<Value>, ApiError> {
    check_names(body.secrets.keys().chain(body.settings.keys()))?;
    let row = app
        .store
        .sources(None)
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| {
            ApiError::not_found(format!("no source {id}; see GET /api/admin/lead-sources"))
        })?;
    let changes = crate::cli::source::Changes {
        secrets: body.secrets,
        settings: body.settings,
    };
    let row = crate::cli::source::change(
        &app.store,
        app.secret_keys.as_deref(),
        &row.kind,
        &row.external_key,
        &changes,
    )
    .await
    .map_err(|e| match e {
        crate::cli::source::ChangeError::NoSource(what) => {
            ApiError::not_found(format!("no source {what}"))
        }
        crate::cli::source::ChangeError::Secrets(e) => secrets_error(e),
        e @ crate::cli::source::ChangeError::Busy(_) => ApiError::try_again(e.to_string()),
        crate::cli::source::ChangeError::Store(e) => ApiError::from(e),
    })?;
    Ok(Json(crate::secrets::source_view(&row)))
}
