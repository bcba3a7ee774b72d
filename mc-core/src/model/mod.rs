//! The domain model of the relay: entities and their statuses.
//!
//! These are plain data. Stores persist them; services decide how they change.

mod activity;
mod chat;
mod gateway;
mod identity;
mod outbound;
mod secret;

pub use activity::ActivityEvent;
pub use chat::{
    ChatSession, DeliveryState, IdempotencyKey, Message, MessageRole, NewMessage, SessionStatus,
};
pub use gateway::{
    Agent, AgentReport, AgentStatus, Assignment, AssignmentRole, ConnectionInfo, Gateway,
    GatewayMetrics, GatewayStatus, RegistrationToken,
};
pub use identity::{Organization, RefreshToken, Role, User, UserStatus};
pub use outbound::OutboundLink;
pub use secret::SecretHash;

/// A point in time, always UTC. Stores keep microsecond precision.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// Returned when text does not name a known status, role or kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} '{value}' (expected one of: {expected})")]
pub struct UnknownVariant {
    /// What was being parsed, e.g. `"user status"`.
    pub kind: &'static str,
    /// The text that did not match.
    pub value: String,
    /// The accepted values, comma separated.
    pub expected: &'static str,
}

/// Declares a closed set of lowercase string values (statuses, roles) with `as_str`,
/// `FromStr`, `Display` and serde in the same spelling.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $kind:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and wire spelling.
            pub const fn as_str(&self) -> &'static str {
                match self {
                    $( $name::$variant => $text ),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::model::UnknownVariant;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err($crate::model::UnknownVariant {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: concat!($($text, " "),+).trim_ascii_end(),
                    }),
                }
            }
        }
    };
}
pub(crate) use string_enum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_enums_round_trip_every_value() {
        for status in GatewayStatus::ALL {
            assert_eq!(status.as_str().parse::<GatewayStatus>().unwrap(), *status);
            let json = serde_json::to_string(status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>().unwrap(), *role);
        }
    }

    #[test]
    fn unknown_values_name_the_choices() {
        let err = "Admin".parse::<Role>().unwrap_err();
        assert_eq!(err.kind, "role");
        assert_eq!(err.expected, "member admin");
        assert!(err.to_string().contains("'Admin'"));
    }
}
