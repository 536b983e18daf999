//! The tenant's password policy: length, the breached-password list (local, no network
//! call; replaceable by the operator of the service) and no reuse of the last N.

use super::IdentityError;
use keygate_core::tenant_settings::PasswordPolicy;
use std::collections::HashSet;
use std::sync::Arc;

/// The list shipped with keygate: common passwords generated from well-known patterns.
const SHIPPED: &str = include_str!("../../data/breached-passwords.txt");

/// Passwords refused because attackers try them first; compared case-insensitively.
#[derive(Clone, Debug)]
pub struct BreachedList(Arc<HashSet<String>>);

impl Default for BreachedList {
    fn default() -> Self {
        Self::parse(SHIPPED)
    }
}

impl BreachedList {
    /// One password a line; blank lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Self {
        Self(Arc::new(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_lowercase)
                .collect(),
        ))
    }

    /// Reads a replacement list (`KEYGATE_BREACHED_PASSWORDS_FILE`).
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string(path)?))
    }

    /// Whether `password` is on the list.
    pub fn contains(&self, password: &str) -> bool {
        self.0.contains(&password.to_lowercase())
    }

    /// How many entries the list holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Checks length, the list and the email; history is checked by the caller (it hashes).
pub(crate) fn check(
    policy: &PasswordPolicy,
    breached: &BreachedList,
    password: &str,
    email: &str,
) -> Result<(), IdentityError> {
    let chars = password.chars().count();
    if chars < policy.min_length as usize {
        return Err(IdentityError::PasswordPolicy(format!(
            "the password must have at least {} characters",
            policy.min_length
        )));
    }
    if chars > policy.max_length as usize {
        return Err(IdentityError::PasswordPolicy(format!(
            "the password must have at most {} characters",
            policy.max_length
        )));
    }
    if password.eq_ignore_ascii_case(email)
        || password.to_lowercase() == email.split('@').next().unwrap_or_default().to_lowercase()
    {
        return Err(IdentityError::PasswordPolicy(
            "the password must not be the email address".into(),
        ));
    }
    if policy.breached_check && breached.contains(password) {
        return Err(IdentityError::PasswordBreached);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_list_catches_common_passwords() {
        let list = BreachedList::default();
        assert!(list.len() > 1000, "{}", list.len());
        assert!(list.contains("password123"));
        assert!(list.contains("Password123"));
        assert!(!list.contains("correct horse battery staple 42"));
    }

    #[test]
    fn policy_rules() {
        let policy = PasswordPolicy::default();
        let list = BreachedList::default();
        assert!(matches!(
            check(&policy, &list, "short", "a@b.c"),
            Err(IdentityError::PasswordPolicy(_))
        ));
        assert!(matches!(
            check(&policy, &list, &"x".repeat(129), "a@b.c"),
            Err(IdentityError::PasswordPolicy(_))
        ));
        assert!(matches!(
            check(&policy, &list, "qwerty123", "a@b.c"),
            Err(IdentityError::PasswordBreached)
        ));
        assert!(matches!(
            check(&policy, &list, "alice@example.com", "alice@example.com"),
            Err(IdentityError::PasswordPolicy(_))
        ));
        assert!(check(&policy, &list, "violet-anchor-7-tundra", "a@b.c").is_ok());
    }
}
