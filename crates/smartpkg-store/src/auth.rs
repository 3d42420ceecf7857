//! Tokens and codes: TP tokens, tickets, pre-auth and authorization codes, app token pairs
//! and their families, authorizations of mini programs to third parties.
//!
//! Serialisation contract (what a backend must guarantee, whatever its isolation level):
//! - a code or refresh token is used at most once: its use is one conditional update
//!   (`… WHERE used_at IS NULL`), so of two concurrent uses exactly one wins;
//! - authorizing, approving and revoking an app are serialised **per app** (the app row is
//!   updated first in the transaction, which locks it): the app is authorized to at most one
//!   third party, and the events and token changes of one switch commit together;
//! - a replay's revocation of a token family commits in the transaction that recognised it.

use async_trait::async_trait;
use smartpkg_core::ids::{AppId, TpId};

use crate::Result;

/// A new app access token and refresh token, as stored: hashes and expiries.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_hash: String,
    pub refresh_hash: String,
    pub access_expires_at_ms: i64,
    pub refresh_expires_at_ms: i64,
}

/// What an access token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub app_id: AppId,
    pub tp_id: TpId,
    pub expires_at_ms: i64,
}

/// An authorization code issued when a mini program is authorized to a third party, with the
/// AUTHORIZED event that hands it over.
#[derive(Debug, Clone)]
pub struct IssuedCode {
    pub tp_id: TpId,
    pub app_id: AppId,
    pub code_hash: String,
    pub expires_at_ms: i64,
    /// The plain code and its lifetime, which the AUTHORIZED event hands to the third party
    /// (and only it).
    pub grant: smartpkg_core::push::CodeGrant,
}

/// An owner's approval on the authorization page.
#[derive(Debug, Clone)]
pub struct Approval {
    pub pre_auth_hash: String,
    pub code: IssuedCode,
}

/// An operator authorizes a mini program to a third party directly (admin API): the same
/// events as the page flow, plus a token pair handed to the operator.
#[derive(Debug, Clone)]
pub struct OperatorGrant {
    pub tp_id: TpId,
    pub app_id: AppId,
    pub pair: TokenPair,
    pub code: IssuedCode,
}

/// Why an approval on the authorization page was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRefusal {
    PreAuthCodeInvalid,
    AppUnknown,
}

/// The single-use codes of the authorization flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// Minted by `createpreauthcode`, used up when the owner approves.
    PreAuth,
    /// Handed to the third party on approval, traded for tokens.
    Auth,
}

impl CodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeKind::PreAuth => "pre_auth",
            CodeKind::Auth => "auth",
        }
    }
}

/// Storage of tokens, codes and authorizations. What a backend must serialise is the module's contract (above):
/// every backend meets it, and `conformance` checks it.
#[async_trait]
pub trait AuthStore: Send + Sync {
    /// Authorizes the app to the TP as [`Store::approve`] does (another TP's authorization
    /// ends and it is told UNAUTHORIZED; AUTHORIZED goes to the new one with the code) and
    /// stores the token pair as a family of its own. NotFound when the app does not exist.
    async fn authorize(&self, g: OperatorGrant, now_ms: i64) -> Result<()>;

    /// The grant of an app access token, by its SHA-256; None when unknown or revoked.
    async fn resolve_app_token(&self, token_hash: String) -> Result<Option<Grant>>;

    async fn create_tp_token(
        &self,
        tp_id: TpId,
        token_hash: String,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<()>;

    /// (tp_id, expires_at_ms) of a TP access token.
    async fn resolve_tp_token(&self, token_hash: String) -> Result<Option<(TpId, i64)>>;

    /// Stores a ticket (by hash) and queues its push, which carries the plain ticket, to the
    /// TP's authorization-event URL of `dialect` (a Baidu `ticket` or a WeChat
    /// `component_verify_ticket`; either buys a token of the third party).
    async fn push_ticket(
        &self,
        tp_id: TpId,
        dialect: smartpkg_core::dialect::Dialect,
        ticket_hash: String,
        expires_at_ms: i64,
        ticket: String,
        now_ms: i64,
    ) -> Result<()>;

    /// Whether the ticket is one of the TP's and still valid.
    async fn ticket_valid(&self, tp_id: TpId, ticket_hash: String, now_ms: i64) -> Result<bool>;

    /// Whether the ticket is one of the TP's, live or expired (expired ones are kept until
    /// the next ticket is pushed): what tells an expired ticket from one never issued.
    async fn ticket_known(&self, tp_id: TpId, ticket_hash: String) -> Result<bool>;

    /// Stores a single-use code (`pre_auth` or `auth`) by its hash.
    async fn create_code(
        &self,
        kind: CodeKind,
        code_hash: String,
        tp_id: TpId,
        app_id: Option<AppId>,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<()>;

    /// Whether the code is the TP's, unused and unexpired.
    async fn code_usable(
        &self,
        kind: CodeKind,
        code_hash: String,
        tp_id: TpId,
        now_ms: i64,
    ) -> Result<bool>;

    /// The owner approved: uses the pre-auth code, authorizes the app to the TP (ending another
    /// TP's authorization, which is told UNAUTHORIZED), stores the authorization code and
    /// queues AUTHORIZED (UPDATE_AUTHORIZED when the app was already the TP's). The event's
    /// plain code comes from the issued code's `grant`.
    async fn approve(
        &self,
        a: Approval,
        now_ms: i64,
    ) -> Result<std::result::Result<(), AuthRefusal>>;

    /// Trades an authorization code for an app token pair; the app id on success. A code
    /// presented again after its use revokes every token issued from it.
    async fn exchange_code(
        &self,
        tp_id: TpId,
        code_hash: String,
        pair: TokenPair,
        now_ms: i64,
    ) -> Result<Option<AppId>>;

    /// Trades a refresh token (once) for a new pair of the same family; the app id on
    /// success. A used refresh token presented again revokes its whole family. With
    /// `app_id`, only a refresh token of that mini program is used (another is left as it
    /// was, and None answered).
    async fn refresh(
        &self,
        tp_id: TpId,
        app_id: Option<AppId>,
        refresh_hash: String,
        pair: TokenPair,
        now_ms: i64,
    ) -> Result<Option<AppId>>;

    /// Ends the app's authorization to the TP: its tokens die and the TP is told UNAUTHORIZED.
    async fn revoke(&self, tp_id: TpId, app_id: AppId, now_ms: i64) -> Result<bool>;
}
