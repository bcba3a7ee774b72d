//! Private database and cache servers on loopback, for the multi-instance tests and
//! `mc-bench instances`: a `redis-server` and a PostgreSQL cluster on free ports, which a test
//! may kill and start again without touching the shared servers; and a fresh database on a
//! shared PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::{free_port, wait_for_port};

/// A `redis-server` of its own on a free port (nothing saved to disk); killed when dropped.
#[derive(Debug)]
pub struct PrivateRedis {
    child: Option<Child>,
    port: u16,
}

impl PrivateRedis {
    /// Whether `redis-server` is installed.
    pub fn available() -> bool {
        Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success())
    }

    /// Starts one on a free port and waits until it answers.
    pub fn start() -> anyhow::Result<Self> {
        let mut redis = Self { child: None, port: free_port()? };
        redis.start_again()?;
        Ok(redis)
    }

    /// Starts it again on the same port (after [`kill`](Self::kill)); empty, as a restarted
    /// Redis without persistence is.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("this redis-server is running");
        }
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .context("start redis-server (apt-get install redis-server)")?;
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10))
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its `redis://` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where PostgreSQL's server programs are (`initdb`, `pg_ctl`), if installed.
fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL cluster of its own (trust auth, user `postgres`, `fsync=off`) on a free port,
/// in a temporary directory; stopped and removed when dropped. As root, its programs run as
/// the `postgres` system user (PostgreSQL refuses to run as root).
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    port: u16,
    running: bool,
}

impl PrivatePostgres {
    /// Whether `initdb` is installed (Debian's `postgresql` package).
    pub fn available() -> bool {
        postgres_bin().is_some()
    }

    /// Creates the cluster and starts it.
    pub fn start() -> anyhow::Result<Self> {
        let bin = postgres_bin().context("PostgreSQL's initdb is not installed")?;
        let dir = tempfile::tempdir()?;
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown").arg("postgres:postgres").arg(dir.path()).status()?;
            if !status.success() {
                bail!("cannot give {} to the postgres user", dir.path().display());
            }
        }
        let mut pg = Self { dir, bin, as_postgres, port: free_port()?, running: false };
        let data = pg.data();
        let out = pg
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .output()?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        pg.start_again()?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-o")
            .arg(options)
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!("pg_ctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Starts it again (after [`stop_immediately`](Self::stop_immediately)), same port and data.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.pg_ctl(&["-w", "start"])?;
        self.running = true;
        wait_for_port(self.port, Duration::from_secs(20))
    }

    /// Stops it the hard way (`pg_ctl stop -m immediate`: no checkpoint, clients cut off).
    pub fn stop_immediately(&mut self) -> anyhow::Result<()> {
        self.pg_ctl(&["-w", "-m", "immediate", "stop"])?;
        self.running = false;
        Ok(())
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its server log (for a failing test's message).
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop_immediately();
        }
    }
}

/// Creates an empty database `name` on the server of `admin_url` (with `psql`); returns its URL.
pub fn create_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        bail!("not a plain database name: {name}");
    }
    psql(admin_url, &format!("CREATE DATABASE {name}"))?;
    let (server, _) = admin_url.rsplit_once('/').context("a postgres:// URL with a database")?;
    Ok(format!("{server}/{name}"))
}

/// Drops database `name` (best effort: a test's cleanup).
pub fn drop_database(admin_url: &str, name: &str) {
    let _ = psql(admin_url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-qtAc", sql])
        .stdin(Stdio::null())
        .output()
        .context("run psql (apt-get install postgresql-client)")?;
    if !out.status.success() {
        bail!("psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Reads a file a server wrote, for a failing test's message.
pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
