//! The application layer: the operations more than one face needs, each rule (what a failed
//! audit needs, what an account name may be, which keys a rotation renews) written once. It
//! takes typed input and answers [`OpError`]; it knows no HTTP, no status code and no wire
//! type — each face (`admin`, `console`, `baidu`, `runtime`) parses its own wire, calls in
//! here, and maps the error to its own answer.

use smartpkg_core::lifecycle::Command;
use smartpkg_store::{
    Account, AccountRefusal, Actor, App, AppPatch, IssuedCode, NewAccount, PackageRecord, Role,
    Session, StoreError, Tp, TpPatch,
};

use crate::state::AppState;
use crate::{clock, owner, secrets};

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The input is wrong; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// What the operation names does not exist ("package 5").
    #[error("{0} not found")]
    NotFound(String),
    /// The lifecycle refused: the package is not where the operation needs it.
    #[error("{0}")]
    WrongState(String),
    /// An account of that name exists.
    #[error("an account named {0:?} exists")]
    NameTaken(String),
    /// The console's first-run setup, once an account exists.
    #[error("The console is set up already; sign in.")]
    SetUp,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

pub type OpResult<T> = Result<T, OpError>;

/// Refuses control, invisible format and separator characters (see `smartpkg_core::text`).
pub fn check_text(field: &str, value: Option<&str>, multiline: bool) -> OpResult<()> {
    match value {
        Some(v) => smartpkg_core::text::check(field, v, multiline).map_err(OpError::Invalid),
        None => Ok(()),
    }
}

/// How long an authorization code lives, in seconds (Baidu's `authorizationCodeExpiresIn`).
pub const AUTH_CODE_TTL_S: i64 = 3600;

/// An authorization code as the store keeps it: its hash, and the answer that hands it out
/// (`retrieve/authorizationcode` shows the payload), for any face that issues one.
pub fn issued_code(tp_id: i64, app_id: i64, code: &str, now_ms: i64) -> IssuedCode {
    IssuedCode {
        tp_id,
        app_id,
        code_hash: secrets::sha256_hex(code),
        expires_at_ms: now_ms + AUTH_CODE_TTL_S * 1000,
        payload: serde_json::json!({
            "authorizationCode": code,
            "authorizationCodeExpiresIn": AUTH_CODE_TTL_S,
        })
        .to_string(),
    }
}

/// The console session a session token (the cookie's value) names, if it is live, with the
/// token's hash (the key sessions are kept by).
pub async fn session_of_token(
    state: &AppState,
    token: &str,
) -> Result<Option<(Session, String)>, StoreError> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let hash = secrets::sha256_hex(token);
    let s = state.store.session(hash.clone(), clock::now_ms()).await?;
    Ok(s.map(|s| (s, hash)))
}

/// The longest audit reason a third party is told.
pub const MAX_REASON_CHARS: usize = 2048;

pub async fn load_package(state: &AppState, id: i64) -> OpResult<PackageRecord> {
    state
        .store
        .get_package(id)
        .await?
        .ok_or_else(|| OpError::NotFound(format!("package {id}")))
}

/// Passes or fails an audit; a failure needs a reason (the third party is told it). The push
/// goes out through the outbox as for any decision.
pub async fn decide_audit(
    state: &AppState,
    package_id: i64,
    pass: bool,
    reason: &str,
    actor: Actor,
) -> OpResult<PackageRecord> {
    let reason = reason.trim().to_string();
    if !pass && reason.is_empty() {
        return Err(OpError::Invalid(
            "a failed audit needs a reason: the third party is told it".into(),
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(OpError::Invalid(format!(
            "reason is at most {MAX_REASON_CHARS} characters"
        )));
    }
    check_text("reason", Some(&reason), true)?;
    let p = load_package(state, package_id).await?;
    let cmd = Command::Decide {
        package_id,
        pass,
        reason,
    };
    match state.execute(p.app_id, cmd, actor, None).await? {
        Ok(_) => load_package(state, package_id).await,
        Err(refusal) => Err(OpError::WrongState(refusal.msg)),
    }
}

/// Changes a mini program's name or gates.
pub async fn patch_app(state: &AppState, app_id: i64, patch: AppPatch) -> OpResult<App> {
    if patch.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(OpError::Invalid("name cannot be empty".into()));
    }
    check_text("name", patch.name.as_deref(), false)?;
    Ok(state.store.update_app(app_id, patch).await?)
}

/// Ends an authorization: the app's tokens die and the third party is told UNAUTHORIZED.
pub async fn revoke(state: &AppState, tp_id: i64, app_id: i64) -> OpResult<()> {
    if state.store.revoke(tp_id, app_id, clock::now_ms()).await? {
        state.jobs_ready.notify_one();
        Ok(())
    } else {
        Err(OpError::NotFound(format!(
            "authorization of app {app_id} to tp {tp_id}"
        )))
    }
}

/// Replays a push under its event id.
pub async fn redeliver(state: &AppState, delivery_id: i64) -> OpResult<()> {
    state.store.redeliver(delivery_id, clock::now_ms()).await?;
    state.jobs_ready.notify_one();
    Ok(())
}

/// New push keys for a third party (`msg_token` and `EncodingAESKey`): the caller shows them
/// once. Pushes sent from now on are signed and encrypted with the new keys.
pub async fn rotate_tp_keys(state: &AppState, tp_id: i64) -> OpResult<Tp> {
    let patch = TpPatch {
        msg_token: Some(secrets::random_alnum(32)),
        encoding_aes_key: Some(secrets::encoding_aes_key()),
        ..TpPatch::default()
    };
    Ok(state.store.update_tp(tp_id, patch).await?)
}

const MAX_ACCOUNT_NAME: usize = 64;

/// An account name as stored: trimmed, lowercased; letters, digits, `.`, `_`, `-`, `@`.
pub fn account_name(raw: &str) -> OpResult<String> {
    let name = raw.trim().to_lowercase();
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_ACCOUNT_NAME
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(name)
    } else {
        Err(OpError::Invalid(format!(
            "an account name is 1 to {MAX_ACCOUNT_NAME} letters, digits, '.', '_', '-' or '@'"
        )))
    }
}

/// Who asks for an account, and so what may be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creator {
    /// The admin API or an operator's account (its id).
    Operator(Option<i64>),
    /// The console's first-run setup: only while no account exists.
    FirstRun,
}

/// Creates a console account; without a password one is generated and returned (shown once).
pub async fn create_account(
    state: &AppState,
    name: &str,
    role: Role,
    password: Option<String>,
    creator: Creator,
    apps: Vec<i64>,
) -> OpResult<(Account, Option<String>)> {
    let (created_by, first_only) = match creator {
        Creator::Operator(by) => (by, false),
        Creator::FirstRun => (None, true),
    };
    let name = account_name(name)?;
    let (password, generated) = match password.filter(|p| !p.is_empty()) {
        Some(p) => (p, false),
        None => (owner::generate_password(), true),
    };
    let hash = password_hash(&password).await?;
    if role != Role::Owner && !apps.is_empty() {
        return Err(OpError::Invalid(
            "only owner accounts own mini programs".into(),
        ));
    }
    for app in &apps {
        if state.store.get_app(*app).await?.is_none() {
            return Err(OpError::NotFound(format!("mini program {app}")));
        }
    }
    let new = NewAccount {
        name: name.clone(),
        role,
        password_hash: hash,
        created_by,
        apps,
    };
    match state
        .store
        .create_account(new, first_only, clock::now_ms())
        .await?
    {
        Ok(a) => Ok((a, generated.then_some(password))),
        Err(AccountRefusal::NameTaken) => Err(OpError::NameTaken(name)),
        Err(AccountRefusal::NotFirst) => Err(OpError::SetUp),
    }
}

/// An account password's stored hash, once its shape is checked (400 when it is wrong).
async fn password_hash(password: &str) -> OpResult<String> {
    owner::check_password_shape(password).map_err(|e| OpError::Invalid(e.to_string()))?;
    owner::hash_password(password.to_string())
        .await
        .map_err(|e| OpError::Internal(e.to_string()))
}

/// What becomes of an account's password.
pub enum NewPassword {
    Keep,
    Set(String),
    /// A random one, returned once.
    Generate,
}

/// Changes an account's password and/or whether it may sign in. Every session of the account
/// but `keep_session` ends with it. Returns the account and, when one was generated, the new
/// password (shown once).
pub async fn edit_account(
    state: &AppState,
    account_id: i64,
    password: NewPassword,
    disabled: Option<bool>,
    keep_session: Option<String>,
) -> OpResult<(Account, Option<String>)> {
    let (password, generated) = match password {
        NewPassword::Keep => (None, false),
        NewPassword::Set(p) => (Some(p), false),
        NewPassword::Generate => (Some(owner::generate_password()), true),
    };
    if password.is_none() && disabled.is_none() {
        return Err(OpError::Invalid(
            "nothing to change: give password, generate_password or disabled".into(),
        ));
    }
    let password_hash = match &password {
        Some(p) => Some(password_hash(p).await?),
        None => None,
    };
    let change = smartpkg_store::AccountChange {
        password_hash,
        disabled,
    };
    let account = state
        .store
        .update_account(account_id, change, keep_session, clock::now_ms())
        .await?
        .ok_or_else(|| OpError::NotFound(format!("account {account_id}")))?;
    Ok((account, password.filter(|_| generated)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_are_lowercased_and_limited_to_a_safe_alphabet() {
        assert_eq!(
            account_name("  Rita.Reviewer ").expect("ok"),
            "rita.reviewer"
        );
        assert!(account_name("").is_err());
        assert!(account_name("a b").is_err());
        assert!(account_name("<script>").is_err());
        assert!(account_name(&"x".repeat(65)).is_err());
    }
}
