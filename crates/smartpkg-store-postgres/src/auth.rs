use async_trait::async_trait;
use smartpkg_store::{
    Approval, AuthRefusal, AuthStore, CodeKind, Grant, IssuedCode, OperatorGrant, Result,
    StoreError, TokenPair,
};
use sqlx::{PgConnection, Row};

use crate::deliveries::{auth_event, queue_event, NewEvent};
use crate::{Db, PgStore};
use smartpkg_core::push::Event;

pub(crate) async fn grant(c: &mut PgConnection, token_hash: &str) -> Result<Option<Grant>> {
    let row = sqlx::query(
        "SELECT t.app_id, t.tp_id, t.expires_at FROM access_tokens t JOIN apps a ON a.app_id = t.app_id \
         WHERE t.token_hash = $1 AND t.kind = 'app' AND a.tp_id = t.tp_id",
    )
    .bind(token_hash)
    .fetch_optional(c)
    .await
    .db()?;
    row.map(|r| {
        Ok(Grant {
            app_id: r.try_get(0).db()?,
            tp_id: r.try_get(1).db()?,
            expires_at_ms: r.try_get(2).db()?,
        })
    })
    .transpose()
}

/// Stores a token pair as a member of `family` (the authorization it descends from).
async fn insert_token_pair(
    c: &mut PgConnection,
    tp_id: i64,
    app_id: i64,
    pair: &TokenPair,
    family: &str,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO access_tokens (token_hash, kind, tp_id, app_id, expires_at, created_at, family) \
         VALUES ($1, 'app', $3, $4, $5, $7, $8), ($2, 'refresh', $3, $4, $6, $7, $8)",
    )
    .bind(&pair.access_hash)
    .bind(&pair.refresh_hash)
    .bind(tp_id)
    .bind(app_id)
    .bind(pair.access_expires_at_ms)
    .bind(pair.refresh_expires_at_ms)
    .bind(now_ms)
    .bind(family)
    .execute(c)
    .await
    .db()?;
    Ok(())
}

/// A credential was presented a second time: every token issued from its authorization dies.
/// Used refresh tokens stay, so a later replay is recognised too.
async fn revoke_family(c: &mut PgConnection, family: &str) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM access_tokens WHERE family = $1 AND used_at IS NULL")
            .bind(family)
            .execute(c)
            .await
            .db()?
            .rows_affected(),
    )
}

/// Issues a token pair when the credential just used named an app still authorized to the TP.
async fn pair_if_authorized(
    c: &mut PgConnection,
    tp_id: i64,
    app_id: Option<i64>,
    pair: &TokenPair,
    family: &str,
    now_ms: i64,
) -> Result<Option<i64>> {
    let Some(app_id) = app_id else {
        return Ok(None);
    };
    // Locked, so a revocation racing this exchange is ordered before or after it.
    let still: Option<i64> =
        sqlx::query_scalar("SELECT app_id FROM apps WHERE app_id = $1 AND tp_id = $2 FOR UPDATE")
            .bind(app_id)
            .bind(tp_id)
            .fetch_optional(&mut *c)
            .await
            .db()?;
    if still.is_none() {
        return Ok(None);
    }
    insert_token_pair(c, tp_id, app_id, pair, family, now_ms).await?;
    Ok(Some(app_id))
}

/// The app's tokens and unused codes of `tp_id` die, and the TP is told UNAUTHORIZED.
async fn end_authorization(
    c: &mut PgConnection,
    tp_id: i64,
    app_id: i64,
    now_ms: i64,
) -> Result<()> {
    sqlx::query("DELETE FROM access_tokens WHERE app_id = $1 AND tp_id = $2")
        .bind(app_id)
        .bind(tp_id)
        .execute(&mut *c)
        .await
        .db()?;
    sqlx::query(
        "UPDATE codes SET used_at = $1 WHERE app_id = $2 AND tp_id = $3 AND used_at IS NULL",
    )
    .bind(now_ms)
    .bind(app_id)
    .bind(tp_id)
    .execute(&mut *c)
    .await
    .db()?;
    auth_event(c, tp_id, app_id, &Event::Unauthorized, now_ms).await
}

/// Authorizes the app to `tp_id` with the app's row locked (the per-app serialisation of the
/// contract). False when the app does not exist.
async fn switch_authorization(
    c: &mut PgConnection,
    tp_id: i64,
    app_id: i64,
    code: &IssuedCode,
    now_ms: i64,
) -> Result<bool> {
    let prior: Option<Option<i64>> =
        sqlx::query_scalar("SELECT tp_id FROM apps WHERE app_id = $1 FOR UPDATE")
            .bind(app_id)
            .fetch_optional(&mut *c)
            .await
            .db()?;
    let Some(prior) = prior else {
        return Ok(false);
    };
    if let Some(other) = prior.filter(|p| *p != tp_id) {
        end_authorization(c, other, app_id, now_ms).await?;
    }
    sqlx::query("UPDATE apps SET tp_id = $1 WHERE app_id = $2")
        .bind(tp_id)
        .bind(app_id)
        .execute(&mut *c)
        .await
        .db()?;
    sqlx::query(
        "INSERT INTO codes (code_hash, kind, tp_id, app_id, expires_at, created_at) VALUES ($1, 'auth', $2, $3, $4, $5)",
    )
    .bind(&code.code_hash)
    .bind(tp_id)
    .bind(app_id)
    .bind(code.expires_at_ms)
    .bind(now_ms)
    .execute(&mut *c)
    .await
    .db()?;
    let event = if prior == Some(tp_id) {
        Event::UpdateAuthorized(code.grant.clone())
    } else {
        Event::Authorized(code.grant.clone())
    };
    auth_event(c, tp_id, app_id, &event, now_ms).await?;
    Ok(true)
}

#[async_trait]
impl AuthStore for PgStore {
    async fn authorize(&self, g: OperatorGrant, now_ms: i64) -> Result<()> {
        let mut tx = self.pool.begin().await.db()?;
        if !switch_authorization(&mut tx, g.tp_id, g.app_id, &g.code, now_ms).await? {
            return Err(StoreError::NotFound(format!("app {}", g.app_id)));
        }
        insert_token_pair(
            &mut tx,
            g.tp_id,
            g.app_id,
            &g.pair,
            &g.pair.access_hash,
            now_ms,
        )
        .await?;
        tx.commit().await.db()
    }

    async fn resolve_app_token(&self, token_hash: String) -> Result<Option<Grant>> {
        let mut c = self.pool.acquire().await.db()?;
        grant(&mut c, &token_hash).await
    }

    async fn create_tp_token(
        &self,
        tp_id: i64,
        token_hash: String,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO access_tokens (token_hash, kind, tp_id, app_id, expires_at, created_at) VALUES ($1, 'tp', $2, NULL, $3, $4)",
        )
        .bind(token_hash)
        .bind(tp_id)
        .bind(expires_at_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(())
    }

    async fn resolve_tp_token(&self, token_hash: String) -> Result<Option<(i64, i64)>> {
        sqlx::query_as(
            "SELECT tp_id, expires_at FROM access_tokens WHERE token_hash = $1 AND kind = 'tp'",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .db()
    }

    async fn push_ticket(
        &self,
        tp_id: i64,
        ticket_hash: String,
        expires_at_ms: i64,
        ticket: String,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.db()?;
        sqlx::query(
            "INSERT INTO tickets (ticket_hash, tp_id, expires_at, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(ticket_hash)
        .bind(tp_id)
        .bind(expires_at_ms)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .db()?;
        // Expired tickets are of no use to anyone: drop them as new ones come.
        sqlx::query("DELETE FROM tickets WHERE tp_id = $1 AND expires_at < $2")
            .bind(tp_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .db()?;
        let event = Event::Ticket {
            ticket,
            create_time_s: now_ms / 1000,
        };
        let e = NewEvent {
            tp_id,
            app_id: 0,
            event: &event,
        };
        queue_event(&mut tx, e, now_ms).await?;
        tx.commit().await.db()
    }

    async fn ticket_valid(&self, tp_id: i64, ticket_hash: String, now_ms: i64) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tickets WHERE ticket_hash = $1 AND tp_id = $2 AND expires_at > $3",
        )
        .bind(ticket_hash)
        .bind(tp_id)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await
        .db()?;
        Ok(n == 1)
    }

    async fn create_code(
        &self,
        kind: CodeKind,
        code_hash: String,
        tp_id: i64,
        app_id: Option<i64>,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO codes (code_hash, kind, tp_id, app_id, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(code_hash)
        .bind(kind.as_str())
        .bind(tp_id)
        .bind(app_id)
        .bind(expires_at_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(())
    }

    async fn code_usable(
        &self,
        kind: CodeKind,
        code_hash: String,
        tp_id: i64,
        now_ms: i64,
    ) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM codes WHERE code_hash = $1 AND kind = $2 AND tp_id = $3 AND used_at IS NULL AND expires_at > $4",
        )
        .bind(code_hash)
        .bind(kind.as_str())
        .bind(tp_id)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await
        .db()?;
        Ok(n == 1)
    }

    async fn approve(
        &self,
        a: Approval,
        now_ms: i64,
    ) -> Result<std::result::Result<(), AuthRefusal>> {
        let mut tx = self.pool.begin().await.db()?;
        // The conditional update is what makes a pre-auth code single-use.
        let used = sqlx::query(
            "UPDATE codes SET used_at = $1 WHERE code_hash = $2 AND kind = 'pre_auth' AND tp_id = $3 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now_ms)
        .bind(&a.pre_auth_hash)
        .bind(a.code.tp_id)
        .execute(&mut *tx)
        .await
        .db()?
        .rows_affected();
        if used != 1 {
            return Ok(Err(AuthRefusal::PreAuthCodeInvalid));
        }
        if !switch_authorization(&mut tx, a.code.tp_id, a.code.app_id, &a.code, now_ms).await? {
            return Ok(Err(AuthRefusal::AppUnknown));
        }
        tx.commit().await.db()?;
        Ok(Ok(()))
    }

    async fn exchange_code(
        &self,
        tp_id: i64,
        code_hash: String,
        pair: TokenPair,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await.db()?;
        let app_id: Option<Option<i64>> = sqlx::query_scalar(
            "UPDATE codes SET used_at = $1 WHERE code_hash = $2 AND kind = 'auth' AND tp_id = $3 AND used_at IS NULL AND expires_at > $1 RETURNING app_id",
        )
        .bind(now_ms)
        .bind(&code_hash)
        .bind(tp_id)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let out = match app_id {
            // The code's hash names the family of every token it yields.
            Some(app_id) => {
                pair_if_authorized(&mut tx, tp_id, app_id, &pair, &code_hash, now_ms).await?
            }
            None => {
                let replayed: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM codes WHERE code_hash = $1 AND kind = 'auth' AND tp_id = $2 AND used_at IS NOT NULL",
                )
                .bind(&code_hash)
                .bind(tp_id)
                .fetch_one(&mut *tx)
                .await
                .db()?;
                if replayed == 1 {
                    let n = revoke_family(&mut tx, &code_hash).await?;
                    tracing::warn!(
                        tp_id,
                        revoked = n,
                        "authorization code replayed: revoked the tokens issued from it"
                    );
                }
                None
            }
        };
        tx.commit().await.db()?;
        Ok(out)
    }

    async fn refresh(
        &self,
        tp_id: i64,
        refresh_hash: String,
        pair: TokenPair,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await.db()?;
        // Marking it used is what makes a refresh token single-use.
        let found: Option<(Option<i64>, Option<String>)> = sqlx::query_as(
            "UPDATE access_tokens SET used_at = $3 WHERE token_hash = $1 AND kind = 'refresh' AND tp_id = $2 AND used_at IS NULL AND expires_at > $3 RETURNING app_id, family",
        )
        .bind(&refresh_hash)
        .bind(tp_id)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let out = match found {
            Some((app_id, family)) => {
                let family = family.unwrap_or_else(|| refresh_hash.clone());
                pair_if_authorized(&mut tx, tp_id, app_id, &pair, &family, now_ms).await?
            }
            None => {
                let replayed: Option<Option<String>> = sqlx::query_scalar(
                    "SELECT family FROM access_tokens WHERE token_hash = $1 AND kind = 'refresh' AND tp_id = $2 AND used_at IS NOT NULL",
                )
                .bind(&refresh_hash)
                .bind(tp_id)
                .fetch_optional(&mut *tx)
                .await
                .db()?;
                if let Some(Some(family)) = replayed {
                    let n = revoke_family(&mut tx, &family).await?;
                    tracing::warn!(
                        tp_id,
                        revoked = n,
                        "refresh token replayed: revoked the tokens issued from its authorization"
                    );
                }
                None
            }
        };
        tx.commit().await.db()?;
        Ok(out)
    }

    async fn revoke(&self, tp_id: i64, app_id: i64, now_ms: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await.db()?;
        let n = sqlx::query("UPDATE apps SET tp_id = NULL WHERE app_id = $1 AND tp_id = $2")
            .bind(app_id)
            .bind(tp_id)
            .execute(&mut *tx)
            .await
            .db()?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        end_authorization(&mut tx, tp_id, app_id, now_ms).await?;
        tx.commit().await.db()?;
        Ok(true)
    }
}
