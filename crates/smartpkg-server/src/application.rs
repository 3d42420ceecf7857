//! The application layer: the operations more than one face needs, each rule (what a failed
//! audit needs, what an account name may be, which keys a rotation renews) written once. It
//! takes typed input and answers [`OpError`]; it knows no HTTP, no status code and no wire
//! type — each face (`admin`, `console`, `baidu`, `runtime`) parses its own wire, calls in
//! here, and maps the error to its own answer.

use smartpkg_core::dialect::Dialect;
use smartpkg_core::ext::parse_ext_json;
use smartpkg_core::ids::{AccountId, AppId, PackageId, TemplateId, TpId};
use smartpkg_core::lifecycle::{Command, Errno, Refusal};
use smartpkg_core::stage::{self, StagePlan};
use smartpkg_store::{
    Account, AccountRefusal, Actor, App, AppPatch, Domains, IssuedCode, LibraryRefusal, NewAccount,
    NewPackage, OperatorGrant, PackageRecord, Role, RuntimeSettings, Session, StoreError, Tp,
    TpPatch,
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
    /// A refusal in the platform's errno vocabulary (the lifecycle's, an upload's checks):
    /// the Baidu face sends it as it is; other faces map the errno to their own.
    #[error("{}", .0.msg)]
    Refused(Refusal),
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

/// Whose write budget a call draws from.
#[derive(Clone, Copy)]
pub enum Scope {
    App,
    Tp,
}

/// Takes one write from the budget of `key` (an app id or a TP id), or refuses with the
/// call-limit errno saying which limit and when to retry (counted in the metrics). Every
/// dialect's writes draw on the same budgets.
pub fn take_write(state: &AppState, scope: Scope, key: i64) -> OpResult<()> {
    let s = &state.settings;
    let (buckets, label, whose, per_minute) = match scope {
        Scope::App => (
            &state.write_limits.per_app,
            "app",
            "this mini program",
            s.app_writes_per_minute,
        ),
        Scope::Tp => (
            &state.write_limits.per_tp,
            "tp",
            "this third party",
            s.tp_writes_per_minute,
        ),
    };
    buckets.take(key).map_err(|wait| {
        state
            .metrics
            .counter("smartpkg_rate_limited_total", &[("scope", label)])
            .increment(1);
        OpError::Refused(Refusal::detailed(
            Errno::CallLimit,
            format!(
                "{whose} may make {per_minute} write calls per minute; retry in {} s",
                wait.as_secs().max(1)
            ),
        ))
    })
}

/// A package upload, as any face gives it once it has parsed its own wire.
pub struct Upload {
    pub app_id: AppId,
    pub tp_id: TpId,
    pub template_id: TemplateId,
    pub ext_json: String,
    pub version: String,
    pub version_desc: String,
    pub test_account: Option<String>,
    pub test_password: Option<String>,
}

/// Uploads a package built from one of the third party's templates and the mini program's
/// `ext_json`; the build job runs after it. Refused (with the upload's errnos) for an
/// `ext_json` over the size limit or unusable, a template not in the third party's library or
/// deleted, and an upload past the byte budgets; the lifecycle's own refusals as they come.
pub async fn upload(state: &AppState, u: Upload, actor: Actor) -> OpResult<i64> {
    upload_checked(state, u, actor, false).await
}

/// An upload whose build's refusals are answered now, as WeChat's `commit` answers them:
/// the pages `ext_json` names must be the template's and its `extAppid` the mini program's,
/// checked against the template's manifest before anything is kept.
pub async fn commit(state: &AppState, u: Upload, actor: Actor) -> OpResult<i64> {
    upload_checked(state, u, actor, true).await
}

async fn upload_checked(
    state: &AppState,
    u: Upload,
    actor: Actor,
    check_build: bool,
) -> OpResult<i64> {
    let max_ext = state.settings.max_ext_json_bytes;
    if u.ext_json.len() > max_ext {
        return Err(OpError::Refused(Refusal::detailed(
            Errno::ParamError,
            format!(
                "ext_json is {} bytes; at most {max_ext} are accepted",
                u.ext_json.len()
            ),
        )));
    }
    let ext = parse_ext_json(&u.ext_json)
        .map_err(|e| OpError::Refused(Refusal::new(e.errno(), e.to_string())))?;
    let template = match state.store.get_template(u.template_id).await? {
        Some(t) if t.tp_id == u.tp_id => t,
        _ => {
            return Err(OpError::Refused(Refusal::detailed(
                Errno::TemplateNotFound,
                format!(
                    "template {} is not in this third party's library",
                    u.template_id
                ),
            )))
        }
    };
    if template.deleted {
        return Err(OpError::Refused(Refusal::baidu(Errno::TemplateOffline)));
    }
    if check_build {
        build_would_pass(state, &u, &ext, &template).await?;
    }
    // What this upload asks us to keep: ext_json twice (as sent, and as built into the
    // package's ext.json) and the texts beside it. Charged last, so a refused upload costs
    // nothing.
    let kept = 2 * u.ext_json.len()
        + u.version.len()
        + u.version_desc.len()
        + u.test_account.as_ref().map_or(0, String::len)
        + u.test_password.as_ref().map_or(0, String::len);
    upload_bytes_allowed(state, u.app_id, u.tp_id, kept as u64)?;
    let new = NewPackage {
        app_id: u.app_id,
        tp_id: u.tp_id,
        template_id: u.template_id,
        version: u.version,
        version_desc: u.version_desc,
        ext_json: u.ext_json,
        direct_commit: ext.direct_commit,
        test_account: u.test_account,
        test_password: u.test_password,
    };
    match state
        .store
        .upload(new, state.decision_context(actor))
        .await?
    {
        Ok((package_id, plan)) => {
            state.jobs_ready.notify(crate::job_signal::lanes_of(&plan));
            Ok(package_id.get())
        }
        Err(refusal) => Err(OpError::Refused(refusal)),
    }
}

/// What the build job would refuse, refused now: the manifest the template was stored with
/// (its verified copy when this process has one) against `ext_json`.
async fn build_would_pass(
    state: &AppState,
    u: &Upload,
    ext: &smartpkg_core::ext::ExtConfig,
    template: &smartpkg_store::Template,
) -> OpResult<()> {
    let verified = state
        .verified_templates
        .lock()
        .ok()
        .and_then(|c| c.get(&template.blob_sha256).cloned());
    let manifest = match verified {
        Some(m) => m,
        None => std::sync::Arc::new(
            serde_json::from_str::<smartpkg_core::archive::TemplateManifest>(&template.manifest)
                .map_err(|e| OpError::Refused(Refusal::detailed(Errno::TemplateParseError, e)))?,
        ),
    };
    // The wx appid is read only when extAppid names something other than the numeric id.
    let names_other = ext
        .ext_appid
        .as_ref()
        .is_some_and(|a| *a != u.app_id.get().to_string());
    let wx_appid = match names_other {
        true => state
            .store
            .get_app(u.app_id)
            .await?
            .map(|a| a.wx_appid)
            .unwrap_or_default(),
        false => String::new(),
    };
    smartpkg_core::ext::build_ext_json(ext, u.app_id.get(), &wx_appid, &manifest)
        .map(|_| ())
        .map_err(|f| OpError::Refused(Refusal::new(f.errno, f.msg)))
}

/// Takes `bytes` from the upload byte budgets of the mini program and of its third party, or
/// refuses with 50029 naming the budget that is spent (taking nothing from either).
fn upload_bytes_allowed(state: &AppState, app_id: AppId, tp_id: TpId, bytes: u64) -> OpResult<()> {
    let s = &state.settings;
    let limits = &state.write_limits;
    let refused = |scope: &'static str,
                   whose: &str,
                   setting: &str,
                   budget: u64,
                   wait: std::time::Duration| {
        state
            .metrics
            .counter("smartpkg_rate_limited_total", &[("scope", scope)])
            .increment(1);
        let when = if wait == std::time::Duration::MAX {
            "this upload alone is larger than the budget".to_string()
        } else {
            format!("retry in {} s", wait.as_secs().max(1))
        };
        OpError::Refused(Refusal::detailed(
            Errno::CallLimit,
            format!(
                "{whose} may upload {budget} bytes per {} s ({setting}); this upload is {bytes} bytes; {when}",
                s.upload_budget_window_s
            ),
        ))
    };
    limits
        .bytes_per_app
        .take_n(app_id.get(), bytes)
        .map_err(|wait| {
            refused(
                "app_bytes",
                "this mini program",
                "app_upload_bytes_per_window",
                s.app_upload_bytes_per_window,
                wait,
            )
        })?;
    if let Err(wait) = limits.bytes_per_tp.take_n(tp_id.get(), bytes) {
        limits.bytes_per_app.refund(app_id.get(), bytes);
        return Err(refused(
            "tp_bytes",
            "this third party",
            "tp_upload_bytes_per_window",
            s.tp_upload_bytes_per_window,
            wait,
        ));
    }
    Ok(())
}

/// A lifecycle command on a mini program's package (submit, release, rollback, withdraw, a
/// staged release and its revert, rollback to a chosen version), decided through the core.
pub async fn package_command(
    state: &AppState,
    app_id: AppId,
    cmd: Command,
    actor: Actor,
) -> OpResult<()> {
    package_command_in(state, Dialect::Baidu, app_id, cmd, actor).await
}

/// As [`package_command`], for a command that came through `dialect`'s API: a submission
/// draws on that dialect's audit quota.
pub async fn package_command_in(
    state: &AppState,
    dialect: Dialect,
    app_id: AppId,
    cmd: Command,
    actor: Actor,
) -> OpResult<()> {
    state
        .execute_in(dialect, app_id.get(), cmd, actor, None)
        .await?
        .map(|_| ())
        .map_err(OpError::Refused)
}

/// The tokens a new authorization hands out (plain text, shown to the caller once).
pub struct Granted {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
}

/// Authorizes a mini program to a third party by the operator's hand and mints its tokens,
/// with the same events as the owner's consent: UNAUTHORIZED to a third party that loses the
/// mini program, AUTHORIZED (with a code of its own) to this one.
pub async fn authorize(state: &AppState, tp_id: TpId, app_id: AppId) -> OpResult<Granted> {
    if state.store.get_tp(tp_id).await?.is_none() {
        return Err(OpError::NotFound(format!("tp {tp_id}")));
    }
    let now = clock::now_ms();
    let (access_token, refresh_token, pair) = state.new_token_pair(now);
    let code = secrets::random_alnum(40);
    let grant = OperatorGrant {
        tp_id,
        app_id,
        pair,
        code: issued_code(tp_id, app_id, &code, now),
    };
    state.store.authorize(grant, now).await?;
    state.jobs_ready.notify_one();
    Ok(Granted {
        access_token,
        refresh_token,
        expires_in: state.settings.app_token_ttl_s,
    })
}

/// What a presented ticket bought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketTrade {
    /// A token of the third party.
    Token(String),
    /// One of its tickets, expired.
    Expired,
    /// No ticket of its.
    Unknown,
}

/// Trades a third party's ticket for a token of the third party living `ttl_s` seconds
/// (Baidu's TP token, WeChat's component token: either dialect's ticket buys either).
pub async fn tp_token_for_ticket(
    state: &AppState,
    tp_id: TpId,
    ticket: &str,
    ttl_s: u64,
) -> OpResult<TicketTrade> {
    let now = clock::now_ms();
    let hash = secrets::sha256_hex(ticket.trim());
    if !state.store.ticket_valid(tp_id, hash.clone(), now).await? {
        return Ok(match state.store.ticket_known(tp_id, hash).await? {
            true => TicketTrade::Expired,
            false => TicketTrade::Unknown,
        });
    }
    let token = secrets::access_token("42");
    let expires = now.saturating_add((ttl_s as i64).saturating_mul(1000));
    state
        .store
        .create_tp_token(tp_id, secrets::sha256_hex(&token), expires, now)
        .await?;
    Ok(TicketTrade::Token(token))
}

/// A single-use pre-auth code for the third party's consent link, living `ttl_s` seconds.
pub async fn pre_auth_code(state: &AppState, tp_id: TpId, ttl_s: i64) -> OpResult<String> {
    let code = secrets::random_alnum(40);
    let now = clock::now_ms();
    state
        .store
        .create_code(
            smartpkg_store::CodeKind::PreAuth,
            secrets::sha256_hex(&code),
            tp_id,
            None,
            now + ttl_s * 1000,
            now,
        )
        .await?;
    Ok(code)
}

/// How a presented owner credential fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerCheck {
    Accepted,
    Wrong,
    /// Too many wrong ones lately, for this mini program or from this client; it was not
    /// checked. The time left.
    Locked(std::time::Duration),
}

/// Checks a mini program's owner credential wherever one is presented (Baidu's authorization
/// page, the console's "add a mini program"): one throttle per mini program and one per client
/// address (IPv6: per /64), a wrong one counted in the metrics and the log.
pub async fn check_owner_credential(
    state: &AppState,
    app_id: AppId,
    password: String,
    client: Option<std::net::IpAddr>,
) -> OpResult<OwnerCheck> {
    let app_key = owner::Guards::app_key(app_id.get());
    let client_key = client.map(owner::Guards::client_key);
    let locked = client_key
        .as_deref()
        .and_then(|k| state.guards.per_client.locked(k))
        .or_else(|| state.guards.per_app.locked(&app_key));
    if let Some(left) = locked {
        return Ok(OwnerCheck::Locked(left));
    }
    let stored = state.store.owner_password_hash(app_id).await?;
    if !owner::verify_password(password, stored).await {
        state.guards.per_app.fail(&app_key);
        if let Some(k) = &client_key {
            state.guards.per_client.fail(k);
        }
        state
            .metrics
            .counter("smartpkg_owner_credential_failures_total", &[])
            .increment(1);
        tracing::warn!(app_id = %app_id, "wrong owner credential");
        return Ok(OwnerCheck::Wrong);
    }
    state.guards.per_app.clear(&app_key);
    Ok(OwnerCheck::Accepted)
}

/// How long an authorization code lives, in seconds (Baidu's `authorizationCodeExpiresIn`).
pub const AUTH_CODE_TTL_S: i64 = 3600;

/// An authorization code as the store keeps it: its hash, and the plain code the AUTHORIZED
/// event hands to the third party, for any face that issues one.
pub fn issued_code(tp_id: TpId, app_id: AppId, code: &str, now_ms: i64) -> IssuedCode {
    IssuedCode {
        tp_id,
        app_id,
        code_hash: secrets::sha256_hex(code),
        expires_at_ms: now_ms + AUTH_CODE_TTL_S * 1000,
        grant: smartpkg_core::push::CodeGrant {
            authorization_code: code.to_string(),
            authorization_code_expires_in: AUTH_CODE_TTL_S,
        },
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
        .get_package(PackageId(id))
        .await?
        .ok_or_else(|| OpError::NotFound(format!("package {id}")))
}

/// Passes or fails an audit; a failure needs a reason (the third party is told it). The push
/// goes out through the outbox as for any decision.
pub async fn decide_audit(
    state: &AppState,
    package_id: PackageId,
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
    let p = load_package(state, package_id.get()).await?;
    let cmd = Command::Decide {
        package_id,
        pass,
        reason,
    };
    match state.execute(p.app_id.get(), cmd, actor, None).await? {
        Ok(_) => load_package(state, package_id.get()).await,
        Err(refusal) => Err(OpError::WrongState(refusal.msg)),
    }
}

/// Changes a mini program's name or gates.
pub async fn patch_app(state: &AppState, app_id: AppId, patch: AppPatch) -> OpResult<App> {
    if patch.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(OpError::Invalid("name cannot be empty".into()));
    }
    check_text("name", patch.name.as_deref(), false)?;
    Ok(state.store.update_app(app_id, patch).await?)
}

/// Ends an authorization: the app's tokens die and the third party is told UNAUTHORIZED.
pub async fn revoke(state: &AppState, tp_id: TpId, app_id: AppId) -> OpResult<()> {
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

/// New push keys for a third party, in both dialects (`msg_token` and `EncodingAESKey`, and
/// the WeChat token and key): the caller shows them once. Pushes sent from now on are signed
/// and encrypted with the new keys.
pub async fn rotate_tp_keys(state: &AppState, tp_id: TpId) -> OpResult<Tp> {
    let patch = TpPatch {
        msg_token: Some(secrets::random_alnum(32)),
        encoding_aes_key: Some(secrets::encoding_aes_key()),
        wechat_token: Some(secrets::random_alnum(32)),
        wechat_encoding_aes_key: Some(secrets::encoding_aes_key()),
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
    Operator(Option<AccountId>),
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
    apps: Vec<AppId>,
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
    account_id: AccountId,
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

// --- the template library (a third party's drafts → templates) ---

/// A third party may keep 50 templates (Baidu's errno 2003 past that).
pub const MAX_TEMPLATES: i64 = 50;
/// A template's description is at most 30 characters (Baidu's errno 40016 past that).
pub const MAX_TEMPLATE_DESC_CHARS: usize = 30;
/// The longest page of a library listing.
pub const MAX_PAGE_SIZE: i64 = 100;

/// A page of a listing: `page` from 1, `size` 1 to [`MAX_PAGE_SIZE`]; as (offset, limit).
pub fn page(page: i64, size: i64) -> OpResult<(i64, i64)> {
    if page < 1 || !(1..=MAX_PAGE_SIZE).contains(&size) {
        return Err(OpError::Invalid(format!(
            "page starts at 1 and page_size is 1 to {MAX_PAGE_SIZE}"
        )));
    }
    Ok(((page - 1).saturating_mul(size), size))
}

/// Makes a template of one of the third party's drafts, within the library's limit;
/// described by `desc`, or (None) by the draft's own description.
pub async fn add_template(
    state: &AppState,
    tp_id: TpId,
    draft_id: i64,
    desc: Option<String>,
) -> OpResult<smartpkg_store::Template> {
    if let Some(desc) = &desc {
        check_template_desc(desc)?;
    }
    let added = state
        .store
        .add_template(tp_id, draft_id, desc, MAX_TEMPLATES, clock::now_ms())
        .await?;
    added.map_err(|refusal| match refusal {
        LibraryRefusal::TemplateLimit => OpError::Refused(Refusal::baidu(Errno::TemplateLimit)),
        _ => OpError::NotFound(format!("draft {draft_id} of this third party")),
    })
}

fn check_template_desc(desc: &str) -> OpResult<()> {
    if desc.chars().count() > MAX_TEMPLATE_DESC_CHARS {
        return Err(OpError::Refused(Refusal::detailed(
            Errno::TemplateDescInvalid,
            format!("user_desc is at most {MAX_TEMPLATE_DESC_CHARS} characters"),
        )));
    }
    smartpkg_core::text::check("user_desc", desc, true)
        .map_err(|why| OpError::Refused(Refusal::detailed(Errno::TemplateDescInvalid, why)))
}

/// Removes a template from the third party's library (packages built from it stay).
pub async fn delete_template(
    state: &AppState,
    tp_id: TpId,
    template_id: TemplateId,
) -> OpResult<()> {
    state
        .store
        .delete_template(tp_id, template_id, clock::now_ms())
        .await?
        .map_err(|_| {
            OpError::Refused(Refusal::detailed(
                Errno::TemplateNotFound,
                format!("template {template_id} is not in this third party's library"),
            ))
        })
}

// --- a mini program's runtime settings and its third party's registered domains ---

/// Longest allow-list: Baidu documents none; 200 keeps a settings row small.
pub const MAX_DOMAINS: usize = 200;

/// What a domain call does to a list; absent, the Baidu dialect adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainAction {
    Add,
    Delete,
    Set,
    Get,
}

impl DomainAction {
    /// `add`, `delete`, `set` or `get` (spaces around ignored); None when absent.
    pub fn parse(given: Option<&str>) -> OpResult<Option<DomainAction>> {
        match given.map(str::trim) {
            None => Ok(None),
            Some("add") => Ok(Some(DomainAction::Add)),
            Some("delete") => Ok(Some(DomainAction::Delete)),
            Some("set") => Ok(Some(DomainAction::Set)),
            Some("get") => Ok(Some(DomainAction::Get)),
            Some(other) => Err(OpError::Invalid(format!(
                "action is add, delete, set or get, not {other:?}"
            ))),
        }
    }
}

/// A comma-separated list of domains, each checked, lower-cased, without repeats; None when
/// absent. `name` is the parameter, for the message.
pub fn domain_list(
    given: Option<&str>,
    name: &str,
    kind: smartpkg_core::runtime::DomainKind,
) -> OpResult<Option<Vec<String>>> {
    let Some(raw) = given else {
        return Ok(None);
    };
    let mut out: Vec<String> = vec![];
    for d in raw.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        smartpkg_core::runtime::check_domain(kind, d)
            .map_err(|why| OpError::Invalid(format!("{name}: {why}")))?;
        let d = d.to_ascii_lowercase();
        if !out.contains(&d) {
            out.push(d);
        }
    }
    if out.len() > MAX_DOMAINS {
        return Err(OpError::Invalid(format!(
            "{name} has more than {MAX_DOMAINS} domains"
        )));
    }
    Ok(Some(out))
}

/// Applies one action to one list; false when the result would be too long (then unchanged).
pub fn apply_domains(list: &mut Vec<String>, action: DomainAction, given: &[String]) -> bool {
    let mut next = list.clone();
    match action {
        DomainAction::Add => {
            for d in given {
                if !next.contains(d) {
                    next.push(d.clone());
                }
            }
        }
        DomainAction::Delete => next.retain(|d| !given.contains(d)),
        DomainAction::Set => next = given.to_vec(),
        DomainAction::Get => {}
    }
    if next.len() > MAX_DOMAINS {
        return false;
    }
    *list = next;
    true
}

/// An edit for the store that either applies whole or (when `edit` says the result would not
/// fit) leaves the value as it was; the flag tells which.
type Guarded<T> = (
    Box<dyn FnOnce(&mut T) + Send>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
);

fn guarded<T: Clone + 'static>(edit: impl FnOnce(&mut T) -> bool + Send + 'static) -> Guarded<T> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let fits = std::sync::Arc::new(AtomicBool::new(true));
    let flag = fits.clone();
    let apply = Box::new(move |v: &mut T| {
        let before = v.clone();
        if !edit(v) {
            *v = before;
            flag.store(false, Ordering::SeqCst);
        }
    });
    (apply, fits)
}

/// Refuses an edit whose result did not fit (and so was not applied).
fn fitted(fits: &std::sync::atomic::AtomicBool) -> OpResult<()> {
    if fits.load(std::sync::atomic::Ordering::SeqCst) {
        Ok(())
    } else {
        Err(OpError::Invalid(format!(
            "a domain list holds at most {MAX_DOMAINS} domains"
        )))
    }
}

fn no_app() -> OpError {
    OpError::Refused(Refusal::baidu(Errno::AppNotFound))
}

/// A mini program's runtime settings (pause, domains, minimum runtime version).
pub async fn app_settings(state: &AppState, app_id: AppId) -> OpResult<RuntimeSettings> {
    state
        .store
        .runtime_settings(app_id)
        .await?
        .ok_or_else(no_app)
}

/// Applies `edit` to the mini program's settings (whole, or not at all when it answers false
/// because a list would be too long), tells the faces' caches, and answers the settings.
pub async fn edit_app_settings(
    state: &AppState,
    app_id: AppId,
    edit: impl FnOnce(&mut RuntimeSettings) -> bool + Send + 'static,
) -> OpResult<RuntimeSettings> {
    let (apply, fits) = guarded(edit);
    let settings = state
        .store
        .update_runtime_settings(app_id, apply)
        .await?
        .ok_or_else(no_app)?;
    state.app_caches.app_changed(app_id.get());
    fitted(&fits)?;
    Ok(settings)
}

/// Applies `edit` to the third party's registered domains, whole or not at all.
pub async fn edit_tp_domains(
    state: &AppState,
    tp_id: TpId,
    edit: impl FnOnce(&mut Domains) -> bool + Send + 'static,
) -> OpResult<Domains> {
    let (apply, fits) = guarded(edit);
    let d = state
        .store
        .update_tp_domains(tp_id, apply)
        .await?
        .ok_or_else(|| OpError::Refused(Refusal::baidu(Errno::NoTpPermission)))?;
    fitted(&fits)?;
    Ok(d)
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

/// A staged-release plan as asked for; what is left out comes from the settings.
#[derive(Debug, Clone, Default)]
pub struct PlanSpec {
    /// `1,5,20,50,100`; None: the default steps.
    pub steps: Option<String>,
    pub auto: bool,
    /// The step to start at; None: the first.
    pub start_percent: Option<i64>,
    pub min_devices: Option<u64>,
    pub step_min_s: Option<u64>,
    pub alpha_ppm: Option<u64>,
    pub min_excess_bp: Option<u64>,
}

/// The plan `spec` asks for, starting now, or why it cannot be one. With the default steps,
/// a starting percentage that is not one of them becomes the first step.
pub fn plan_for(state: &AppState, spec: PlanSpec) -> Result<StagePlan, String> {
    let s = &state.settings;
    let steps = match (&spec.steps, spec.start_percent) {
        (Some(text), _) => stage::parse_steps(text)?,
        (None, Some(start)) => {
            let mut steps = vec![start];
            steps.extend(
                stage::parse_steps(&s.health_default_steps)?
                    .into_iter()
                    .filter(|p| *p > start),
            );
            steps
        }
        (None, None) => stage::parse_steps(&s.health_default_steps)?,
    };
    let d = s.plan_gate();
    let gate = stage::PlanGate {
        min_devices: spec.min_devices.unwrap_or(d.min_devices),
        step_min_s: spec.step_min_s.unwrap_or(d.step_min_s),
        alpha_ppm: spec.alpha_ppm.unwrap_or(d.alpha_ppm),
        min_excess_bp: spec.min_excess_bp.unwrap_or(d.min_excess_bp),
    };
    let plan = StagePlan::new(steps, spec.auto, gate, clock::now_ms())?;
    match spec.start_percent {
        Some(p) => plan.starting_at(p),
        None => Ok(plan),
    }
}

/// Where a package's staged release stands, as `get` shows it: `running` (a staged share,
/// with or without a plan), `halted`, or `finished` (a plan that released it).
pub fn gray_status(p: &PackageRecord) -> Option<&'static str> {
    match (&p.stage_plan, p.staged_percent) {
        (Some(plan), _) => Some(plan.status.as_str()),
        (None, Some(_)) => Some(stage::PlanStatus::Running.as_str()),
        (None, None) => None,
    }
}

/// A plan command by a person (operator or third party): resume a halted plan, advance a
/// running one by hand, or abandon it (every device back on the online version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanAction {
    Resume,
    Advance,
    Abandon,
}

pub async fn plan_action(
    state: &AppState,
    package_id: PackageId,
    action: PlanAction,
    actor: Actor,
) -> OpResult<PackageRecord> {
    let p = load_package(state, package_id.get()).await?;
    let now = clock::now_ms();
    let cmd = match action {
        PlanAction::Resume => Command::ResumeStage {
            package_id,
            at_ms: now,
        },
        PlanAction::Advance => Command::AdvanceStage {
            package_id,
            from_step: p.stage_plan.as_ref().map_or(0, |pl| pl.step),
            at_ms: now,
        },
        PlanAction::Abandon => Command::RevertStage { package_id },
    };
    package_command(state, p.app_id, cmd, actor).await?;
    load_package(state, package_id.get()).await
}

/// One mini program's release health over its last `hours`: the plan of its staged release
/// (or the finished plan of its online version), the versions that devices run, and the
/// hourly figures the console draws.
#[derive(Debug, Clone)]
pub struct ReleaseHealth {
    pub staged: Option<PackageRecord>,
    pub online: Option<PackageRecord>,
    pub from_hour: i64,
    pub to_hour: i64,
    pub hours: Vec<smartpkg_store::ReportHour>,
}

impl ReleaseHealth {
    /// The plan shown: the staged release's, else the one that released the online version.
    pub fn plan(&self) -> Option<(&PackageRecord, &StagePlan)> {
        [&self.staged, &self.online]
            .into_iter()
            .flatten()
            .find_map(|p| p.stage_plan.as_ref().map(|pl| (p, pl)))
    }
}

/// Hours of figures a health view may ask for (30 days: what is kept by default).
pub const MAX_HEALTH_HOURS: i64 = 30 * 24;

pub async fn release_health(
    state: &AppState,
    app_id: AppId,
    hours: i64,
) -> OpResult<ReleaseHealth> {
    let hours = hours.clamp(1, MAX_HEALTH_HOURS);
    let packages = state.store.visible_packages(app_id).await?;
    let staged = packages
        .iter()
        .find(|p| p.staged_percent.is_some())
        .cloned();
    let online = packages
        .iter()
        .find(|p| p.state.slot() == Some(smartpkg_core::lifecycle::Slot::Online))
        .cloned();
    let to_hour = clock::now_ms().div_euclid(smartpkg_core::health::HOUR_MS);
    let from_hour = to_hour - hours + 1;
    let rows = state.store.report_hours(app_id, from_hour, to_hour).await?;
    Ok(ReleaseHealth {
        staged,
        online,
        from_hour,
        to_hour,
        hours: rows,
    })
}
