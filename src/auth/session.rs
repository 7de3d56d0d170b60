//! Session cookies and CSRF tokens.
//!
//! A session id is 256 random bits in an `HttpOnly`, `SameSite=Lax` cookie (`Secure`, and
//! named with the `__Host-` prefix, whenever the console's base URL is https); the store
//! keeps only its SHA-256. Each session has its own CSRF token, put in every form and
//! checked on every state-changing request (the synchronizer-token pattern). Before sign-in
//! (the sign-in forms) a random value in a short-lived cookie must equal the form's (double
//! submit), so another site cannot sign a browser in as someone else.

use std::time::Duration;

/// Session lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    /// A session not used for this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub absolute: Duration,
}

impl Default for Lifetimes {
    /// One hour idle, twelve hours in all: a working day, and an unattended browser does not
    /// stay signed in past lunch.
    fn default() -> Self {
        Lifetimes { idle: Duration::from_secs(3600), absolute: Duration::from_secs(12 * 3600) }
    }
}

/// The cookies the console sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cookie {
    /// The session id.
    Session,
    /// The pre-session CSRF value of the sign-in forms.
    Presession,
    /// An invitation token, between the link and the acceptance (path `/invitations`).
    Invitation,
    /// An emailed sign-in token, between the link and the confirmation (path `/signin`).
    SigninLink,
}

impl Cookie {
    /// The cookie's name: `__Host-` prefixed when secure (which requires `Path=/`), else plain.
    pub fn name(self, secure: bool) -> &'static str {
        match (self, secure) {
            (Cookie::Session, true) => "__Host-servicehub-session",
            (Cookie::Session, false) => "servicehub-session",
            (Cookie::Presession, true) => "__Host-servicehub-presession",
            (Cookie::Presession, false) => "servicehub-presession",
            (Cookie::Invitation, true) => "__Secure-servicehub-invitation",
            (Cookie::Invitation, false) => "servicehub-invitation",
            (Cookie::SigninLink, true) => "__Secure-servicehub-signin",
            (Cookie::SigninLink, false) => "servicehub-signin",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Cookie::Session | Cookie::Presession => "/",
            Cookie::Invitation => "/invitations",
            Cookie::SigninLink => "/signin",
        }
    }

    /// A `Set-Cookie` value giving the cookie `value` for `max_age` (0 removes it).
    pub fn set(self, value: &str, max_age: Duration, secure: bool) -> String {
        let secure_attr = if secure { "; Secure" } else { "" };
        format!(
            "{}={value}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax{secure_attr}",
            self.name(secure),
            self.path(),
            max_age.as_secs()
        )
    }

    /// A `Set-Cookie` value removing the cookie.
    pub fn clear(self, secure: bool) -> String {
        self.set("", Duration::ZERO, secure)
    }

    /// This cookie's value in a `Cookie` request header.
    pub fn find(self, header: &str, secure: bool) -> Option<&str> {
        let name = self.name(secure);
        header.split(';').filter_map(|kv| kv.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

/// Compare two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `s` has the shape of a token this console hands out (43 URL-safe characters), so
/// that malformed values are refused before any store look-up.
pub fn is_token(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_lax_and_secure_with_the_host_prefix_on_https() {
        let plain = Cookie::Session.set("abc", Duration::from_secs(60), false);
        assert_eq!(plain, "servicehub-session=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Lax");
        let secure = Cookie::Session.set("abc", Duration::from_secs(60), true);
        assert_eq!(secure, "__Host-servicehub-session=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure");
        assert!(Cookie::Invitation.set("t", Duration::from_secs(900), false).contains("Path=/invitations;"));
        assert!(Cookie::Session.clear(false).contains("Max-Age=0"));
    }

    #[test]
    fn a_cookie_is_found_by_its_exact_name() {
        let h = "servicehub-session-x=1; servicehub-session=abc; other=2";
        assert_eq!(Cookie::Session.find(h, false), Some("abc"));
        assert_eq!(Cookie::Session.find(h, true), None);
        assert_eq!(Cookie::Invitation.find(h, false), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd") && !same_secret("abc", "ab") && !same_secret("", ""));
        assert!(is_token(&"a".repeat(43)) && !is_token(&"a".repeat(42)) && !is_token(&"+".repeat(43)));
    }
}
