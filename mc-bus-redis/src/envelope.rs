//! What one bus message looks like on a Redis channel: JSON naming the instance that
//! published it (its own copy is skipped: local handlers got it inline), the topic and the
//! message.

use mc_core::bus::{BusMessage, BusTopic};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct Out<'a> {
    o: &'a str,
    t: BusTopic,
    m: &'a BusMessage,
}

#[derive(Deserialize)]
struct In {
    o: String,
    t: BusTopic,
    m: BusMessage,
}

/// Renders a message published by `origin`.
pub(crate) fn encode(origin: &str, topic: BusTopic, message: &BusMessage) -> Vec<u8> {
    // A BusMessage is plain data (strings, ids, numbers): rendering it cannot fail.
    serde_json::to_vec(&Out { o: origin, t: topic, m: message }).unwrap_or_default()
}

/// Reads a message off a channel: who published it, its topic, the message.
pub(crate) fn decode(bytes: &[u8]) -> Result<(String, BusTopic, BusMessage), serde_json::Error> {
    let In { o, t, m } = serde_json::from_slice(bytes)?;
    Ok((o, t, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mc_core::bus::{ConnectionId, GatewayCommand};
    use mc_core::{GatewayId, UserId};

    #[test]
    fn messages_survive_the_channel() {
        let topic = BusTopic::User(UserId::new());
        let message = BusMessage::ToUser {
            frame: "{\"type\":\"chunk\",\"delta\":\"h\u{e9}\\\"\"}".into(),
            only: Some(ConnectionId(u64::MAX)),
            except: None,
        };
        let (origin, t, m) = decode(&encode("a", topic, &message)).unwrap();
        assert_eq!((origin.as_str(), t, m), ("a", topic, message));
        let gateway = BusTopic::Gateway(GatewayId::new());
        let taken = BusMessage::ToGateway(GatewayCommand::TakenOver { by: "b".into() });
        assert_eq!(decode(&encode("b", gateway, &taken)).unwrap().2, taken);
        assert!(decode(b"{\"o\":\"x\"}").is_err());
        assert!(decode(b"\xff").is_err());
    }
}
