//! [`debug_redacted!`]: `Debug` for types that hold secrets (passwords, tokens), so that no
//! log line or panic message can print one.

/// Implements `Debug` for a struct: the `shown` fields as usual, each `secret` field as
/// `<redacted>` (whether or not it holds a value).
///
/// ```
/// struct Login { username: String, password: String }
/// mc_core::debug_redacted!(Login { username } secret { password });
/// let text = format!("{:?}", Login { username: "ada".into(), password: "hunter2".into() });
/// assert_eq!(text, r#"Login { username: "ada", password: "<redacted>" }"#);
/// ```
#[macro_export]
macro_rules! debug_redacted {
    ($ty:ident $(<$lt:lifetime>)? { $($shown:ident),* $(,)? } secret { $($secret:ident),+ $(,)? }) => {
        impl $(<$lt>)? ::std::fmt::Debug for $ty $(<$lt>)? {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                let mut out = f.debug_struct(stringify!($ty));
                $( out.field(stringify!($shown), &self.$shown); )*
                $( let _ = &self.$secret; out.field(stringify!($secret), &"<redacted>"); )+
                out.finish()
            }
        }
    };
}

/// Text that is a secret (a token): `Debug` shows `<redacted>`; [`expose`](Self::expose)
/// gives the text to whoever must check it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        String::deserialize(de).map(Self)
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn secrets_never_show_in_debug() {
        let secret = Secret::from("gw_relay_abc");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(secret.expose(), "gw_relay_abc");
        struct Body {
            name: &'static str,
            token: String,
        }
        crate::debug_redacted!(Body { name } secret { token });
        let body = Body { name: "gw", token: "gw_relay_abc".into() };
        assert!(!format!("{body:?}").contains("abc"), "{body:?}");
    }
}
