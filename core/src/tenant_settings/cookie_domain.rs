//! `sessions.cookieDomain`: the parent domain a tenant may share its session cookie with, so
//! every app host under it is signed in without the per-host handoff. The rules live here
//! because the operator (which checks a Tenant against the gateway's public URL) and the
//! gateway (which decides which hosts the cookie reaches) must agree on them.

/// Longest DNS name (RFC 1035 §2.3.4).
const MAX_NAME: usize = 253;
/// Longest DNS label.
const MAX_LABEL: usize = 63;

/// Whether `domain` is a lower-case DNS name of at least two labels whose last label starts
/// with a letter: what a browser accepts as a cookie's `Domain` (a single label such as `com`
/// and an IP address are refused by browsers, so a tenant naming one is refused here).
/// The CRD's `COOKIE_DOMAIN_PATTERN` says the same for `kubectl apply`.
pub fn is_cookie_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    domain.len() <= MAX_NAME
        && labels.len() >= 2
        && labels.iter().all(|l| is_label(l))
        && labels
            .last()
            .is_some_and(|l| l.starts_with(|c: char| c.is_ascii_lowercase()))
}

fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether a cookie with `Domain=domain` reaches `host` (RFC 6265 §5.1.3 domain matching):
/// the domain itself or any name under it. `host` is compared without case and without a
/// trailing dot; an IP address never matches.
pub fn covers(domain: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.parse::<std::net::IpAddr>().is_ok() || domain.is_empty() {
        return false;
    }
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// The host of the gateway's public URL (`https://auth.example.com:8443/base` gives
/// `auth.example.com`), lower-case, without port; an IPv6 literal keeps its brackets.
pub fn public_host(public_url: &str) -> String {
    url::Url::parse(public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_multi_label_dns_names_are_cookie_domains() {
        for ok in [
            "example.com",
            "apps.example.co.uk",
            "a-b.example",
            "x1.test",
        ] {
            assert!(is_cookie_domain(ok), "{ok}");
        }
        for bad in [
            "",
            "com",
            ".example.com",
            "example.com.",
            "Example.com",
            "127.0.0.1",
            "example.123",
            "-a.example.com",
            "a..example.com",
            "https://example.com",
            "example.com:443",
            "*.example.com",
        ] {
            assert!(!is_cookie_domain(bad), "{bad}");
        }
        assert!(!is_cookie_domain(&format!("{}.com", "a".repeat(64))));
    }

    #[test]
    fn a_domain_covers_itself_and_names_under_it_only() {
        assert!(covers("example.com", "example.com"));
        assert!(covers("example.com", "auth.example.com"));
        assert!(covers("example.com", "A.B.Example.COM."));
        assert!(!covers("example.com", "badexample.com"));
        assert!(!covers("example.com", "example.com.evil.test"));
        assert!(!covers("example.com", "other.test"));
        assert!(!covers("0.1", "127.0.0.1"));
    }

    #[test]
    fn the_public_host_is_the_url_host_without_port_or_path() {
        assert_eq!(public_host("https://Auth.example.com"), "auth.example.com");
        assert_eq!(
            public_host("https://auth.example.com:8443/base/"),
            "auth.example.com"
        );
        assert_eq!(public_host("http://127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(public_host("http://[::1]:8080"), "[::1]");
    }
}
