//! A typed async client of WeChat's third-party platform ("component") API — the real
//! `api.weixin.qq.com` (the default) or a smartpkg server, which speaks the same wire.
//!
//! Calls come in two kinds, as on the wire: component calls take the component access token
//! (authorization, the template library), code-management calls the authorizer's access token
//! (one mini program). Each answers the call's typed fields from [`smartpkg_types::wechat`] or
//! a [`WechatClientError`]; a refusal carries its [`Errcode`].
//!
//! Tokens: [`Tokens`] keeps a token and knows how to get a fresh one; [`WechatClient::with`]
//! runs a call with it and, when WeChat answers 40001, 40014 or 42001 (the token is stale),
//! refreshes once and tries again — safe even for writes, since a call refused for its token
//! did nothing. Other failures of a write are never retried blindly: only `-1` (which WeChat
//! answers when nothing happened) and a connection that was never made.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use smartpkg_types::wechat::{
    self as wire, AddToTemplateRequest, AuditId, AuditIdRequest, AuditStatus, AuthorizerInfoAnswer,
    AuthorizerInfoRequest, AuthorizerToken, AuthorizerTokenRequest, CommitRequest, ComponentToken,
    ComponentTokenRequest, Done, DraftList, Errcode, GrayReleasePlan, GrayReleaseRequest,
    HistoryVersions, LatestAuditStatus, ModifyDomainRequest, PageList, PreAuthCode,
    PreAuthCodeRequest, PrivacyInfo, QueryAuth, QueryAuthRequest, QueryQuota, ServerDomains,
    SubmitAuditRequest, TemplateIdRequest, TemplateList, VisitStatus, WebviewDomainRequest,
    WebviewDomains, WechatError,
};
use tokio::sync::Mutex;

use crate::RetryPolicy;

/// The real service.
pub const WECHAT_BASE_URL: &str = "https://api.weixin.qq.com";

/// Why a WeChat call failed.
#[derive(Debug, thiserror::Error)]
pub enum WechatClientError {
    /// The service refused the call with an errcode.
    #[error("{0}")]
    Refused(#[from] WechatError),
    #[error("transport failure calling {path}: {source}")]
    Transport {
        path: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("HTTP {status} from {path}: {body}")]
    Status {
        path: &'static str,
        status: u16,
        body: String,
    },
    /// The answer did not have the shape the call's type says.
    #[error("cannot decode the answer of {path}: {source}")]
    Decode {
        path: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid base URL {0:?}")]
    BaseUrl(String),
}

impl WechatClientError {
    /// The errcode, when the service answered with one.
    pub fn errcode(&self) -> Option<Errcode> {
        match self {
            WechatClientError::Refused(e) => Some(e.errcode),
            _ => None,
        }
    }

    /// Whether the token was stale (40001, 40014, 42001): refresh it and try again.
    pub fn stale_token(&self) -> bool {
        self.errcode().is_some_and(Errcode::refresh_token)
    }

    /// Whether trying again unchanged is safe and may help: `-1` (nothing happened), a
    /// connection never made, or, for a read, any transport failure or 5xx.
    pub fn may_retry(&self, writes: bool) -> bool {
        match self {
            WechatClientError::Refused(e) => e.errcode == Errcode::Busy,
            WechatClientError::Transport { source, .. } => !writes || source.is_connect(),
            WechatClientError::Status { status, .. } => {
                matches!(*status, 429 | 502 | 503) || (!writes && *status >= 500)
            }
            _ => false,
        }
    }
}

type Result<T> = std::result::Result<T, WechatClientError>;

/// The client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct WechatClient {
    http: reqwest::Client,
    base: String,
    retry: RetryPolicy,
}

/// Which token a call carries, and under which query name.
#[derive(Clone, Copy)]
enum Token<'a> {
    None,
    /// `component_access_token=` (what the component endpoints document and SDKs send).
    Component(&'a str),
    /// `access_token=`: the authorizer's, or the component's for the template library.
    Access(&'a str),
}

impl WechatClient {
    pub fn new(base_url: &str) -> Result<WechatClient> {
        Self::with_retry(base_url, RetryPolicy::default())
    }

    pub fn with_retry(base_url: &str, retry: RetryPolicy) -> Result<WechatClient> {
        let base = base_url.trim_end_matches('/').to_string();
        let parsed =
            url::Url::parse(&base).map_err(|_| WechatClientError::BaseUrl(base.clone()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(WechatClientError::BaseUrl(base));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("smartpkg-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WechatClientError::Transport {
                path: "(client setup)",
                source: e,
            })?;
        Ok(WechatClient { http, base, retry })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn raw(
        &self,
        method: Method,
        path: &'static str,
        token: Token<'_>,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>> {
        let writes = method == Method::POST;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .raw_once(method.clone(), path, token, query, body)
                .await;
            match result {
                Err(e) if attempt < self.retry.attempts && e.may_retry(writes) => {
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn raw_once(
        &self,
        method: Method,
        path: &'static str,
        token: Token<'_>,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>> {
        let transport = |source| WechatClientError::Transport { path, source };
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        req = match token {
            Token::None => req,
            Token::Component(t) => req.query(&[("component_access_token", t)]),
            Token::Access(t) => req.query(&[("access_token", t)]),
        };
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(transport)?;
        if status != reqwest::StatusCode::OK {
            return Err(WechatClientError::Status {
                path,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            });
        }
        // A JSON refusal comes back whatever the call answers on success (an image too).
        if bytes.first() == Some(&b'{') {
            if let Err(wire::WechatWireError::Refused(e)) =
                wire::decode::<serde_json::Value>(&bytes)
            {
                return Err(e.into());
            }
        }
        Ok(bytes.to_vec())
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &'static str,
        token: Token<'_>,
        query: &[(&str, &str)],
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let body = body
            .map(serde_json::to_value)
            .transpose()
            .map_err(|source| WechatClientError::Decode { path, source })?;
        let bytes = self.raw(method, path, token, query, body.as_ref()).await?;
        wire::decode(&bytes).map_err(|e| match e {
            wire::WechatWireError::Refused(e) => e.into(),
            wire::WechatWireError::Malformed(source) => WechatClientError::Decode { path, source },
        })
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &'static str,
        token: Token<'_>,
        body: &impl Serialize,
    ) -> Result<T> {
        self.call(Method::POST, path, token, &[], Some(body)).await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &'static str,
        token: Token<'_>,
        query: &[(&str, &str)],
    ) -> Result<T> {
        self.call(Method::GET, path, token, query, None::<&()>)
            .await
    }

    /// Runs `call` with a token from `tokens`; on a stale-token refusal, once more with a
    /// fresh one.
    pub async fn with<'a, T, F, Fut>(&'a self, tokens: &'a dyn Tokens, call: F) -> Result<T>
    where
        F: Fn(&'a WechatClient, String) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let token = tokens.token(false).await?;
        match call(self, token).await {
            Err(e) if e.stale_token() => {
                let fresh = tokens.token(true).await?;
                call(self, fresh).await
            }
            other => other,
        }
    }

    // --- authorization (component token) ---

    pub async fn component_token(&self, req: &ComponentTokenRequest) -> Result<ComponentToken> {
        self.post("/cgi-bin/component/api_component_token", Token::None, req)
            .await
    }

    pub async fn create_preauthcode(
        &self,
        token: &str,
        component_appid: &str,
    ) -> Result<PreAuthCode> {
        let req = PreAuthCodeRequest {
            component_appid: component_appid.to_string(),
        };
        self.post(
            "/cgi-bin/component/api_create_preauthcode",
            Token::Component(token),
            &req,
        )
        .await
    }

    pub async fn query_auth(&self, token: &str, req: &QueryAuthRequest) -> Result<QueryAuth> {
        self.post(
            "/cgi-bin/component/api_query_auth",
            Token::Component(token),
            req,
        )
        .await
    }

    /// A new authorizer token pair; the refresh token given is spent (keep the new one).
    pub async fn authorizer_token(
        &self,
        token: &str,
        req: &AuthorizerTokenRequest,
    ) -> Result<AuthorizerToken> {
        self.post(
            "/cgi-bin/component/api_authorizer_token",
            Token::Component(token),
            req,
        )
        .await
    }

    pub async fn authorizer_info(
        &self,
        token: &str,
        req: &AuthorizerInfoRequest,
    ) -> Result<AuthorizerInfoAnswer> {
        self.post(
            "/cgi-bin/component/api_get_authorizer_info",
            Token::Component(token),
            req,
        )
        .await
    }

    // --- the template library (component token as access_token) ---

    pub async fn draft_list(&self, token: &str) -> Result<DraftList> {
        self.get("/wxa/gettemplatedraftlist", Token::Access(token), &[])
            .await
    }

    pub async fn add_to_template(&self, token: &str, draft_id: i64) -> Result<()> {
        let req = AddToTemplateRequest {
            draft_id,
            template_type: 0,
        };
        self.post::<Done>("/wxa/addtotemplate", Token::Access(token), &req)
            .await
            .map(drop)
    }

    pub async fn template_list(&self, token: &str) -> Result<TemplateList> {
        self.get("/wxa/gettemplatelist", Token::Access(token), &[])
            .await
    }

    pub async fn delete_template(&self, token: &str, template_id: i64) -> Result<()> {
        let req = TemplateIdRequest { template_id };
        self.post::<Done>("/wxa/deletetemplate", Token::Access(token), &req)
            .await
            .map(drop)
    }

    // --- code management (authorizer token) ---

    /// Makes the trial version from a template and `ext_json` (a JSON document as text).
    pub async fn commit(&self, token: &str, req: &CommitRequest) -> Result<()> {
        // template_id travels as a number, as WeChat documents it.
        let body = serde_json::json!({
            "template_id": req.template_id,
            "ext_json": req.ext_json,
            "user_version": req.user_version,
            "user_desc": req.user_desc,
        });
        self.post::<Done>("/wxa/commit", Token::Access(token), &body)
            .await
            .map(drop)
    }

    pub async fn get_page(&self, token: &str) -> Result<PageList> {
        self.get("/wxa/get_page", Token::Access(token), &[]).await
    }

    /// The trial version's QR code (a JPEG).
    pub async fn get_qrcode(&self, token: &str, path: Option<&str>) -> Result<Vec<u8>> {
        let query: Vec<(&str, &str)> = path.map(|p| ("path", p)).into_iter().collect();
        let bytes = self
            .raw(
                Method::GET,
                "/wxa/get_qrcode",
                Token::Access(token),
                &query,
                None,
            )
            .await?;
        if bytes.starts_with(&[0xFF, 0xD8]) {
            Ok(bytes)
        } else {
            Err(WechatClientError::Status {
                path: "/wxa/get_qrcode",
                status: 200,
                body: "neither a JPEG nor an error".into(),
            })
        }
    }

    pub async fn submit_audit(&self, token: &str, req: &SubmitAuditRequest) -> Result<i64> {
        let a: AuditId = self
            .post("/wxa/submit_audit", Token::Access(token), req)
            .await?;
        Ok(a.auditid)
    }

    pub async fn get_auditstatus(&self, token: &str, auditid: i64) -> Result<AuditStatus> {
        self.post(
            "/wxa/get_auditstatus",
            Token::Access(token),
            &AuditIdRequest { auditid },
        )
        .await
    }

    pub async fn get_latest_auditstatus(&self, token: &str) -> Result<LatestAuditStatus> {
        self.get("/wxa/get_latest_auditstatus", Token::Access(token), &[])
            .await
    }

    pub async fn undo_code_audit(&self, token: &str) -> Result<()> {
        self.get::<Done>("/wxa/undocodeaudit", Token::Access(token), &[])
            .await
            .map(drop)
    }

    pub async fn release(&self, token: &str) -> Result<()> {
        self.post::<Done>("/wxa/release", Token::Access(token), &serde_json::json!({}))
            .await
            .map(drop)
    }

    /// Back to the previous online version, or to `app_version` (one of
    /// [`WechatClient::history_versions`]).
    pub async fn revert_code_release(&self, token: &str, app_version: Option<i64>) -> Result<()> {
        let v = app_version.map(|v| v.to_string());
        let query: Vec<(&str, &str)> = v
            .as_deref()
            .map(|v| ("app_version", v))
            .into_iter()
            .collect();
        self.get::<Done>("/wxa/revertcoderelease", Token::Access(token), &query)
            .await
            .map(drop)
    }

    pub async fn history_versions(&self, token: &str) -> Result<HistoryVersions> {
        self.get(
            "/wxa/revertcoderelease",
            Token::Access(token),
            &[("action", "get_history_version")],
        )
        .await
    }

    pub async fn gray_release(&self, token: &str, percentage: i64) -> Result<()> {
        let req = GrayReleaseRequest {
            gray_percentage: percentage,
            support_debuger_first: None,
            support_experiencer_first: None,
            gray_steps: None,
            gray_auto: None,
        };
        let body = serde_json::json!({"gray_percentage": req.gray_percentage});
        self.post::<Done>("/wxa/grayrelease", Token::Access(token), &body)
            .await
            .map(drop)
    }

    pub async fn revert_gray_release(&self, token: &str) -> Result<()> {
        self.get::<Done>("/wxa/revertgrayrelease", Token::Access(token), &[])
            .await
            .map(drop)
    }

    pub async fn gray_release_plan(&self, token: &str) -> Result<GrayReleasePlan> {
        self.get("/wxa/getgrayreleaseplan", Token::Access(token), &[])
            .await
    }

    pub async fn speed_up_audit(&self, token: &str, auditid: i64) -> Result<()> {
        self.post::<Done>(
            "/wxa/speedupaudit",
            Token::Access(token),
            &AuditIdRequest { auditid },
        )
        .await
        .map(drop)
    }

    pub async fn query_quota(&self, token: &str) -> Result<QueryQuota> {
        self.get("/wxa/queryquota", Token::Access(token), &[]).await
    }

    /// `open` or `close` the mini program to its users.
    pub async fn change_visit_status(&self, token: &str, open: bool) -> Result<()> {
        let body = serde_json::json!({"action": if open { "open" } else { "close" }});
        self.post::<Done>("/wxa/change_visitstatus", Token::Access(token), &body)
            .await
            .map(drop)
    }

    pub async fn get_visit_status(&self, token: &str) -> Result<VisitStatus> {
        self.post(
            "/wxa/getvisitstatus",
            Token::Access(token),
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn modify_domain(
        &self,
        token: &str,
        req: &ModifyDomainRequest,
    ) -> Result<ServerDomains> {
        self.post("/wxa/modify_domain", Token::Access(token), req)
            .await
    }

    pub async fn set_webview_domain(
        &self,
        token: &str,
        req: &WebviewDomainRequest,
    ) -> Result<WebviewDomains> {
        self.post("/wxa/setwebviewdomain", Token::Access(token), req)
            .await
    }

    pub async fn code_privacy_info(&self, token: &str) -> Result<PrivacyInfo> {
        self.get(
            "/wxa/security/get_code_privacy_info",
            Token::Access(token),
            &[],
        )
        .await
    }
}

/// A source of one kind of token: the current one, or (`fresh`) a new one.
pub trait Tokens: Send + Sync {
    fn token(
        &self,
        fresh: bool,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<String>> + Send + '_>>;
}

/// An authorizer's tokens: refreshed through `api_authorizer_token` with the component
/// token, keeping the newest refresh token (a refresh token works once).
pub struct AuthorizerTokens {
    client: WechatClient,
    component_appid: String,
    authorizer_appid: String,
    component_token: String,
    state: Arc<Mutex<(String, String)>>,
}

impl AuthorizerTokens {
    pub fn new(
        client: WechatClient,
        component_appid: &str,
        component_token: &str,
        authorizer_appid: &str,
        access_token: &str,
        refresh_token: &str,
    ) -> Self {
        AuthorizerTokens {
            client,
            component_appid: component_appid.into(),
            authorizer_appid: authorizer_appid.into(),
            component_token: component_token.into(),
            state: Arc::new(Mutex::new((access_token.into(), refresh_token.into()))),
        }
    }

    /// The refresh token to keep (it changes with every refresh).
    pub async fn refresh_token(&self) -> String {
        self.state.lock().await.1.clone()
    }
}

impl Tokens for AuthorizerTokens {
    fn token(
        &self,
        fresh: bool,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<String>> + Send + '_>> {
        Box::pin(async move {
            // One refresh at a time: the lock is held across it, so two stale calls do not
            // both spend the refresh token (the second would revoke the family).
            let mut state = self.state.lock().await;
            if fresh {
                let renewed = self
                    .client
                    .authorizer_token(
                        &self.component_token,
                        &AuthorizerTokenRequest {
                            component_appid: self.component_appid.clone(),
                            authorizer_appid: self.authorizer_appid.clone(),
                            authorizer_refresh_token: state.1.clone(),
                        },
                    )
                    .await?;
                *state = (
                    renewed.authorizer_access_token,
                    renewed.authorizer_refresh_token,
                );
            }
            Ok(state.0.clone())
        })
    }
}
