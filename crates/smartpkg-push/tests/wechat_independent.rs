//! The WeChat codec checked against a second implementation written here from the spec's
//! description alone: CBC chained by hand over single AES blocks, the body read with plain
//! string search, the signature computed without the crate's helper. Each side opens what the
//! other sealed.

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use base64::Engine;
use sha1::{Digest, Sha1};
use smartpkg_push::wechat::{self, Addressee, Field, Received};
use smartpkg_push::Sealing;

const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const TOKEN: &str = "pamtest";
const COMPONENT: &str = "wxb11529c136998cb6";

fn key_bytes() -> [u8; 32] {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    engine
        .decode(format!("{KEY}="))
        .expect("key")
        .try_into()
        .expect("32 bytes")
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> &'a str {
    let start = s.find(open).expect("opening tag") + open.len();
    let end = s[start..].find(close).expect("closing tag") + start;
    &s[start..end]
}

/// Decrypts an `Encrypt` value: (message, appid).
fn independent_decrypt(encrypt: &str) -> (String, String) {
    let key = key_bytes();
    let cipher = aes::Aes256::new(&key.into());
    let data = base64::engine::general_purpose::STANDARD
        .decode(encrypt)
        .expect("base64");
    let mut prev: [u8; 16] = key[..16].try_into().expect("iv");
    let mut plain = Vec::new();
    for chunk in data.chunks(16) {
        let mut block = aes::Block::clone_from_slice(chunk);
        cipher.decrypt_block(&mut block);
        for (b, p) in block.iter_mut().zip(prev) {
            *b ^= p;
        }
        plain.extend_from_slice(&block);
        prev = chunk.try_into().expect("block");
    }
    let pad = *plain.last().expect("padding") as usize;
    assert!((1..=32).contains(&pad), "PKCS#7 to 32 bytes, got {pad}");
    plain.truncate(plain.len() - pad);
    let len = u32::from_be_bytes(plain[16..20].try_into().expect("length")) as usize;
    let msg = String::from_utf8(plain[20..20 + len].to_vec()).expect("utf-8");
    let appid = String::from_utf8(plain[20 + len..].to_vec()).expect("utf-8");
    (msg, appid)
}

fn independent_encrypt(msg: &str, random16: [u8; 16]) -> String {
    let key = key_bytes();
    let cipher = aes::Aes256::new(&key.into());
    let mut plain = random16.to_vec();
    plain.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    plain.extend_from_slice(msg.as_bytes());
    plain.extend_from_slice(COMPONENT.as_bytes());
    let pad = 32 - plain.len() % 32;
    plain.extend(std::iter::repeat_n(pad as u8, pad));
    let mut prev: [u8; 16] = key[..16].try_into().expect("iv");
    let mut out = Vec::new();
    for chunk in plain.chunks(16) {
        let mut block = aes::Block::clone_from_slice(chunk);
        for (b, p) in block.iter_mut().zip(prev) {
            *b ^= p;
        }
        cipher.encrypt_block(&mut block);
        prev = block.into();
        out.extend_from_slice(&block);
    }
    base64::engine::general_purpose::STANDARD.encode(out)
}

fn independent_signature(timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let mut parts = [TOKEN, timestamp, nonce, encrypt];
    parts.sort();
    let digest = Sha1::digest(parts.join("").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

const TICKET: &str = "<xml><AppId><![CDATA[wxb11529c136998cb6]]></AppId><CreateTime>1413192605</CreateTime><InfoType><![CDATA[component_verify_ticket]]></InfoType><ComponentVerifyTicket><![CDATA[ticket@@@xyz]]></ComponentVerifyTicket></xml>";

#[test]
fn what_the_codec_seals_the_independent_decryption_reads() {
    let sealed = wechat::seal(
        TICKET,
        &Sealing {
            encoding_aes_key: KEY,
            token: TOKEN,
            client_id: COMPONENT,
            random16: *b"0123456789abcdef",
            timestamp: "1413192605",
            nonce: "1320562132",
        },
        Addressee::AppId(COMPONENT),
    )
    .expect("seal");
    assert_eq!(
        between(&sealed.body, "<AppId><![CDATA[", "]]></AppId>"),
        COMPONENT
    );
    let encrypt = between(&sealed.body, "<Encrypt><![CDATA[", "]]></Encrypt>");
    assert_eq!(
        sealed.msg_signature,
        independent_signature("1413192605", "1320562132", encrypt)
    );
    assert_eq!(
        independent_decrypt(encrypt),
        (TICKET.to_string(), COMPONENT.to_string())
    );
    let query = sealed.query();
    assert!(query.contains(&("encrypt_type", "aes")));
}

#[test]
fn what_the_independent_side_seals_the_codec_opens() {
    let encrypt = independent_encrypt(TICKET, [9u8; 16]);
    let body = format!(
        "<xml>\n    <AppId><![CDATA[{COMPONENT}]]></AppId>\n    <Encrypt><![CDATA[{encrypt}]]></Encrypt>\n</xml>"
    );
    let signature = independent_signature("1413192605", "77", &encrypt);
    let received = Received {
        body: &body,
        timestamp: "1413192605",
        nonce: "77",
        msg_signature: &signature,
    };
    let opened = wechat::open(&received, KEY, TOKEN, COMPONENT).expect("opens");
    assert_eq!(opened.msg, TICKET);
    let fields = wechat::fields(&opened.msg).expect("flat");
    assert!(fields.contains(&(
        "ComponentVerifyTicket".to_string(),
        "ticket@@@xyz".to_string()
    )));
    // And the message the codec writes is the one this side would read.
    let written = wechat::message(&[
        ("AppId", Field::Text(COMPONENT)),
        ("CreateTime", Field::Number(1413192605)),
        ("InfoType", Field::Text("component_verify_ticket")),
        ("ComponentVerifyTicket", Field::Text("ticket@@@xyz")),
    ]);
    assert_eq!(written, TICKET);
}
