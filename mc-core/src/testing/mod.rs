//! The store conformance suite (feature `testing`).
//!
//! Every [`Store`] implementation runs the same cases, so the SQLite and PostgreSQL stores (and
//! any store an embedder writes) behave the same. A store crate runs them all with one macro in
//! an integration test; it needs `tokio` (with `macros` and `rt-multi-thread`) as a
//! dev-dependency:
//!
//! ```ignore
//! async fn make_store() -> Option<mc_core::testing::TestStore> {
//!     let store = MyStore::open("…").await.unwrap();
//!     Some(mc_core::testing::TestStore::new(std::sync::Arc::new(store)))
//! }
//! mc_core::store_conformance_tests!(make_store);
//! ```
//!
//! The factory must return a store with no data in it, one per case. Returning `None` skips the
//! case (for example when a database server is not configured); the factory should print why.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod cases;
pub mod fixtures;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::store::Store;

/// A store under test and what to do when the case is over.
pub struct TestStore {
    /// The store, empty.
    pub store: Arc<dyn Store>,
    cleanup: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl TestStore {
    /// A store that needs no cleanup.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, cleanup: None }
    }

    /// Runs `cleanup` after the case, whether it passed or failed (e.g. drop a schema).
    pub fn with_cleanup(mut self, cleanup: impl Future<Output = ()> + Send + 'static) -> Self {
        self.cleanup = Some(Box::pin(cleanup));
        self
    }
}

/// Runs one case against a fresh store from `make`, then its cleanup, then re-raises the
/// case's panic if it failed.
pub async fn run<M, MF, C, CF>(make: M, case: C)
where
    M: FnOnce() -> MF,
    MF: Future<Output = Option<TestStore>>,
    C: FnOnce(Arc<dyn Store>) -> CF,
    CF: Future<Output = ()> + Send + 'static,
{
    let Some(test_store) = make().await else {
        return;
    };
    let outcome = tokio::spawn(case(test_store.store.clone())).await;
    drop(test_store.store);
    if let Some(cleanup) = test_store.cleanup {
        cleanup.await;
    }
    if let Err(err) = outcome {
        match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(err) => panic!("conformance case did not finish: {err}"),
        }
    }
}

/// Expands to one `#[tokio::test]` per conformance case, each calling `$make` for a fresh
/// store. See the [module docs](crate::testing).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        $crate::store_conformance_tests!(@cases $make;
            ping_answers,
            org_create_read_list,
            user_create_read_update,
            username_unique_per_org_ignoring_case,
            users_list_in_pages_per_org,
            delete_user_cascades,
            login_attempts_are_reserved_in_a_window,
            login_attempt_reservations_race_to_the_threshold,
            refresh_token_rotation,
            refresh_token_rotation_race_has_one_winner,
            refresh_token_revocation_and_expiry,
            refresh_family_liveness_follows_revocation,
            registration_token_create_list_revoke,
            registration_token_consume_checks_state,
            registration_token_last_use_race_has_one_winner,
            gateway_create_read_update_delete,
            gateway_list_filters_and_pages,
            gateway_liveness_updates,
            gateway_sweep_marks_only_stale_gateways,
            agent_create_and_uniqueness,
            agent_sync_adds_renames_and_marks_gone,
            assignment_lifecycle,
            session_lifecycle,
            session_list_pages_newest_first,
            append_assigns_sequential_seqs,
            append_concurrent_50_is_gapless,
            append_is_idempotent_by_client_msg_id,
            append_concurrent_duplicates_store_one,
            append_batch_keeps_each_message_atomic,
            an_agent_reply_is_stored_once_per_run,
            history_pages_backwards_and_resume_forwards,
            activity_record_and_list,
            session_origin_is_unique_per_user,
            delivery_states_only_move_forward,
            pending_deliveries_are_listed_per_gateway,
            outbound_gateway_create_update_delete,
            settings_keep_the_first_value,
        );
    };
    (@cases $make:path; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::testing::run($make, $crate::testing::cases::$case).await;
            }
        )+
    };
}
