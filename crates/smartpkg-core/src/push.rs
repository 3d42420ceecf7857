//! Pushes to a third party: the audit-result event they carry and the hold policy of failing
//! targets. The wire codec (seal, open) is the `smartpkg-push` crate, re-exported here.

pub use smartpkg_push::{
    aes_key, open, seal, signature, OpenError, Opened, PushCryptoError, Sealing, SignedMessage,
};

/// The payloads themselves are wire types, shared with the client.
pub use smartpkg_types::push::{AuditResultPush, AUDIT_FAIL, AUDIT_PASS};

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
