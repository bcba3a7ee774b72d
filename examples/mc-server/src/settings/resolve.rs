//! [`Settings::resolve`]: the flags (and environment) over the TOML file over the defaults,
//! each checked, one group of settings per function.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mc_core::relay::RelayLimits;
use mc_core::socket::SocketLimits;
use mc_transport_ws::server::HttpConfig;

use super::{BadSetting, LogFormat, MetricsExposure, ServeArgs, Settings, bad};

/// Fills what the flags left out from the TOML file.
macro_rules! merged {
    ($args:expr, $file:expr, [$($field:ident),* $(,)?]) => {
        ServeArgs {
            config: $args.config.clone(),
            $($field: $args.$field.clone().or($file.$field),)*
        }
    };
}

impl Settings {
    /// Merges flags (and environment) over the TOML file over the defaults, and checks them.
    pub fn resolve(args: &ServeArgs) -> Result<Self, BadSetting> {
        let file = match &args.config {
            None => ServeArgs::default(),
            Some(path) => read_file(path)?,
        };
        let m = merged!(
            args,
            file,
            [
                listen,
                database,
                redis,
                instance_id,
                jwt_secret,
                public_url,
                allowed_origins,
                max_frame_bytes,
                max_content_bytes,
                max_reply_bytes,
                sqlite_synchronous,
                sqlite_cache_kib,
                rate_limit_per_sec,
                rate_limit_burst,
                max_connections,
                max_connections_per_user,
                max_unauthenticated,
                max_unauthenticated_per_ip,
                auth_timeout_secs,
                write_timeout_secs,
                max_violations_per_minute,
                heartbeat_interval_secs,
                gateway_timeout_secs,
                offline_grace_secs,
                access_token_ttl_secs,
                open_registration,
                trust_forwarded_for,
                shutdown_timeout_secs,
                log_format,
                demo,
                tls_cert,
                tls_key,
                metrics_listen,
                metrics_token,
                outbound_allow,
            ]
        );
        let database = database(&m)?;
        let instance_id = instance_id(&m)?;
        let public_url = public_url(&m)?;
        let allowed_origins = allowed_origins(&m)?;
        let limits = engine_limits(&m)?;
        let http = http_config(&m, &instance_id, &public_url, &allowed_origins)?;
        Ok(Self {
            listen: listen(&m)?,
            redis: redis(&m, &database)?.map(mc_core::Secret::new),
            jwt_secret: jwt_secret(&m, &database)?,
            sqlite_synchronous: sqlite_synchronous(&m)?,
            sqlite_cache_kib: sqlite_cache_kib(&m)?,
            database,
            instance_id,
            public_url,
            allowed_origins,
            heartbeat_interval: limits.heartbeat_interval(),
            limits,
            trust_forwarded_for: http.trust_forwarded_for(),
            http,
            access_token_ttl: seconds(
                &m.access_token_ttl_secs,
                "access-token-ttl-secs",
                900,
                86_400,
            )?,
            open_registration: m.open_registration.unwrap_or(false),
            shutdown_timeout: seconds(&m.shutdown_timeout_secs, "shutdown-timeout-secs", 10, 600)?,
            log_format: log_format(&m)?,
            demo: m.demo.unwrap_or(false),
            tls: tls(&m)?,
            metrics: metrics(&m)?,
        })
    }
}

/// The environment variable of flag `flag`: `MC_` and the flag in capitals.
fn env_of(flag: &str) -> String {
    format!("MC_{}", flag.to_uppercase().replace('-', "_"))
}

/// A count between 1 and `max`, `default` when unset.
fn positive(value: Option<u64>, flag: &str, default: u64, max: u64) -> Result<u64, BadSetting> {
    match value {
        None => Ok(default),
        Some(0) => Err(bad(flag, &env_of(flag), "must be at least 1")),
        Some(v) if v > max => Err(bad(flag, &env_of(flag), format!("must be at most {max}"))),
        Some(v) => Ok(v),
    }
}

/// A number of seconds between 1 and `max`, `default` when unset.
fn seconds(
    value: &Option<u64>,
    flag: &str,
    default: u64,
    max: u64,
) -> Result<Duration, BadSetting> {
    positive(*value, flag, default, max).map(Duration::from_secs)
}

fn listen(m: &ServeArgs) -> Result<SocketAddr, BadSetting> {
    let text = m.listen.clone().unwrap_or_else(|| "127.0.0.1:8080".into());
    text.parse().map_err(|_| {
        bad("listen", "MC_LISTEN", format!("{text:?} is not an address like 127.0.0.1:8080"))
    })
}

fn outbound_allow(m: &ServeArgs) -> Result<Vec<ipnet::IpNet>, BadSetting> {
    let Some(text) = &m.outbound_allow else { return Ok(Vec::new()) };
    text.split(',')
        .map(str::trim)
        .filter(|range| !range.is_empty())
        .map(|range| {
            range.parse().map_err(|_| {
                let message = format!("{range:?} is not an address range like 10.0.0.0/8");
                bad("outbound-allow", "MC_OUTBOUND_ALLOW", message)
            })
        })
        .collect()
}

fn metrics(m: &ServeArgs) -> Result<MetricsExposure, BadSetting> {
    let listen = match &m.metrics_listen {
        None => None,
        Some(text) => Some(text.parse().map_err(|_| {
            let message = format!("{text:?} is not an address like 127.0.0.1:9100");
            bad("metrics-listen", "MC_METRICS_LISTEN", message)
        })?),
    };
    if let Some(token) = &m.metrics_token
        && token.expose().chars().count() < 16
    {
        return Err(bad("metrics-token", "MC_METRICS_TOKEN", "must be at least 16 characters"));
    }
    Ok(MetricsExposure { listen, token: m.metrics_token.clone() })
}

fn database(m: &ServeArgs) -> Result<String, BadSetting> {
    let database = m.database.clone().unwrap_or_else(|| "sqlite://mc.db".into());
    let known = ["sqlite:", "postgres://", "postgresql://"];
    if !known.iter().any(|scheme| database.starts_with(scheme)) {
        let message = format!("{database:?} is neither sqlite:… nor postgres://…");
        return Err(bad("database", "MC_DATABASE_URL", message));
    }
    Ok(database)
}

fn redis(m: &ServeArgs, database: &str) -> Result<Option<String>, BadSetting> {
    let Some(url) = m.redis.clone() else { return Ok(None) };
    if !url.starts_with("redis://") {
        let message = "must be a redis://host:port URL (rediss:// is not supported: keep Redis on a private network)";
        return Err(bad("redis", "MC_REDIS_URL", message));
    }
    if database.starts_with("sqlite:") {
        let message =
            "several instances share one PostgreSQL: use --database postgres://… with --redis";
        return Err(bad("redis", "MC_REDIS_URL", message));
    }
    Ok(Some(url))
}

fn instance_id(m: &ServeArgs) -> Result<String, BadSetting> {
    let Some(id) = m.instance_id.clone() else { return Ok(default_instance_id()) };
    let fine = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !fine {
        let message = "must be 1–64 letters, digits, '.', '_' or '-'";
        return Err(bad("instance-id", "MC_INSTANCE_ID", message));
    }
    Ok(id)
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

fn jwt_secret(m: &ServeArgs, database: &str) -> Result<Option<mc_core::Secret>, BadSetting> {
    let secret = m.jwt_secret.clone();
    if let Some(secret) = &secret
        && secret.expose().len() < mc_core::auth::MIN_SECRET_LEN
    {
        let message = format!("must be at least {} bytes", mc_core::auth::MIN_SECRET_LEN);
        return Err(bad("jwt-secret", "MC_JWT_SECRET", message));
    }
    if secret.is_none() && !database.starts_with("sqlite:") {
        let message = "is required with PostgreSQL (every instance must share it)";
        return Err(bad("jwt-secret", "MC_JWT_SECRET", message));
    }
    Ok(secret)
}

fn public_url(m: &ServeArgs) -> Result<Option<String>, BadSetting> {
    let url = m.public_url.clone();
    if let Some(url) = &url
        && mc_core::validate::endpoint_url("public_url", url).is_err()
    {
        return Err(bad("public-url", "MC_PUBLIC_URL", "must be an http(s):// URL"));
    }
    Ok(url)
}

fn allowed_origins(m: &ServeArgs) -> Result<Vec<String>, BadSetting> {
    let origins: Vec<String> = m
        .allowed_origins
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(|o| o.trim().trim_end_matches('/').to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    for origin in &origins {
        if !(origin.starts_with("http://") || origin.starts_with("https://")) {
            let message = format!("{origin:?} is not an origin like https://app.example.com");
            return Err(bad("allowed-origins", "MC_ALLOWED_ORIGINS", message));
        }
    }
    Ok(origins)
}

fn sqlite_synchronous(m: &ServeArgs) -> Result<mc_store_sqlite::Synchronous, BadSetting> {
    match m.sqlite_synchronous.as_deref() {
        None | Some("normal") => Ok(mc_store_sqlite::Synchronous::Normal),
        Some("full") => Ok(mc_store_sqlite::Synchronous::Full),
        Some(other) => {
            let message = format!("{other:?} is neither normal nor full");
            Err(bad("sqlite-synchronous", "MC_SQLITE_SYNCHRONOUS", message))
        }
    }
}

fn sqlite_cache_kib(m: &ServeArgs) -> Result<Option<u32>, BadSetting> {
    match m.sqlite_cache_kib {
        None => Ok(None),
        Some(kib) if (64..=4 * 1024 * 1024).contains(&kib) => Ok(Some(kib)),
        Some(kib) => {
            let message = format!("{kib} KiB is outside 64 to 4194304");
            Err(bad("sqlite-cache-kib", "MC_SQLITE_CACHE_KIB", message))
        }
    }
}

/// The relay engine's limits.
fn engine_limits(m: &ServeArgs) -> Result<RelayLimits, BadSetting> {
    let frame = positive(m.max_frame_bytes, "max-frame-bytes", 64 * 1024, 16 * 1024 * 1024)?;
    let content = positive(m.max_content_bytes, "max-content-bytes", 16 * 1024, frame)?;
    let reply = positive(m.max_reply_bytes, "max-reply-bytes", 256 * 1024, 64 * 1024 * 1024)?;
    let per_user = positive(m.max_connections_per_user, "max-connections-per-user", 8, 1_000)?;
    Ok(RelayLimits::default()
        .with_max_content_bytes(content as usize)
        .with_max_reply_bytes(reply as usize)
        .with_rate_per_sec(m.rate_limit_per_sec.unwrap_or(20))
        .with_rate_burst(m.rate_limit_burst.unwrap_or(40))
        .with_max_connections_per_user(per_user as usize)
        .with_heartbeat_interval(seconds(
            &m.heartbeat_interval_secs,
            "heartbeat-interval-secs",
            30,
            3_600,
        )?)
        .with_gateway_timeout(seconds(&m.gateway_timeout_secs, "gateway-timeout-secs", 30, 3_600)?)
        .with_offline_grace(seconds(&m.offline_grace_secs, "offline-grace-secs", 10, 3_600)?))
}

/// The HTTP API's and the sockets' settings.
fn http_config(
    m: &ServeArgs,
    instance_id: &str,
    public_url: &Option<String>,
    origins: &[String],
) -> Result<HttpConfig, BadSetting> {
    let frame = positive(m.max_frame_bytes, "max-frame-bytes", 64 * 1024, 16 * 1024 * 1024)?;
    let sockets = SocketLimits::default()
        .with_auth_timeout(seconds(&m.auth_timeout_secs, "auth-timeout-secs", 10, 600)?)
        .with_write_timeout(seconds(&m.write_timeout_secs, "write-timeout-secs", 10, 600)?)
        .with_max_violations_per_minute(positive(
            m.max_violations_per_minute,
            "max-violations-per-minute",
            100,
            1_000_000,
        )? as u32);
    let caps = |value, flag, default| positive(value, flag, default, 1_000_000).map(|v| v as usize);
    Ok(HttpConfig::default()
        .with_max_frame_bytes(frame as usize)
        .with_max_connections(caps(m.max_connections, "max-connections", 10_000)?)
        .with_max_unauthenticated(caps(m.max_unauthenticated, "max-unauthenticated", 1_000)?)
        .with_max_unauthenticated_per_ip(caps(
            m.max_unauthenticated_per_ip,
            "max-unauthenticated-per-ip",
            64,
        )?)
        .with_allowed_origins(origins.to_vec())
        .with_socket_limits(sockets)
        .with_public_url(public_url.clone())
        .with_serves_tls(m.tls_cert.is_some())
        .with_outbound_allow(outbound_allow(m)?)
        .with_trust_forwarded_for(m.trust_forwarded_for.unwrap_or(false))
        .with_instance_id(instance_id.to_owned()))
}

fn log_format(m: &ServeArgs) -> Result<LogFormat, BadSetting> {
    match m.log_format.as_deref() {
        None | Some("human") => Ok(LogFormat::Human),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => {
            let message = format!("{other:?} is neither human nor json");
            Err(bad("log-format", "MC_LOG_FORMAT", message))
        }
    }
}

fn tls(m: &ServeArgs) -> Result<Option<(std::path::PathBuf, std::path::PathBuf)>, BadSetting> {
    match (m.tls_cert.clone(), m.tls_key.clone()) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(bad("tls-key", "MC_TLS_KEY", "is required with --tls-cert")),
        (None, Some(_)) => Err(bad("tls-cert", "MC_TLS_CERT", "is required with --tls-key")),
    }
}

fn read_file(path: &Path) -> Result<ServeArgs, BadSetting> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("config", "MC_CONFIG", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text)
        .map_err(|e| bad("config", "MC_CONFIG", format!("{}: {e}", path.display())))
}
