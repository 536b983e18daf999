//! Go-style duration strings (`90s`, `5m`, `1h30m`, `250ms`) as the CRDs spell them.
//!
//! Kubernetes CEL's `duration()` parses the same syntax, so the schema can compare two of them
//! (`duration(self.gracePeriod) < duration(self.every)`); Rust code gets a
//! [`std::time::Duration`] through [`GoDuration::get`] or [`parse_duration`].

use std::{borrow::Cow, fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// The schema pattern of a duration: one or more `<digits><unit>` groups, units `h`, `m`, `s`, `ms`.
pub const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h))+$";

/// Longest duration Go's `time.ParseDuration` (and so the API server's CEL) accepts: i64 nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration restricted to [`DURATION_PATTERN`] (no signs, no fractions, no `us`/`ns`).
pub fn parse_duration(input: &str) -> Result<Duration, Error> {
    let invalid = |reason| Error::InvalidDuration {
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
        let digits = &input[start..i];
        let (unit_nanos, unit_len): (u128, usize) = match &bytes[i..] {
            [b'm', b's', ..] => (1_000_000, 2),
            [b'h', ..] => (3_600_000_000_000, 1),
            [b'm', ..] => (60_000_000_000, 1),
            [b's', ..] => (1_000_000_000, 1),
            [] => return Err(invalid("missing unit after the last number")),
            _ => return Err(invalid("unknown unit")),
        };
        i += unit_len;
        let value: u128 = digits.parse().map_err(|_| invalid("number too large"))?;
        total = value
            .checked_mul(unit_nanos)
            .and_then(|n| total.checked_add(n))
            .filter(|n| *n <= MAX_NANOS)
            .ok_or_else(|| invalid("longer than 2562047h"))?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| invalid("longer than 2562047h"))?;
    // The remainder is below 1e9, so it always fits in u32.
    let nanos =
        u32::try_from(total % 1_000_000_000).map_err(|_| invalid("longer than 2562047h"))?;
    Ok(Duration::new(secs, nanos))
}

/// A duration field of a keygate resource: keeps the text as written and its parsed value.
///
/// Deserializing rejects text that is not a valid duration, so a loaded resource never holds
/// one that cannot be used; serializing writes the original text back unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GoDuration {
    text: String,
    value: Duration,
}

impl GoDuration {
    /// The parsed duration.
    pub fn get(&self) -> Duration {
        self.value
    }

    /// The duration as written in the manifest, e.g. `"1h30m"`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Builds a default value from a literal known to be valid; used for schema defaults.
    pub(crate) fn literal(text: &'static str) -> Self {
        // Defaults are constants checked by the unit tests below; fall back to zero rather than panic.
        let value = parse_duration(text).unwrap_or(Duration::ZERO);
        Self {
            text: text.to_owned(),
            value,
        }
    }
}

impl FromStr for GoDuration {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Ok(Self {
            value: parse_duration(text)?,
            text: text.to_owned(),
        })
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": 32,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("0s", Duration::ZERO),
            ("250ms", Duration::from_millis(250)),
            ("10s", Duration::from_secs(10)),
            ("5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("720h", Duration::from_secs(720 * 3600)),
            ("1h1m1s1ms", Duration::from_millis(3_661_001)),
            ("2562047h", Duration::from_secs(2_562_047 * 3600)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn rejects_what_the_pattern_rejects() {
        for text in [
            "", "5", "m", "1.5h", "-1s", "1d", "1us", "5 m", "1h 30m", "2562048h",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} should be rejected");
        }
    }

    #[test]
    fn round_trips_the_original_text() {
        let d: GoDuration = serde_json::from_str("\"90m\"").unwrap();
        assert_eq!(d.get(), Duration::from_secs(5400));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"90m\"");
        assert!(serde_json::from_str::<GoDuration>("\"90 minutes\"").is_err());
    }
}
