//! Checks of user-supplied fields. Each returns [`Error::Invalid`] naming the field.

use crate::error::{Error, Result};

/// Shortest and longest username.
pub const USERNAME_LEN: (usize, usize) = (3, 64);
/// Shortest and longest password, in characters.
pub const PASSWORD_LEN: (usize, usize) = (8, 128);

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// 3–64 of `[A-Za-z0-9_.-]`.
pub fn username(field: &str, value: &str) -> Result<()> {
    let (min, max) = USERNAME_LEN;
    if value.len() < min || value.len() > max {
        return Err(Error::invalid(field, format!("must be {min}–{max} characters long")));
    }
    if let Some(bad) =
        value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(Error::invalid(
            field,
            format!("may only contain letters, digits, '_', '.' and '-' (found {bad:?})"),
        ));
    }
    Ok(())
}

/// 8–128 characters.
pub fn password(field: &str, value: &str) -> Result<()> {
    let (min, max) = PASSWORD_LEN;
    let n = chars(value);
    if n < min || n > max {
        return Err(Error::invalid(field, format!("must be {min}–{max} characters long")));
    }
    Ok(())
}

/// A plausible address: `local@domain.tld`, at most 254 bytes, no spaces or control characters.
pub fn email(field: &str, value: &str) -> Result<()> {
    let shape = || Error::invalid(field, "must be an email address like name@example.com");
    if value.len() > 254 {
        return Err(Error::invalid(field, "must be at most 254 characters long"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(shape());
    }
    let (local, domain) = value.split_once('@').ok_or_else(shape)?;
    let domain_ok = !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..");
    if local.is_empty() || local.len() > 64 || !domain_ok {
        return Err(shape());
    }
    Ok(())
}

/// Digits with an optional leading `+` and spaces, dashes or parentheses; 5–32 characters.
pub fn phone(field: &str, value: &str) -> Result<()> {
    let body = value.strip_prefix('+').unwrap_or(value);
    let digits = body.chars().filter(char::is_ascii_digit).count();
    let allowed = body.chars().all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')'));
    if !allowed || digits < 5 || value.len() > 32 {
        return Err(Error::invalid(
            field,
            "must be a phone number of 5–32 characters: digits, an optional leading '+', spaces, '-', '(' or ')'",
        ));
    }
    Ok(())
}

/// Free text shown to people: 1–`max` characters, not blank, no control characters.
pub fn display_text(field: &str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "must not be blank"));
    }
    if chars(value) > max {
        return Err(Error::invalid(field, format!("must be at most {max} characters long")));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// An `http://` or `https://` URL of at most 2048 bytes without spaces.
pub fn http_url(field: &str, value: &str) -> Result<()> {
    url_with(field, value, &["https://", "http://"], "an http:// or https://")
}

/// A URL starting with one of `schemes`, with a host, at most 2048 bytes, without spaces.
fn url_with(field: &str, value: &str, schemes: &[&str], described: &str) -> Result<()> {
    let rest = schemes.iter().find_map(|p| value.strip_prefix(p));
    let ok = rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        && value.len() <= 2048
        && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(Error::invalid(
            field,
            format!("must be {described} URL of at most 2048 characters"),
        ));
    }
    Ok(())
}

/// An identifier: 1–`max` of `[A-Za-z0-9_.-]` (also `:` when `colon` is set).
pub fn identifier(field: &str, value: &str, max: usize, colon: bool) -> Result<()> {
    if value.is_empty() || value.len() > max {
        return Err(Error::invalid(field, format!("must be 1–{max} characters long")));
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') || (colon && c == ':');
    if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
        let extra = if colon { ", '-' and ':'" } else { " and '-'" };
        return Err(Error::invalid(
            field,
            format!("may only contain letters, digits, '_', '.'{extra} (found {bad:?})"),
        ));
    }
    Ok(())
}

/// A `ws://`, `wss://`, `http://` or `https://` URL of at most 2048 bytes without spaces.
pub fn endpoint_url(field: &str, value: &str) -> Result<()> {
    url_with(
        field,
        value,
        &["wss://", "ws://", "https://", "http://"],
        "a ws://, wss://, http:// or https://",
    )
}

/// A `ws://` or `wss://` URL of at most 2048 bytes without spaces (a socket the relay dials),
/// with no credentials in it (`user:password@`): they would be stored and shown as the URL
/// is, and OpenClaw takes its token in the handshake instead.
pub fn ws_url(field: &str, value: &str) -> Result<()> {
    url_with(field, value, &["wss://", "ws://"], "a ws:// or wss://")?;
    let after_scheme = value.split_once("://").map_or(value, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(Error::invalid(
            field,
            "must not carry credentials (user:password@); give the gateway's token as `token`",
        ));
    }
    Ok(())
}

/// Free text of at most `max` characters with no control characters (may be empty).
pub fn plain_text(field: &str, value: &str, max: usize) -> Result<()> {
    if chars(value) > max {
        return Err(Error::invalid(field, format!("must be at most {max} characters long")));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(r: Result<()>) -> bool {
        r.is_ok()
    }

    #[test]
    fn usernames() {
        assert!(!ok(username("u", "al")));
        assert!(ok(username("u", "alice.b-c_9")));
        assert!(!ok(username("u", "alice smith")));
        assert!(!ok(username("u", "ålice")));
        assert!(!ok(username("u", &"a".repeat(65))));
        let err = username("username", "a b").unwrap_err().to_string();
        assert!(err.starts_with("username: may only contain"), "{err}");
    }

    #[test]
    fn passwords_count_characters() {
        assert!(!ok(password("p", "short")));
        assert!(ok(password("p", "ünïcödé!")));
        assert!(!ok(password("p", &"x".repeat(129))));
    }

    #[test]
    fn emails() {
        for good in ["a@b.co", "first.last+tag@example.com"] {
            assert!(ok(email("e", good)), "{good}");
        }
        for bad in ["", "a", "a@b", "@b.co", "a@@b.co", "a b@c.co", "a@.co", "a@b.co.", "a@b..co"] {
            assert!(!ok(email("e", bad)), "{bad}");
        }
    }

    #[test]
    fn identifiers_and_endpoints() {
        assert!(ok(identifier("n", "office-gw.1", 64, false)));
        assert!(!ok(identifier("n", "", 64, false)));
        assert!(!ok(identifier("n", "a:b", 64, false)));
        assert!(ok(identifier("n", "a:b", 64, true)));
        assert!(ok(endpoint_url("u", "ws://127.0.0.1:18789")));
        assert!(ok(ws_url("u", "wss://gw.example.com/path?x=a@b")), "an @ after the host is fine");
        for with_credentials in ["ws://user:pass@127.0.0.1:18789", "wss://token@gw.example.com/"] {
            let err = ws_url("u", with_credentials).unwrap_err().to_string();
            assert!(err.contains("credentials"), "{with_credentials}: {err}");
        }
        assert!(!ok(endpoint_url("u", "ftp://x")));
        assert!(ok(plain_text("t", "", 10)));
        assert!(!ok(plain_text("t", "a\nb", 10)));
    }

    #[test]
    fn phones_and_urls_and_text() {
        assert!(ok(phone("p", "+1 (555) 010-0000")));
        assert!(!ok(phone("p", "12ab45")));
        assert!(!ok(phone("p", "123")));
        assert!(ok(http_url("a", "https://example.com/a.png")));
        assert!(!ok(http_url("a", "javascript:alert(1)")));
        assert!(!ok(http_url("a", "https://")));
        assert!(ok(display_text("d", "Zoë 😀", 64)));
        assert!(!ok(display_text("d", "   ", 64)));
        assert!(!ok(display_text("d", "a\u{0}b", 64)));
    }
}
