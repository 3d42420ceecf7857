//! Random secrets and their handling: tokens are random, kept only as SHA-256, and compared
//! in constant time.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use rand::distributions::{Alphanumeric, DistString};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub fn random_alnum(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), len)
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    // Compare digests so the time does not depend on where, or whether, the lengths differ.
    Sha256::digest(a.as_bytes())
        .ct_eq(&Sha256::digest(b.as_bytes()))
        .into()
}

/// A new EncodingAESKey: 43 characters that decode (with one `=` appended) to 32 bytes.
pub fn encoding_aes_key() -> String {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    base64::engine::general_purpose::STANDARD
        .encode(key)
        .trim_end_matches('=')
        .to_string()
}

pub fn valid_encoding_aes_key(k: &str) -> bool {
    smartpkg_core::push::aes_key(k).is_ok()
}

/// A WeChat appid: `wx` and 16 lowercase hex digits (component and mini program alike).
pub fn wx_appid() -> String {
    let mut id = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut id);
    format!("wx{}", hex::encode(id))
}

/// An access token shaped like Baidu's (`45.` + random), so clients that look at the prefix
/// are not surprised.
pub fn access_token(prefix: &str) -> String {
    format!("{prefix}.{}", random_alnum(48))
}

/// The admin token: the configured one, else the one stored in the data directory, else a new
/// one written there (mode 0600). The bool says whether it was generated now.
pub fn admin_token(data_dir: &Path, configured: Option<&str>) -> std::io::Result<(String, bool)> {
    if let Some(t) = configured {
        return Ok((t.to_string(), false));
    }
    let path = data_dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok((t.trim().to_string(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = random_alnum(40);
    write_owner_only(&path, token.as_bytes())?;
    Ok((token, true))
}

/// Writes `bytes` to `path` readable by its owner only (0600) whatever the umask, tightening
/// a file an earlier version left wider, and syncs it: for files that hold secrets.
pub fn write_owner_only(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        // `mode` applies only to a file created now.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_aes_keys_are_valid_and_bad_ones_are_not() {
        let k = encoding_aes_key();
        assert!(valid_encoding_aes_key(&k), "{k}");
        assert!(valid_encoding_aes_key(
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
        ));
        assert!(!valid_encoding_aes_key("short"));
        assert!(!valid_encoding_aes_key(&"!".repeat(43)));
    }

    #[test]
    fn the_admin_token_is_generated_once_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, new_a) = admin_token(dir.path(), None).expect("first");
        let (b, new_b) = admin_token(dir.path(), None).expect("second");
        assert_eq!((a.as_str(), new_a, new_b), (b.as_str(), true, false));
        assert!(constant_time_eq(&a, &b));
        assert!(!constant_time_eq(&a, "x"));
    }
}
