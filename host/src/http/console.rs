//! `GET /console`: the operator console, a page and its script and style
//! compiled into the binary (nothing to build at install time, nothing
//! fetched from elsewhere). It calls the admin API with the token the
//! operator types in.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/console.js");
const STYLE: &str = include_str!("../../console/console.css");

/// Only this server's own files run on the page; no frame may embed it.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The console page.
#[utoipa::path(
    get,
    path = "/console",
    tag = "console",
    responses((status = 200, description = "The operator console (HTML); it asks for the admin token and calls /api/admin", body = String, content_type = "text/html"))
)]
pub async fn page() -> Response {
    file("text/html; charset=utf-8", PAGE)
}

/// The console's script.
#[utoipa::path(
    get,
    path = "/console/console.js",
    tag = "console",
    responses((status = 200, description = "The console's script", body = String, content_type = "text/javascript"))
)]
pub async fn script() -> Response {
    file("text/javascript; charset=utf-8", SCRIPT)
}

/// The console's style sheet.
#[utoipa::path(
    get,
    path = "/console/console.css",
    tag = "console",
    responses((status = 200, description = "The console's style sheet", body = String, content_type = "text/css"))
)]
pub async fn style() -> Response {
    file("text/css; charset=utf-8", STYLE)
}
