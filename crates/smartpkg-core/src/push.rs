//! Pushes to a third party: the audit-result event they carry and the hold policy of failing
//! targets. The wire codec (seal, open) is the `smartpkg-push` crate, re-exported here.

pub use smartpkg_push::wechat;
pub use smartpkg_push::{
    aes_key, open, seal, signature, OpenError, Opened, PushCryptoError, Sealing, SignedMessage,
};

/// The payloads themselves are wire types, shared with the client.
pub use smartpkg_types::push::{AuditResultPush, AUDIT_FAIL, AUDIT_PASS};
use smartpkg_types::push::{
    TicketPush, AUTHORIZED, GRAY_ADVANCED, GRAY_HALTED, UNAUTHORIZED, UPDATE_AUTHORIZED,
};

/// A plain authorization code, as the event that hands it to the third party carries it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeGrant {
    pub authorization_code: String,
    /// Seconds.
    pub authorization_code_expires_in: i64,
}

/// What a push tells a third party, typed from the decision that makes it to the face that
/// writes its body: each dialect renders these, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The ticket the third party trades for its token (every few minutes).
    Ticket {
        ticket: String,
        create_time_s: i64,
    },
    /// WeChat's `component_verify_ticket`, the same for the WeChat dialect: pushed to the
    /// WeChat authorization-event URL, in WeChat's envelope only.
    WechatTicket {
        ticket: String,
        create_time_s: i64,
    },
    AuditPassed {
        package_id: i64,
        version: String,
    },
    AuditFailed {
        package_id: i64,
        version: String,
        reason: String,
    },
    /// A staged release's plan moved (smartpkg's extension): advanced to `percent`, or
    /// finished (`percent` 100, released), or halted (`percent` 0) for `reason`.
    GrayChanged {
        package_id: i64,
        version: String,
        halted: bool,
        percent: i64,
        status: String,
        reason: String,
    },
    Authorized(CodeGrant),
    /// Authorized again to the same third party: a fresh code.
    UpdateAuthorized(CodeGrant),
    Unauthorized,
}

/// An event as the outbox's columns keep it. The names and the payload's JSON are the ones
/// every version has written, so events queued before an upgrade still read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventColumns {
    pub name: &'static str,
    pub package_id: Option<i64>,
    pub reason: Option<String>,
    pub package_version: String,
    pub payload: Option<String>,
    /// Tickets and authorization events go to the authorization-event URL; audit results
    /// to the message URL.
    pub to_auth_url: bool,
}

const TICKET: &str = "ticket";

/// A plan's move as the outbox keeps it (beside the package and reason columns).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredGray {
    percent: i64,
    status: String,
}
const WECHAT_TICKET: &str = "component_verify_ticket";

/// A WeChat ticket as the outbox keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredTicket {
    ticket: String,
    create_time: i64,
}

impl Event {
    pub fn columns(&self) -> EventColumns {
        let auth = |name, payload| EventColumns {
            name,
            package_id: None,
            reason: None,
            package_version: String::new(),
            payload,
            to_auth_url: true,
        };
        // Serializing these plain structs cannot fail; if it did, the missing payload would
        // read back as an error, never as a wrong code.
        fn json<T: serde::Serialize>(v: &T) -> Option<String> {
            serde_json::to_string(v).ok()
        }
        match self {
            Event::Ticket {
                ticket,
                create_time_s,
            } => auth(TICKET, json(&baidu_ticket(ticket, *create_time_s))),
            Event::WechatTicket {
                ticket,
                create_time_s,
            } => auth(
                WECHAT_TICKET,
                json(&StoredTicket {
                    ticket: ticket.clone(),
                    create_time: *create_time_s,
                }),
            ),
            Event::Authorized(code) => auth(AUTHORIZED, json(code)),
            Event::UpdateAuthorized(code) => auth(UPDATE_AUTHORIZED, json(code)),
            Event::Unauthorized => auth(UNAUTHORIZED, None),
            Event::AuditPassed {
                package_id,
                version,
            } => EventColumns {
                name: AUDIT_PASS,
                package_id: Some(*package_id),
                reason: None,
                package_version: version.clone(),
                payload: None,
                to_auth_url: false,
            },
            Event::GrayChanged {
                package_id,
                version,
                halted,
                percent,
                status,
                reason,
            } => EventColumns {
                name: if *halted { GRAY_HALTED } else { GRAY_ADVANCED },
                package_id: Some(*package_id),
                reason: Some(reason.clone()).filter(|r| !r.is_empty()),
                package_version: version.clone(),
                payload: json(&StoredGray {
                    percent: *percent,
                    status: status.clone(),
                }),
                to_auth_url: false,
            },
            Event::AuditFailed {
                package_id,
                version,
                reason,
            } => EventColumns {
                name: AUDIT_FAIL,
                package_id: Some(*package_id),
                reason: Some(reason.clone()),
                package_version: version.clone(),
                payload: None,
                to_auth_url: false,
            },
        }
    }

    /// Reads an event back from its columns.
    pub fn from_columns(
        name: &str,
        package_id: Option<i64>,
        reason: Option<&str>,
        package_version: &str,
        payload: Option<&str>,
    ) -> Result<Event, String> {
        let payload_of =
            |what: &str| payload.ok_or_else(|| format!("the {what} event has lost its payload"));
        let code = |what: &str| -> Result<CodeGrant, String> {
            serde_json::from_str(payload_of(what)?).map_err(|e| format!("{what} payload: {e}"))
        };
        let package = || package_id.ok_or_else(|| format!("the {name} event has no package"));
        Ok(match name {
            TICKET => {
                let t: TicketPush = serde_json::from_str(payload_of(TICKET)?)
                    .map_err(|e| format!("ticket payload: {e}"))?;
                Event::Ticket {
                    ticket: t.ticket,
                    create_time_s: t.create_time,
                }
            }
            WECHAT_TICKET => {
                let t: StoredTicket = serde_json::from_str(payload_of(WECHAT_TICKET)?)
                    .map_err(|e| format!("ticket payload: {e}"))?;
                Event::WechatTicket {
                    ticket: t.ticket,
                    create_time_s: t.create_time,
                }
            }
            AUTHORIZED => Event::Authorized(code(AUTHORIZED)?),
            UPDATE_AUTHORIZED => Event::UpdateAuthorized(code(UPDATE_AUTHORIZED)?),
            UNAUTHORIZED => Event::Unauthorized,
            AUDIT_PASS => Event::AuditPassed {
                package_id: package()?,
                version: package_version.to_string(),
            },
            AUDIT_FAIL => Event::AuditFailed {
                package_id: package()?,
                version: package_version.to_string(),
                reason: reason.unwrap_or_default().to_string(),
            },
            GRAY_ADVANCED | GRAY_HALTED => {
                let g: StoredGray = serde_json::from_str(payload_of(name)?)
                    .map_err(|e| format!("{name} payload: {e}"))?;
                Event::GrayChanged {
                    package_id: package()?,
                    version: package_version.to_string(),
                    halted: name == GRAY_HALTED,
                    percent: g.percent,
                    status: g.status,
                    reason: reason.unwrap_or_default().to_string(),
                }
            }
            other => return Err(format!("unknown event {other:?}")),
        })
    }

    /// The audit result of a decision.
    pub fn audit(package_id: i64, version: String, pass: bool, reason: &str) -> Event {
        if pass {
            Event::AuditPassed {
                package_id,
                version,
            }
        } else {
            Event::AuditFailed {
                package_id,
                version,
                reason: reason.to_string(),
            }
        }
    }

    /// The event's name on Baidu's wire (the `event` field; `ticket` for tickets).
    pub fn name(&self) -> &'static str {
        self.columns().name
    }

    /// The dialect a push of this event is written in for a third party whose URLs for the
    /// event's channel are set as given: a ticket's own; otherwise Baidu's when its URL is
    /// set (or neither is), WeChat's when only WeChat's is (docs/wechat.md).
    pub fn dialect_for(
        &self,
        baidu_url_set: bool,
        wechat_url_set: bool,
    ) -> crate::dialect::Dialect {
        use crate::dialect::Dialect;
        match self.fixed_dialect() {
            Some(fixed) => fixed,
            None if !baidu_url_set && wechat_url_set => Dialect::Wechat,
            None => Dialect::Baidu,
        }
    }

    /// The dialect the event can only be written in (each dialect's ticket buys that
    /// dialect's token); None for events written in whichever dialect the third party's
    /// settings name.
    pub fn fixed_dialect(&self) -> Option<crate::dialect::Dialect> {
        match self {
            Event::Ticket { .. } => Some(crate::dialect::Dialect::Baidu),
            Event::WechatTicket { .. } => Some(crate::dialect::Dialect::Wechat),
            _ => None,
        }
    }
}

/// The ticket message exactly as Baidu's platform sends it.
pub fn baidu_ticket(ticket: &str, create_time_s: i64) -> TicketPush {
    TicketPush {
        ticket: ticket.to_string(),
        from_user_name: "SmartAPP".into(),
        create_time: create_time_s,
        msg_type: "ticket".into(),
        event: "push".into(),
    }
}

/// When a push target that keeps failing is put on hold, and for how long: after
/// `after_failures` failures in a row, for `base_ms` doubled with each further failure, at
/// most `max_ms`, scaled by `jitter` (0.8–1.2, random per call) so held targets do not all
/// come back at the same moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldPolicy {
    pub after_failures: i64,
    pub base_ms: i64,
    pub max_ms: i64,
    pub jitter: f64,
}

impl HoldPolicy {
    /// The hold that `failures` consecutive failures earn, if any.
    pub fn hold_ms(&self, failures: i64) -> Option<i64> {
        if self.after_failures <= 0 || failures < self.after_failures {
            return None;
        }
        let doublings = (failures - self.after_failures).clamp(0, 30) as u32;
        let raw = self
            .base_ms
            .saturating_mul(1i64 << doublings)
            .min(self.max_ms);
        let jitter = self.jitter.clamp(0.5, 1.5);
        Some(((raw as f64) * jitter) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_serializes_in_baidus_shape() {
        let e = AuditResultPush {
            app_id: 1452365,
            tp_app_id: 17328232,
            event_time: "2019-01-14 12:45:10".into(),
            event: AUDIT_PASS.into(),
            reason: None,
            package_id: 58210,
            package_version: "1.0.3".into(),
        };
        assert_eq!(
            serde_json::to_string(&e).expect("json"),
            r#"{"appId":1452365,"tpAppId":17328232,"eventTime":"2019-01-14 12:45:10","event":"PACKAGE_AUDIT_PASS","packageId":58210,"packageVersion":"1.0.3"}"#
        );
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;

    #[test]
    fn every_event_reads_back_from_its_columns() {
        let code = CodeGrant {
            authorization_code: "c0de".into(),
            authorization_code_expires_in: 3600,
        };
        let all = [
            Event::Ticket {
                ticket: "t".into(),
                create_time_s: 17,
            },
            Event::WechatTicket {
                ticket: "w".into(),
                create_time_s: 18,
            },
            Event::AuditPassed {
                package_id: 5,
                version: "1.0.0".into(),
            },
            Event::AuditFailed {
                package_id: 5,
                version: "1.0.0".into(),
                reason: "名称过长".into(),
            },
            Event::Authorized(code.clone()),
            Event::GrayChanged {
                package_id: 6,
                version: "2.0.0".into(),
                halted: true,
                percent: 0,
                status: "halted".into(),
                reason: "new version fails".into(),
            },
            Event::GrayChanged {
                package_id: 6,
                version: "2.0.0".into(),
                halted: false,
                percent: 20,
                status: "running".into(),
                reason: String::new(),
            },
            Event::UpdateAuthorized(code),
            Event::Unauthorized,
        ];
        for e in all {
            let c = e.columns();
            let back = Event::from_columns(
                c.name,
                c.package_id,
                c.reason.as_deref(),
                &c.package_version,
                c.payload.as_deref(),
            );
            assert_eq!(back, Ok(e));
        }
    }

    #[test]
    fn columns_keep_the_formats_earlier_versions_wrote() {
        let c = Event::Ticket {
            ticket: "t".into(),
            create_time_s: 17,
        }
        .columns();
        assert_eq!(
            c.payload.as_deref(),
            Some(
                r#"{"Ticket":"t","FromUserName":"SmartAPP","CreateTime":17,"MsgType":"ticket","Event":"push"}"#
            )
        );
        let c = Event::Authorized(CodeGrant {
            authorization_code: "x".into(),
            authorization_code_expires_in: 3600,
        })
        .columns();
        assert_eq!(
            c.payload.as_deref(),
            Some(r#"{"authorizationCode":"x","authorizationCodeExpiresIn":3600}"#)
        );
        assert!(Event::from_columns("AUTHORIZED", None, None, "", None).is_err());
        assert!(Event::from_columns("SOMETHING", None, None, "", None).is_err());
    }
}

#[cfg(test)]
mod hold_tests {
    use super::HoldPolicy;

    #[test]
    fn holds_start_at_the_threshold_double_and_stop_at_the_cap() {
        let p = HoldPolicy {
            after_failures: 3,
            base_ms: 1000,
            max_ms: 10_000,
            jitter: 1.0,
        };
        assert_eq!(p.hold_ms(2), None);
        assert_eq!(p.hold_ms(3), Some(1000));
        assert_eq!(p.hold_ms(4), Some(2000));
        assert_eq!(p.hold_ms(6), Some(8000));
        assert_eq!(p.hold_ms(7), Some(10_000));
        assert_eq!(p.hold_ms(500), Some(10_000));
        let jittered = HoldPolicy { jitter: 1.2, ..p };
        assert_eq!(jittered.hold_ms(3), Some(1200));
        let off = HoldPolicy {
            after_failures: 0,
            ..p
        };
        assert_eq!(off.hold_ms(100), None);
    }
}
