//! The progressive lockout schedule, which slows password guessing without letting a
//! stranger lock an account out for long: 5 failures lock for 5 minutes, 10 for
//! 30 minutes, 15 and more for 2 hours; every failure from the fifth on locks again for
//! its tier. A successful sign-in clears the counter.

use chrono::Duration;

/// How long an account is locked after its `failures`-th consecutive failure, if at all.
pub(crate) fn lock_duration(failures: i64) -> Option<Duration> {
    match failures {
        f if f >= 15 => Some(Duration::hours(2)),
        f if f >= 10 => Some(Duration::minutes(30)),
        f if f >= 5 => Some(Duration::minutes(5)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_matches_the_design() {
        assert_eq!(lock_duration(4), None);
        assert_eq!(lock_duration(5), Some(Duration::minutes(5)));
        assert_eq!(lock_duration(9), Some(Duration::minutes(5)));
        assert_eq!(lock_duration(10), Some(Duration::minutes(30)));
        assert_eq!(lock_duration(15), Some(Duration::hours(2)));
        assert_eq!(lock_duration(40), Some(Duration::hours(2)));
    }
}
