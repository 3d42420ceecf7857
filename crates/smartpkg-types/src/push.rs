//! What the platform pushes to a third party, as it reads after decryption (spec §4 item 1,
//! item 8, and §5).

use serde::{Deserialize, Serialize};

pub const AUDIT_PASS: &str = "PACKAGE_AUDIT_PASS";
pub const AUDIT_FAIL: &str = "PACKAGE_AUDIT_FAIL";
pub const AUTHORIZED: &str = "AUTHORIZED";
pub const UPDATE_AUTHORIZED: &str = "UPDATE_AUTHORIZED";
pub const UNAUTHORIZED: &str = "UNAUTHORIZED";
/// smartpkg's extension: the scheduler advanced a staged release's plan (or finished it).
pub const GRAY_ADVANCED: &str = "PACKAGE_GRAY_ADVANCED";
/// smartpkg's extension: the scheduler halted a staged release's plan on its figures.
pub const GRAY_HALTED: &str = "PACKAGE_GRAY_HALTED";

/// The ticket pushed every ten minutes to the authorization-event URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketPush {
    #[serde(rename = "Ticket")]
    pub ticket: String,
    #[serde(rename = "FromUserName")]
    pub from_user_name: String,
    /// Unix seconds.
    #[serde(rename = "CreateTime")]
    pub create_time: i64,
    /// `ticket`.
    #[serde(rename = "MsgType")]
    pub msg_type: String,
    /// `push`.
    #[serde(rename = "Event")]
    pub event: String,
}

/// AUTHORIZED, UPDATE_AUTHORIZED (both with a fresh authorization code) or UNAUTHORIZED.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationPush {
    #[serde(rename = "appId")]
    pub app_id: i64,
    #[serde(rename = "tpAppId")]
    pub tp_app_id: i64,
    /// `YYYY-MM-DD HH:MM:SS`.
    #[serde(rename = "eventTime")]
    pub event_time: String,
    pub event: String,
    #[serde(
        rename = "authorizationCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub authorization_code: Option<String>,
    #[serde(
        rename = "authorizationCodeExpiresIn",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub authorization_code_expires_in: Option<i64>,
}

/// The package audit result, fields in Baidu's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditResultPush {
    #[serde(rename = "appId")]
    pub app_id: i64,
    #[serde(rename = "tpAppId")]
    pub tp_app_id: i64,
    /// `YYYY-MM-DD HH:MM:SS`.
    #[serde(rename = "eventTime")]
    pub event_time: String,
    /// [`AUDIT_PASS`] or [`AUDIT_FAIL`].
    pub event: String,
    /// Only on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(rename = "packageId")]
    pub package_id: i64,
    #[serde(rename = "packageVersion")]
    pub package_version: String,
}

impl AuditResultPush {
    pub fn passed(&self) -> bool {
        self.event == AUDIT_PASS
    }
}

/// A staged release's plan moved (smartpkg's extension), in the audit events' shape plus the
/// share of devices it has now and where the plan stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrayReleasePush {
    #[serde(rename = "appId")]
    pub app_id: i64,
    #[serde(rename = "tpAppId")]
    pub tp_app_id: i64,
    #[serde(rename = "eventTime")]
    pub event_time: String,
    /// [`GRAY_ADVANCED`] or [`GRAY_HALTED`].
    pub event: String,
    /// Why it halted: the figures that tripped the gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(rename = "packageId")]
    pub package_id: i64,
    #[serde(rename = "packageVersion")]
    pub package_version: String,
    /// The share of devices the package has now (0 once halted, 100 once finished).
    #[serde(rename = "grayPercentage")]
    pub gray_percentage: i64,
    /// `running`, `halted` or `finished`.
    #[serde(rename = "grayStatus")]
    pub gray_status: String,
}

/// Any decrypted push, told apart by its fields.
#[derive(Debug, Clone, PartialEq)]
pub enum PushEvent {
    Ticket(TicketPush),
    Authorization(AuthorizationPush),
    AuditResult(AuditResultPush),
    GrayRelease(GrayReleasePush),
    /// An event this version does not know (Baidu's batch-task events, say), kept whole.
    Other(serde_json::Value),
}

impl PushEvent {
    /// Reads a decrypted message.
    pub fn parse(msg: &str) -> Result<PushEvent, serde_json::Error> {
        let v: serde_json::Value = serde_json::from_str(msg)?;
        if v.get("MsgType").and_then(|t| t.as_str()) == Some("ticket") {
            return serde_json::from_value(v).map(PushEvent::Ticket);
        }
        match v.get("event").and_then(|e| e.as_str()) {
            Some(AUDIT_PASS | AUDIT_FAIL) => serde_json::from_value(v).map(PushEvent::AuditResult),
            Some(GRAY_ADVANCED | GRAY_HALTED) => {
                serde_json::from_value(v).map(PushEvent::GrayRelease)
            }
            Some(AUTHORIZED | UPDATE_AUTHORIZED | UNAUTHORIZED) => {
                serde_json::from_value(v).map(PushEvent::Authorization)
            }
            _ => Ok(PushEvent::Other(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_audit_event_parses_as_an_audit_result() {
        let msg = r#"{"appId":1452365,"tpAppId":17328232,"eventTime":"2019-01-14 12:45:10","event":"PACKAGE_AUDIT_FAIL","reason":"名称过长","packageId":58210,"packageVersion":"1.0.3"}"#;
        let PushEvent::AuditResult(e) = PushEvent::parse(msg).expect("parses") else {
            panic!("not an audit result");
        };
        assert!(!e.passed());
        assert_eq!(e.package_id, 58210);
        assert_eq!(serde_json::to_string(&e).expect("encodes"), msg);
    }

    #[test]
    fn tickets_and_authorizations_are_told_apart() {
        let t = r#"{"Ticket":"t","FromUserName":"SmartAPP","CreateTime":1,"MsgType":"ticket","Event":"push"}"#;
        assert!(matches!(PushEvent::parse(t), Ok(PushEvent::Ticket(_))));
        let a =
            r#"{"appId":1,"tpAppId":2,"eventTime":"2019-01-14 12:45:10","event":"UNAUTHORIZED"}"#;
        assert!(matches!(
            PushEvent::parse(a),
            Ok(PushEvent::Authorization(_))
        ));
        let o = r#"{"event":"BATCH_TASK_UPLOAD_PACKAGE_SUCCESS"}"#;
        assert!(matches!(PushEvent::parse(o), Ok(PushEvent::Other(_))));
    }
}
