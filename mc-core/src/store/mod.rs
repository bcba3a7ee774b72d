//! Storage traits.
//!
//! Each concept has its own trait; [`Store`] is all of them together, which is what a relay
//! holds as `Arc<dyn Store>`. An `Arc<dyn Store>` coerces to any one of the narrower traits
//! (`Arc<dyn UserStore>`, …) for code that needs less.
//!
//! Conventions shared by every store:
//! - lookups of absent records return `Ok(None)`; changes to absent records return
//!   [`StoreError::NotFound`];
//! - uniqueness violations return [`StoreError::Conflict`] and write nothing;
//! - listings take a [`Page`] and return a [`Paged`];
//! - timestamps keep microsecond precision.
//!
//! The `testing` feature adds a conformance suite ([`crate::testing`]) every store runs.

mod agent_sync;
mod append_batch;
mod chat;
mod error;
mod identity;
mod outbound;
mod paging;
mod registry;

pub use agent_sync::{AgentSyncPlan, plan_agent_sync};
pub use append_batch::{
    BATCH_CHUNKS, BatchPlan, KeysToLookUp, PlannedAppend, StoredCopies, batch_chunks,
    keys_to_look_up, plan_append_batch,
};
pub use chat::{
    ActivityStore, Appended, DeliveryUpdate, MessagePage, MessageStore, PendingDelivery,
    SessionStore,
};
pub use error::{BoxError, ConflictKind, StoreError, StoreResult};
pub use identity::{AttemptWindow, LoginAttempt, OrgStore, RefreshTokenStore, UserStore};
pub use outbound::OutboundStore;
pub use paging::{MAX_PAGE_LIMIT, Page, Paged};
pub use registry::{
    AgentStore, AgentSync, AssignedAgent, AssignmentStore, ConsumeOutcome, GatewayStore,
    RegistrationTokenStore, StatusChange,
};

use async_trait::async_trait;

/// Every storage trait at once, plus a health check. Implemented automatically for any type
/// that implements the parts and [`StoreHealth`].
pub trait Store:
    OrgStore
    + UserStore
    + RefreshTokenStore
    + RegistrationTokenStore
    + GatewayStore
    + AgentStore
    + AssignmentStore
    + SessionStore
    + MessageStore
    + ActivityStore
    + OutboundStore
    + StoreHealth
    + std::fmt::Debug
{
}

impl<T> Store for T where
    T: OrgStore
        + UserStore
        + RefreshTokenStore
        + RegistrationTokenStore
        + GatewayStore
        + AgentStore
        + AssignmentStore
        + SessionStore
        + MessageStore
        + ActivityStore
        + OutboundStore
        + StoreHealth
        + std::fmt::Debug
{
}

/// Whether the store can be reached (for readiness probes).
#[async_trait]
pub trait StoreHealth: Send + Sync {
    /// Runs a trivial query; `Unavailable` when the database cannot be reached.
    async fn ping(&self) -> StoreResult<()>;
    /// The backend's name, e.g. `"sqlite"` or `"postgres"`, for logs and metrics.
    fn backend_name(&self) -> &'static str;
}
