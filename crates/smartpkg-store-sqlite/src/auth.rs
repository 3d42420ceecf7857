use super::*;
use smartpkg_core::push::Event;

pub(crate) fn grant(c: &Connection, token_hash: &str) -> Result<Option<Grant>> {
    Ok(c.prepare_cached(
        "SELECT t.app_id, t.tp_id, t.expires_at FROM access_tokens t JOIN apps a ON a.app_id = t.app_id \
         WHERE t.token_hash = ?1 AND t.kind = 'app' AND a.tp_id = t.tp_id",
    )?
    .query_row([token_hash], |r| {
        Ok(Grant {
            app_id: r.get(0)?,
            tp_id: r.get(1)?,
            expires_at_ms: r.get(2)?,
        })
    })
    .optional()?)
}

/// Stores a token pair as a member of `family` (the authorization it descends from).
pub(crate) fn insert_token_pair(
    tx: &Transaction<'_>,
    tp_id: i64,
    app_id: i64,
    pair: &TokenPair,
    family: &str,
    now_ms: i64,
) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO access_tokens (token_hash, kind, tp_id, app_id, expires_at, created_at, family) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    stmt.execute(params![
        pair.access_hash,
        "app",
        tp_id,
        app_id,
        pair.access_expires_at_ms,
        now_ms,
        family
    ])?;
    stmt.execute(params![
        pair.refresh_hash,
        "refresh",
        tp_id,
        app_id,
        pair.refresh_expires_at_ms,
        now_ms,
        family
    ])?;
    Ok(())
}

/// A credential was presented a second time: every token issued from its authorization dies
/// (RFC 6749 §4.1.2, §10.4). Used refresh tokens stay, so a later replay is recognised too.
pub(crate) fn revoke_family(tx: &Transaction<'_>, family: &str) -> Result<usize> {
    Ok(tx.execute(
        "DELETE FROM access_tokens WHERE family = ?1 AND used_at IS NULL",
        [family],
    )?)
}

/// Issues an app token pair when the credential just used named an app that is still
/// authorized to the TP; the app id on success.
pub(crate) fn pair_if_authorized(
    tx: &Transaction<'_>,
    tp_id: i64,
    app_id: Option<i64>,
    pair: &TokenPair,
    family: &str,
    now_ms: i64,
) -> Result<Option<i64>> {
    let Some(app_id) = app_id else {
        return Ok(None);
    };
    let still: i64 = tx.query_row(
        "SELECT COUNT(*) FROM apps WHERE app_id = ?1 AND tp_id = ?2",
        params![app_id, tp_id],
        |r| r.get(0),
    )?;
    if still != 1 {
        return Ok(None);
    }
    insert_token_pair(tx, tp_id, app_id, pair, family, now_ms)?;
    Ok(Some(app_id))
}

/// The app's tokens and unused codes of `tp_id` die, and the TP is told UNAUTHORIZED.
pub(crate) fn end_authorization(
    tx: &Transaction<'_>,
    tp_id: i64,
    app_id: i64,
    now_ms: i64,
) -> Result<()> {
    tx.execute(
        "DELETE FROM access_tokens WHERE app_id = ?1 AND tp_id = ?2",
        params![app_id, tp_id],
    )?;
    // A code handed out before the revocation must not bring the authorization back.
    tx.execute(
        "UPDATE codes SET used_at = ?1 WHERE app_id = ?2 AND tp_id = ?3 AND used_at IS NULL",
        params![now_ms, app_id, tp_id],
    )?;
    auth_event(tx, tp_id, app_id, &Event::Unauthorized, now_ms)
}

/// Authorizes the app to `code.tp_id`: another TP's authorization ends (it is told
/// UNAUTHORIZED), the authorization code is stored, and AUTHORIZED (UPDATE_AUTHORIZED when the
/// app was already this TP's) is queued with the code. False when the app does not exist.
pub(crate) fn switch_authorization(
    tx: &Transaction<'_>,
    tp_id: i64,
    app_id: i64,
    code: &IssuedCode,
    now_ms: i64,
) -> Result<bool> {
    let prior: Option<Option<i64>> = tx
        .query_row("SELECT tp_id FROM apps WHERE app_id = ?1", [app_id], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(prior) = prior else {
        return Ok(false);
    };
    if let Some(other) = prior.filter(|p| *p != tp_id) {
        end_authorization(tx, other, app_id, now_ms)?;
    }
    tx.execute(
        "UPDATE apps SET tp_id = ?1 WHERE app_id = ?2",
        params![tp_id, app_id],
    )?;
    tx.execute(
        "INSERT INTO codes (code_hash, kind, tp_id, app_id, expires_at, created_at) VALUES (?1, 'auth', ?2, ?3, ?4, ?5)",
        params![code.code_hash, tp_id, app_id, code.expires_at_ms, now_ms],
    )?;
    let event = if prior == Some(tp_id) {
        Event::UpdateAuthorized(code.grant.clone())
    } else {
        Event::Authorized(code.grant.clone())
    };
    auth_event(tx, tp_id, app_id, &event, now_ms)?;
    Ok(true)
}

#[async_trait]
impl AuthStore for SqliteStore {
    async fn authorize(&self, g: OperatorGrant, now_ms: i64) -> StoreResult<()> {
        self.write(move |tx| {
            if !switch_authorization(tx, g.tp_id, g.app_id, &g.code, now_ms)? {
                return Err(StoreError::NotFound(format!("app {}", g.app_id)).into());
            }
            insert_token_pair(tx, g.tp_id, g.app_id, &g.pair, &g.pair.access_hash, now_ms)
        })
        .await
    }

    async fn resolve_app_token(&self, token_hash: String) -> StoreResult<Option<Grant>> {
        self.read(move |c| grant(c, &token_hash)).await
    }

    async fn create_tp_token(
        &self,
        tp_id: i64,
        token_hash: String,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO access_tokens (token_hash, kind, tp_id, app_id, expires_at, created_at) VALUES (?1, 'tp', ?2, NULL, ?3, ?4)",
                params![token_hash, tp_id, expires_at_ms, now_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn resolve_tp_token(&self, token_hash: String) -> StoreResult<Option<(i64, i64)>> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT tp_id, expires_at FROM access_tokens WHERE token_hash = ?1 AND kind = 'tp'",
            )?
            .query_row([token_hash], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
        })
        .await
    }

    async fn push_ticket(
        &self,
        tp_id: i64,
        ticket_hash: String,
        expires_at_ms: i64,
        ticket: String,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO tickets (ticket_hash, tp_id, expires_at, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![ticket_hash, tp_id, expires_at_ms, now_ms],
            )?;
            // Expired tickets are of no use to anyone: drop them as new ones come.
            tx.execute("DELETE FROM tickets WHERE tp_id = ?1 AND expires_at < ?2", params![tp_id, now_ms])?;
            let event = Event::Ticket {
                ticket,
                create_time_s: now_ms / 1000,
            };
            let e = NewEvent {
                tp_id,
                app_id: 0,
                event: &event,
            };
            queue_event(tx, e, now_ms)
        })
        .await
    }

    async fn ticket_valid(
        &self,
        tp_id: i64,
        ticket_hash: String,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM tickets WHERE ticket_hash = ?1 AND tp_id = ?2 AND expires_at > ?3",
                params![ticket_hash, tp_id, now_ms],
                |r| r.get::<_, i64>(0),
            )? == 1)
        })
        .await
    }

    async fn create_code(
        &self,
        kind: CodeKind,
        code_hash: String,
        tp_id: i64,
        app_id: Option<i64>,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO codes (code_hash, kind, tp_id, app_id, expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![code_hash, kind.as_str(), tp_id, app_id, expires_at_ms, now_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn code_usable(
        &self,
        kind: CodeKind,
        code_hash: String,
        tp_id: i64,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM codes WHERE code_hash = ?1 AND kind = ?2 AND tp_id = ?3 AND used_at IS NULL AND expires_at > ?4",
                params![code_hash, kind.as_str(), tp_id, now_ms],
                |r| r.get::<_, i64>(0),
            )? == 1)
        })
        .await
    }

    async fn approve(
        &self,
        a: Approval,
        now_ms: i64,
    ) -> StoreResult<std::result::Result<(), AuthRefusal>> {
        self.write(move |tx| {
            // The conditional update is what makes a pre-auth code single-use.
            let used = tx.execute(
                "UPDATE codes SET used_at = ?1 WHERE code_hash = ?2 AND kind = 'pre_auth' AND tp_id = ?3 AND used_at IS NULL AND expires_at > ?1",
                params![now_ms, a.pre_auth_hash, a.code.tp_id],
            )?;
            if used != 1 {
                return Ok(Err(AuthRefusal::PreAuthCodeInvalid));
            }
            if !switch_authorization(tx, a.code.tp_id, a.code.app_id, &a.code, now_ms)? {
                return Ok(Err(AuthRefusal::AppUnknown));
            }
            Ok(Ok(()))
        })
        .await
    }

    async fn exchange_code(
        &self,
        tp_id: i64,
        code_hash: String,
        pair: TokenPair,
        now_ms: i64,
    ) -> StoreResult<Option<i64>> {
        self.write(move |tx| {
            let app_id: Option<Option<i64>> = tx
                .query_row(
                    "UPDATE codes SET used_at = ?1 WHERE code_hash = ?2 AND kind = 'auth' AND tp_id = ?3 AND used_at IS NULL AND expires_at > ?1 RETURNING app_id",
                    params![now_ms, code_hash, tp_id],
                    |r| r.get(0),
                )
                .optional()?;
            match app_id {
                // The code's hash names the family of every token it yields.
                Some(app_id) => pair_if_authorized(tx, tp_id, app_id, &pair, &code_hash, now_ms),
                None => {
                    let replayed: i64 = tx.query_row(
                        "SELECT COUNT(*) FROM codes WHERE code_hash = ?1 AND kind = 'auth' AND tp_id = ?2 AND used_at IS NOT NULL",
                        params![code_hash, tp_id],
                        |r| r.get(0),
                    )?;
                    if replayed == 1 {
                        let n = revoke_family(tx, &code_hash)?;
                        tracing::warn!(tp_id, revoked = n, "authorization code replayed: revoked the tokens issued from it");
                    }
                    Ok(None)
                }
            }
        })
        .await
    }

    async fn refresh(
        &self,
        tp_id: i64,
        refresh_hash: String,
        pair: TokenPair,
        now_ms: i64,
    ) -> StoreResult<Option<i64>> {
        self.write(move |tx| {
            // Marking it used is what makes a refresh token single-use.
            let found: Option<(Option<i64>, Option<String>)> = tx
                .query_row(
                    "UPDATE access_tokens SET used_at = ?3 WHERE token_hash = ?1 AND kind = 'refresh' AND tp_id = ?2 AND used_at IS NULL AND expires_at > ?3 RETURNING app_id, family",
                    params![refresh_hash, tp_id, now_ms],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match found {
                Some((app_id, family)) => {
                    let family = family.unwrap_or_else(|| refresh_hash.clone());
                    pair_if_authorized(tx, tp_id, app_id, &pair, &family, now_ms)
                }
                None => {
                    let replayed: Option<Option<String>> = tx
                        .query_row(
                            "SELECT family FROM access_tokens WHERE token_hash = ?1 AND kind = 'refresh' AND tp_id = ?2 AND used_at IS NOT NULL",
                            params![refresh_hash, tp_id],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if let Some(Some(family)) = replayed {
                        let n = revoke_family(tx, &family)?;
                        tracing::warn!(tp_id, revoked = n, "refresh token replayed: revoked the tokens issued from its authorization");
                    }
                    Ok(None)
                }
            }
        })
        .await
    }

    async fn revoke(&self, tp_id: i64, app_id: i64, now_ms: i64) -> StoreResult<bool> {
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE apps SET tp_id = NULL WHERE app_id = ?1 AND tp_id = ?2",
                params![app_id, tp_id],
            )?;
            if n == 0 {
                return Ok(false);
            }
            end_authorization(tx, tp_id, app_id, now_ms)?;
            Ok(true)
        })
        .await
    }
}
