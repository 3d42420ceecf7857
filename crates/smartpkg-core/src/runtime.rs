//! Rules of the runtime channel that are pure: which devices a staged release reaches, how
//! host runtime versions compare, and what a domain of a mini program's allow-lists may be.

use sha2::{Digest, Sha256};

/// The bucket (0–99) of a device for a mini program: the first 8 bytes of
/// SHA-256(`"{app_id}:{device_id}"`) as a big-endian integer, modulo 100. Stable across
/// calls, instances and versions, and independent between mini programs, so a device in the
/// first 10% of one staged release is not thereby in the first 10% of every other.
pub fn bucket(app_id: i64, device_id: &str) -> u8 {
    let digest = Sha256::digest(format!("{app_id}:{device_id}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % 100) as u8
}

/// Whether a device in `bucket` runs a staged release at `percent` (1–100): buckets below the
/// percentage do, so raising it keeps every device it already reached.
pub fn in_stage(bucket: u8, percent: i64) -> bool {
    (bucket as i64) < percent
}

/// `3.100.0` → [3, 100, 0]; None unless it is dotted decimal numbers (1 to 4 parts).
pub fn parse_version(v: &str) -> Option<Vec<u64>> {
    let parts: Vec<&str> = v.trim().split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    parts
        .iter()
        .map(|p| {
            if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                p.parse().ok()
            }
        })
        .collect()
}

/// Whether version `have` is lower than `need` (missing parts count as 0: 3.1 = 3.1.0).
/// Unparseable versions compare as lower: a device that cannot say what it runs is not
/// given a package that needs a minimum.
pub fn below(have: &str, need: &str) -> bool {
    let (Some(mut a), Some(mut b)) = (parse_version(have), parse_version(need)) else {
        return true;
    };
    let n = a.len().max(b.len());
    a.resize(n, 0);
    b.resize(n, 0);
    a < b
}

/// Which allow-list a domain is for: server calls (`https://`), sockets (`wss://`), web views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainKind {
    Https,
    Socket,
}

/// Checks one domain of an allow-list: `https://host[:port]` (or `wss://` for sockets), a
/// host name of letters, digits, dots and hyphens, no path, query, user or IP literal.
pub fn check_domain(kind: DomainKind, d: &str) -> Result<(), String> {
    let scheme = match kind {
        DomainKind::Https => "https://",
        DomainKind::Socket => "wss://",
    };
    let Some(rest) = d.strip_prefix(scheme) else {
        return Err(format!("{d:?} must start with {scheme}"));
    };
    let (host, port) = match rest.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |n| n == 0) {
            return Err(format!("{d:?} has an invalid port"));
        }
    }
    let labels_ok = !host.is_empty()
        && host.len() <= 253
        && host.contains('.')
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !labels_ok {
        return Err(format!(
            "{d:?} must be {scheme}host.name with no path, query or IP address"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread_evenly() {
        assert_eq!(bucket(7, "device-1"), bucket(7, "device-1"));
        let mut counts = [0usize; 10];
        for i in 0..10_000 {
            counts[bucket(42, &format!("d{i}")) as usize / 10] += 1;
        }
        // Each tenth of the buckets holds about a tenth of 10,000 devices.
        assert!(
            counts.iter().all(|c| (850..=1150).contains(c)),
            "{counts:?}"
        );
    }

    #[test]
    fn a_device_in_a_stage_stays_in_as_it_grows() {
        for i in 0..1000 {
            let b = bucket(1, &format!("d{i}"));
            if in_stage(b, 10) {
                assert!(in_stage(b, 50));
            }
            assert!(in_stage(b, 100));
        }
    }

    #[test]
    fn versions_compare_by_number_not_text() {
        assert!(below("3.9.0", "3.10.0"));
        assert!(!below("3.10.0", "3.10"));
        assert!(!below("3.100.1", "3.100.0"));
        assert!(below("garbage", "1.0.0"));
        assert_eq!(parse_version("3.a.0"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn domains_must_be_https_or_wss_host_names() {
        assert!(check_domain(DomainKind::Https, "https://api.example.com").is_ok());
        assert!(check_domain(DomainKind::Https, "https://api.example.com:8443").is_ok());
        assert!(check_domain(DomainKind::Socket, "wss://ws.example.com").is_ok());
        for bad in [
            "http://api.example.com",
            "https://api.example.com/path",
            "https://1.2.3.4",
            "https://localhost",
            "https://a..b.com",
            "https://user@x.com",
            "https://x.com:0",
        ] {
            assert!(check_domain(DomainKind::Https, bad).is_err(), "{bad}");
        }
        assert!(check_domain(DomainKind::Socket, "https://ws.example.com").is_err());
    }
}
