//! Typed identifiers.
//!
//! Every entity has its own id type so a user id can never be passed where a gateway id is
//! expected. All of them wrap a UUID v7: ids sort by creation time, which is what cursor paging
//! relies on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered (UUID v7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID (for example one read back from a database).
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

id_type!(
    /// Identifies an [`Organization`](crate::Organization).
    OrgId
);
id_type!(
    /// Identifies a [`User`](crate::User).
    UserId
);
id_type!(
    /// Identifies one [`RefreshToken`](crate::RefreshToken).
    RefreshTokenId
);
id_type!(
    /// Identifies a refresh-token family: every token rotated from one login.
    TokenFamilyId
);
id_type!(
    /// Identifies a [`RegistrationToken`](crate::RegistrationToken).
    RegistrationTokenId
);
id_type!(
    /// Identifies a [`Gateway`](crate::Gateway).
    GatewayId
);
id_type!(
    /// Identifies an [`Agent`](crate::Agent) (the relay's id, not the gateway's agent key).
    AgentId
);
id_type!(
    /// Identifies a [`ChatSession`](crate::ChatSession).
    SessionId
);
id_type!(
    /// Identifies a stored [`Message`](crate::Message).
    MessageId
);
id_type!(
    /// Identifies an [`ActivityEvent`](crate::ActivityEvent).
    ActivityId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered_and_round_trip() {
        let a = UserId::new();
        let b = UserId::new();
        assert!(a < b, "v7 ids created later sort later");
        let parsed: UserId = a.to_string().parse().unwrap();
        assert_eq!(parsed, a);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!("\"{a}\""));
        assert_eq!(serde_json::from_str::<UserId>(&json).unwrap(), a);
    }

    #[test]
    fn bad_id_text_is_an_error() {
        assert!("not-a-uuid".parse::<GatewayId>().is_err());
        assert!(serde_json::from_str::<GatewayId>("42").is_err());
    }
}
