//! Return URLs (`rd=`): where a browser goes after signing in or out. Only origins on the
//! tenant's allow-list (plus the gateway's own) are accepted, so keygate is never an open
//! redirector.

use url::Url;

/// Longest return URL kept; longer ones are refused rather than truncated.
const MAX_LEN: usize = 2048;

/// `raw` as an absolute URL if it may be redirected to, else `None`.
///
/// Refused: other origins, scheme-relative `//evil`, `javascript:` and other non-http(s)
/// schemes, backslashes (browsers read `\` as `/`), userinfo, control characters.
/// A path starting with one `/` is taken relative to the gateway.
pub fn safe_return_url(raw: &str, allowed_origins: &[String], gateway_url: &str) -> Option<String> {
    if raw.is_empty()
        || raw.len() > MAX_LEN
        || raw.contains('\\')
        || raw.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return None;
    }
    let url = if raw.starts_with('/') {
        if raw.starts_with("//") {
            return None;
        }
        Url::parse(gateway_url).ok()?.join(raw).ok()?
    } else {
        Url::parse(raw).ok()?
    };
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
        || url.host().is_none()
    {
        return None;
    }
    let origin = url.origin().ascii_serialization();
    let allowed = std::iter::once(gateway_url)
        .chain(allowed_origins.iter().map(String::as_str))
        .filter_map(|o| Url::parse(o).ok())
        .any(|o| o.origin().ascii_serialization() == origin);
    allowed.then(|| url.to_string())
}

/// The reserved path on every protected host that the proxy routes to the gateway: it sets
/// the handoff's nonce cookie (`?tenant=…&rd=…`) and redeems handoff codes (`?code=…`).
pub const HANDOFF_PATH: &str = "/.keygate/callback";

/// `url`'s host as a `Host` header names it: lower-case, with `:port` unless the default.
pub fn authority(url: &str) -> Option<String> {
    let url = Url::parse(url).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// Whether a browser returning to `return_url` lacks the gateway's session cookie there, so
/// it needs the handoff: another host than the gateway's (cookies ignore ports), unless the
/// tenant shares its cookie with a parent domain (`cookie_domain`) that host is under.
pub fn needs_handoff(return_url: &str, gateway_url: &str, cookie_domain: Option<&str>) -> bool {
    let host = |u: &str| {
        Url::parse(u)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
    };
    match (host(return_url), host(gateway_url)) {
        (Some(a), Some(b)) => {
            a != b
                && !cookie_domain
                    .is_some_and(|d| keygate_core::tenant_settings::cookie_domain::covers(d, &a))
        }
        _ => false,
    }
}

/// The handoff path on `return_url`'s origin with `query` (already encoded).
fn on_origin(return_url: &str, query: &str) -> Option<String> {
    let url = Url::parse(return_url).ok()?;
    Some(format!(
        "{}{HANDOFF_PATH}?{query}",
        url.origin().ascii_serialization()
    ))
}

/// Where a browser starts the handoff for `return_url`: the app host's own handoff path,
/// which sets the nonce cookie there and sends the browser on to sign in.
pub fn handoff_start_url(return_url: &str, tenant: &str) -> Option<String> {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("tenant", tenant)
        .append_pair("rd", return_url)
        .finish();
    on_origin(return_url, &query)
}

/// Where a browser redeems handoff `code` of `tenant` for `return_url`'s host (the tenant
/// names the page shown if the code is refused; the code alone decides what it grants).
pub fn handoff_callback_url(return_url: &str, tenant: &str, code: &str) -> Option<String> {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("tenant", tenant)
        .append_pair("code", code)
        .finish();
    on_origin(return_url, &query)
}

/// The tenant's sign-in page URL with `rd` set to `return_to`.
pub fn signin_url(gateway_url: &str, tenant: &str, return_to: Option<&str>) -> String {
    let mut out = format!("{gateway_url}/t/{tenant}/signin");
    if let Some(rd) = return_to {
        out.push_str("?rd=");
        out.extend(form_urlencoded::byte_serialize(rd.as_bytes()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str) -> Option<String> {
        safe_return_url(
            raw,
            &[
                "https://app.example.com".into(),
                "http://127.0.0.1:8081".into(),
            ],
            "https://auth.example.com",
        )
    }

    #[test]
    fn allowed_origins_and_own_paths_pass() {
        assert_eq!(
            check("https://app.example.com/orders?x=1").as_deref(),
            Some("https://app.example.com/orders?x=1")
        );
        assert_eq!(
            check("https://APP.example.com:443/").as_deref(),
            Some("https://app.example.com/")
        );
        assert_eq!(
            check("http://127.0.0.1:8081/a").as_deref(),
            Some("http://127.0.0.1:8081/a")
        );
        assert_eq!(
            check("/t/acme/account").as_deref(),
            Some("https://auth.example.com/t/acme/account")
        );
    }

    #[test]
    fn open_redirect_tricks_are_refused() {
        for bad in [
            "https://evil.example.com/",
            "//evil.example.com/x",
            "/\\evil.example.com",
            "https:\\\\evil.example.com",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,x",
            "https://app.example.com@evil.example.com/",
            "https://user:pw@app.example.com/",
            "http://app.example.com/",
            "https://app.example.com.evil.com/",
            "http://127.0.0.1:8082/",
            "https://app.example.com/\nSet-Cookie:x",
            " https://app.example.com/",
            "",
        ] {
            assert_eq!(check(bad), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn the_handoff_is_needed_on_other_hosts_only() {
        let gw = "https://auth.example.com";
        assert!(needs_handoff("https://app.example.com/x", gw, None));
        assert!(!needs_handoff(
            "https://auth.example.com/t/acme/account",
            gw,
            None
        ));
        // Cookies ignore ports: another port of the gateway's host has its cookie.
        assert!(!needs_handoff("https://AUTH.example.com:8443/x", gw, None));
        // A cookie shared with the parent domain reaches every host under it, no other.
        let shared = Some("example.com");
        assert!(!needs_handoff("https://app.example.com/x", gw, shared));
        assert!(needs_handoff("https://app.example.org/x", gw, shared));
        assert!(needs_handoff("https://app.badexample.com/x", gw, shared));
        assert_eq!(
            handoff_start_url("https://app.example.com:8443/a?b=1", "acme").as_deref(),
            Some(
                "https://app.example.com:8443/.keygate/callback?tenant=acme&rd=https%3A%2F%2Fapp.example.com%3A8443%2Fa%3Fb%3D1"
            )
        );
        assert_eq!(
            handoff_callback_url("https://app.example.com/a", "acme", "c0de").as_deref(),
            Some("https://app.example.com/.keygate/callback?tenant=acme&code=c0de")
        );
        assert_eq!(
            authority("https://App.Example.com:443/x").as_deref(),
            Some("app.example.com")
        );
        assert_eq!(
            authority("https://app.example.com:8443/x").as_deref(),
            Some("app.example.com:8443")
        );
    }

    #[test]
    fn signin_url_encodes_the_return_url() {
        assert_eq!(
            signin_url(
                "https://auth.example.com",
                "acme",
                Some("https://app.example.com/a?b=1&c=2")
            ),
            "https://auth.example.com/t/acme/signin?rd=https%3A%2F%2Fapp.example.com%2Fa%3Fb%3D1%26c%3D2"
        );
    }
}

/// Properties over generated return URLs: whatever arrives as `rd=`, what is accepted is an
/// http(s) URL without userinfo on an allowed origin, and accepting is a fixed point (the
/// accepted URL is accepted again unchanged), so no second pass can move it elsewhere.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const GATEWAY: &str = "https://auth.example.com";

    fn allowed() -> Vec<String> {
        vec![
            "https://app.example.com".into(),
            "http://127.0.0.1:8081".into(),
        ]
    }

    /// The origins a browser may be sent to: the allow-list and the gateway.
    fn allowed_origins() -> Vec<String> {
        allowed()
            .iter()
            .map(String::as_str)
            .chain([GATEWAY])
            .map(|o| Url::parse(o).unwrap().origin().ascii_serialization())
            .collect()
    }

    /// Pieces that open-redirect tricks are made of, glued together in any combination.
    fn tricky() -> impl Strategy<Value = String> {
        let pick = |items: &'static [&'static str]| prop::sample::select(items);
        (
            pick(&[
                "https:",
                "http:",
                "HTTPS:",
                "javascript:",
                "data:",
                "ftp:",
                "",
                "/",
            ]),
            pick(&["//", "/", "///", "\\\\", "/\\", "\\/", "", "%2f%2f", "\t//"]),
            pick(&[
                "",
                "user@",
                "app.example.com@",
                "user:pw@",
                ":@",
                "auth.example.com%40",
            ]),
            pick(&[
                "app.example.com",
                "APP.EXAMPLE.COM",
                "auth.example.com",
                "evil.example",
                "app.example.com.evil.example",
                "evil.example#app.example.com",
                "evil.example?app.example.com",
                "127.0.0.1",
                "[::1]",
                "\u{430}pp.example.com",
                "app.example.com%2eevil.example",
                "app.example.com\u{3002}evil.example",
                "0x7f.1",
                "2130706433",
            ]),
            pick(&["", ":443", ":8443", ":80", ":8081", ":0", ":"]),
            pick(&[
                "",
                "/",
                "/a?b=c",
                "#x",
                "/..//evil.example",
                "@evil.example",
                "/%0d%0aSet-Cookie:x",
                "/\\evil.example",
            ]),
        )
            .prop_map(|(a, b, c, d, e, f)| format!("{a}{b}{c}{d}{e}{f}"))
    }

    fn check(raw: &str) -> Result<(), TestCaseError> {
        let Some(accepted) = safe_return_url(raw, &allowed(), GATEWAY) else {
            return Ok(());
        };
        let url = Url::parse(&accepted).unwrap();
        prop_assert!(
            matches!(url.scheme(), "http" | "https"),
            "{raw:?} -> {accepted}"
        );
        prop_assert!(
            url.username().is_empty() && url.password().is_none(),
            "{raw:?} -> {accepted}"
        );
        prop_assert!(
            allowed_origins().contains(&url.origin().ascii_serialization()),
            "{raw:?} left the allowed origins: {accepted}"
        );
        prop_assert_eq!(
            safe_return_url(&accepted, &allowed(), GATEWAY),
            Some(accepted.clone())
        );
        // The handoff URLs built from it stay on its origin.
        let start = handoff_start_url(&accepted, "acme").unwrap();
        prop_assert_eq!(
            Url::parse(&start).unwrap().origin(),
            url.origin(),
            "{}",
            start
        );
        Ok(())
    }

    proptest! {
        #[test]
        fn any_text_is_refused_or_stays_on_an_allowed_origin(raw in any::<String>()) {
            check(&raw)?;
        }

        #[test]
        fn open_redirect_tricks_never_leave_the_allowed_origins(raw in tricky()) {
            check(&raw)?;
        }

        #[test]
        fn any_path_on_an_allowed_origin_is_kept_on_it(
            origin in prop::sample::select(vec![
                "https://app.example.com", "http://127.0.0.1:8081", GATEWAY, "",
            ]),
            path in "/[A-Za-z0-9._~!$&'()*+,;=:@%/?#-]{0,40}",
        ) {
            prop_assume!(!(origin.is_empty() && path.starts_with("//")));
            let raw = format!("{origin}{path}");
            let accepted = safe_return_url(&raw, &allowed(), GATEWAY);
            prop_assert!(accepted.is_some(), "{raw:?} was refused");
            check(&raw)?;
        }
    }
}
