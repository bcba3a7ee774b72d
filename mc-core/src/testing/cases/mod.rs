//! The conformance cases. Each takes an empty store and panics on a deviation.

mod chat;
mod identity;
mod outbound;
mod registry;

pub use chat::*;
pub use identity::*;
pub use outbound::*;
pub use registry::*;
