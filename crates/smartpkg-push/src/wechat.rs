//! WeChat's push codec (its open platform's "message encryption", safe mode): Baidu's cipher
//! (random16 ‖ length ‖ message ‖ appid, padded to 32 bytes, AES-256-CBC with the key's first
//! 16 bytes as IV), an XML message, and an XML body
//! `<xml><AppId|ToUserName>…</…><Encrypt>…</Encrypt></xml>` whose signature travels in the
//! query string (`timestamp`, `nonce`, `encrypt_type=aes`, `msg_signature`).
//!
//! The messages are flat XML (`<xml><Name>value</Name>…</xml>`): [`message`] writes one,
//! [`fields`] reads one. Reading refuses what a flat message never holds (a DOCTYPE, nested
//! elements, attributes that matter, more than [`MAX_FIELDS`] fields), so an entity bomb or a
//! deep document costs nothing.

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::{decrypt, encrypt, signature, verify, OpenError, Opened, PushCryptoError, Sealing};

/// More fields than any WeChat event carries, and few enough to bound the work a hostile body
/// can ask for.
pub const MAX_FIELDS: usize = 64;

/// Whom the body names beside the ciphertext: authorization events (tickets, authorized,
/// unauthorized) carry the component's `AppId`; message events (audit results) the mini
/// program's original id as `ToUserName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressee<'a> {
    AppId(&'a str),
    ToUserName(&'a str),
}

/// A sealed WeChat push: POST `body` to the target URL with [`SealedPush::query`] appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedPush {
    pub timestamp: String,
    pub nonce: String,
    pub msg_signature: String,
    pub encrypt: String,
    pub body: String,
}

impl SealedPush {
    /// The query parameters the POST carries.
    pub fn query(&self) -> [(&'static str, &str); 4] {
        [
            ("timestamp", &self.timestamp),
            ("nonce", &self.nonce),
            ("encrypt_type", "aes"),
            ("msg_signature", &self.msg_signature),
        ]
    }
}

/// Seals the XML message `msg` for a third party: the plaintext ends with `s.client_id`, the
/// component appid.
pub fn seal(msg: &str, s: &Sealing<'_>, to: Addressee<'_>) -> Result<SealedPush, PushCryptoError> {
    let encrypt = encrypt(msg, s)?;
    let (tag, who) = match to {
        Addressee::AppId(a) => ("AppId", a),
        Addressee::ToUserName(u) => ("ToUserName", u),
    };
    let body = message(&[(tag, Field::Text(who)), ("Encrypt", Field::Text(&encrypt))]);
    Ok(SealedPush {
        msg_signature: signature(s.token, s.timestamp, s.nonce, &encrypt),
        timestamp: s.timestamp.to_string(),
        nonce: s.nonce.to_string(),
        encrypt,
        body,
    })
}

/// What a received WeChat push arrives with.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// The POST body (`<xml>…<Encrypt>…</Encrypt></xml>`).
    pub body: &'a str,
    pub timestamp: &'a str,
    pub nonce: &'a str,
    pub msg_signature: &'a str,
}

/// Verifies a push's signature with `token`, decrypts it with `encoding_aes_key`, and checks
/// that it is addressed to `component_appid`. The message is XML text: read it with [`fields`].
pub fn open(
    r: &Received<'_>,
    encoding_aes_key: &str,
    token: &str,
    component_appid: &str,
) -> Result<Opened, OpenError> {
    let opened = open_any_client(r, encoding_aes_key, token)?;
    if opened.client_id != component_appid {
        return Err(OpenError::WrongClientId(opened.client_id));
    }
    Ok(opened)
}

/// As [`open`], without checking whom the platform addressed ([`Opened::client_id`] says).
pub fn open_any_client(
    r: &Received<'_>,
    encoding_aes_key: &str,
    token: &str,
) -> Result<Opened, OpenError> {
    let encrypt = fields(r.body)
        .map_err(|_| OpenError::Malformed("the body is not a flat XML message"))?
        .into_iter()
        .find(|(name, _)| name == "Encrypt")
        .map(|(_, value)| value)
        .ok_or(OpenError::Malformed("the body has no Encrypt"))?;
    verify(token, r.timestamp, r.nonce, &encrypt, r.msg_signature)?;
    decrypt(&encrypt, encoding_aes_key)
}

/// A value of a flat XML message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// Written as CDATA, as WeChat writes text.
    Text(&'a str),
    /// Written bare (`CreateTime`, `SuccTime`, …).
    Number(i64),
}

/// A flat XML message: `<xml><Name>value</Name>…</xml>`, in the order given. Written into
/// one buffer sized up front: every push is one of these (twice: the message, then the body
/// around its ciphertext).
pub fn message(fields: &[(&str, Field<'_>)]) -> String {
    use std::fmt::Write;
    let size: usize = fields
        .iter()
        .map(|(name, value)| {
            2 * name.len()
                + 5
                + match value {
                    Field::Text(t) => t.len() + 12,
                    Field::Number(_) => 20,
                }
        })
        .sum();
    let mut out = String::with_capacity(size + 11);
    out.push_str("<xml>");
    for (name, value) in fields {
        out.push('<');
        out.push_str(name);
        out.push('>');
        match value {
            Field::Text(t) => {
                out.push_str("<![CDATA[");
                // `]]>` cannot stand inside CDATA: it is closed before the `>` and reopened.
                if t.contains("]]>") {
                    out.push_str(&t.replace("]]>", "]]]]><![CDATA[>"));
                } else {
                    out.push_str(t);
                }
                out.push_str("]]>");
            }
            // Writing to a String cannot fail.
            Field::Number(n) => {
                let _ = write!(out, "{n}");
            }
        }
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
    out.push_str("</xml>");
    out
}

/// Why a text is not a flat XML message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("not well-formed XML: {0}")]
    Syntax(String),
    #[error("not a flat message: {0}")]
    Shape(&'static str),
}

/// The fields of a flat XML message, in document order (CDATA and escaped text alike, their
/// text as written; whitespace between elements ignored).
pub fn fields(xml: &str) -> Result<Vec<(String, String)>, XmlError> {
    let mut reader = Reader::from_str(xml);
    let syntax = |e: quick_xml::Error| XmlError::Syntax(e.to_string());
    let mut out: Vec<(String, String)> = vec![];
    // Depth 0: before <xml>; 1: inside it; 2: inside a field.
    let mut depth = 0;
    let mut root_seen = false;
    let mut current: Option<(String, String)> = None;
    loop {
        match reader.read_event().map_err(syntax)? {
            Event::Start(e) => {
                let name = std::str::from_utf8(e.name().as_ref())
                    .map_err(|_| XmlError::Shape("a name that is not UTF-8"))?
                    .to_string();
                match depth {
                    0 if !root_seen => root_seen = true,
                    0 => return Err(XmlError::Shape("a second root element")),
                    1 => {
                        if out.len() >= MAX_FIELDS {
                            return Err(XmlError::Shape("too many fields"));
                        }
                        current = Some((name, String::new()));
                    }
                    _ => return Err(XmlError::Shape("a nested element")),
                }
                depth += 1;
            }
            Event::Empty(e) => {
                if depth != 1 {
                    return Err(XmlError::Shape("an empty element outside the message"));
                }
                if out.len() >= MAX_FIELDS {
                    return Err(XmlError::Shape("too many fields"));
                }
                let name = std::str::from_utf8(e.name().as_ref())
                    .map_err(|_| XmlError::Shape("a name that is not UTF-8"))?
                    .to_string();
                out.push((name, String::new()));
            }
            Event::End(_) => {
                if depth == 2 {
                    out.extend(current.take());
                }
                depth -= 1;
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|e| XmlError::Syntax(e.to_string()))?;
                let text = quick_xml::escape::unescape(&text)
                    .map_err(|e| XmlError::Syntax(e.to_string()))?;
                match (&mut current, depth) {
                    (Some((_, value)), 2) => value.push_str(&text),
                    _ if text.trim().is_empty() => {}
                    _ => return Err(XmlError::Shape("text outside a field")),
                }
            }
            Event::CData(c) => match (&mut current, depth) {
                (Some((_, value)), 2) => value.push_str(
                    std::str::from_utf8(&c).map_err(|_| XmlError::Shape("CDATA not UTF-8"))?,
                ),
                _ => return Err(XmlError::Shape("CDATA outside a field")),
            },
            Event::GeneralRef(r) => {
                // A character or predefined entity reference inside a field's text.
                let name = r.decode().map_err(|e| XmlError::Syntax(e.to_string()))?;
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or(XmlError::Shape("an entity other than the predefined five"))?
                        .to_string(),
                };
                match (&mut current, depth) {
                    (Some((_, value)), 2) => value.push_str(&resolved),
                    _ => return Err(XmlError::Shape("a reference outside a field")),
                }
            }
            Event::DocType(_) => return Err(XmlError::Shape("a DOCTYPE")),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !root_seen || depth != 0 {
        return Err(XmlError::Shape("not one complete <xml> element"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const TOKEN: &str = "wechat-token";
    const COMPONENT: &str = "wx0123456789abcdef";

    fn sealing() -> Sealing<'static> {
        Sealing {
            encoding_aes_key: KEY,
            token: TOKEN,
            client_id: COMPONENT,
            random16: *b"fedcba9876543210",
            timestamp: "1409659813",
            nonce: "1372623149",
        }
    }

    fn audit_success() -> String {
        message(&[
            ("ToUserName", Field::Text("gh_fb9688c2a4b2")),
            ("FromUserName", Field::Text("od1P50M-fNQI5Gcq-trm4a7apsU8")),
            ("CreateTime", Field::Number(1488856741)),
            ("MsgType", Field::Text("event")),
            ("Event", Field::Text("weapp_audit_success")),
            ("SuccTime", Field::Number(1488856741)),
        ])
    }

    #[test]
    fn a_sealed_push_opens_to_its_message_and_reads_back_field_by_field() {
        let msg = audit_success();
        let sealed =
            seal(&msg, &sealing(), Addressee::ToUserName("gh_fb9688c2a4b2")).expect("seal");
        assert!(sealed.body.starts_with(
            "<xml><ToUserName><![CDATA[gh_fb9688c2a4b2]]></ToUserName><Encrypt><![CDATA["
        ));
        let received = Received {
            body: &sealed.body,
            timestamp: &sealed.timestamp,
            nonce: &sealed.nonce,
            msg_signature: &sealed.msg_signature,
        };
        let opened = open(&received, KEY, TOKEN, COMPONENT).expect("opens");
        assert_eq!(opened.msg, msg);
        let f = fields(&opened.msg).expect("flat");
        assert_eq!(
            f[4],
            ("Event".to_string(), "weapp_audit_success".to_string())
        );
        assert_eq!(f[5], ("SuccTime".to_string(), "1488856741".to_string()));
    }

    #[test]
    fn a_wrong_signature_key_or_component_is_refused() {
        let sealed = seal(&audit_success(), &sealing(), Addressee::AppId(COMPONENT)).expect("seal");
        let r = Received {
            body: &sealed.body,
            timestamp: &sealed.timestamp,
            nonce: &sealed.nonce,
            msg_signature: &sealed.msg_signature,
        };
        assert_eq!(
            open(&r, KEY, "other-token", COMPONENT),
            Err(OpenError::BadSignature)
        );
        let late = Received {
            timestamp: "1409659814",
            ..r
        };
        assert_eq!(
            open(&late, KEY, TOKEN, COMPONENT),
            Err(OpenError::BadSignature)
        );
        assert!(matches!(
            open(&r, KEY, TOKEN, "wxffffffffffffffff"),
            Err(OpenError::WrongClientId(_))
        ));
        let other_key = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg";
        assert!(open(&r, other_key, TOKEN, COMPONENT).is_err());
    }

    #[test]
    fn text_with_cdata_terminators_and_escapes_survives_the_round_trip() {
        let reason = "1: 名称违规 ]]> <b>&amp; \"quoted\"";
        let xml = message(&[("Reason", Field::Text(reason))]);
        assert_eq!(
            fields(&xml).expect("flat"),
            vec![("Reason".into(), reason.into())]
        );
        let escaped = "<xml>\n  <Reason>a &lt;b&gt; &amp; &#x4E2D;</Reason>\n</xml>";
        assert_eq!(fields(escaped).expect("flat")[0].1, "a <b> & 中");
    }

    #[test]
    fn what_a_flat_message_never_holds_is_refused() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><xml><A>&b;</A></xml>"#;
        assert!(fields(bomb).is_err());
        assert!(fields("<xml><A><B>1</B></A></xml>").is_err());
        assert!(fields("<xml><A>1</A></xml><xml/>").is_err());
        assert!(fields("<xml><A>1</A>").is_err());
        assert!(fields("<xml><A>&custom;</A></xml>").is_err());
        let many: String = (0..=MAX_FIELDS)
            .map(|i| format!("<F{i}>1</F{i}>"))
            .collect();
        assert!(fields(&format!("<xml>{many}</xml>")).is_err());
        assert!(fields("").is_err());
    }
}
