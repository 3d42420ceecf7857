//! A typed async client of Baidu's smart-program third-party API — the real
//! `openapi.baidu.com` (the default) or a smartpkg server, which speaks the same wire.
//!
//! Every call takes the token it needs as its first argument (a mini program's access token
//! for package calls, the third party's for template and authorization calls) and a typed
//! request from [`smartpkg_types`]; it answers the typed data or a [`ClientError`] that tells a
//! gateway error (110 invalid, 111 expired) from a business errno, each with its code and
//! message. Parameters travel as Baidu's Go SDK sends them: `access_token` in the query string,
//! the rest in the query for reads and as a form body for writes.
//!
//! # Packages
//!
//! ```
//! # smartpkg_testkit::sandbox::doc(|server| async move {
//! use smartpkg_client::{Client, WireStatus};
//! use smartpkg_client::types::{PackageIdRequest, UploadRequest};
//!
//! let client = Client::new(&server.base_url)?;
//! let token = &server.app_token;
//! client
//!     .upload(token, &UploadRequest {
//!         template_id: server.template_id,
//!         ext_json: r#"{"extEnable":true,"ext":{"shop":"north"}}"#.into(),
//!         user_version: "1.0.0".into(),
//!         user_desc: "first".into(),
//!         test_account: None,
//!         test_password: None,
//!     })
//!     .await?;
//! // The build takes a moment; the package then shows in `get` as development (3).
//! let built = client.wait_built(token, "1.0.0", std::time::Duration::from_secs(10)).await?;
//! assert_eq!(built.status, Some(WireStatus::Development));
//! let quota = client.audit_quota(token).await?;
//! assert!(quota.remain_times != 0);
//! # let _ = PackageIdRequest { package_id: 0 };
//! # Ok(())
//! # });
//! ```
//!
//! # Templates
//!
//! ```
//! # smartpkg_testkit::sandbox::doc(|server| async move {
//! use smartpkg_client::Client;
//! use smartpkg_client::types::PageRequest;
//!
//! let client = Client::new(&server.base_url)?;
//! let templates = client.template_list(&server.tp_token, PageRequest::default()).await?;
//! assert!(templates.list.iter().any(|t| t.template_id == server.template_id));
//! # Ok(())
//! # });
//! ```
//!
//! # Tokens
//!
//! A refresh token works once: [`Client::refresh_app_token`] hands back the new pair, which
//! the caller must keep before using it.
//!
//! ```
//! # smartpkg_testkit::sandbox::doc(|server| async move {
//! use smartpkg_client::{Client, ClientError};
//!
//! let client = Client::new(&server.base_url)?;
//! let pair = client.refresh_app_token(&server.tp_token, &server.refresh_token).await?;
//! assert_ne!(pair.refresh_token, server.refresh_token);
//! // The old refresh token is spent.
//! let again = client.refresh_app_token(&server.tp_token, &server.refresh_token).await;
//! assert!(matches!(again, Err(ClientError::OAuth { .. })));
//! # Ok(())
//! # });
//! ```

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
pub use smartpkg_types as types;
pub mod wechat;
use smartpkg_types::{
    call, endpoint, AddToTemplateRequest, AddedTemplate, AppDomains, AppInfo, AppTokens,
    AuditQuota, AuthorizationCode, BaiduResponse, DelTemplateRequest, DeletedTemplate, DraftList,
    Endpoint, Errno, GetDetailRequest, GrayReleaseRequest, HistoryVersion, ModifyDomainRequest,
    ModifyWebviewDomainRequest, NoData, NoParams, OAuthError, OAuthGrant, PackageIdRequest,
    PackageInfo, PageRequest, PreAuthCode, QrCodeRequest, RetrieveCodeRequest, RollbackToRequest,
    SetSupportVersionRequest, SubmitAuditRequest, SupportVersions, TemplateList, TpDomains,
    TpToken, TpTokenRequest, UploadRequest,
};
pub use smartpkg_types::{Errno as ErrnoCode, WireStatus};

/// The real platform.
pub const BAIDU_BASE_URL: &str = "https://openapi.baidu.com";

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The gateway refused the call: 110 token invalid, 111 token expired, 3 unknown method…
    #[error("gateway error {code}: {msg}")]
    Gateway { code: i64, msg: String },
    /// The platform refused the call with a business errno.
    #[error("errno {}: {msg}", errno.code())]
    Api { errno: Errno, msg: String },
    /// `oauth/token` refused the grant (`invalid_grant`, …).
    #[error("{error}: {description}")]
    OAuth { error: String, description: String },
    /// The request did not complete (connection refused, reset, timed out).
    #[error("transport failure calling {path}: {source}")]
    Transport {
        path: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// An HTTP status other than 200 with no Baidu answer in the body.
    #[error("HTTP {status} from {path}: {body}")]
    Status {
        path: &'static str,
        status: u16,
        body: String,
    },
    /// The answer did not have the shape the call's type says (a strict client's failure).
    #[error("cannot decode the answer of {path}: {source}")]
    Decode {
        path: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid base URL {0:?}")]
    BaseUrl(String),
    #[error("{0}")]
    Timeout(String),
}

impl ClientError {
    /// The business errno, when the platform answered with one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            ClientError::Api { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// Whether the gateway said the token is invalid (110) or expired (111).
    pub fn is_token_error(&self) -> bool {
        matches!(
            self,
            ClientError::Gateway {
                code: 110 | 111,
                ..
            }
        )
    }

    /// Whether the same call may succeed later unchanged: "try again later" errnos, a 5xx
    /// answer, or a transport failure.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Api { errno, .. } => errno.is_transient(),
            ClientError::Transport { .. } => true,
            ClientError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// Whether retrying is both useful and safe: for a call that changes something
    /// (`writes`), only when the platform refused it (nothing happened) or the request never
    /// reached it. A write that timed out after it was sent may have happened, so it is not
    /// retried blindly.
    pub fn may_retry(&self, writes: bool) -> bool {
        match self {
            ClientError::Transport { source, .. } if writes => source.is_connect(),
            ClientError::Status { status, .. } if writes => matches!(*status, 429 | 502 | 503),
            other => other.is_transient(),
        }
    }
}

/// How failed calls are retried: transient failures only (see
/// [`ClientError::is_transient`]), at most `attempts` tries in all, waiting an exponential
/// backoff from `base` up to `max` with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// One try, no retry.
    pub const NONE: RetryPolicy = RetryPolicy {
        attempts: 1,
        base: Duration::ZERO,
        max: Duration::ZERO,
    };

    /// The wait before try `n + 1` (n from 1): random in [0, min(max, base·2ⁿ⁻¹)].
    pub fn delay(&self, n: u32) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32 << (n.saturating_sub(1)).min(20))
            .min(self.max);
        if cap.is_zero() {
            return cap;
        }
        let ms = rand::thread_rng().gen_range(0..=cap.as_millis() as u64);
        Duration::from_millis(ms)
    }
}

/// The client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    retry: RetryPolicy,
}

/// Options of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base: String,
    retry: RetryPolicy,
    timeout: Duration,
    user_agent: String,
}

impl ClientBuilder {
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The limit of one try, from connecting to the last byte of the answer (30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    pub fn build(self) -> Result<Client, ClientError> {
        let base = self.base.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&base).map_err(|_| ClientError::BaseUrl(base.clone()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(ClientError::BaseUrl(base));
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(self.user_agent)
            .build()
            .map_err(|e| ClientError::Transport {
                path: "(client setup)",
                source: e,
            })?;
        Ok(Client {
            http,
            base,
            retry: self.retry,
        })
    }
}

/// A call's parameters: where they go on the wire.
enum Params<'a, B: Serialize> {
    Query(&'a B),
    Form(&'a B),
}

impl Client {
    /// A client of `base_url` (`https://openapi.baidu.com` or a smartpkg server) with the
    /// default retry policy.
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        Client::builder(base_url).build()
    }

    pub fn builder(base_url: &str) -> ClientBuilder {
        ClientBuilder {
            base: base_url.to_string(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            user_agent: concat!("smartpkg-client/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends one call with retries; `decode` reads a 200 body.
    async fn send<B, T, F>(
        &self,
        method: Method,
        path: &'static str,
        token: Option<&str>,
        params: Params<'_, B>,
        decode: F,
    ) -> Result<T, ClientError>
    where
        B: Serialize,
        F: Fn(&[u8]) -> Result<T, ClientError>,
    {
        let writes = method == Method::POST;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .send_once(method.clone(), path, token, &params, &decode)
                .await;
            match result {
                Err(e) if attempt < self.retry.attempts && e.may_retry(writes) => {
                    let wait = self.retry.delay(attempt);
                    tracing::debug!(path, attempt, error = %e, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn send_once<B, T, F>(
        &self,
        method: Method,
        path: &'static str,
        token: Option<&str>,
        params: &Params<'_, B>,
        decode: &F,
    ) -> Result<T, ClientError>
    where
        B: Serialize,
        F: Fn(&[u8]) -> Result<T, ClientError>,
    {
        let transport = |source| ClientError::Transport { path, source };
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.query(&[("access_token", t)]);
        }
        req = match params {
            Params::Query(p) => req.query(p),
            Params::Form(p) => req.form(p),
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(transport)?;
        if status != StatusCode::OK {
            // A 413 still carries the envelope; anything else is the transport's business.
            if let Ok(BaiduResponse::<NoData>::Refused(e)) = serde_json::from_slice(&body) {
                return Err(ClientError::Api {
                    errno: e.errno,
                    msg: e.msg,
                });
            }
            return Err(ClientError::Status {
                path,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).chars().take(300).collect(),
            });
        }
        decode(&body)
    }

    /// A call answered with the envelope or the gateway's error.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &'static str,
        token: &str,
        params: Params<'_, B>,
    ) -> Result<T, ClientError> {
        self.send(method, path, Some(token), params, |body| {
            decode_envelope(path, body)
        })
        .await
    }

    /// One declared call: its path, method and types come from its declaration, which the
    /// server's router is built from too.
    async fn at<E: Endpoint>(&self, token: &str, req: &E::Request) -> Result<E::Data, ClientError> {
        match E::METHOD {
            endpoint::Method::Post => {
                self.call(Method::POST, E::PATH, token, Params::Form(req))
                    .await
            }
            endpoint::Method::Get => {
                self.call(Method::GET, E::PATH, token, Params::Query(req))
                    .await
            }
        }
    }

    // --- packages (a mini program's access token) ---

    /// Builds a package from a template and `ext_json`; it shows in [`Client::get`] as
    /// uploading, then development (or upload failed, with the build's errno).
    pub async fn upload(&self, app_token: &str, req: &UploadRequest) -> Result<(), ClientError> {
        self.at::<call::Upload>(app_token, req).await.map(drop)
    }

    pub async fn submit_audit(
        &self,
        app_token: &str,
        req: &SubmitAuditRequest,
    ) -> Result<(), ClientError> {
        self.at::<call::SubmitAudit>(app_token, req).await.map(drop)
    }

    pub async fn release(&self, app_token: &str, package_id: i64) -> Result<(), ClientError> {
        self.at::<call::Release>(app_token, &PackageIdRequest { package_id })
            .await
            .map(drop)
    }

    pub async fn rollback(&self, app_token: &str, package_id: i64) -> Result<(), ClientError> {
        self.at::<call::Rollback>(app_token, &PackageIdRequest { package_id })
            .await
            .map(drop)
    }

    pub async fn withdraw(&self, app_token: &str, package_id: i64) -> Result<(), ClientError> {
        self.at::<call::Withdraw>(app_token, &PackageIdRequest { package_id })
            .await
            .map(drop)
    }

    /// The mini program's packages: development, audit and online versions.
    pub async fn get(&self, app_token: &str) -> Result<Vec<PackageInfo>, ClientError> {
        self.at::<call::GetPackages>(app_token, &NoParams {}).await
    }

    pub async fn get_detail(
        &self,
        app_token: &str,
        req: &GetDetailRequest,
    ) -> Result<PackageInfo, ClientError> {
        self.at::<call::GetDetail>(app_token, req).await
    }

    pub async fn audit_quota(&self, app_token: &str) -> Result<AuditQuota, ClientError> {
        self.at::<call::AuditQuota>(app_token, &NoParams {}).await
    }

    pub async fn get_trial(&self, app_token: &str) -> Result<PackageInfo, ClientError> {
        self.at::<call::GetTrial>(app_token, &NoParams {}).await
    }

    /// The PNG of a QR code that opens the mini program (a version of it, a page of it).
    pub async fn qrcode(
        &self,
        app_token: &str,
        req: &QrCodeRequest,
    ) -> Result<Vec<u8>, ClientError> {
        let path = call::QrCode::PATH;
        self.send(
            Method::GET,
            path,
            Some(app_token),
            Params::Query(req),
            |body| {
                if body.starts_with(b"\x89PNG") {
                    return Ok(body.to_vec());
                }
                // Errors come as JSON.
                decode_envelope::<NoData>(path, body).and(Err(ClientError::Status {
                    path,
                    status: 200,
                    body: "neither a PNG nor an error".into(),
                }))
            },
        )
        .await
    }

    /// Polls [`Client::get`] until the development version `version` is built: `Ok` with the
    /// row once it has a package id, `Err(Api)` with the build's errno if it failed.
    pub async fn wait_built(
        &self,
        app_token: &str,
        version: &str,
        within: Duration,
    ) -> Result<PackageInfo, ClientError> {
        let until = tokio::time::Instant::now() + within;
        let mut wait = Duration::from_millis(50);
        loop {
            let rows = self.get(app_token).await?;
            let row = rows.into_iter().find(|r| {
                r.version.as_deref() == Some(version)
                    && r.status.is_none_or(|s| s == WireStatus::Development)
            });
            if let Some(row) = row {
                if row.package_id.is_some() {
                    return Ok(row);
                }
                if row.upload_status == Some(smartpkg_types::upload_status::FAILED) {
                    return Err(ClientError::Api {
                        errno: Errno::from_code(row.upload_err_code.unwrap_or(0)),
                        msg: row.upload_err_msg.unwrap_or_default(),
                    });
                }
            }
            if tokio::time::Instant::now() >= until {
                return Err(ClientError::Timeout(format!(
                    "version {version} was not built within {within:?}"
                )));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }

    // --- staged releases and rollback to a chosen version (smartpkg's extensions) ---

    /// Releases an audit-passed package to `percent` of devices, or raises it.
    pub async fn gray_release(
        &self,
        app_token: &str,
        package_id: i64,
        percent: i64,
    ) -> Result<(), ClientError> {
        let req = GrayReleaseRequest {
            package_id,
            gray_percentage: percent,
            gray_steps: None,
            gray_auto: None,
        };
        self.at::<call::GrayRelease>(app_token, &req)
            .await
            .map(drop)
    }

    /// Starts a staged release that follows `steps` (`"1,5,20,50,100"`; None: the platform's
    /// default steps) from its first step; `auto`: the platform advances it on healthy
    /// figures and halts it on bad ones (smartpkg's extension).
    pub async fn gray_release_plan(
        &self,
        app_token: &str,
        package_id: i64,
        steps: Option<&str>,
        first_percent: i64,
        auto: bool,
    ) -> Result<(), ClientError> {
        let req = GrayReleaseRequest {
            package_id,
            gray_percentage: first_percent,
            gray_steps: steps.map(str::to_string),
            gray_auto: Some(i64::from(auto)),
        };
        self.at::<call::GrayRelease>(app_token, &req)
            .await
            .map(drop)
    }

    /// Resumes a halted plan from the step it halted at.
    pub async fn resume_gray_release(
        &self,
        app_token: &str,
        package_id: i64,
    ) -> Result<(), ClientError> {
        self.at::<call::ResumeGrayRelease>(app_token, &PackageIdRequest { package_id })
            .await
            .map(drop)
    }

    pub async fn revert_gray_release(
        &self,
        app_token: &str,
        package_id: i64,
    ) -> Result<(), ClientError> {
        self.at::<call::RevertGrayRelease>(app_token, &PackageIdRequest { package_id })
            .await
            .map(drop)
    }

    /// The last five former online versions, newest first: what `rollback_to` may choose.
    pub async fn history(&self, app_token: &str) -> Result<Vec<HistoryVersion>, ClientError> {
        self.at::<call::GetHistory>(app_token, &NoParams {}).await
    }

    pub async fn rollback_to(
        &self,
        app_token: &str,
        package_id: i64,
        target_package_id: i64,
    ) -> Result<(), ClientError> {
        let req = RollbackToRequest {
            package_id,
            target_package_id,
        };
        self.at::<call::RollbackTo>(app_token, &req).await.map(drop)
    }

    // --- a mini program's runtime settings (spec §7) ---

    pub async fn pause(&self, app_token: &str) -> Result<(), ClientError> {
        self.at::<call::Pause>(app_token, &NoParams {})
            .await
            .map(drop)
    }

    pub async fn resume(&self, app_token: &str) -> Result<(), ClientError> {
        self.at::<call::Resume>(app_token, &NoParams {})
            .await
            .map(drop)
    }

    pub async fn modify_domain(
        &self,
        app_token: &str,
        req: &ModifyDomainRequest,
    ) -> Result<AppDomains, ClientError> {
        self.at::<call::ModifyDomain>(app_token, req).await
    }

    pub async fn modify_webview_domain(
        &self,
        app_token: &str,
        req: &ModifyWebviewDomainRequest,
    ) -> Result<String, ClientError> {
        self.at::<call::ModifyWebviewDomain>(app_token, req).await
    }

    pub async fn support_versions(&self, app_token: &str) -> Result<SupportVersions, ClientError> {
        self.at::<call::GetSupportVersion>(app_token, &NoParams {})
            .await
    }

    /// Sets the minimum host runtime version (smartpkg's extension).
    pub async fn set_support_version(
        &self,
        app_token: &str,
        version: &str,
    ) -> Result<(), ClientError> {
        let req = SetSupportVersionRequest {
            version: version.to_string(),
        };
        self.at::<call::SetSupportVersion>(app_token, &req)
            .await
            .map(drop)
    }

    /// The third party's registered server domains (its token).
    pub async fn tp_modify_domain(
        &self,
        tp_token: &str,
        req: &ModifyDomainRequest,
    ) -> Result<TpDomains, ClientError> {
        self.at::<call::TpModifyDomain>(tp_token, req).await
    }

    pub async fn tp_modify_webview_domain(
        &self,
        tp_token: &str,
        req: &ModifyWebviewDomainRequest,
    ) -> Result<Vec<String>, ClientError> {
        self.at::<call::TpModifyWebviewDomain>(tp_token, req).await
    }

    // --- templates (the third party's token) ---

    pub async fn template_drafts(
        &self,
        tp_token: &str,
        page: PageRequest,
    ) -> Result<DraftList, ClientError> {
        self.at::<call::GetTemplateDraftList>(tp_token, &page).await
    }

    pub async fn add_to_template(
        &self,
        tp_token: &str,
        req: &AddToTemplateRequest,
    ) -> Result<AddedTemplate, ClientError> {
        self.at::<call::AddToTemplate>(tp_token, req).await
    }

    pub async fn template_list(
        &self,
        tp_token: &str,
        page: PageRequest,
    ) -> Result<TemplateList, ClientError> {
        self.at::<call::GetTemplateList>(tp_token, &page).await
    }

    pub async fn delete_template(
        &self,
        tp_token: &str,
        template_id: i64,
    ) -> Result<DeletedTemplate, ClientError> {
        self.at::<call::DelTemplate>(tp_token, &DelTemplateRequest { template_id })
            .await
    }

    // --- tokens and authorization ---

    /// The third party's own token, from its client id and the latest pushed ticket.
    pub async fn tp_token(&self, req: &TpTokenRequest) -> Result<TpToken, ClientError> {
        let path = call::TpToken::PATH;
        self.send(Method::GET, path, None, Params::Query(req), |body| {
            decode_envelope(path, body)
        })
        .await
    }

    pub async fn create_pre_auth_code(&self, tp_token: &str) -> Result<PreAuthCode, ClientError> {
        self.at::<call::CreatePreAuthCode>(tp_token, &NoParams {})
            .await
    }

    /// Exchanges an authorization code for the mini program's token pair.
    pub async fn exchange_code(
        &self,
        tp_token: &str,
        code: &str,
    ) -> Result<AppTokens, ClientError> {
        self.oauth(
            tp_token,
            &OAuthGrant::AuthorizationCode {
                code: code.to_string(),
            },
        )
        .await
    }

    /// Spends `refresh_token` for a new pair. Keep the answer before using it: the old
    /// refresh token no longer works, and reusing it revokes the whole family of tokens.
    pub async fn refresh_app_token(
        &self,
        tp_token: &str,
        refresh_token: &str,
    ) -> Result<AppTokens, ClientError> {
        self.oauth(
            tp_token,
            &OAuthGrant::RefreshToken {
                refresh_token: refresh_token.to_string(),
            },
        )
        .await
    }

    async fn oauth(&self, tp_token: &str, grant: &OAuthGrant) -> Result<AppTokens, ClientError> {
        let path = call::OAuthToken::PATH;
        // Not retried on a timeout: a grant is spent by the first try that arrives.
        self.send(
            Method::GET,
            path,
            Some(tp_token),
            Params::Query(grant),
            |body| decode_oauth(path, body),
        )
        .await
    }

    /// An authorization code for a mini program already authorized to this third party.
    pub async fn retrieve_authorization_code(
        &self,
        tp_token: &str,
        app_id: i64,
    ) -> Result<AuthorizationCode, ClientError> {
        self.at::<call::RetrieveAuthorizationCode>(tp_token, &RetrieveCodeRequest { app_id })
            .await
    }

    pub async fn app_info(&self, app_token: &str) -> Result<AppInfo, ClientError> {
        self.at::<call::AppInfo>(app_token, &NoParams {}).await
    }
}

fn decode_envelope<T: DeserializeOwned>(path: &'static str, body: &[u8]) -> Result<T, ClientError> {
    let answer: BaiduResponse<T> =
        serde_json::from_slice(body).map_err(|source| ClientError::Decode { path, source })?;
    match answer {
        BaiduResponse::Success(t) => Ok(t),
        BaiduResponse::Refused(e) => Err(ClientError::Api {
            errno: e.errno,
            msg: e.msg,
        }),
        BaiduResponse::Gateway(g) => Err(ClientError::Gateway {
            code: g.error_code,
            msg: g.error_msg,
        }),
    }
}

/// `oauth/token` answers unwrapped: the pair, an OAuth error, or the gateway's error.
fn decode_oauth(path: &'static str, body: &[u8]) -> Result<AppTokens, ClientError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|source| ClientError::Decode { path, source })?;
    let decode = |source| ClientError::Decode { path, source };
    // The gateway's and the envelope's codes first: a refusal before any grant was looked at
    // (a bad TP token, a rate limit) carries them and the OAuth fields beside them, and the
    // codes say more (110 is a token to refresh; 50029 a call to retry).
    if v.get("error_code").is_some() || v.get("errno").is_some() {
        return decode_envelope::<NoData>(path, body).and(Err(ClientError::Status {
            path,
            status: 200,
            body: "an envelope without an error".into(),
        }));
    }
    if v.get("error").is_some() {
        let e: OAuthError = serde_json::from_value(v).map_err(decode)?;
        return Err(ClientError::OAuth {
            error: e.error,
            description: e.error_description,
        });
    }
    serde_json::from_value(v).map_err(decode)
}

/// Runs `f` until it succeeds or fails with something other than a transient error, with the
/// given policy: for callers that compose several calls into one step.
pub async fn with_retries<T, F, Fut>(policy: RetryPolicy, mut f: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f().await {
            Err(e) if attempt < policy.attempts && e.is_transient() => {
                tokio::time::sleep(policy.delay(attempt)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_stays_within_it() {
        let p = RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_millis(800),
        };
        for n in 1..10 {
            let cap = Duration::from_millis((100u64 << (n - 1)).min(800));
            for _ in 0..50 {
                assert!(p.delay(n) <= cap);
            }
        }
    }

    #[test]
    fn a_base_url_must_be_http_with_a_host() {
        assert!(matches!(
            Client::new("ftp://x"),
            Err(ClientError::BaseUrl(_))
        ));
        assert!(matches!(
            Client::new("not a url"),
            Err(ClientError::BaseUrl(_))
        ));
        assert!(Client::new("http://127.0.0.1:1/").is_ok());
    }

    #[test]
    fn oauth_answers_decode_to_a_pair_or_a_precise_error() {
        let ok = decode_oauth(
            "/t",
            br#"{"access_token":"a","refresh_token":"r","expires_in":3600}"#,
        )
        .expect("pair");
        assert_eq!(ok.refresh_token, "r");
        let err = decode_oauth(
            "/t",
            br#"{"error":"invalid_grant","error_description":"used"}"#,
        );
        assert!(matches!(err, Err(ClientError::OAuth { error, .. }) if error == "invalid_grant"));
        let gw = decode_oauth(
            "/t",
            br#"{"error_code":110,"error_msg":"Access token invalid"}"#,
        );
        assert!(matches!(gw, Err(ref e) if e.is_token_error()));
        // Both shapes at once (what smartpkg answers for a bad TP token): the code wins.
        let both = decode_oauth(
            "/t",
            br#"{"error_code":110,"error_msg":"x","error":"invalid_client","error_description":"x"}"#,
        );
        assert!(matches!(both, Err(ref e) if e.is_token_error()));
    }

    #[test]
    fn writes_are_retried_only_when_nothing_can_have_happened() {
        let busy = ClientError::Api {
            errno: Errno::Busy,
            msg: String::new(),
        };
        assert!(busy.may_retry(true));
        let refused = ClientError::Api {
            errno: Errno::WrongState,
            msg: String::new(),
        };
        assert!(!refused.may_retry(false));
        let gateway = ClientError::Status {
            path: "/x",
            status: 504,
            body: String::new(),
        };
        assert!(gateway.may_retry(false));
        assert!(!gateway.may_retry(true), "a 504 write may have happened");
    }
}
