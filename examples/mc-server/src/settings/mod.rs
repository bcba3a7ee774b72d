//! `mc-server serve` settings: each from its flag, else its environment variable (clap reads
//! both), else the TOML file given with `--config`, else the default. Every value is checked
//! before anything starts; a bad one stops the server with exit code 2 and names the setting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

mod resolve;

/// A setting that is wrong; the message names it as a flag and as a variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {name}: {message}")]
pub struct BadSetting {
    /// `--flag / MC_VARIABLE`.
    pub name: String,
    /// Why.
    pub message: String,
}

pub(crate) fn bad(flag: &str, env: &str, message: impl Into<String>) -> BadSetting {
    BadSetting { name: format!("--{flag} / {env}"), message: message.into() }
}

/// The flags of `mc-server serve`. Every one also reads its `MC_…` variable; the TOML file
/// of `--config` has the same keys (with `_`).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080; port 0 picks a free one].
    #[arg(long, env = "MC_LISTEN")]
    pub listen: Option<String>,
    /// Database: `sqlite://path.db`, `sqlite::memory:` or `postgres://…` [default: sqlite://mc.db].
    #[arg(long, env = "MC_DATABASE_URL")]
    pub database: Option<String>,
    /// A TOML file with any of these settings (keys as the flags, with `_`).
    #[arg(long, env = "MC_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Redis URL (`redis://host:port[/db]`): run as one of several instances on one
    /// PostgreSQL and one Redis.
    #[arg(long, env = "MC_REDIS_URL", hide_env_values = true)]
    pub redis: Option<String>,
    /// This instance's id, in logs, metrics and presence; unique among the instances
    /// [default: the host name and a random suffix].
    #[arg(long, env = "MC_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Access-token signing secret, at least 32 bytes [default: generated and kept beside the SQLite file].
    #[arg(long, env = "MC_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<mc_core::Secret>,
    /// The URL clients and gateways reach this relay at (for gateways' relay_ws_url).
    #[arg(long, env = "MC_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Comma-separated browser origins allowed to open sockets [default: any].
    #[arg(long, env = "MC_ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,
    /// Largest WebSocket message, bytes [default: 65536].
    #[arg(long, env = "MC_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<u64>,
    /// Longest chat content, bytes [default: 16384].
    #[arg(long, env = "MC_MAX_CONTENT_BYTES")]
    pub max_content_bytes: Option<u64>,
    /// Longest agent reply, bytes; longer runs are stopped and reported [default: 262144].
    #[arg(long, env = "MC_MAX_REPLY_BYTES")]
    pub max_reply_bytes: Option<u64>,
    /// What a SQLite commit survives: `normal` (a process crash) or `full` (a power loss too) [default: normal].
    #[arg(long, env = "MC_SQLITE_SYNCHRONOUS")]
    pub sqlite_synchronous: Option<String>,
    /// The most SQLite page cache per connection, KiB (64 to 4194304) [default: 32768 per
    /// reader, 65536 for the writer].
    #[arg(long, env = "MC_SQLITE_CACHE_KIB")]
    pub sqlite_cache_kib: Option<u32>,
    /// Requests per second per user (a chat costs one); 0 turns the limit off [default: 20].
    #[arg(long, env = "MC_RATE_LIMIT_PER_SEC")]
    pub rate_limit_per_sec: Option<u32>,
    /// Burst of the per-user rate limit; 0 turns the limit off [default: 40].
    #[arg(long, env = "MC_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,
    /// Sockets this instance accepts [default: 10000].
    #[arg(long, env = "MC_MAX_CONNECTIONS")]
    pub max_connections: Option<u64>,
    /// Sockets one user may hold [default: 8].
    #[arg(long, env = "MC_MAX_CONNECTIONS_PER_USER")]
    pub max_connections_per_user: Option<u64>,
    /// Sockets not yet authenticated this instance holds at once [default: 1000].
    #[arg(long, env = "MC_MAX_UNAUTHENTICATED")]
    pub max_unauthenticated: Option<u64>,
    /// Sockets not yet authenticated from one source IP [default: 64]; behind a proxy, set
    /// --trust-forwarded-for (or raise this) since every client shares the proxy's address.
    #[arg(long, env = "MC_MAX_UNAUTHENTICATED_PER_IP")]
    pub max_unauthenticated_per_ip: Option<u64>,
    /// Seconds a socket has to authenticate [default: 10].
    #[arg(long, env = "MC_AUTH_TIMEOUT_SECS")]
    pub auth_timeout_secs: Option<u64>,
    /// Seconds one write to a socket may take; a peer that does not read is closed then and
    /// its place freed [default: 10].
    #[arg(long, env = "MC_WRITE_TIMEOUT_SECS")]
    pub write_timeout_secs: Option<u64>,
    /// Bad frames a socket may send in a minute (before authenticating, anything but `auth`
    /// counts) before it is closed with 4008 [default: 100].
    #[arg(long, env = "MC_MAX_VIOLATIONS_PER_MINUTE")]
    pub max_violations_per_minute: Option<u64>,
    /// Heartbeat interval of sockets and gateways, seconds [default: 30].
    #[arg(long, env = "MC_HEARTBEAT_INTERVAL_SECS")]
    pub heartbeat_interval_secs: Option<u64>,
    /// Seconds a gateway has to answer a request [default: 30].
    #[arg(long, env = "MC_GATEWAY_TIMEOUT_SECS")]
    pub gateway_timeout_secs: Option<u64>,
    /// Seconds a gateway's link may be down before its agents are announced offline [default: 10].
    #[arg(long, env = "MC_OFFLINE_GRACE_SECS")]
    pub offline_grace_secs: Option<u64>,
    /// Access-token lifetime, seconds [default: 900].
    #[arg(long, env = "MC_ACCESS_TOKEN_TTL_SECS")]
    pub access_token_ttl_secs: Option<u64>,
    /// Let anyone create a member account with /auth/register [default: false].
    #[arg(long, env = "MC_OPEN_REGISTRATION", num_args = 0..=1, default_missing_value = "true")]
    pub open_registration: Option<bool>,
    /// Take client IPs from X-Forwarded-For (only behind your own proxy) [default: false].
    #[arg(long, env = "MC_TRUST_FORWARDED_FOR", num_args = 0..=1, default_missing_value = "true")]
    pub trust_forwarded_for: Option<bool>,
    /// Seconds to drain on SIGTERM/SIGINT before exiting [default: 10].
    #[arg(long, env = "MC_SHUTDOWN_TIMEOUT_SECS")]
    pub shutdown_timeout_secs: Option<u64>,
    /// Log format: `human` or `json` [default: human].
    #[arg(long, env = "MC_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Also create a demo organization, admin, user and in-process echo gateway, and print how to chat.
    #[arg(long, env = "MC_DEMO", num_args = 0..=1, default_missing_value = "true")]
    pub demo: Option<bool>,
    /// Serve https/wss with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "MC_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "MC_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Comma-separated address ranges (CIDRs, e.g. `10.0.0.0/8,fd00::/8`) the gateways this
    /// relay dials may be at: every address a gateway's host resolves to is checked when it
    /// is dialled [default: any but link-local addresses, which are never dialled].
    #[arg(long, env = "MC_OUTBOUND_ALLOW")]
    pub outbound_allow: Option<String>,
    /// Serve `GET /metrics` on this separate address (e.g. 127.0.0.1:9100: keep it off the
    /// public network) [default: not served on an address of its own].
    #[arg(long, env = "MC_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Serve `GET /metrics` on the main address too, to requests with `Authorization: Bearer
    /// <this token>` (at least 16 characters); with --metrics-listen, that address asks for
    /// it as well [default: /metrics is not served on the main address].
    #[arg(long, env = "MC_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<mc_core::Secret>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people.
    Human,
    /// One JSON object per line.
    Json,
}

/// The checked settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The database URL.
    pub database: String,
    /// The Redis URL (several instances), if given.
    pub redis: Option<mc_core::Secret>,
    /// This instance's id.
    pub instance_id: String,
    /// What a SQLite commit survives.
    pub sqlite_synchronous: mc_store_sqlite::Synchronous,
    /// The most page cache per SQLite connection, KiB (`None`: the store's defaults).
    pub sqlite_cache_kib: Option<u32>,
    /// The JWT secret, if given.
    pub jwt_secret: Option<mc_core::Secret>,
    /// The public URL, if given.
    pub public_url: Option<String>,
    /// Browser origins allowed.
    pub allowed_origins: Vec<String>,
    /// The relay engine's limits.
    pub limits: mc_core::relay::RelayLimits,
    /// The HTTP API's and the sockets' settings.
    pub http: mc_transport_ws::server::HttpConfig,
    /// Heartbeat interval (sockets and gateways).
    pub heartbeat_interval: Duration,
    /// Access-token lifetime.
    pub access_token_ttl: Duration,
    /// Open registration.
    pub open_registration: bool,
    /// Trust X-Forwarded-For.
    pub trust_forwarded_for: bool,
    /// Drain time on shutdown.
    pub shutdown_timeout: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Run the demo.
    pub demo: bool,
    /// Serve TLS with this certificate chain and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Where `GET /metrics` is served.
    pub metrics: MetricsExposure,
}

/// Where `GET /metrics` is served: on an address of its own, on the main address behind a
/// bearer token, both, or (neither given) nowhere.
#[derive(Debug, Clone, Default)]
pub struct MetricsExposure {
    /// The separate address, if any.
    pub listen: Option<SocketAddr>,
    /// The token requests must bear, if any (then /metrics is also on the main address).
    pub token: Option<mc_core::Secret>,
}

impl Settings {
    /// How a SQLite database is opened.
    pub fn sqlite_tuning(&self) -> super::SqliteTuning {
        super::SqliteTuning {
            synchronous: self.sqlite_synchronous,
            page_cache_kib: self.sqlite_cache_kib,
        }
    }

    /// The SQLite database file, if the database is a SQLite file.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        sqlite_file(&self.database)
    }
}

/// `url` fit for a log line: a password in it (`user:password@`, or a `password=` query
/// parameter) becomes `***`.
pub fn redacted_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let start = scheme_end + 3;
        let authority_end = out[start..].find(['/', '?', '#']).map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..authority_end].rfind('@').map(|i| start + i)
            && let Some(colon) = out[start..at].find(':').map(|i| start + i)
        {
            out.replace_range(colon + 1..at, "***");
        }
    }
    if let Some(query) = out.find('?') {
        let (head, tail) = out.split_at(query + 1);
        let params: Vec<String> = tail
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", params.join("&"));
    }
    out
}

/// The file of a `sqlite://path` or `sqlite:path` URL (not `:memory:`), without query.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    Some(PathBuf::from(path))
}

#[cfg(test)]
mod tests;
