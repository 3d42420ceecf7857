//! The console, `/console`: the admin API's work for people, as server-rendered pages
//! (docs/console.md).
//!
//! - Sign-in with a named account; the session is a random cookie (HttpOnly, SameSite=Lax,
//!   Secure under TLS) whose SHA-256 is stored, so sessions survive a restart and a database
//!   leak does not hand them out. Sessions end at their expiry or at sign-out.
//! - Every form carries the session's CSRF token; [`Posted`] refuses a POST without it before
//!   the handler runs, so no handler can forget the check.
//! - Pages are askama templates compiled into the binary, with one stylesheet served from the
//!   binary too: nothing is loaded from the network, and every form works without JavaScript.

mod apps;
mod deliveries;
mod health;
mod pages;
mod queue;
mod signin;
mod tps;

use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use smartpkg_store::{Account, Actor, Role, Session, StoreError};

use crate::application::OpError;
use crate::secrets;
use crate::state::AppState;

pub use crate::web::{cookie, SESSION_COOKIE};
/// The sign-in form's own CSRF cookie (there is no session yet to hold the token).
pub const PRE_COOKIE: &str = "spkg_pre";
/// Rows per page of every list.
pub const PAGE_SIZE: i64 = 50;
/// Largest form the console accepts.
const MAX_FORM_BYTES: usize = 64 << 10;

const CSS: &str = include_str!("../../templates/console/console.css");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::dashboard))
        .route("/static/console.css", get(stylesheet))
        .route("/login", get(signin::show).post(signin::submit))
        .route("/setup", post(signin::setup))
        .route("/logout", post(signin::logout))
        .route(
            "/accounts",
            get(signin::accounts).post(signin::create_account),
        )
        .route("/accounts/{id}", post(signin::account_action))
        .route(
            "/password",
            get(signin::password_page).post(signin::change_password),
        )
        .route("/queue", get(queue::list))
        .route("/packages/{id}", get(queue::package))
        .route("/packages/{id}/files/{*path}", get(queue::file))
        .route("/packages/{id}/decide", post(queue::decide))
        .route("/packages/{id}/plan", post(health::act))
        .route("/apps", get(apps::list))
        .route("/apps/claim", post(apps::claim))
        .route("/apps/{id}", get(apps::page))
        .route("/apps/{id}/gates", post(apps::gates))
        .route("/apps/{id}/revoke", post(apps::revoke))
        .route("/tps", get(tps::list))
        .route("/tps/{id}", get(tps::page))
        .route("/tps/{id}/rotate", post(tps::rotate))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/replay", post(deliveries::replay))
        .route("/deliveries/{id}", get(deliveries::page))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

/// Headers of every console page: never framed, never cached (pages carry secrets shown once
/// and CSRF tokens), no Referer leaking ids, nothing from another origin.
pub const PAGE_HEADERS: [(header::HeaderName, &str); 5] = [
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

/// What every page's frame shows: the title, who is signed in, the menu their role allows,
/// and the CSRF token the page's forms carry.
pub struct Layout {
    pub title: String,
    pub who: String,
    pub role: &'static str,
    pub csrf: String,
    pub operator: bool,
    pub decides: bool,
    pub active: &'static str,
}

/// The signed-in person of a request.
pub struct Viewer {
    pub account: Account,
    pub csrf: String,
    pub token_hash: String,
}

impl Viewer {
    pub fn actor(&self) -> Actor {
        Actor::Account(self.account.account_id)
    }

    pub fn role(&self) -> Role {
        self.account.role
    }

    /// Refuses (403) unless the viewer has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Page> {
        if roles.contains(&self.account.role) {
            Ok(())
        } else {
            Err(Page::forbidden(self))
        }
    }

    pub fn layout(&self, title: impl Into<String>, active: &'static str) -> Layout {
        Layout {
            title: title.into(),
            who: self.account.name.clone(),
            role: self.account.role.as_str(),
            csrf: self.csrf.clone(),
            operator: self.account.role == Role::Operator,
            decides: matches!(self.account.role, Role::Operator | Role::Reviewer),
            active,
        }
    }
}

/// A rendered page or a refusal, as the handlers return them.
pub enum Page {
    Html(StatusCode, String),
    Redirect(String),
    Response(Box<Response>),
}

impl Page {
    pub fn ok(t: &impl Template) -> Page {
        Page::render(StatusCode::OK, t)
    }

    pub fn render(status: StatusCode, t: &impl Template) -> Page {
        match t.render() {
            Ok(html) => Page::Html(status, html),
            Err(e) => {
                tracing::error!(error = %e, "console: a template failed to render");
                Page::Html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<!doctype html><title>Error</title><p>The page failed to render; see the server log.</p>".into(),
                )
            }
        }
    }

    pub fn message(v: &Viewer, status: StatusCode, title: &str, text: &str) -> Page {
        Page::render(
            status,
            &pages::MessagePage {
                layout: v.layout(title, ""),
                text: text.to_string(),
            },
        )
    }

    pub fn forbidden(v: &Viewer) -> Page {
        Page::message(
            v,
            StatusCode::FORBIDDEN,
            "Not allowed",
            &format!(
                "Your role ({}) does not give access to this page.",
                v.account.role.as_str()
            ),
        )
    }

    pub fn not_found(v: &Viewer, what: &str) -> Page {
        Page::message(
            v,
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("{what} does not exist."),
        )
    }

    /// Refuses an action that takes effect at once and cannot be undone from the console
    /// unless its form's confirmation box was ticked. Browsers keep an unticked form from
    /// being sent (`required`); this holds for every other client, and for a slip.
    pub fn unless_confirmed(v: &Viewer, confirm: &str, what: &str) -> Result<(), Page> {
        if confirm == "yes" {
            return Ok(());
        }
        Err(Page::message(
            v,
            StatusCode::BAD_REQUEST,
            "Not confirmed",
            &format!("Nothing was changed. Tick the box that confirms {what}, then submit again."),
        ))
    }

    /// A refusal of the shared service layer, shown as a page with its status and message.
    /// An operation the application layer refused, as a page.
    pub fn refused(v: &Viewer, e: OpError) -> Page {
        let (status, text) = refusal(e);
        let title = match status {
            StatusCode::BAD_REQUEST => "Cannot do that",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::CONFLICT => "Changed meanwhile",
            StatusCode::SERVICE_UNAVAILABLE => "Try again shortly",
            _ => "Error",
        };
        Page::message(v, status, title, &text)
    }
}

/// The status and the text a page shows for a refusal of the application layer. Storage
/// failures say only whether to retry (the details are logged).
pub fn refusal(e: OpError) -> (StatusCode, String) {
    let e = match e {
        OpError::Store(se) if !matches!(se, StoreError::NotFound(_)) => {
            let (status, text) = store_failure(se);
            return (status, text.to_string());
        }
        other => other,
    };
    let status = match &e {
        OpError::Invalid(_) => StatusCode::BAD_REQUEST,
        // The store's only error left here is its "not found".
        OpError::NotFound(_) | OpError::Store(_) => StatusCode::NOT_FOUND,
        OpError::WrongState(_) | OpError::NameTaken(_) | OpError::SetUp | OpError::Refused(_) => {
            StatusCode::CONFLICT
        }
        OpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, e.to_string())
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        match self {
            Page::Html(status, html) => (status, PAGE_HEADERS, Html(html)).into_response(),
            Page::Redirect(to) => (PAGE_HEADERS, Redirect::to(&to)).into_response(),
            Page::Response(r) => *r,
        }
    }
}

/// A storage failure while serving a page: 503 when the database is away, 500 otherwise.
pub fn store_failed(e: StoreError) -> Page {
    let (status, text) = store_failure(e);
    Page::Html(
        status,
        format!("<!doctype html><meta charset=\"utf-8\"><title>Error</title><p>{text}</p>"),
    )
}

/// A storage failure's status and what a page says of it (the details go to the log).
fn store_failure(e: StoreError) -> (StatusCode, &'static str) {
    let unavailable = matches!(e, StoreError::Unavailable(_) | StoreError::Conflict(_));
    if unavailable {
        tracing::warn!(error = %e, "console: database unavailable");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "The database is unavailable; try again shortly.",
        )
    } else {
        tracing::error!(error = %e, "console: storage failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Storage failed; see the server log.",
        )
    }
}

pub type PageResult = Result<Page, Page>;

/// The session of a request's cookie, if it is live.
pub async fn session_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(Session, String)>, Page> {
    crate::web::session_of(state, headers)
        .await
        .map_err(store_failed)
}

fn to_login(parts: &Parts) -> Page {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with("/console"))
        .unwrap_or("/console");
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    Page::Redirect(format!("/console/login?{q}"))
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Page;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Page> {
        match session_of(state, &parts.headers).await? {
            Some((s, token_hash)) => Ok(Viewer {
                account: s.account,
                csrf: s.csrf,
                token_hash,
            }),
            None => Err(to_login(parts)),
        }
    }
}

/// A console form post: the signed-in viewer and the form, checked against the session's
/// CSRF token (field `csrf`) before the handler sees it. Without a session: to sign-in; with
/// a wrong or missing token: 403, nothing done.
pub struct Posted<T> {
    pub viewer: Viewer,
    pub form: T,
}

#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for Posted<T> {
    type Rejection = Page;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Page> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| {
                Page::message(
                    &viewer,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Too large",
                    "The form is larger than the console accepts.",
                )
            })?;
        let given: CsrfField = serde_urlencoded::from_bytes(&bytes).unwrap_or(CsrfField {
            csrf: String::new(),
        });
        if given.csrf.is_empty() || !secrets::constant_time_eq(&given.csrf, &viewer.csrf) {
            tracing::warn!(account = %viewer.account.name, path = %parts.uri.path(), "console: form without its CSRF token refused");
            return Err(Page::message(
                &viewer,
                StatusCode::FORBIDDEN,
                "Form refused",
                "The form did not carry this session's token (it was sent from elsewhere, or the page is stale). Nothing was changed; open the page again.",
            ));
        }
        let form = serde_urlencoded::from_bytes::<T>(&bytes).map_err(|e| {
            Page::message(
                &viewer,
                StatusCode::BAD_REQUEST,
                "Cannot do that",
                &format!("The form is not valid: {e}"),
            )
        })?;
        Ok(Posted { viewer, form })
    }
}

/// Page numbers of a list: `?page=N` (1-based), clamped.
pub fn page_number(raw: Option<&str>) -> i64 {
    raw.and_then(|p| p.trim().parse::<i64>().ok())
        .unwrap_or(1)
        .clamp(1, 100_000)
}

/// How long ago `then_ms` was, in words a reviewer reads at a glance.
pub fn age(now_ms: i64, then_ms: i64) -> String {
    let s = (now_ms - then_ms).max(0) / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A time as the console shows it, in the platform's zone (`utc_offset`).
pub fn when(state: &AppState, ms: i64) -> String {
    crate::clock::commit_time(ms, state.settings.utc_offset)
}

/// Builds a query string from pairs (values escaped).
pub fn query(pairs: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

/// Previous/next links of a paginated list (empty when there is none).
pub struct Pager {
    pub page: i64,
    pub prev: String,
    pub next: String,
}

impl Pager {
    /// Links to `path` with `params` and the page number before and after `page`.
    pub fn new(path: &str, params: &[(&str, String)], page: i64, more: bool) -> Pager {
        let link = |n: i64| {
            let mut p = params.to_vec();
            p.push(("page", n.to_string()));
            format!("{path}?{}", query(&p))
        };
        Pager {
            page,
            prev: if page > 1 {
                link(page - 1)
            } else {
                String::new()
            },
            next: if more { link(page + 1) } else { String::new() },
        }
    }
}

/// What a throttled credential check tells the person locked out for `left`.
pub(crate) fn try_again_in(left: std::time::Duration) -> String {
    let mins = left.as_secs().div_ceil(60).max(1);
    format!("Too many wrong attempts; try again in {mins} minute(s).")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_in_the_largest_sensible_unit() {
        assert_eq!(age(61_000, 0), "1 min");
        assert_eq!(age(3_600_000 * 25, 0), "1 d 1 h");
        assert_eq!(
            age(0, 5_000),
            "0 s",
            "a clock skew never shows a negative age"
        );
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; spkg_session=tok; b=2".parse().expect("header"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
