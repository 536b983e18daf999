//! The client's address, by one rule for every area (JSON routes, sign-in pages,
//! forward-auth): rate limits, audit rows and sessions must see the same address for the
//! same person, and a client must never be able to choose it.
//!
//! The rule: the TCP peer, unless the peer is a trusted proxy (`config.trustedProxies`).
//! From a trusted peer, the right-most `X-Forwarded-For` hop that is not itself a trusted
//! proxy (each proxy appends the address it saw, so everything left of the first untrusted
//! hop was written by someone we do not trust); when every hop is a trusted proxy, the
//! left-most of them; without a usable `X-Forwarded-For`, `X-Real-IP`; else the peer.
//! Headers that are not ASCII, repeated (`X-Real-IP`) or not an address are ignored, and
//! the walk stops at the first hop that is not an address. IPv4-mapped IPv6 addresses
//! (`::ffff:192.0.2.1`, what a dual-stack listener reports) count as their IPv4 address.

use axum::http::{Extensions, HeaderMap};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// Most `X-Forwarded-For` hops looked at, from the right; real chains are a few proxies long.
const MAX_HOPS: usize = 16;
/// Longest hop (or `X-Real-IP`) parsed: a bracketed IPv6 address with a port is 47 bytes.
const MAX_HOP_LEN: usize = 64;

/// The client's address: the peer, or what a trusted peer says (see the module docs).
/// `None` only when the server runs without connect info (in-process tests).
pub fn client_addr(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted_proxies: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    if !trusted(&peer) {
        return Some(peer);
    }
    forwarded_for(headers, &trusted)
        .or_else(|| real_ip(headers))
        .or(Some(peer))
}

/// The TCP peer's address, when the server was started with connect info.
pub fn peer(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The right-most untrusted `X-Forwarded-For` hop (or the left-most trusted one reached);
/// `None` when the header names no address at its right end.
fn forwarded_for(headers: &HeaderMap, trusted: &impl Fn(&IpAddr) -> bool) -> Option<IpAddr> {
    // Several header lines are one list, in order: the last line's last entry is the nearest.
    let mut reached = None;
    let mut hops = 0;
    for line in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(line) = line.to_str() else {
            return reached;
        };
        for hop in line.rsplit(',') {
            if hops == MAX_HOPS {
                return reached;
            }
            hops += 1;
            let Some(ip) = address(hop) else {
                return reached;
            };
            if !trusted(&ip) {
                return Some(ip);
            }
            reached = Some(ip);
        }
    }
    reached
}

/// `X-Real-IP`, if sent exactly once and an address.
fn real_ip(headers: &HeaderMap) -> Option<IpAddr> {
    let mut values = headers.get_all("x-real-ip").iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    address(value.to_str().ok()?)
}

/// One hop: an IP address, optionally with a port (`192.0.2.1:443`, `[2001:db8::1]:443`)
/// or in brackets, as some proxies write it.
fn address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if hop.is_empty() || hop.len() > MAX_HOP_LEN {
        return None;
    }
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse().ok())
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue};

    /// A header map from name-value pairs, in order (repeated names append).
    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// What a case shows, the peer, the trusted proxies, the headers, the address expected.
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [&'a str],
        Vec<(&'a str, &'a str)>,
        Option<&'a str>,
    );

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_rule_for_every_case() {
        let long = format!("{}, 203.0.113.9", "198.51.100.1, ".repeat(5000));
        let many_trusted = format!("198.51.100.1, {}", "10.0.0.1, ".repeat(40) + "10.0.0.2");
        let oversized = format!("203.0.113.9, {}", "1".repeat(100));
        let none: &[&str] = &[];
        let proxies = ["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"];
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("no trusted proxies: the peer, whatever the headers", "192.0.2.7", none,
             vec![("x-forwarded-for", "203.0.113.9"), ("x-real-ip", "203.0.113.10")], Some("192.0.2.7")),
            ("an untrusted peer cannot speak for others", "192.0.2.7", &proxies,
             vec![("x-forwarded-for", "203.0.113.9"), ("x-real-ip", "203.0.113.10")], Some("192.0.2.7")),
            ("trusted peer, no headers: the peer", "10.1.2.3", &proxies, vec![], Some("10.1.2.3")),
            ("trusted peer: the right-most hop", "10.1.2.3", &proxies,
             vec![("x-forwarded-for", "203.0.113.9")], Some("203.0.113.9")),
            ("a client-chosen left entry is not believed", "10.1.2.3", &proxies,
             vec![("x-forwarded-for", "1.2.3.4, 203.0.113.9")], Some("203.0.113.9")),
            ("trusted hops are skipped from the right", "10.1.2.3", &proxies,
             vec![("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.0.0.5, 10.9.9.9")], Some("203.0.113.9")),
            ("several header lines are one list", "10.1.2.3", &proxies,
             vec![("x-forwarded-for", "1.2.3.4"), ("x-forwarded-for", "203.0.113.9, 10.0.0.5")], Some("203.0.113.9")),
            ("every hop trusted: the left-most of them", "10.1.2.3", &proxies,
             vec![("x-forwarded-for", "10.0.0.7, 10.0.0.5")], Some("10.0.0.7")),
            ("the walk stops at garbage: nothing left of it is believed", "10.1.2.3", &proxies,
             vec![("x-forwarded-for", "203.0.113.9, unknown, 10.0.0.5")], Some("10.0.0.5")),
            ("garbage at the right end: X-Forwarded-For is unusable", "10.1.2.3", &proxies,
             vec![("x-forwarded-for", "203.0.113.9, not-an-ip")], Some("10.1.2.3")),
            ("an empty hop is garbage", "10.1.2.3", &proxies,
             vec![("x-forwarded-for", "203.0.113.9,")], Some("10.1.2.3")),
            ("an oversized hop is garbage", "10.1.2.3", &proxies,
             vec![("x-forwarded-for", oversized.as_str())], Some("10.1.2.3")),
            ("a long padded header: only its right end is read", "10.1.2.3", &proxies,
             vec![("x-forwarded-for", long.as_str())], Some("203.0.113.9")),
            ("at most 16 hops are walked", "10.1.2.3", &proxies,
             vec![("x-forwarded-for", many_trusted.as_str())], Some("10.0.0.1")),
            ("ports and brackets are read", "10.1.2.3", &proxies,
             vec![("x-forwarded-for", "[2001:db8::1]:443, 203.0.113.9:5555")], Some("203.0.113.9")),
            ("bracketed IPv6 without a port", "10.1.2.3", &proxies,
             vec![("x-forwarded-for", "[2001:db8::1]")], Some("2001:db8::1")),
            ("IPv6 hops and peers", "fd00::1", &proxies,
             vec![("x-forwarded-for", "2001:db8::1, fd00::2")], Some("2001:db8::1")),
            ("IPv4-mapped peer matches an IPv4 proxy range", "::ffff:127.0.0.1", &proxies,
             vec![("x-forwarded-for", "203.0.113.9")], Some("203.0.113.9")),
            ("IPv4-mapped hops count as IPv4 (trusted ones too)", "10.1.2.3", &proxies,
             vec![("x-forwarded-for", "::ffff:203.0.113.9, ::ffff:10.0.0.5")], Some("203.0.113.9")),
            ("an untrusted IPv4-mapped peer is reported as IPv4", "::ffff:192.0.2.7", &proxies,
             vec![("x-forwarded-for", "203.0.113.9")], Some("192.0.2.7")),
            ("X-Real-IP from a trusted peer, without X-Forwarded-For", "10.1.2.3", &proxies,
             vec![("x-real-ip", "203.0.113.10")], Some("203.0.113.10")),
            ("X-Forwarded-For's right end wins over X-Real-IP", "10.1.2.3", &proxies,
             vec![("x-forwarded-for", "203.0.113.9"), ("x-real-ip", "203.0.113.10")], Some("203.0.113.9")),
            ("X-Real-IP when X-Forwarded-For is garbage", "10.1.2.3", &proxies,
             vec![("x-forwarded-for", "junk"), ("x-real-ip", "203.0.113.10")], Some("203.0.113.10")),
            ("a repeated X-Real-IP is ignored", "10.1.2.3", &proxies,
             vec![("x-real-ip", "203.0.113.10"), ("x-real-ip", "203.0.113.11")], Some("10.1.2.3")),
            ("a garbage X-Real-IP is ignored", "10.1.2.3", &proxies,
             vec![("x-real-ip", "203.0.113.10 or so")], Some("10.1.2.3")),
        ];
        for (what, peer, trusted, pairs, expected) in cases {
            let nets: Vec<IpNet> = trusted.iter().map(|n| n.parse().unwrap()).collect();
            assert_eq!(
                client_addr(Some(ip(peer)), &headers(&pairs), &nets),
                expected.map(ip),
                "{what}"
            );
        }
    }

    #[test]
    fn a_non_ascii_line_is_ignored() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"203.0.113.9, \xff").unwrap(),
        );
        assert_eq!(
            client_addr(Some(ip("10.1.2.3")), &h, &nets),
            Some(ip("10.1.2.3"))
        );
        h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        assert_eq!(
            client_addr(Some(ip("10.1.2.3")), &h, &nets),
            Some(ip("203.0.113.9")),
            "a later, nearer line is still read"
        );
    }

    #[test]
    fn without_a_peer_no_header_is_believed() {
        let nets: Vec<IpNet> = vec!["0.0.0.0/0".parse().unwrap()];
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-real-ip", "203.0.113.10"),
        ]);
        assert_eq!(client_addr(None, &h, &nets), None);
    }
}
