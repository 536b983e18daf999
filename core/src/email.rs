//! The one syntax keygate accepts for an email address, used by sign-up, invites, admin
//! account creation and the sign-in lookup alike. Addresses end up in HTTP headers
//! (`X-Auth-Request-Email`), token claims and role bindings, so the syntax is a
//! conservative subset of RFC 5321: a dot-atom local part in ASCII (no quoted strings, no
//! comments, so no `,`, `;`, `"`, spaces or non-ASCII letters such as `ſ`, which an upstream
//! that upper-cases would turn into `S`), and a domain name of at least two labels,
//! converted to its ASCII (punycode) form by IDNA (UTS #46, STD3 rules) — no address
//! literals.

use std::fmt;

/// Longest address accepted, in octets (RFC 5321 §4.5.3.1.3 path limit, less the brackets).
pub const MAX_ADDRESS_OCTETS: usize = 254;
/// Longest local part, in octets (RFC 5321 §4.5.3.1.1).
const MAX_LOCAL_OCTETS: usize = 64;

/// An address in keygate's accepted syntax, its domain in ASCII (lower-case punycode).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

/// Why an address is refused; the text is safe to show next to the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Empty, or no `@` between a local part and a domain.
    #[error("enter an address like name@example.com")]
    Shape,
    /// Longer than [`MAX_ADDRESS_OCTETS`] or a local part over 64 octets.
    #[error("the address is too long")]
    TooLong,
    /// The local part has a character outside ASCII letters, digits and
    /// ``!#$%&'*+-/=?^_`{|}~``, or an empty dot-separated part.
    #[error(
        "the part before @ may only use ASCII letters, digits and !#$%&'*+-/=?^_`{{|}}~, with single dots between them"
    )]
    LocalPart,
    /// The domain is not a name of two or more valid labels (after IDNA).
    #[error("the part after @ is not a valid domain name")]
    Domain,
}

impl EmailAddress {
    /// Parses `input` (surrounding whitespace ignored) in the accepted syntax.
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let input = input.trim();
        let (local, domain) = input.rsplit_once('@').ok_or(EmailError::Shape)?;
        if local.is_empty() || domain.is_empty() {
            return Err(EmailError::Shape);
        }
        if input.len() > MAX_ADDRESS_OCTETS || local.len() > MAX_LOCAL_OCTETS {
            return Err(EmailError::TooLong);
        }
        if !is_dot_atom(local) {
            return Err(EmailError::LocalPart);
        }
        let domain = ascii_domain(domain)?;
        let address = format!("{local}@{domain}");
        if address.len() > MAX_ADDRESS_OCTETS {
            return Err(EmailError::TooLong);
        }
        Ok(Self(address))
    }

    /// The address: the local part as typed, the domain in ASCII.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// RFC 5322 `atext` (ASCII only): what a dot-atom's atoms are made of.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// One or more atoms separated by single dots.
fn is_dot_atom(s: &str) -> bool {
    s.split('.')
        .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext))
}

/// The domain in ASCII: IDNA with STD3 rules (letters, digits, hyphens; hyphen placement
/// and DNS lengths checked), at least two labels, a top-level label that is not all digits
/// (so no dotted IPv4 address) and no trailing root dot.
fn ascii_domain(domain: &str) -> Result<String, EmailError> {
    if domain.ends_with('.') || domain.starts_with('[') {
        return Err(EmailError::Domain);
    }
    let ascii = idna::domain_to_ascii_strict(domain).map_err(|_| EmailError::Domain)?;
    let labels: Vec<&str> = ascii.split('.').collect();
    let top = labels.last().copied().unwrap_or_default();
    let well_formed = labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        && !top.bytes().all(|b| b.is_ascii_digit());
    if well_formed {
        Ok(ascii)
    } else {
        Err(EmailError::Domain)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_addresses_are_kept_with_their_domain_lowercased() {
        for (input, kept) in [
            ("ada@example.com", "ada@example.com"),
            ("  Ada.Lovelace@Example.COM ", "Ada.Lovelace@example.com"),
            (
                "o'brien+tag@mail.example.org",
                "o'brien+tag@mail.example.org",
            ),
            ("a!#$%&'*+-/=?^_`{|}~z@x.io", "a!#$%&'*+-/=?^_`{|}~z@x.io"),
            ("admin@demo.local", "admin@demo.local"),
            ("x@a-b.c0", "x@a-b.c0"),
        ] {
            assert_eq!(
                EmailAddress::parse(input).unwrap().as_str(),
                kept,
                "{input}"
            );
        }
    }

    #[test]
    fn international_domains_become_punycode() {
        let a = EmailAddress::parse("hans@Bücher.example").unwrap();
        assert_eq!(a.as_str(), "hans@xn--bcher-kva.example");
        // The ASCII form parses to itself.
        assert_eq!(EmailAddress::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn the_attack_addresses_are_refused() {
        // Upper-cases to SCOTT@…; a comma splits a header list.
        assert_eq!(
            EmailAddress::parse("ſcott@corp.example"),
            Err(EmailError::LocalPart)
        );
        assert_eq!(
            EmailAddress::parse("boss@corp.example,x.y"),
            Err(EmailError::Domain)
        );
        assert_eq!(
            EmailAddress::parse("boss,x@corp.example"),
            Err(EmailError::LocalPart)
        );
    }

    #[test]
    fn everything_outside_the_subset_is_refused_with_its_reason() {
        use EmailError::*;
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_domain = format!("a@{}.com", vec!["b".repeat(60); 5].join("."));
        for (input, why) in [
            ("", Shape),
            ("   ", Shape),
            ("no-at-sign", Shape),
            ("@example.com", Shape),
            ("ada@", Shape),
            (long_local.as_str(), TooLong),
            (long_domain.as_str(), TooLong),
            ("\"quoted\"@example.com", LocalPart),
            ("a b@example.com", LocalPart),
            ("a;b@example.com", LocalPart),
            ("a(comment)@example.com", LocalPart),
            ("a\\b@example.com", LocalPart),
            (".ada@example.com", LocalPart),
            ("ada.@example.com", LocalPart),
            ("a..b@example.com", LocalPart),
            ("jos\u{e9}@example.com", LocalPart),
            ("ada\r\nX-Evil: 1@example.com", LocalPart),
            ("a@b@example.com", LocalPart),
            ("ada@localhost", Domain),
            ("ada@example.com.", Domain),
            ("ada@[127.0.0.1]", Domain),
            ("ada@127.0.0.1", Domain),
            ("ada@-example.com", Domain),
            ("ada@exa_mple.com", Domain),
            ("ada@exa mple.com", Domain),
            ("ada@example..com", Domain),
            ("ada@example.com\u{0}", Domain),
        ] {
            assert_eq!(EmailAddress::parse(input), Err(why), "{input:?}");
        }
    }
}

/// Properties over generated addresses: parsing never panics, what it accepts is a fixed
/// point (normalising twice changes nothing) made only of the characters the syntax allows,
/// and the case of the domain never makes two accounts of one address.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn address() -> impl Strategy<Value = String> {
        (
            "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,10}(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,10}){0,2}",
            // Single hyphens only: UTS #46 refuses `--` in the third and fourth places.
            prop::collection::vec("[A-Za-z0-9]{1,4}(-[A-Za-z0-9]{1,4}){0,2}", 1..4),
            "[A-Za-z][A-Za-z0-9]{1,6}",
            prop::sample::select(vec!["", " ", "\t", "  "]),
        )
            .prop_map(|(local, labels, top, pad)| {
                format!("{pad}{local}@{}.{top}{pad}", labels.join("."))
            })
    }

    fn check_accepted(input: &str) -> Result<(), TestCaseError> {
        let Ok(a) = EmailAddress::parse(input) else {
            return Ok(());
        };
        let s = a.as_str();
        prop_assert!(s.len() <= MAX_ADDRESS_OCTETS);
        prop_assert!(s.is_ascii(), "{s:?}");
        prop_assert_eq!(s.matches('@').count(), 1, "{}", s);
        prop_assert!(
            !s.bytes()
                .any(|b| b.is_ascii_control() || b" ,;\"()<>[]\\".contains(&b)),
            "{s:?} carries a character a header list or a log line could split on"
        );
        let (_, domain) = s.rsplit_once('@').unwrap();
        prop_assert_eq!(domain, domain.to_ascii_lowercase());
        prop_assert_eq!(EmailAddress::parse(s), Ok(a.clone()), "not idempotent");
        Ok(())
    }

    proptest! {
        #[test]
        fn any_text_is_refused_or_normalised_to_a_fixed_point(input in any::<String>()) {
            check_accepted(&input)?;
        }

        #[test]
        fn addresses_near_the_syntax_never_panic(
            input in "[ a-zA-Z0-9.@+_\\-\u{e9}\u{17f}\u{fc}\u{3002},;\"\\[\\]]{0,40}",
        ) {
            check_accepted(&input)?;
        }

        #[test]
        fn well_formed_addresses_are_accepted_whatever_the_domain_case(raw in address()) {
            let a = EmailAddress::parse(&raw);
            prop_assert!(a.is_ok(), "{raw:?}: {a:?}");
            check_accepted(&raw)?;
            let (local, domain) = raw.trim().rsplit_once('@').unwrap();
            let shouting = format!("{local}@{}", domain.to_ascii_uppercase());
            prop_assert_eq!(EmailAddress::parse(&shouting), a);
        }
    }
}
