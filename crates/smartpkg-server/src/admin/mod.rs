//! The operator's API, `/admin/v1` (ours; `spec/operator-contract.md` is its stable minimum,
//! `docs/admin-api.md` documents all of it). JSON in and out; errors are
//! `{"error": {"code", "message"}}` with a non-2xx status.

mod accounts;
pub mod answers;
mod deliveries;
mod health;
mod hosts;
mod packages;
mod tenants;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use smartpkg_store::StoreError;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::application::OpError;
use crate::secrets;
use crate::state::AppState;

/// The admin API's routes and its OpenAPI description, from one list: each handler's
/// `#[utoipa::path]` gives both its route and its operation, so the two cannot disagree.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tenants::create_tp))
        .routes(routes!(tenants::reissue_component_secret))
        .routes(routes!(tenants::get_tp, tenants::patch_tp))
        .routes(routes!(tenants::upload_template))
        .routes(routes!(tenants::upload_draft))
        .routes(routes!(tenants::authorize))
        .routes(routes!(tenants::revoke))
        .routes(routes!(tenants::create_app))
        .routes(routes!(tenants::get_app, tenants::patch_app))
        .routes(routes!(tenants::reset_owner_password))
        .routes(routes!(packages::list))
        .routes(routes!(packages::get_one))
        .routes(routes!(packages::audit))
        .routes(routes!(packages::archive))
        .routes(routes!(health::start_plan))
        .routes(routes!(health::plan_action))
        .routes(routes!(health::app_health))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::targets))
        .routes(routes!(deliveries::resume))
        .routes(routes!(deliveries::get_one))
        .routes(routes!(deliveries::redeliver))
        .routes(routes!(hosts::create, hosts::list))
        .routes(routes!(hosts::set_app_hosts))
        .routes(routes!(accounts::create, accounts::list))
        .routes(routes!(accounts::patch))
        .split_for_parts()
}

pub fn routes(state: AppState) -> Router<AppState> {
    api()
        .0
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

/// The OpenAPI description of this API (3.1), served at `/openapi/admin-v1.json`.
pub fn openapi_json() -> String {
    api()
        .1
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot describe the API: {e}\"}}"))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "smartpkg admin API",
        version = "1",
        description = "The operator's API of smartpkg (ours, not Baidu's). JSON in and out; errors are {\"error\": {\"code\", \"message\"}} with a non-2xx status. See docs/admin-api.md."
    ),
    servers((url = "/admin/v1")),
    security(("bearer" = [])),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "SMARTPKG_ADMIN_TOKEN, or the token generated into <data dir>/admin-token",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every error of the admin API.
#[derive(utoipa::ToSchema, serde::Serialize)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(utoipa::ToSchema, serde::Serialize)]
pub struct ErrorDetail {
    /// `invalid_request`, `not_found`, `conflict`, `unauthorized`, `unavailable`, `internal`…
    code: String,
    message: String,
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

/// The application layer's refusals as the admin API answers them.
impl From<OpError> for AdminError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Invalid(m) => AdminError::bad_request(m),
            OpError::NotFound(what) => AdminError::not_found(what),
            OpError::WrongState(m) => AdminError::new(StatusCode::CONFLICT, "invalid_state", m),
            e @ OpError::NameTaken(_) => {
                AdminError::new(StatusCode::CONFLICT, "name_taken", e.to_string())
            }
            e @ OpError::SetUp => AdminError::new(StatusCode::CONFLICT, "set_up", e.to_string()),
            OpError::Refused(r) => AdminError::new(StatusCode::CONFLICT, "refused", r.msg),
            OpError::Store(e) => e.into(),
            OpError::Internal(m) => {
                AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m)
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

/// Refuses control, invisible format and separator characters in text an operator sends.
pub fn clean_text(field: &str, value: Option<&str>, multiline: bool) -> AdminResult<()> {
    Ok(crate::application::check_text(field, value, multiline)?)
}

/// Checks the admin token. Wrong tokens are counted per client address (IPv6: per /64) and,
/// past `owner_attempts_per_client` within `owner_lockout_s`, that address is refused (429)
/// whatever it sends until the window ends, as on the console's sign-in: the token cannot be
/// guessed at the speed of the network.
async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| crate::owner::Guards::client_key(c.0.ip()));
    if let Some(left) = client.as_deref().and_then(|k| state.admin_guard.locked(k)) {
        let mut r = AdminError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!(
                "too many wrong admin tokens from this address; try again in {} s",
                left.as_secs().max(1)
            ),
        )
        .into_response();
        if let Ok(v) = left.as_secs().max(1).to_string().parse() {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if secrets::constant_time_eq(t, &state.admin_token) => next.run(req).await,
        _ => {
            // A request with no token at all is not a guess; a wrong one is.
            if given.is_some() {
                if let Some(k) = &client {
                    state.admin_guard.fail(k);
                }
                state
                    .metrics
                    .counter("smartpkg_admin_token_failures_total", &[])
                    .increment(1);
                tracing::warn!(client = ?client, "admin API: wrong admin token");
            }
            AdminError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the admin token as `Authorization: Bearer <token>`",
            )
            .into_response()
        }
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_description_lists_path_and_query_parameters() {
        let doc: serde_json::Value =
            serde_json::from_str(&super::openapi_json()).expect("the description is JSON");
        let params = doc["paths"]["/packages"]["get"]["parameters"]
            .as_array()
            .expect("parameters");
        let names: Vec<&str> = params.iter().filter_map(|p| p["name"].as_str()).collect();
        assert_eq!(names, ["status", "app_id", "tp_id", "limit"]);
        let zip = &doc["paths"]["/tps/{tp_id}/templates"]["post"]["requestBody"]["content"];
        assert!(zip["application/zip"].is_object(), "{zip}");
    }
}
