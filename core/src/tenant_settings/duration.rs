//! Lifetimes in stored settings are written as Go-style duration text (`5m`, `1h30m`, `250ms`),
//! the spelling the Tenant resource uses, so rows written before settings were typed (which
//! held the resource's spec verbatim) still read.
//!
//! `keygate-crds` has its own parser for the same syntax; core cannot depend on it (that would
//! pull the Kubernetes client into the gateway), and it cannot depend on core.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Longest duration Go's `time.ParseDuration` accepts (i64 nanoseconds), as the CRD does.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Why a duration text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a duration such as 90s, 5m or 1h30m: {reason}")]
pub struct DurationError {
    /// The text found.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses `<digits><unit>` groups with units `h`, `m`, `s`, `ms` (no signs, no fractions).
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let invalid = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    if input.is_empty() {
        return Err(invalid("empty"));
    }
    let bytes = input.as_bytes();
    let mut total: u128 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(invalid("a number must precede each unit"));
        }
        let value: u128 = input[start..i]
            .parse()
            .map_err(|_| invalid("number too large"))?;
        let (unit_nanos, unit_len): (u128, usize) = match &bytes[i..] {
            [b'm', b's', ..] => (1_000_000, 2),
            [b'h', ..] => (3_600_000_000_000, 1),
            [b'm', ..] => (60_000_000_000, 1),
            [b's', ..] => (1_000_000_000, 1),
            [] => return Err(invalid("missing unit after the last number")),
            _ => return Err(invalid("unknown unit")),
        };
        i += unit_len;
        total = value
            .checked_mul(unit_nanos)
            .and_then(|n| total.checked_add(n))
            .filter(|n| *n <= MAX_NANOS)
            .ok_or_else(|| invalid("longer than 2562047h"))?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| invalid("longer than 2562047h"))?;
    let nanos =
        u32::try_from(total % 1_000_000_000).map_err(|_| invalid("longer than 2562047h"))?;
    Ok(Duration::new(secs, nanos))
}

/// Writes `d` in the shortest `h`/`m`/`s`/`ms` form (`0s` for zero); below a millisecond is
/// dropped, as the syntax cannot say it.
pub fn format(d: Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return "0s".to_owned();
    }
    let (h, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// `#[serde(with = "duration")]` for a `Duration` field.
pub(crate) fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*d))
}

/// `#[serde(with = "duration")]` for a `Duration` field.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_crd_accepts() {
        for (text, expected) in [
            ("0s", Duration::ZERO),
            ("250ms", Duration::from_millis(250)),
            ("5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("1h1m1s1ms", Duration::from_millis(3_661_001)),
            ("2562047h", Duration::from_secs(2_562_047 * 3600)),
        ] {
            assert_eq!(parse(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn refuses_what_the_crd_refuses() {
        for text in ["", "5", "m", "1.5h", "-1s", "1d", "1us", "5 m", "2562048h"] {
            assert!(parse(text).is_err(), "{text:?} should be refused");
        }
    }

    #[test]
    fn formats_the_shortest_text_and_reads_it_back() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_secs(720 * 3600), "720h"),
            (Duration::from_millis(3_661_001), "1h1m1s1ms"),
        ] {
            assert_eq!(format(d), text);
            assert_eq!(parse(text).unwrap(), d);
        }
        // "90m" is read as written and written back in the shortest form.
        assert_eq!(format(parse("90m").unwrap()), "1h30m");
    }
}
