//! The `mc-core` store conformance suite against a real PostgreSQL server.
//!
//! The server comes from `MC_TEST_POSTGRES_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`). Without it every case is skipped with a line on
//! stderr, except under CI (`CI=true`), where a missing server is a failure. Each case runs in
//! a schema of its own, dropped afterwards, so cases never see each other's rows.

#![allow(clippy::expect_used)] // a test fails by panicking

use std::io::Write;
use std::str::FromStr;
use std::sync::{Arc, Once};

use mc_core::testing::TestStore;
use mc_store_postgres::{PgConnectOptions, PgStore, PgStoreOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

fn postgres_url() -> Option<String> {
    static SKIP_NOTICE: Once = Once::new();
    match std::env::var("MC_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("MC_TEST_POSTGRES_URL is not set: under CI the PostgreSQL suite must run")
        }
        _ => {
            // Written straight to stderr so the test harness does not swallow it.
            SKIP_NOTICE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: MC_TEST_POSTGRES_URL not set (PostgreSQL conformance suite)"
                );
            });
            None
        }
    }
}

async fn store() -> Option<TestStore> {
    let url = postgres_url()?;
    let schema = format!("mc_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&url).await.expect("connect to MC_TEST_POSTGRES_URL");
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .expect("create test schema");
    let connect = PgConnectOptions::from_str(&url)
        .expect("parse MC_TEST_POSTGRES_URL")
        .options([("search_path", schema.as_str())]);
    let store = PgStore::connect_with(PgStoreOptions::new(connect).max_connections(4))
        .await
        .expect("connect and migrate PgStore");
    let closer = store.clone();
    Some(TestStore::new(Arc::new(store)).with_cleanup(async move {
        closer.close().await;
        let dropped = sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&mut admin)
            .await;
        if let Err(err) = dropped {
            let _ = writeln!(std::io::stderr(), "warning: could not drop {schema}: {err}");
        }
        let _ = admin.close().await;
    }))
}

mc_core::store_conformance_tests!(store);
