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
    let store =
        PgStore::connect_with(PgStoreOptions::new(connect).max_connections(4).write_lanes(4))
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

/// The relay's writer over four lanes (PostgreSQL commits several batches at once): 8
/// sessions' appends, 25 each handed over without waiting, are committed gapless and each
/// session's in the order it handed them over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_keeps_each_sessions_order_across_its_lanes() {
    use mc_core::testing::fixtures;
    const PER_SESSION: usize = 25;
    mc_core::testing::run(store, |store| async move {
        assert_eq!(store.write_lanes(), 4);
        let world = fixtures::ChatWorld::create(&store).await;
        let mut sessions = vec![world.session.id];
        for _ in 1..8 {
            let session = fixtures::session(world.user.id, &world.agent);
            store.create_session(&session).await.expect("a session");
            sessions.push(session.id);
        }
        let (writer, _task) = mc_core::relay::MessageWriter::start(store.clone());
        // Each session's appends are handed to the writer in order (`join_all` of fewer
        // than 30 futures polls them in order), the sessions at once.
        let mut tasks = tokio::task::JoinSet::new();
        for &sid in &sessions {
            let writer = writer.clone();
            tasks.spawn(async move {
                let appends = (0..PER_SESSION).map(|i| {
                    writer.append(fixtures::user_message(sid, &format!("{sid} #{i}")), None)
                });
                for result in futures_util::future::join_all(appends).await {
                    result.expect("appended");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a session's appends");
        }
        for sid in sessions {
            let stored = store.messages_after(sid, 0, 100).await.expect("history");
            let contents: Vec<&str> = stored.iter().map(|m| m.content.as_str()).collect();
            let sent: Vec<String> = (0..PER_SESSION).map(|i| format!("{sid} #{i}")).collect();
            assert_eq!(contents, sent, "one session's messages in the order sent");
            let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
            assert_eq!(seqs, (1..=PER_SESSION as u64).collect::<Vec<u64>>());
        }
    })
    .await;
}
