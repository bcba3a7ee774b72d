//! The `mc-core` store conformance suite against SQLite: every case once in memory and once
//! on a file (WAL, separate reader and writer pools).

#![allow(clippy::expect_used)] // a test fails by panicking

use std::sync::Arc;

use mc_core::testing::TestStore;
use mc_store_sqlite::{SqliteStore, SqliteStoreOptions};

mod memory {
    use super::*;

    async fn store() -> Option<TestStore> {
        let store = SqliteStore::open_in_memory().await.expect("open in-memory SQLite");
        Some(TestStore::new(Arc::new(store)))
    }

    mc_core::store_conformance_tests!(store);
}

mod file {
    use super::*;

    async fn store() -> Option<TestStore> {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("mc.db").display());
        let store = SqliteStore::open_with(SqliteStoreOptions::new(url).readers(2))
            .await
            .expect("open SQLite file");
        let closer = store.clone();
        Some(TestStore::new(Arc::new(store)).with_cleanup(async move {
            closer.close().await;
            drop(dir);
        }))
    }

    mc_core::store_conformance_tests!(store);
}
