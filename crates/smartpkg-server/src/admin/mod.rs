//! The operator's API, `/admin/v1` (ours; `spec/operator-contract.md` is its stable minimum,
//! `docs/admin-api.md` documents all of it). JSON in and out; errors are
//! `{"error": {"code", "message"}}` with a non-2xx status.

mod deliveries;
mod packages;
mod tenants;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use smartpkg_store::StoreError;

use crate::{secrets, AppState};

/// The OpenAPI description of this API, served at `/openapi/admin-v1.json`; a test checks that
/// every route below is described and every described route is served.
pub const OPENAPI: &str = include_str!("openapi.json");

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/tps", post(tenants::create_tp))
        .route(
            "/tps/{tp_id}",
            get(tenants::get_tp).patch(tenants::patch_tp),
        )
        .route("/tps/{tp_id}/templates", post(tenants::upload_template))
        .route("/tps/{tp_id}/drafts", post(tenants::upload_draft))
        .route("/tps/{tp_id}/authorizations", post(tenants::authorize))
        .route(
            "/tps/{tp_id}/authorizations/{app_id}",
            axum::routing::delete(tenants::revoke),
        )
        .route("/apps", post(tenants::create_app))
        .route(
            "/apps/{app_id}",
            get(tenants::get_app).patch(tenants::patch_app),
        )
        .route(
            "/apps/{app_id}/owner-password",
            post(tenants::reset_owner_password),
        )
        .route("/packages", get(packages::list))
        .route("/packages/{package_id}", get(packages::get_one))
        .route("/packages/{package_id}/audit", post(packages::audit))
        .route("/packages/{package_id}/archive", get(packages::archive))
        .route("/deliveries", get(deliveries::list))
        .route("/push-targets", get(deliveries::targets))
        .route("/push-targets/{tp_id}/resume", post(deliveries::resume))
        .route("/deliveries/{id}", get(deliveries::get_one))
        .route("/deliveries/{id}/redeliver", post(deliveries::redeliver))
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

#[derive(Debug)]
pub struct AdminError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl AdminError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AdminError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AdminError::not_found(what),
            StoreError::Conflict(m) => {
                AdminError::new(StatusCode::CONFLICT, "conflict", m.to_string())
            }
            StoreError::Unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                AdminError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable; retry shortly",
                )
            }
            other => {
                tracing::error!(error = %other, "storage failed");
                AdminError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "storage failed; see the server log",
                )
            }
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

pub type AdminResult<T> = Result<T, AdminError>;

/// Refuses control characters in text an operator sends (see `smartpkg_core::text`).
pub fn clean_text(field: &str, value: Option<&str>, multiline: bool) -> AdminResult<()> {
    match value {
        Some(v) => smartpkg_core::text::check(field, v, multiline).map_err(AdminError::bad_request),
        None => Ok(()),
    }
}

async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if secrets::constant_time_eq(t, &state.admin_token) => next.run(req).await,
        _ => AdminError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the admin token as `Authorization: Bearer <token>`",
        )
        .into_response(),
    }
}

/// A JSON body that must match its type exactly (unknown fields are errors, so a typo in a
/// PATCH is reported instead of silently ignored).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, AdminError> {
        let limit = state.settings.max_body_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| {
                AdminError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the body is larger than {limit} bytes"),
                )
            })?;
        let bytes = if bytes.trim_ascii().is_empty() {
            Bytes::from_static(b"{}")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| AdminError::bad_request(format!("invalid JSON body: {e}")))
    }
}
