//! Which push targets are refused: anything on loopback, private, link-local, CGNAT,
//! multicast, unspecified, reserved or documentation ranges, IPv4 and IPv6 (IPv4-mapped,
//! NAT64, 6to4 and Teredo addresses are judged by the IPv4 addresses inside), unless private
//! targets are allowed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified (0.0.0.0/8)",
        (10, _, _) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "CGNAT (100.64.0.0/10)",
        (127, _, _) => "loopback (127.0.0.0/8)",
        (169, 254, _) => "link-local (169.254.0.0/16)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) => "documentation (192.0.2.0/24)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (198, 51, 100) => "documentation (198.51.100.0/24)",
        (203, 0, 113) => "documentation (203.0.113.0/24)",
        (224..=239, _, _) => "multicast (224.0.0.0/4)",
        (240..=255, _, _) => "reserved or broadcast (240.0.0.0/4)",
        _ => return None,
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_class(v4);
    }
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_class(v4(s[6], s[7]));
    }
    // NAT64 local use (64:ff9b:1::/48, RFC 8215): the address may sit in the last 32 bits
    // (a /96 inside it) or where RFC 6052 puts it for a /48 (bits 48-63 and 72-87). Either
    // reading that lands on a refused address refuses it.
    if s[..3] == [0x64, 0xff9b, 1] {
        let at_end = v4(s[6], s[7]);
        let rfc6052_48 = v4(s[3], ((s[4] & 0xff) << 8) | (s[5] >> 8));
        // Zeros in the /48 position mean a longer prefix: only the end holds an address.
        let in_48 = (s[3] | s[4] | s[5] != 0).then_some(rfc6052_48);
        return v4_class(at_end)
            .or_else(|| in_48.and_then(v4_class))
            .map(|_| "NAT64 local-use (64:ff9b:1::/48) to a refused IPv4 address");
    }
    // 6to4 (2002::/16): the relay forwards to the IPv4 address in bits 16-47.
    if s[0] == 0x2002 {
        return v4_class(v4(s[1], s[2])).map(|_| "6to4 (2002::/16) to a refused IPv4 address");
    }
    // Teredo (2001:0::/32): the server's IPv4 in bits 32-63, the client's, inverted, in the
    // last 32 bits.
    if s[0] == 0x2001 && s[1] == 0 {
        let server = v4(s[2], s[3]);
        let client = v4(!s[6], !s[7]);
        return v4_class(client)
            .or_else(|| v4_class(server))
            .map(|_| "Teredo (2001::/32) to a refused IPv4 address");
    }
    Some(match s[0] {
        _ if ip.is_unspecified() => "unspecified (::)",
        _ if ip.is_loopback() => "loopback (::1)",
        // Deprecated IPv4-compatible addresses (::a.b.c.d).
        _ if s[..6] == [0; 6] => "IPv4-compatible (::/96)",
        0xfc00..=0xfdff => "unique local (fc00::/7)",
        0xfe80..=0xfebf => "link-local (fe80::/10)",
        0xfec0..=0xfeff => "site-local (fec0::/10)",
        0xff00..=0xffff => "multicast (ff00::/8)",
        0x2001 if s[1] == 0xdb8 => "documentation (2001:db8::/32)",
        0x3fff if s[1] <= 0x0fff => "documentation (3fff::/20)",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only (100::/64)",
        _ => return None,
    })
}

/// The class that makes `ip` a refused target, or None for a public address.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_non_public_class_is_refused() {
        for ip in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "::127.0.0.1",
            // 6to4 of 127.0.0.1 and 10.0.0.1
            "2002:7f00:1::1",
            "2002:a00:1::",
            // Teredo: client 192.168.1.1 (inverted: 3f57:fefe), server public
            "2001:0:808:808::3f57:fefe",
            // Teredo: server 10.0.0.1
            "2001:0:a00:1::f7f7:f7f7",
            // NAT64 local use: 127.0.0.1 at the end, and 10.0.0.1 in the /48 position
            "64:ff9b:1::7f00:1",
            "64:ff9b:1:a00:1::",
        ] {
            let parsed: IpAddr = ip.parse().expect("ip");
            assert!(forbidden(parsed).is_some(), "{ip} must be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:0:808:808::f7f7:f7f7",
            "64:ff9b:1::808:808",
        ] {
            let parsed: IpAddr = ip.parse().expect("ip");
            assert_eq!(forbidden(parsed), None, "{ip}");
        }
    }
}
