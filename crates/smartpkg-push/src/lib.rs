//! The push codecs of Baidu's smart-program platform (spec §5) and of WeChat's third-party
//! platform ([`wechat`]), for both ends: seal what a platform sends, open (verify the
//! signature, decrypt, check the addressee) what a third party receives. The two share one
//! cipher; Baidu's message is JSON in a JSON body, WeChat's XML in an XML body with the
//! signature in the query string. No I/O, no randomness of its own (the random prefix, nonce
//! and time are inputs), and nothing else of smartpkg: a third party can depend on this crate
//! alone.

pub mod wechat;

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
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
    let encrypt = encrypt(msg, s)?;
    Ok(SignedMessage {
        msg_signature: signature(s.token, s.timestamp, s.nonce, &encrypt),
        nonce: s.nonce.to_string(),
        timestamp: s.timestamp.to_string(),
        encrypt,
    })
}

/// The `Encrypt` value of both dialects: base64 of the padded, encrypted plaintext.
pub(crate) fn encrypt(msg: &str, s: &Sealing<'_>) -> Result<String, PushCryptoError> {
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
    Ok(base64::engine::general_purpose::STANDARD.encode(cipher))
}

type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// Why a received push was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the signature does not match (wrong token, or the message was altered)")]
    BadSignature,
    #[error("{0}")]
    Key(#[from] PushCryptoError),
    #[error("Encrypt is not base64 of whole AES blocks")]
    BadCiphertext,
    #[error("the decrypted message is malformed: {0}")]
    Malformed(&'static str),
    #[error("the message is for client id {0:?}, not this third party")]
    WrongClientId(String),
}

/// A push that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The message, as the platform wrote it (JSON text).
    pub msg: String,
    pub client_id: String,
}

/// Verifies `m`'s signature with `token`, decrypts it with `encoding_aes_key`, and checks that
/// it is addressed to `client_id`.
pub fn open(
    m: &SignedMessage,
    encoding_aes_key: &str,
    token: &str,
    client_id: &str,
) -> Result<Opened, OpenError> {
    let opened = open_any_client(m, encoding_aes_key, token)?;
    if opened.client_id != client_id {
        return Err(OpenError::WrongClientId(opened.client_id));
    }
    Ok(opened)
}

/// As [`open`], for a receiver that does not know its client id: the signature and the
/// decryption still prove the sender holds the token and key; [`Opened::client_id`] says
/// whom the platform addressed.
pub fn open_any_client(
    m: &SignedMessage,
    encoding_aes_key: &str,
    token: &str,
) -> Result<Opened, OpenError> {
    verify(token, &m.timestamp, &m.nonce, &m.encrypt, &m.msg_signature)?;
    decrypt(&m.encrypt, encoding_aes_key)
}

/// Checks a signature, compared whole (both are hex of fixed length): a mismatch says nothing
/// useful about where it differs.
pub(crate) fn verify(
    token: &str,
    timestamp: &str,
    nonce: &str,
    encrypt: &str,
    given: &str,
) -> Result<(), OpenError> {
    let expected = signature(token, timestamp, nonce, encrypt);
    if expected.len() != given.len()
        || expected
            .bytes()
            .zip(given.to_ascii_lowercase().bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
    {
        return Err(OpenError::BadSignature);
    }
    Ok(())
}

/// Decrypts an `Encrypt` value of either dialect into the message and the id it names.
pub(crate) fn decrypt(encrypt: &str, encoding_aes_key: &str) -> Result<Opened, OpenError> {
    let key = aes_key(encoding_aes_key)?;
    let mut data = base64::engine::general_purpose::STANDARD
        .decode(encrypt.trim())
        .map_err(|_| OpenError::BadCiphertext)?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(OpenError::BadCiphertext);
    }
    let plain = Aes256CbcDec::new(&key.into(), key[..16].into())
        .decrypt_padded_mut::<NoPadding>(&mut data)
        .map_err(|_| OpenError::BadCiphertext)?;
    let pad = *plain.last().ok_or(OpenError::Malformed("empty"))? as usize;
    if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
        return Err(OpenError::Malformed("bad padding"));
    }
    let body = &plain[..plain.len() - pad];
    if body.len() < 20 {
        return Err(OpenError::Malformed("too short"));
    }
    let len = u32::from_be_bytes([body[16], body[17], body[18], body[19]]) as usize;
    let rest = &body[20..];
    if len > rest.len() {
        return Err(OpenError::Malformed("length past the end"));
    }
    let msg = std::str::from_utf8(&rest[..len]).map_err(|_| OpenError::Malformed("not UTF-8"))?;
    let to = std::str::from_utf8(&rest[len..]).map_err(|_| OpenError::Malformed("not UTF-8"))?;
    Ok(Opened {
        msg: msg.to_string(),
        client_id: to.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &str = r#"{"appId":1452365,"tpAppId":17328232,"eventTime":"2019-01-14 12:45:10","event":"PACKAGE_AUDIT_PASS","packageId":58210,"packageVersion":"1.0.3"}"#;
    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const TOKEN: &str = "tp_msg_token_123";
    const CLIENT: &str = "dMzkGPRdMbLAeTMvwOF9XTT1Rbk6AA7d";

    fn vector() -> SignedMessage {
        seal(
            MSG,
            &Sealing {
                encoding_aes_key: KEY,
                token: TOKEN,
                client_id: CLIENT,
                random16: *b"0123456789abcdef",
                timestamp: "1535551395",
                nonce: "4464221",
            },
        )
        .expect("sealed")
    }

    #[test]
    fn the_spec_test_vector_is_reproduced_byte_for_byte() {
        let sealed = vector();
        assert_eq!(sealed.encrypt, "Q3stYC6hdFzMh9T8HCvyDNKgftCOySPnvwL0pso25O3CjyfLy9/+loejNbq7y06cMHBn2LbzVXv5Z5dOco5+mniL9noKA68HmYPH1ZMDNx5jDLGWV2PwxCw+LAd30+OWoYq5I/hCUKH++uc3B7V58/nGZVVR8bS4atyv6UHAabb7Ossp1/HFWR2pImsBCKsCtQQ04zdfTYuB9HWeZGOlfMn8JcvLDuQhxpRqDYnttYeEquoTYn4GO6sD+maqtXpElbke21IkJ3kyXGRXAYJEqHwPh0ldmjhs+tDPvw/xDqo=");
        assert_eq!(
            sealed.msg_signature,
            "9daea056377fac808a68adffa6983e37e34e5b47"
        );
    }

    #[test]
    fn opening_the_spec_vector_gives_back_the_message() {
        let opened = open(&vector(), KEY, TOKEN, CLIENT).expect("opens");
        assert_eq!(opened.msg, MSG);
        assert_eq!(opened.client_id, CLIENT);
    }

    #[test]
    fn a_wrong_token_an_altered_message_or_another_client_is_refused() {
        let v = vector();
        assert_eq!(open(&v, KEY, "other", CLIENT), Err(OpenError::BadSignature));
        let mut altered = v.clone();
        altered.nonce = "1".into();
        assert_eq!(
            open(&altered, KEY, TOKEN, CLIENT),
            Err(OpenError::BadSignature)
        );
        assert!(matches!(
            open(&v, KEY, TOKEN, "someone-else"),
            Err(OpenError::WrongClientId(_))
        ));
        // A ciphertext re-signed by someone holding the token but not the key.
        let mut forged = v;
        forged.encrypt = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
        forged.msg_signature = signature(TOKEN, &forged.timestamp, &forged.nonce, &forged.encrypt);
        assert!(open(&forged, KEY, TOKEN, CLIENT).is_err());
    }

    #[test]
    fn a_malformed_key_is_refused() {
        assert_eq!(aes_key("short"), Err(PushCryptoError::BadKey));
        assert_eq!(aes_key(&"*".repeat(43)), Err(PushCryptoError::BadKey));
    }
}
