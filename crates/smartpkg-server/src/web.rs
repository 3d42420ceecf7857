//! What the two HTML faces (the console, and Baidu's authorization page, where a signed-in
//! owner authorizes in one click) share of the browser's side: the session cookie. Below both
//! faces; the session itself is looked up by the application layer.

use axum::http::{header, HeaderMap};
use smartpkg_store::{Session, StoreError};

use crate::state::AppState;

/// The console session's cookie.
pub const SESSION_COOKIE: &str = "spkg_session";

/// The value of the cookie `name` in a request's headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The live console session of a request's cookie, if any, with its token's hash.
pub async fn session_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(Session, String)>, StoreError> {
    match cookie(headers, SESSION_COOKIE) {
        Some(token) => crate::application::session_of_token(state, &token).await,
        None => Ok(None),
    }
}
