//! Pushes to a third party, encrypted and signed exactly as Baidu does (spec §5), and the
//! audit-result event they carry. Pure: the random prefix, nonce and time are inputs.

use aes::cipher::{block_padding::NoPadding, BlockEncryptMut, KeyIvInit};
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::Serialize;
use sha1::{Digest, Sha1};

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;

/// Baidu pads to a multiple of 32 bytes (not AES's 16).
const PAD_BLOCK: usize = 32;

/// The real platform's keys set the unused bits of their last character; decode as it does.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushCryptoError {
    #[error("EncodingAESKey must be 43 base64 characters that decode to 32 bytes")]
    BadKey,
}

/// The 32-byte AES key of a 43-character EncodingAESKey.
pub fn aes_key(encoding_aes_key: &str) -> Result<[u8; 32], PushCryptoError> {
    if encoding_aes_key.len() != 43 {
        return Err(PushCryptoError::BadKey);
    }
    let bytes = LENIENT
        .decode(format!("{encoding_aes_key}="))
        .map_err(|_| PushCryptoError::BadKey)?;
    bytes.try_into().map_err(|_| PushCryptoError::BadKey)
}

/// The body POSTed to the third party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedMessage {
    #[serde(rename = "Nonce")]
    pub nonce: String,
    #[serde(rename = "TimeStamp")]
    pub timestamp: String,
    #[serde(rename = "Encrypt")]
    pub encrypt: String,
    #[serde(rename = "MsgSignature")]
    pub msg_signature: String,
}

/// Lowercase hex SHA-1 of token, timestamp, nonce and ciphertext, sorted and joined.
pub fn signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let mut parts = [token, timestamp, nonce, encrypt];
    parts.sort_unstable();
    hex::encode(Sha1::digest(parts.concat().as_bytes()))
}

pub struct Sealing<'a> {
    pub encoding_aes_key: &'a str,
    pub token: &'a str,
    pub client_id: &'a str,
    pub random16: [u8; 16],
    pub timestamp: &'a str,
    pub nonce: &'a str,
}

/// random16 ‖ u32 BE length ‖ msg ‖ client_id, padded to 32, AES-256-CBC with iv = key[..16].
pub fn seal(msg: &str, s: &Sealing<'_>) -> Result<SignedMessage, PushCryptoError> {
    let key = aes_key(s.encoding_aes_key)?;
    let mut plain = Vec::with_capacity(20 + msg.len() + s.client_id.len() + PAD_BLOCK);
    plain.extend_from_slice(&s.random16);
    plain.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    plain.extend_from_slice(msg.as_bytes());
    plain.extend_from_slice(s.client_id.as_bytes());
    let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
    plain.extend(std::iter::repeat_n(pad as u8, pad));
    let len = plain.len();
    let cipher = Aes256CbcEnc::new(&key.into(), key[..16].into())
        .encrypt_padded_mut::<NoPadding>(&mut plain, len)
        .map_err(|_| PushCryptoError::BadKey)?
        .to_vec();
    let encrypt = base64::engine::general_purpose::STANDARD.encode(cipher);
    Ok(SignedMessage {
        msg_signature: signature(s.token, s.timestamp, s.nonce, &encrypt),
        nonce: s.nonce.to_string(),
        timestamp: s.timestamp.to_string(),
        encrypt,
    })
}

/// The package audit result event (spec §5), fields in Baidu's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    #[serde(rename = "appId")]
    pub app_id: i64,
    #[serde(rename = "tpAppId")]
    pub tp_app_id: i64,
    /// `YYYY-MM-DD HH:MM:SS`.
    #[serde(rename = "eventTime")]
    pub event_time: String,
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(rename = "packageId")]
    pub package_id: i64,
    #[serde(rename = "packageVersion")]
    pub package_version: String,
}

pub const AUDIT_PASS: &str = "PACKAGE_AUDIT_PASS";
pub const AUDIT_FAIL: &str = "PACKAGE_AUDIT_FAIL";

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &str = r#"{"appId":1452365,"tpAppId":17328232,"eventTime":"2019-01-14 12:45:10","event":"PACKAGE_AUDIT_PASS","packageId":58210,"packageVersion":"1.0.3"}"#;

    #[test]
    fn the_spec_test_vector_is_reproduced_byte_for_byte() {
        let sealed = seal(
            MSG,
            &Sealing {
                encoding_aes_key: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
                token: "tp_msg_token_123",
                client_id: "dMzkGPRdMbLAeTMvwOF9XTT1Rbk6AA7d",
                random16: *b"0123456789abcdef",
                timestamp: "1535551395",
                nonce: "4464221",
            },
        )
        .expect("sealed");
        assert_eq!(sealed.encrypt, "Q3stYC6hdFzMh9T8HCvyDNKgftCOySPnvwL0pso25O3CjyfLy9/+loejNbq7y06cMHBn2LbzVXv5Z5dOco5+mniL9noKA68HmYPH1ZMDNx5jDLGWV2PwxCw+LAd30+OWoYq5I/hCUKH++uc3B7V58/nGZVVR8bS4atyv6UHAabb7Ossp1/HFWR2pImsBCKsCtQQ04zdfTYuB9HWeZGOlfMn8JcvLDuQhxpRqDYnttYeEquoTYn4GO6sD+maqtXpElbke21IkJ3kyXGRXAYJEqHwPh0ldmjhs+tDPvw/xDqo=");
        assert_eq!(
            sealed.msg_signature,
            "9daea056377fac808a68adffa6983e37e34e5b47"
        );
    }

    #[test]
    fn the_event_serializes_in_baidus_shape() {
        let e = AuditEvent {
            app_id: 1452365,
            tp_app_id: 17328232,
            event_time: "2019-01-14 12:45:10".into(),
            event: AUDIT_PASS.into(),
            reason: None,
            package_id: 58210,
            package_version: "1.0.3".into(),
        };
        assert_eq!(serde_json::to_string(&e).expect("json"), MSG);
    }

    #[test]
    fn a_malformed_key_is_refused() {
        assert_eq!(aes_key("short"), Err(PushCryptoError::BadKey));
        assert_eq!(aes_key(&"*".repeat(43)), Err(PushCryptoError::BadKey));
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
