//! [`TenantStore`] on every SQL backend.

use async_trait::async_trait;
use smartpkg_core::ids::{AppId, TpId};

use super::{read, write, Sql, Tx};
use crate::{App, AppPatch, Columns, NewApp, NewTp, Result, StoreError, TenantStore, Tp, TpPatch};

const TP_BY_ID: &str = concat!(
    "SELECT ",
    crate::tp_columns!(),
    " FROM tps WHERE tp_id = $1"
);
const APP_BY_ID: &str = concat!(
    "SELECT ",
    crate::app_columns!(),
    " FROM apps WHERE app_id = $1"
);

#[async_trait]
impl<S: Sql> TenantStore for S {
    async fn create_tp(&self, tp: NewTp) -> Result<Tp> {
        write(self, move |tx| {
            Box::pin(async move {
                let id = tx
                    .int(
                        "INSERT INTO tps (client_id, name, event_url, auth_event_url, msg_token, \
                           encoding_aes_key, audit_quota, created_at, redirect_domain, \
                           component_appid, component_secret_hash, wechat_token, \
                           wechat_encoding_aes_key, wechat_auth_event_url, wechat_message_url) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                         RETURNING tp_id AS n",
                        args![
                            &tp.client_id,
                            &tp.name,
                            &tp.event_url,
                            &tp.auth_event_url,
                            &tp.msg_token,
                            &tp.encoding_aes_key,
                            tp.audit_quota,
                            now_ms(),
                            &tp.redirect_domain,
                            &tp.wechat.component_appid,
                            &tp.component_secret_hash,
                            &tp.wechat.token,
                            &tp.wechat.encoding_aes_key,
                            &tp.wechat.auth_event_url,
                            &tp.wechat.message_url
                        ],
                    )
                    .await?;
                Ok(tp.stored(TpId(id)))
            })
        })
        .await
    }

    async fn update_tp(&self, tp_id: TpId, p: TpPatch) -> Result<Tp> {
        write(self, move |tx| {
            Box::pin(async move {
                let n = tx
                    .exec(
                        "UPDATE tps SET name = COALESCE($1, name), event_url = COALESCE($2, event_url), \
                           auth_event_url = COALESCE($3, auth_event_url), msg_token = COALESCE($4, msg_token), \
                           encoding_aes_key = COALESCE($5, encoding_aes_key), \
                           audit_quota = CASE WHEN $6 THEN $7 ELSE audit_quota END, \
                           redirect_domain = COALESCE($9, redirect_domain), \
                           wechat_auth_event_url = COALESCE($10, wechat_auth_event_url), \
                           wechat_message_url = COALESCE($11, wechat_message_url), \
                           wechat_token = COALESCE($12, wechat_token), \
                           wechat_encoding_aes_key = COALESCE($13, wechat_encoding_aes_key) \
                         WHERE tp_id = $8",
                        args![&p.name, &p.event_url, &p.auth_event_url, &p.msg_token,
                            &p.encoding_aes_key, p.audit_quota.is_some(), p.audit_quota.flatten(),
                            tp_id, &p.redirect_domain,
                            &p.wechat_auth_event_url,
                            &p.wechat_message_url,
                            &p.wechat_token,
                            &p.wechat_encoding_aes_key],
                    )
                    .await?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("tp {tp_id}")));
                }
                Tp::from_row(&tx.one(TP_BY_ID, args![tp_id]).await?)
            })
        })
        .await
    }

    async fn get_tp(&self, tp_id: TpId) -> Result<Option<Tp>> {
        read(self, move |tx| {
            Box::pin(async move {
                let row = tx.opt(TP_BY_ID, args![tp_id]).await?;
                row.as_ref().map(Tp::from_row).transpose()
            })
        })
        .await
    }

    async fn get_tp_by_client_id(&self, client_id: String) -> Result<Option<Tp>> {
        read(self, move |tx| {
            Box::pin(async move {
                let sql = concat!(
                    "SELECT ",
                    crate::tp_columns!(),
                    " FROM tps WHERE client_id = $1"
                );
                let row = tx.opt(sql, args![&client_id]).await?;
                row.as_ref().map(Tp::from_row).transpose()
            })
        })
        .await
    }

    async fn tps_with_auth_url(&self) -> Result<Vec<Tp>> {
        read(self, move |tx| {
            Box::pin(async move {
                let sql = concat!(
                    "SELECT ",
                    crate::tp_columns!(),
                     " FROM tps WHERE auth_event_url <> '' OR wechat_auth_event_url <> '' ORDER BY tp_id"
                );
                super::decode(tx.rows(sql, args![]).await?, Tp::from_row)
            })
        })
        .await
    }

    async fn get_tp_by_component_appid(&self, component_appid: String) -> Result<Option<Tp>> {
        work!(read, self, |tx| {
            let sql = concat!(
                "SELECT ",
                crate::tp_columns!(),
                " FROM tps WHERE component_appid = $1"
            );
            let row = tx.opt(sql, args![&component_appid]).await?;
            row.as_ref().map(Tp::from_row).transpose()
        })
    }

    async fn set_component_secret(&self, tp_id: TpId, hash: String) -> Result<bool> {
        work!(write, self, |tx| {
            let sql = "UPDATE tps SET component_secret_hash = $1 WHERE tp_id = $2";
            Ok(tx.exec(sql, args![&hash, tp_id]).await? == 1)
        })
    }

    async fn component_secret_hash(&self, tp_id: TpId) -> Result<Option<String>> {
        work!(read, self, |tx| {
            let sql = "SELECT component_secret_hash AS h FROM tps WHERE tp_id = $1";
            match tx.opt(sql, args![tp_id]).await? {
                Some(r) => r.opt_string("h"),
                None => Ok(None),
            }
        })
    }

    async fn get_app_by_wx_appid(&self, wx_appid: String) -> Result<Option<App>> {
        work!(read, self, |tx| {
            let sql = concat!(
                "SELECT ",
                crate::app_columns!(),
                " FROM apps WHERE wx_appid = $1"
            );
            let row = tx.opt(sql, args![&wx_appid]).await?;
            row.as_ref().map(App::from_row).transpose()
        })
    }

    async fn create_app(&self, app: NewApp) -> Result<App> {
        write(self, move |tx| {
            Box::pin(async move {
                let id = tx
                    .int(
                        "INSERT INTO apps (app_key, name, name_audited, category_audited, \
                           authenticity_certified, tp_id, created_at, wx_appid) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING app_id AS n",
                        args![
                            &app.app_key,
                            &app.name,
                            app.name_audited,
                            app.category_audited,
                            app.authenticity_certified,
                            app.tp_id,
                            now_ms(),
                            &app.wx_appid
                        ],
                    )
                    .await?;
                Ok(app.stored(AppId(id)))
            })
        })
        .await
    }

    async fn update_app(&self, app_id: AppId, p: AppPatch) -> Result<App> {
        write(self, move |tx| {
            Box::pin(async move {
                let n = tx
                    .exec(
                        "UPDATE apps SET name = COALESCE($1, name), \
                           name_audited = COALESCE($2, name_audited), \
                           category_audited = COALESCE($3, category_audited), \
                           authenticity_certified = COALESCE($4, authenticity_certified) \
                         WHERE app_id = $5",
                        args![
                            &p.name,
                            p.name_audited,
                            p.category_audited,
                            p.authenticity_certified,
                            app_id
                        ],
                    )
                    .await?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("app {app_id}")));
                }
                App::from_row(&tx.one(APP_BY_ID, args![app_id]).await?)
            })
        })
        .await
    }

    async fn get_app(&self, app_id: AppId) -> Result<Option<App>> {
        read(self, move |tx| {
            Box::pin(async move {
                let row = tx.opt(APP_BY_ID, args![app_id]).await?;
                row.as_ref().map(App::from_row).transpose()
            })
        })
        .await
    }

    async fn set_owner_password(&self, app_id: AppId, hash: String) -> Result<bool> {
        write(self, move |tx| {
            Box::pin(async move {
                let sql = "UPDATE apps SET owner_password_hash = $1 WHERE app_id = $2";
                Ok(tx.exec(sql, args![&hash, app_id]).await? == 1)
            })
        })
        .await
    }

    async fn owner_password_hash(&self, app_id: AppId) -> Result<Option<String>> {
        read(self, move |tx| {
            Box::pin(async move {
                let sql = "SELECT owner_password_hash AS h FROM apps WHERE app_id = $1";
                match tx.opt(sql, args![app_id]).await? {
                    Some(r) => r.opt_string("h"),
                    None => Ok(None),
                }
            })
        })
        .await
    }

    async fn server_secret(&self, name: &'static str) -> Result<String> {
        write(self, move |tx| {
            Box::pin(async move {
                // The first caller's random value wins; every later one reads it.
                let fresh = hex::encode(rand::random::<[u8; 32]>());
                tx.exec(
                    "INSERT INTO server_secrets (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                    args![name, &fresh],
                )
                .await?;
                let sql = "SELECT value FROM server_secrets WHERE name = $1";
                tx.one(sql, args![name]).await?.string("value")
            })
        })
        .await
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
