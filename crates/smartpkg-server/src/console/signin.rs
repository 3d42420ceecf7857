//! Signing in and out, the first operator, and accounts.

use smartpkg_core::ids::{AccountId, AppId};
use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Form};
use serde::Deserialize;
use smartpkg_store::Role;

use super::{
    cookie, store_failed, Layout, Page, PageResult, Pager, Posted, Viewer, PAGE_HEADERS, PAGE_SIZE,
    PRE_COOKIE, SESSION_COOKIE,
};
use crate::owner::{self, Guards};
use crate::state::AppState;
use crate::{application, clock, secrets};

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    lang: &'static str,
    title: &'static str,
    first_run: bool,
    csrf: String,
    next: String,
    name: String,
    error: String,
}

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

/// Where to go after signing in: only a console path or the authorization page (never
/// another site: an open redirect), written in visible ASCII only (a browser percent-encodes
/// everything else; a CR or LF cannot be a header's value, so such a `next` would leave the
/// redirect without its Location).
fn safe_next(next: &str) -> String {
    let ok = (next.starts_with("/console") || next.starts_with("/mappconsole/tp/authorization?"))
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        next.to_string()
    } else {
        "/console".to_string()
    }
}

/// `; Secure` when browsers reach this server over HTTPS: it holds a certificate itself, or
/// its public URL is `https://` (a TLS-terminating proxy in front of it).
fn secure(state: &AppState) -> &'static str {
    if state.settings.tls_cert.is_some() || state.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

async fn pre_key(state: &AppState) -> Result<String, Page> {
    state
        .store
        .server_secret("console_csrf")
        .await
        .map_err(store_failed)
}

/// The sign-in form, bound to this browser's pre-session cookie (set here when missing).
async fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    name: &str,
    error: &str,
) -> PageResult {
    let key = pre_key(state).await?;
    let existing = cookie(headers, PRE_COOKIE).filter(|p| p.len() == 32);
    let pre = existing
        .clone()
        .unwrap_or_else(|| secrets::random_alnum(32));
    let first_run = state.store.count_accounts().await.map_err(store_failed)? == 0;
    let page = Page::render(
        status,
        &LoginPage {
            lang: "en",
            title: if first_run {
                "Set up the console"
            } else {
                "Sign in"
            },
            first_run,
            csrf: owner::csrf_token(&key, &pre),
            next: safe_next(next),
            name: name.to_string(),
            error: error.to_string(),
        },
    );
    if existing.is_some() {
        return Ok(page);
    }
    let set = format!(
        "{PRE_COOKIE}={pre}; Path=/console; HttpOnly; SameSite=Strict; Max-Age=86400{}",
        secure(state)
    );
    Ok(Page::Response(Box::new(
        ([(header::SET_COOKIE, set)], page).into_response(),
    )))
}

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> PageResult {
    if super::session_of(&state, &headers).await?.is_some() {
        return Ok(Page::Redirect(safe_next(&q.next)));
    }
    login_page(&state, &headers, StatusCode::OK, &q.next, "", "").await
}

async fn pre_valid(state: &AppState, headers: &HeaderMap, given: &str) -> Result<bool, Page> {
    let key = pre_key(state).await?;
    Ok(match cookie(headers, PRE_COOKIE) {
        Some(pre) => owner::csrf_valid(&key, &pre, given.trim()),
        None => false,
    })
}

/// Starts a session for `account_id` and sends the browser on with its cookie.
async fn sign_in(state: &AppState, account_id: i64, next: &str) -> PageResult {
    let token = secrets::random_alnum(43);
    let now = clock::now_ms();
    let ttl = state.settings.console_session_ttl_s;
    let expires = now.saturating_add((ttl as i64).saturating_mul(1000));
    state
        .store
        .create_session(
            secrets::sha256_hex(&token),
            AccountId(account_id),
            secrets::random_alnum(32),
            now,
            expires,
        )
        .await
        .map_err(store_failed)?;
    let set = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={ttl}{}",
        secure(state)
    );
    Ok(Page::Response(Box::new(
        (
            StatusCode::SEE_OTHER,
            PAGE_HEADERS,
            [
                (header::SET_COOKIE, set),
                (header::LOCATION, safe_next(next)),
            ],
        )
            .into_response(),
    )))
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

const WRONG: &str = "The account name or password is wrong.";

/// The throttle's key for an account's password: sign-in and a password change count wrong
/// passwords together.
fn account_key(name: &str) -> String {
    format!("acct:{name}")
}

pub async fn submit(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> PageResult {
    if !pre_valid(&state, &headers, &f.csrf).await? {
        return login_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            &f.next,
            &f.name,
            "The form was stale or not sent from this page; nothing was checked. Sign in again.",
        )
        .await;
    }
    let name = f.name.trim().to_lowercase();
    let guards = &state.console_guards;
    let name_key = account_key(&name);
    let client_key = peer.map(|Extension(ConnectInfo(a))| Guards::client_key(a.ip()));
    let locked = guards.per_app.locked(&name_key).or_else(|| {
        client_key
            .as_deref()
            .and_then(|k| guards.per_client.locked(k))
    });
    if let Some(left) = locked {
        return login_page(
            &state,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            &f.next,
            &f.name,
            &super::try_again_in(left),
        )
        .await;
    }
    let found = state
        .store
        .account_by_name(name.clone())
        .await
        .map_err(store_failed)?;
    let (account, hash) = match found {
        Some((a, h)) => (Some(a), Some(h)),
        None => (None, None),
    };
    // Verified (against a dummy hash when there is no such account) so both answers take as
    // long: the timing does not tell which names exist.
    let ok = owner::verify_password(f.password.clone(), hash).await;
    match account.filter(|_| ok) {
        // Said only to whoever knows the password, so it tells nobody else that the name
        // exists.
        Some(a) if a.disabled_at_ms.is_some() => {
            guards.per_app.clear(&name_key);
            tracing::warn!(account = %a.name, "console: a disabled account tried to sign in");
            login_page(
                &state,
                &headers,
                StatusCode::FORBIDDEN,
                &f.next,
                &f.name,
                "This account is disabled. An operator can enable it again.",
            )
            .await
        }
        Some(a) => {
            guards.per_app.clear(&name_key);
            tracing::info!(account = %a.name, "console: signed in");
            sign_in(&state, a.account_id.get(), &f.next).await
        }
        None => {
            guards.per_app.fail(&name_key);
            if let Some(k) = &client_key {
                guards.per_client.fail(k);
            }
            tracing::warn!(account = %name, "console: wrong password");
            login_page(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                &f.next,
                &f.name,
                WRONG,
            )
            .await
        }
    }
}

#[derive(Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    admin_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// The very first sign-in: the admin token creates the first operator (only while no account
/// exists).
pub async fn setup(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(f): Form<SetupForm>,
) -> PageResult {
    let again = |status, msg: String| {
        let (state, headers) = (state.clone(), headers.clone());
        async move { login_page(&state, &headers, status, "", "", &msg).await }
    };
    if !pre_valid(&state, &headers, &f.csrf).await? {
        return again(
            StatusCode::FORBIDDEN,
            "The form was stale; nothing was done.".into(),
        )
        .await;
    }
    let client_key = peer.map(|Extension(ConnectInfo(a))| Guards::client_key(a.ip()));
    if let Some(left) = client_key
        .as_deref()
        .and_then(|k| state.console_guards.per_client.locked(k))
    {
        return again(StatusCode::TOO_MANY_REQUESTS, super::try_again_in(left)).await;
    }
    if !secrets::constant_time_eq(f.admin_token.trim(), &state.admin_token) {
        if let Some(k) = &client_key {
            state.console_guards.per_client.fail(k);
        }
        return again(StatusCode::UNAUTHORIZED, "The admin token is wrong.".into()).await;
    }
    match application::create_account(
        &state,
        &f.name,
        Role::Operator,
        Some(f.password),
        application::Creator::FirstRun,
        vec![],
    )
    .await
    {
        Ok((a, _)) => {
            tracing::info!(account = %a.name, "console: first operator created");
            sign_in(&state, a.account_id.get(), "/console").await
        }
        Err(e) => {
            let (status, text) = super::refusal(e);
            again(status, text).await
        }
    }
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn logout(State(state): State<AppState>, p: Posted<Empty>) -> PageResult {
    state
        .store
        .delete_session(p.viewer.token_hash.clone())
        .await
        .map_err(store_failed)?;
    let clear = format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        secure(&state)
    );
    Ok(Page::Response(Box::new(
        (
            StatusCode::SEE_OTHER,
            PAGE_HEADERS,
            [
                (header::SET_COOKIE, clear),
                (header::LOCATION, "/console/login".to_string()),
            ],
        )
            .into_response(),
    )))
}

pub struct AccountRow {
    account_id: i64,
    name: String,
    role: &'static str,
    created: String,
    created_by: String,
    /// Empty while enabled.
    disabled_since: String,
    /// The viewer's own account: it cannot disable itself here.
    me: bool,
}

#[derive(Template)]
#[template(path = "console/accounts.html")]
pub struct AccountsPage {
    layout: Layout,
    total: i64,
    accounts: Vec<AccountRow>,
    pager: Pager,
    /// What the notice at the top says was done ("Account x created.").
    created: String,
    password: String,
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    pub page: Option<String>,
}

async fn accounts_page(
    state: &AppState,
    v: &Viewer,
    page: i64,
    created: String,
    password: String,
) -> PageResult {
    let (total, rows) = state
        .store
        .list_accounts((page - 1) * PAGE_SIZE, PAGE_SIZE)
        .await
        .map_err(store_failed)?;
    let names: std::collections::HashMap<i64, String> = rows
        .iter()
        .map(|a| (a.account_id.get(), a.name.clone()))
        .collect();
    let accounts = rows
        .iter()
        .map(|a| AccountRow {
            account_id: a.account_id.get(),
            disabled_since: a
                .disabled_at_ms
                .map(|at| super::when(state, at))
                .unwrap_or_default(),
            me: a.account_id == v.account.account_id,
            name: a.name.clone(),
            role: a.role.as_str(),
            created: super::when(state, a.created_at_ms),
            created_by: match a.created_by {
                Some(id) => names
                    .get(&id.get())
                    .cloned()
                    .unwrap_or_else(|| format!("#{id}")),
                None => "admin token".into(),
            },
        })
        .collect();
    Ok(Page::ok(&AccountsPage {
        layout: v.layout("Accounts", "accounts"),
        total,
        accounts,
        pager: Pager::new("/console/accounts", &[], page, page * PAGE_SIZE < total),
        created,
        password,
    }))
}

pub async fn accounts(
    State(state): State<AppState>,
    v: Viewer,
    Query(q): Query<PageQuery>,
) -> PageResult {
    v.require(&[Role::Operator])?;
    accounts_page(
        &state,
        &v,
        super::page_number(q.page.as_deref()),
        String::new(),
        String::new(),
    )
    .await
}

#[derive(Deserialize)]
pub struct NewAccountForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    apps: String,
}

pub async fn create_account(
    State(state): State<AppState>,
    p: Posted<NewAccountForm>,
) -> PageResult {
    let v = &p.viewer;
    v.require(&[Role::Operator])?;
    let f = p.form;
    let role = Role::parse(f.role.trim()).ok_or_else(|| {
        Page::message(
            v,
            StatusCode::BAD_REQUEST,
            "Cannot do that",
            "role must be operator, reviewer or owner",
        )
    })?;
    let mut apps = vec![];
    for part in f.apps.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        apps.push(AppId(part.parse::<i64>().map_err(|_| {
            Page::message(
                v,
                StatusCode::BAD_REQUEST,
                "Cannot do that",
                &format!("{part:?} is not a mini program id"),
            )
        })?));
    }
    let password = Some(f.password).filter(|p| !p.is_empty());
    let (account, generated) = application::create_account(
        &state,
        &f.name,
        role,
        password,
        application::Creator::Operator(Some(v.account.account_id)),
        apps,
    )
    .await
    .map_err(|e| Page::refused(v, e))?;
    tracing::info!(by = %v.account.name, account = %account.name, role = account.role.as_str(), "console: account created");
    accounts_page(
        &state,
        v,
        1,
        format!("Account {} created.", account.name),
        generated.unwrap_or_default(),
    )
    .await
}

#[derive(Deserialize)]
pub struct AccountActionForm {
    /// `disable`, `enable` or `password` (a new generated password).
    #[serde(default)]
    action: String,
}

/// An operator disables or enables another account, or gives it a new password (generated,
/// shown once). Each ends the account's sessions.
pub async fn account_action(
    State(state): State<AppState>,
    Path(account_id): Path<i64>,
    p: Posted<AccountActionForm>,
) -> PageResult {
    let v = &p.viewer;
    v.require(&[Role::Operator])?;
    let refuse = |text: &str| Page::message(v, StatusCode::BAD_REQUEST, "Cannot do that", text);
    let (password, disabled, done) = match p.form.action.as_str() {
        "disable" => (
            application::NewPassword::Keep,
            Some(true),
            "disabled; its sessions have ended",
        ),
        "enable" => (application::NewPassword::Keep, Some(false), "enabled"),
        "password" => (
            application::NewPassword::Generate,
            None,
            "has a new password; its sessions have ended",
        ),
        other => return Err(refuse(&format!("{other:?} is not an action on an account"))),
    };
    if account_id == v.account.account_id.get() {
        // Disabling oneself would lock the console's last operator out; one's own password
        // is changed with the current one (/console/password).
        return Err(refuse(
            "Not on your own account: change your password on the Password page.",
        ));
    }
    let (account, generated) =
        application::edit_account(&state, AccountId(account_id), password, disabled, None)
            .await
            .map_err(|e| Page::refused(v, e))?;
    tracing::info!(by = %v.account.name, account = %account.name, action = %p.form.action, "console: account changed");
    let done = format!("Account {} {done}.", account.name);
    accounts_page(&state, v, 1, done, generated.unwrap_or_default()).await
}

#[derive(Template)]
#[template(path = "console/password.html")]
pub struct PasswordPage {
    layout: Layout,
    error: String,
}

/// Anyone signed in changes their own password.
pub async fn password_page(v: Viewer) -> PageResult {
    Ok(Page::ok(&PasswordPage {
        layout: v.layout("Password", ""),
        error: String::new(),
    }))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    repeat: String,
}

/// Checks the current password (throttled like sign-in: a stolen session must not become a
/// password oracle), sets the new one, and ends every other session of the account.
pub async fn change_password(State(state): State<AppState>, p: Posted<PasswordForm>) -> PageResult {
    let v = &p.viewer;
    let again = |status: StatusCode, error: &str| {
        Page::render(
            status,
            &PasswordPage {
                layout: v.layout("Password", ""),
                error: error.to_string(),
            },
        )
    };
    let guards = &state.console_guards;
    let key = account_key(&v.account.name);
    if let Some(left) = guards.per_app.locked(&key) {
        return Ok(again(
            StatusCode::TOO_MANY_REQUESTS,
            &super::try_again_in(left),
        ));
    }
    if p.form.new != p.form.repeat {
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "The new password and its repetition differ; nothing was changed.",
        ));
    }
    let hash = state
        .store
        .account_by_name(v.account.name.clone())
        .await
        .map_err(store_failed)?
        .map(|(_, h)| h);
    if !owner::verify_password(p.form.current.clone(), hash).await {
        guards.per_app.fail(&key);
        return Ok(again(
            StatusCode::UNAUTHORIZED,
            "The current password is wrong; nothing was changed.",
        ));
    }
    guards.per_app.clear(&key);
    let new = application::NewPassword::Set(p.form.new.clone());
    if let Err(e) = application::edit_account(
        &state,
        v.account.account_id,
        new,
        None,
        Some(v.token_hash.clone()),
    )
    .await
    {
        let (status, text) = super::refusal(e);
        return Ok(again(status, &format!("{text}; nothing was changed.")));
    }
    tracing::info!(account = %v.account.name, "console: password changed");
    Ok(Page::message(
        v,
        StatusCode::OK,
        "Password changed",
        "Your password was changed. Your other sessions were signed out; this one stays.",
    ))
}
