//! # mc-server
//!
//! The relay as a program: the SQLite example server, also PostgreSQL + Redis for several
//! instances.
//!
//! ```text
//! mc-server serve [--listen 127.0.0.1:8080] [--database sqlite://mc.db] [--config mc.toml] [--demo] …
//! mc-server admin [--database …] [--json] create-org NAME
//! mc-server admin … create-user --org ID --username U --password P [--role admin|member]
//! mc-server admin … create-registration-token --org ID [--label L] [--expires-in 1h] [--max-uses N]
//! mc-server admin … assign --user ID --agent ID
//! ```
//! Exit codes: 0 ok, 2 bad arguments or settings (the message names which), 1 anything else.

//!
//! - [`settings`]: `serve`'s settings: flags > `MC_*` environment > TOML file > defaults.
//! - [`run`]: serving: the store, the bus, the relay, TLS, signals and the drain.
//! - [`admin`]: the `admin` commands (organizations, users, registration tokens, assignments).
//! - [`demo`]: `serve --demo`: the demo organization, users and in-process echo gateway.
//! - [`metrics`]: the Prometheus recorder and `/metrics`.

pub mod admin;
pub mod demo;
pub mod metrics;
pub mod run;
pub mod settings;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mc_core::Store;
use mc_store_postgres::PgStore;
use mc_store_sqlite::SqliteStore;

pub use settings::{ServeArgs, Settings};

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "mc-server", version, about = "Mission Control relay server")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay.
    Serve(Box<ServeArgs>),
    /// Administer the database directly (organizations, users, registration tokens, assignments).
    Admin(admin::AdminArgs),
}

/// How a SQLite database is opened (the settings `MC_SQLITE_SYNCHRONOUS` and
/// `MC_SQLITE_CACHE_KIB`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteTuning {
    /// What a commit survives.
    pub synchronous: mc_store_sqlite::Synchronous,
    /// The most page cache each connection keeps, KiB; `None` keeps the store's defaults.
    pub page_cache_kib: Option<u32>,
}

/// An opened store, kept concrete so it can be closed on shutdown.
#[derive(Debug, Clone)]
pub enum OpenStore {
    /// SQLite.
    Sqlite(SqliteStore),
    /// PostgreSQL.
    Postgres(PgStore),
}

impl OpenStore {
    /// Opens (creating and migrating) the database at `url`, with SQLite's default durability.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        Self::open_with(url, SqliteTuning::default()).await
    }

    /// Opens (creating and migrating) the database at `url`; a SQLite database is tuned by
    /// `sqlite` (ignored for PostgreSQL).
    pub async fn open_with(url: &str, sqlite: SqliteTuning) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(PgStore::connect(url).await?));
        }
        if let Some(file) = settings::sqlite_file(url)
            && let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut options =
            mc_store_sqlite::SqliteStoreOptions::new(url).synchronous(sqlite.synchronous);
        if let Some(kib) = sqlite.page_cache_kib {
            options = options.page_cache_kib(kib);
        }
        Ok(Self::Sqlite(SqliteStore::open_with(options).await?))
    }

    /// The store as the relay takes it.
    pub fn shared(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(s) => Arc::new(s.clone()),
            Self::Postgres(s) => Arc::new(s.clone()),
        }
    }

    /// Waits for queries in flight and closes every connection.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        }
    }
}

/// A path beside the SQLite database file: `<db>.<suffix>`.
pub fn beside(db: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".");
    name.push(suffix);
    db.with_file_name(name)
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { 2 } else { 0 };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return 1;
        }
    };
    match cli.command {
        Command::Serve(args) => runtime.block_on(run::serve(*args)),
        Command::Admin(args) => runtime.block_on(admin::run(args)),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_configuration_reference_is_up_to_date() {
        let reference = testkit::docs::command_reference(&super::Cli::command());
        testkit::docs::check_section("configuration.md", "mc-server", &reference);
    }
}
