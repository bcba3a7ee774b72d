//! `mc-server serve` settings: each from its flag, else its environment variable (clap reads
//! both), else the TOML file given with `--config`, else the default. Every value is checked
//! before anything starts; a bad one stops the server with exit code 2 and names the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

/// A setting that is wrong; the message names it as a flag and as a variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {name}: {message}")]
pub struct BadSetting {
    /// `--flag / MC_VARIABLE`.
    pub name: String,
    /// Why.
    pub message: String,
}

fn bad(flag: &str, env: &str, message: impl Into<String>) -> BadSetting {
    BadSetting { name: format!("--{flag} / {env}"), message: message.into() }
}

/// The flags of `mc-server serve`. Every one also reads its `MC_…` variable.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080; port 0 picks a free one].
    #[arg(long, env = "MC_LISTEN")]
    pub listen: Option<String>,
    /// Database: `sqlite://path.db`, `sqlite::memory:` or `postgres://…` [default: sqlite://mc.db].
    #[arg(long, env = "MC_DATABASE_URL")]
    pub database: Option<String>,
    /// A TOML file with any of these settings (keys as the flags, with `_`).
    #[arg(long, env = "MC_CONFIG")]
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
}

/// The TOML file: the same keys as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    database: Option<String>,
    redis: Option<String>,
    instance_id: Option<String>,
    jwt_secret: Option<mc_core::Secret>,
    public_url: Option<String>,
    allowed_origins: Option<String>,
    max_frame_bytes: Option<u64>,
    max_content_bytes: Option<u64>,
    max_reply_bytes: Option<u64>,
    sqlite_synchronous: Option<String>,
    sqlite_cache_kib: Option<u32>,
    rate_limit_per_sec: Option<u32>,
    rate_limit_burst: Option<u32>,
    max_connections: Option<u64>,
    max_connections_per_user: Option<u64>,
    max_unauthenticated: Option<u64>,
    max_unauthenticated_per_ip: Option<u64>,
    auth_timeout_secs: Option<u64>,
    write_timeout_secs: Option<u64>,
    max_violations_per_minute: Option<u64>,
    heartbeat_interval_secs: Option<u64>,
    gateway_timeout_secs: Option<u64>,
    offline_grace_secs: Option<u64>,
    access_token_ttl_secs: Option<u64>,
    open_registration: Option<bool>,
    trust_forwarded_for: Option<bool>,
    shutdown_timeout_secs: Option<u64>,
    log_format: Option<String>,
    demo: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
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
    pub limits: mc_core::RelayLimits,
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
}

/// The host name (from `/etc/hostname`) and a random suffix, so two instances started on
/// one host differ.
fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host: String =
        host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
    let suffix = &uuid::Uuid::now_v7().simple().to_string()[24..];
    if host.is_empty() { format!("mc-{suffix}") } else { format!("{host}-{suffix}") }
}

fn positive(
    flag: &str,
    env: &str,
    value: Option<u64>,
    default: u64,
    max: u64,
) -> Result<u64, BadSetting> {
    match value {
        None => Ok(default),
        Some(0) => Err(bad(flag, env, "must be at least 1")),
        Some(v) if v > max => Err(bad(flag, env, format!("must be at most {max}"))),
        Some(v) => Ok(v),
    }
}

impl Settings {
    /// Merges flags (and environment) over the TOML file over the defaults, and checks them.
    pub fn resolve(args: &ServeArgs) -> Result<Self, BadSetting> {
        let file = match &args.config {
            None => FileSettings::default(),
            Some(path) => read_file(path)?,
        };
        macro_rules! pick {
            ($field:ident) => {
                args.$field.clone().or(file.$field.clone())
            };
        }
        let listen_text = pick!(listen).unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen_text.parse::<SocketAddr>().map_err(|_| {
            bad(
                "listen",
                "MC_LISTEN",
                format!("{listen_text:?} is not an address like 127.0.0.1:8080"),
            )
        })?;
        let database = pick!(database).unwrap_or_else(|| "sqlite://mc.db".into());
        if !(database.starts_with("sqlite:")
            || database.starts_with("postgres://")
            || database.starts_with("postgresql://"))
        {
            return Err(bad(
                "database",
                "MC_DATABASE_URL",
                format!("{database:?} is neither sqlite:… nor postgres://…"),
            ));
        }
        let redis = pick!(redis);
        if let Some(url) = &redis {
            if !url.starts_with("redis://") {
                return Err(bad(
                    "redis",
                    "MC_REDIS_URL",
                    "must be a redis://host:port URL (rediss:// is not supported: keep Redis on a private network)",
                ));
            }
            if database.starts_with("sqlite:") {
                return Err(bad(
                    "redis",
                    "MC_REDIS_URL",
                    "several instances share one PostgreSQL: use --database postgres://… with --redis",
                ));
            }
        }
        let instance_id = match pick!(instance_id) {
            Some(id) => {
                let fine = !id.is_empty()
                    && id.len() <= 64
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !fine {
                    return Err(bad(
                        "instance-id",
                        "MC_INSTANCE_ID",
                        "must be 1–64 letters, digits, '.', '_' or '-'",
                    ));
                }
                id
            }
            None => default_instance_id(),
        };
        let jwt_secret = pick!(jwt_secret);
        if let Some(secret) = &jwt_secret
            && secret.expose().len() < mc_core::auth::MIN_SECRET_LEN
        {
            return Err(bad(
                "jwt-secret",
                "MC_JWT_SECRET",
                format!("must be at least {} bytes", mc_core::auth::MIN_SECRET_LEN),
            ));
        }
        if jwt_secret.is_none() && !database.starts_with("sqlite:") {
            return Err(bad(
                "jwt-secret",
                "MC_JWT_SECRET",
                "is required with PostgreSQL (every instance must share it)",
            ));
        }
        let public_url = pick!(public_url);
        if let Some(url) = &public_url
            && mc_core::validate::endpoint_url("public_url", url).is_err()
        {
            return Err(bad("public-url", "MC_PUBLIC_URL", "must be an http(s):// URL"));
        }
        let allowed_origins: Vec<String> = pick!(allowed_origins)
            .map(|list| {
                list.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for origin in &allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(bad(
                    "allowed-origins",
                    "MC_ALLOWED_ORIGINS",
                    format!("{origin:?} is not an origin like https://app.example.com"),
                ));
            }
        }
        let frame = positive(
            "max-frame-bytes",
            "MC_MAX_FRAME_BYTES",
            pick!(max_frame_bytes),
            64 * 1024,
            16 * 1024 * 1024,
        )?;
        let content = positive(
            "max-content-bytes",
            "MC_MAX_CONTENT_BYTES",
            pick!(max_content_bytes),
            16 * 1024,
            frame,
        )?;
        let reply = positive(
            "max-reply-bytes",
            "MC_MAX_REPLY_BYTES",
            pick!(max_reply_bytes),
            256 * 1024,
            64 * 1024 * 1024,
        )?;
        let sqlite_synchronous = match pick!(sqlite_synchronous).as_deref() {
            None | Some("normal") => mc_store_sqlite::Synchronous::Normal,
            Some("full") => mc_store_sqlite::Synchronous::Full,
            Some(other) => {
                return Err(bad(
                    "sqlite-synchronous",
                    "MC_SQLITE_SYNCHRONOUS",
                    format!("{other:?} is neither normal nor full"),
                ));
            }
        };
        let sqlite_cache_kib = match pick!(sqlite_cache_kib) {
            None => None,
            Some(kib) if (64..=4 * 1024 * 1024).contains(&kib) => Some(kib),
            Some(kib) => {
                return Err(bad(
                    "sqlite-cache-kib",
                    "MC_SQLITE_CACHE_KIB",
                    format!("{kib} KiB is outside 64 to 4194304"),
                ));
            }
        };
        let max_connections = positive(
            "max-connections",
            "MC_MAX_CONNECTIONS",
            pick!(max_connections),
            10_000,
            1_000_000,
        )?;
        let per_user = positive(
            "max-connections-per-user",
            "MC_MAX_CONNECTIONS_PER_USER",
            pick!(max_connections_per_user),
            8,
            1_000,
        )?;
        let unauthenticated = positive(
            "max-unauthenticated",
            "MC_MAX_UNAUTHENTICATED",
            pick!(max_unauthenticated),
            1_000,
            1_000_000,
        )?;
        let unauthenticated_per_ip = positive(
            "max-unauthenticated-per-ip",
            "MC_MAX_UNAUTHENTICATED_PER_IP",
            pick!(max_unauthenticated_per_ip),
            64,
            1_000_000,
        )?;
        let auth_timeout = positive(
            "auth-timeout-secs",
            "MC_AUTH_TIMEOUT_SECS",
            pick!(auth_timeout_secs),
            10,
            600,
        )?;
        let write_timeout = positive(
            "write-timeout-secs",
            "MC_WRITE_TIMEOUT_SECS",
            pick!(write_timeout_secs),
            10,
            600,
        )?;
        let violations = positive(
            "max-violations-per-minute",
            "MC_MAX_VIOLATIONS_PER_MINUTE",
            pick!(max_violations_per_minute),
            100,
            1_000_000,
        )?;
        let heartbeat = positive(
            "heartbeat-interval-secs",
            "MC_HEARTBEAT_INTERVAL_SECS",
            pick!(heartbeat_interval_secs),
            30,
            3_600,
        )?;
        let gateway_timeout = positive(
            "gateway-timeout-secs",
            "MC_GATEWAY_TIMEOUT_SECS",
            pick!(gateway_timeout_secs),
            30,
            3_600,
        )?;
        let grace = positive(
            "offline-grace-secs",
            "MC_OFFLINE_GRACE_SECS",
            pick!(offline_grace_secs),
            10,
            3_600,
        )?;
        let ttl = positive(
            "access-token-ttl-secs",
            "MC_ACCESS_TOKEN_TTL_SECS",
            pick!(access_token_ttl_secs),
            900,
            86_400,
        )?;
        let shutdown = positive(
            "shutdown-timeout-secs",
            "MC_SHUTDOWN_TIMEOUT_SECS",
            pick!(shutdown_timeout_secs),
            10,
            600,
        )?;
        let log_format = match pick!(log_format).as_deref() {
            None | Some("human") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(bad(
                    "log-format",
                    "MC_LOG_FORMAT",
                    format!("{other:?} is neither human nor json"),
                ));
            }
        };
        let limits = mc_core::RelayLimits::default()
            .with_max_content_bytes(content as usize)
            .with_max_reply_bytes(reply as usize)
            .with_rate_per_sec(pick!(rate_limit_per_sec).unwrap_or(20))
            .with_rate_burst(pick!(rate_limit_burst).unwrap_or(40))
            .with_max_connections_per_user(per_user as usize)
            .with_heartbeat_interval(Duration::from_secs(heartbeat))
            .with_gateway_timeout(Duration::from_secs(gateway_timeout))
            .with_offline_grace(Duration::from_secs(grace));
        let socket_limits = mc_core::socket::SocketLimits::default()
            .with_auth_timeout(Duration::from_secs(auth_timeout))
            .with_write_timeout(Duration::from_secs(write_timeout))
            .with_max_violations_per_minute(violations as u32);
        let trust_forwarded_for = pick!(trust_forwarded_for).unwrap_or(false);
        let http = mc_transport_ws::server::HttpConfig::default()
            .with_max_frame_bytes(frame as usize)
            .with_max_connections(max_connections as usize)
            .with_max_unauthenticated(unauthenticated as usize)
            .with_max_unauthenticated_per_ip(unauthenticated_per_ip as usize)
            .with_allowed_origins(allowed_origins.clone())
            .with_socket_limits(socket_limits)
            .with_public_url(public_url.clone())
            .with_trust_forwarded_for(trust_forwarded_for)
            .with_instance_id(instance_id.clone());
        Ok(Self {
            listen,
            database,
            redis: redis.map(mc_core::Secret::new),
            instance_id,
            sqlite_synchronous,
            sqlite_cache_kib,
            jwt_secret,
            public_url,
            allowed_origins,
            limits,
            http,
            heartbeat_interval: Duration::from_secs(heartbeat),
            access_token_ttl: Duration::from_secs(ttl),
            open_registration: pick!(open_registration).unwrap_or(false),
            trust_forwarded_for,
            shutdown_timeout: Duration::from_secs(shutdown),
            log_format,
            demo: pick!(demo).unwrap_or(false),
            tls: match (pick!(tls_cert), pick!(tls_key)) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(bad("tls-key", "MC_TLS_KEY", "is required with --tls-cert"));
                }
                (None, Some(_)) => {
                    return Err(bad("tls-cert", "MC_TLS_CERT", "is required with --tls-key"));
                }
            },
        })
    }

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

fn read_file(path: &Path) -> Result<FileSettings, BadSetting> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("config", "MC_CONFIG", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text)
        .map_err(|e| bad("config", "MC_CONFIG", format!("{}: {e}", path.display())))
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
