//! [`AuthStore`] on every SQL backend: tokens, codes and tickets, and the authorization of a
//! mini program to a third party.

use async_trait::async_trait;
use smartpkg_core::dialect::Dialect;
use smartpkg_core::ids::{AppId, TpId};
use smartpkg_core::push::Event;

use super::deliveries::{queue_event, NewEvent};
use super::{Sql, Tx};
use crate::{
    Approval, AuthRefusal, AuthStore, CodeKind, Columns, Grant, IssuedCode, OperatorGrant, Result,
    StoreError, TokenPair,
};

/// A mini program's token, while its app is still authorized to the token's third party.
pub(crate) const GRANT: &str = "SELECT t.app_id AS grant_app_id, t.tp_id AS grant_tp_id, \
       t.expires_at AS grant_expires_at \
     FROM access_tokens t JOIN apps a ON a.app_id = t.app_id \
     WHERE t.token_hash = $1 AND t.kind = 'app' AND a.tp_id = t.tp_id";

/// The grant of a row read with [`GRANT`] (or the package read that joins it).
pub fn grant_of(r: &impl Columns) -> Result<Grant> {
    Ok(Grant {
        app_id: r.id("grant_app_id")?,
        tp_id: r.id("grant_tp_id")?,
        expires_at_ms: r.i64("grant_expires_at")?,
    })
}

/// Stores a token pair as a member of `family` (the authorization it descends from).
async fn insert_token_pair<X: Tx>(
    tx: &mut X,
    (tp_id, app_id): (TpId, AppId),
    pair: &TokenPair,
    family: &str,
    now_ms: i64,
) -> Result<()> {
    tx.exec(
        "INSERT INTO access_tokens (token_hash, kind, tp_id, app_id, expires_at, created_at, \
               family) VALUES ($1, 'app', $3, $4, $5, $7, $8), ($2, 'refresh', $3, $4, $6, $7, $8)",
        args![
            &pair.access_hash,
            &pair.refresh_hash,
            tp_id,
            app_id,
            pair.access_expires_at_ms,
            pair.refresh_expires_at_ms,
            now_ms,
            family
        ],
    )
    .await?;
    Ok(())
}

/// A credential was presented a second time: every token issued from its authorization dies
/// (RFC 6749 §4.1.2, §10.4). Used refresh tokens stay, so a later replay is recognised too.
async fn revoke_family<X: Tx>(tx: &mut X, family: &str) -> Result<u64> {
    let sql = "DELETE FROM access_tokens WHERE family = $1 AND used_at IS NULL";
    tx.exec(sql, args![family]).await
}

/// Issues a token pair when the credential just used named an app still authorized to the
/// third party; the app id on success.
async fn pair_if_authorized<X: Tx>(
    tx: &mut X,
    tp_id: TpId,
    app_id: Option<AppId>,
    pair: &TokenPair,
    family: &str,
    now_ms: i64,
) -> Result<Option<AppId>> {
    let Some(app_id) = app_id else {
        return Ok(None);
    };
    // Locked, so a revocation racing this exchange is ordered before or after it.
    let still = tx.pick(locking!(
        "SELECT app_id FROM apps WHERE app_id = $1 AND tp_id = $2"
    ));
    if tx.opt(still, args![app_id, tp_id]).await?.is_none() {
        return Ok(None);
    }
    insert_token_pair(tx, (tp_id, app_id), pair, family, now_ms).await?;
    Ok(Some(app_id))
}

/// The app's tokens and unused codes of `tp_id` die, and the third party is told
/// UNAUTHORIZED.
async fn end_authorization<X: Tx>(
    tx: &mut X,
    tp_id: TpId,
    app_id: AppId,
    now_ms: i64,
) -> Result<()> {
    tx.exec(
        "DELETE FROM access_tokens WHERE app_id = $1 AND tp_id = $2",
        args![app_id, tp_id],
    )
    .await?;
    // A code handed out before the revocation must not bring the authorization back.
    tx.exec(
        "UPDATE codes SET used_at = $1 WHERE app_id = $2 AND tp_id = $3 AND used_at IS NULL",
        args![now_ms, app_id, tp_id],
    )
    .await?;
    let e = NewEvent {
        tp_id,
        app_id,
        event: &Event::Unauthorized,
    };
    queue_event(tx, e, now_ms).await
}

/// Authorizes the app to `tp_id` with its row locked (the per-app serialisation of the
/// contract): another third party's authorization ends (it is told UNAUTHORIZED), the
/// authorization code is stored, and AUTHORIZED (UPDATE_AUTHORIZED when the app was already
/// this third party's) is queued with the code. False when the app does not exist.
async fn switch_authorization<X: Tx>(
    tx: &mut X,
    tp_id: TpId,
    app_id: AppId,
    code: &IssuedCode,
    now_ms: i64,
) -> Result<bool> {
    let prior = tx.pick(locking!("SELECT tp_id FROM apps WHERE app_id = $1"));
    let Some(prior) = tx.opt(prior, args![app_id]).await? else {
        return Ok(false);
    };
    let prior: Option<TpId> = prior.opt_id("tp_id")?;
    if let Some(other) = prior.filter(|p| *p != tp_id) {
        end_authorization(tx, other, app_id, now_ms).await?;
    }
    tx.exec(
        "UPDATE apps SET tp_id = $1 WHERE app_id = $2",
        args![tp_id, app_id],
    )
    .await?;
    tx.exec(
        "INSERT INTO codes (code_hash, kind, tp_id, app_id, expires_at, created_at) \
             VALUES ($1, 'auth', $2, $3, $4, $5)",
        args![&code.code_hash, tp_id, app_id, code.expires_at_ms, now_ms],
    )
    .await?;
    let event = match prior == Some(tp_id) {
        true => Event::UpdateAuthorized(code.grant.clone()),
        false => Event::Authorized(code.grant.clone()),
    };
    queue_event(
        tx,
        NewEvent {
            tp_id,
            app_id,
            event: &event,
        },
        now_ms,
    )
    .await?;
    Ok(true)
}

#[async_trait]
impl<S: Sql> AuthStore for S {
    async fn authorize(&self, g: OperatorGrant, now_ms: i64) -> Result<()> {
        work!(write, self, |tx| {
            if !switch_authorization(tx, g.tp_id, g.app_id, &g.code, now_ms).await? {
                return Err(StoreError::NotFound(format!("app {}", g.app_id)));
            }
            let ids = (g.tp_id, g.app_id);
            insert_token_pair(tx, ids, &g.pair, &g.pair.access_hash, now_ms).await
        })
    }

    async fn resolve_app_token(&self, token_hash: String) -> Result<Option<Grant>> {
        work!(read, self, |tx| {
            let row = tx.opt(GRANT, args![&token_hash]).await?;
            row.as_ref().map(grant_of).transpose()
        })
    }

    async fn create_tp_token(
        &self,
        tp_id: TpId,
        token_hash: String,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        work!(write, self, |tx| {
            tx.exec(
                "INSERT INTO access_tokens (token_hash, kind, tp_id, app_id, expires_at, \
                     created_at) VALUES ($1, 'tp', $2, NULL, $3, $4)",
                args![&token_hash, tp_id, expires_at_ms, now_ms],
            )
            .await?;
            Ok(())
        })
    }

    async fn resolve_tp_token(&self, token_hash: String) -> Result<Option<(TpId, i64)>> {
        work!(read, self, |tx| {
            let sql = "SELECT tp_id, expires_at FROM access_tokens \
                       WHERE token_hash = $1 AND kind = 'tp'";
            match tx.opt(sql, args![&token_hash]).await? {
                Some(r) => Ok(Some((r.id("tp_id")?, r.i64("expires_at")?))),
                None => Ok(None),
            }
        })
    }

    async fn push_ticket(
        &self,
        tp_id: TpId,
        dialect: Dialect,
        ticket_hash: String,
        expires_at_ms: i64,
        ticket: String,
        now_ms: i64,
    ) -> Result<()> {
        work!(write, self, |tx| {
            tx.exec(
                "INSERT INTO tickets (ticket_hash, tp_id, expires_at, created_at) \
                     VALUES ($1, $2, $3, $4)",
                args![&ticket_hash, tp_id, expires_at_ms, now_ms],
            )
            .await?;
            // Expired tickets are of no use to anyone: drop them as new ones come.
            tx.exec(
                "DELETE FROM tickets WHERE tp_id = $1 AND expires_at < $2",
                args![tp_id, now_ms],
            )
            .await?;
            let create_time_s = now_ms / 1000;
            let event = match dialect {
                Dialect::Baidu => Event::Ticket {
                    ticket,
                    create_time_s,
                },
                Dialect::Wechat => Event::WechatTicket {
                    ticket,
                    create_time_s,
                },
            };
            queue_event(
                tx,
                NewEvent {
                    tp_id,
                    app_id: AppId(0),
                    event: &event,
                },
                now_ms,
            )
            .await
        })
    }

    async fn ticket_valid(&self, tp_id: TpId, ticket_hash: String, now_ms: i64) -> Result<bool> {
        work!(read, self, |tx| {
            let sql = "SELECT COUNT(*) AS n FROM tickets \
                       WHERE ticket_hash = $1 AND tp_id = $2 AND expires_at > $3";
            Ok(tx.int(sql, args![&ticket_hash, tp_id, now_ms]).await? == 1)
        })
    }

    async fn ticket_known(&self, tp_id: TpId, ticket_hash: String) -> Result<bool> {
        work!(read, self, |tx| {
            let sql = "SELECT COUNT(*) AS n FROM tickets WHERE ticket_hash = $1 AND tp_id = $2";
            Ok(tx.int(sql, args![&ticket_hash, tp_id]).await? == 1)
        })
    }

    async fn create_code(
        &self,
        kind: CodeKind,
        code_hash: String,
        tp_id: TpId,
        app_id: Option<AppId>,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        work!(write, self, |tx| {
            tx.exec(
                "INSERT INTO codes (code_hash, kind, tp_id, app_id, expires_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                args![
                    &code_hash,
                    kind.as_str(),
                    tp_id,
                    app_id,
                    expires_at_ms,
                    now_ms
                ],
            )
            .await?;
            Ok(())
        })
    }

    async fn code_usable(
        &self,
        kind: CodeKind,
        code_hash: String,
        tp_id: TpId,
        now_ms: i64,
    ) -> Result<bool> {
        work!(read, self, |tx| {
            let sql = "SELECT COUNT(*) AS n FROM codes WHERE code_hash = $1 AND kind = $2 \
                       AND tp_id = $3 AND used_at IS NULL AND expires_at > $4";
            Ok(tx
                .int(sql, args![&code_hash, kind.as_str(), tp_id, now_ms])
                .await?
                == 1)
        })
    }

    async fn approve(
        &self,
        a: Approval,
        now_ms: i64,
    ) -> Result<std::result::Result<(), AuthRefusal>> {
        work!(write, self, |tx| {
            // The conditional update is what makes a pre-auth code single-use.
            let used = tx
                .exec(
                    "UPDATE codes SET used_at = $1 WHERE code_hash = $2 AND kind = 'pre_auth' \
                       AND tp_id = $3 AND used_at IS NULL AND expires_at > $1",
                    args![now_ms, &a.pre_auth_hash, a.code.tp_id],
                )
                .await?;
            if used != 1 {
                return Ok(Err(AuthRefusal::PreAuthCodeInvalid));
            }
            if !switch_authorization(tx, a.code.tp_id, a.code.app_id, &a.code, now_ms).await? {
                return Ok(Err(AuthRefusal::AppUnknown));
            }
            Ok(Ok(()))
        })
    }

    async fn exchange_code(
        &self,
        tp_id: TpId,
        code_hash: String,
        pair: TokenPair,
        now_ms: i64,
    ) -> Result<Option<AppId>> {
        work!(write, self, |tx| {
            let used = tx
                .opt(
                    "UPDATE codes SET used_at = $1 WHERE code_hash = $2 AND kind = 'auth' \
                      AND tp_id = $3 AND used_at IS NULL AND expires_at > $1 RETURNING app_id",
                    args![now_ms, &code_hash, tp_id],
                )
                .await?;
            if let Some(used) = used {
                // The code's hash names the family of every token it yields.
                let app_id = used.opt_id("app_id")?;
                return pair_if_authorized(tx, tp_id, app_id, &pair, &code_hash, now_ms).await;
            }
            let replayed = tx
                .int(
                    "SELECT COUNT(*) AS n FROM codes WHERE code_hash = $1 AND kind = 'auth' \
                      AND tp_id = $2 AND used_at IS NOT NULL",
                    args![&code_hash, tp_id],
                )
                .await?;
            if replayed == 1 {
                let n = revoke_family(tx, &code_hash).await?;
                tracing::warn!(
                    tp_id = tp_id.get(),
                    revoked = n,
                    "authorization code replayed: revoked the tokens issued from it"
                );
            }
            Ok(None)
        })
    }

    async fn refresh(
        &self,
        tp_id: TpId,
        app_id: Option<AppId>,
        refresh_hash: String,
        pair: TokenPair,
        now_ms: i64,
    ) -> Result<Option<AppId>> {
        work!(write, self, |tx| {
            // Marking it used is what makes a refresh token single-use.
            let found = tx
                .opt(
                    "UPDATE access_tokens SET used_at = $3 WHERE token_hash = $1 \
                      AND kind = 'refresh' AND tp_id = $2 AND used_at IS NULL AND expires_at > $3 \
                      AND app_id = COALESCE($4, app_id) \
                      RETURNING app_id, family",
                    args![&refresh_hash, tp_id, now_ms, app_id],
                )
                .await?;
            if let Some(found) = found {
                let family = found
                    .opt_string("family")?
                    .unwrap_or_else(|| refresh_hash.clone());
                let app_id = found.opt_id("app_id")?;
                return pair_if_authorized(tx, tp_id, app_id, &pair, &family, now_ms).await;
            }
            let replayed = tx
                .opt(
                    "SELECT family FROM access_tokens WHERE token_hash = $1 AND kind = 'refresh' \
                      AND tp_id = $2 AND used_at IS NOT NULL",
                    args![&refresh_hash, tp_id],
                )
                .await?;
            if let Some(family) = replayed
                .map(|r| r.opt_string("family"))
                .transpose()?
                .flatten()
            {
                let n = revoke_family(tx, &family).await?;
                tracing::warn!(
                    tp_id = tp_id.get(),
                    revoked = n,
                    "refresh token replayed: revoked the tokens issued from its authorization"
                );
            }
            Ok(None)
        })
    }

    async fn revoke(&self, tp_id: TpId, app_id: AppId, now_ms: i64) -> Result<bool> {
        work!(write, self, |tx| {
            let n = tx
                .exec(
                    "UPDATE apps SET tp_id = NULL WHERE app_id = $1 AND tp_id = $2",
                    args![app_id, tp_id],
                )
                .await?;
            if n == 0 {
                return Ok(false);
            }
            end_authorization(tx, tp_id, app_id, now_ms).await?;
            Ok(true)
        })
    }
}
