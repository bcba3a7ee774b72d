//! Tests of `mc-server serve`'s settings.

#[test]
fn database_urls_are_logged_without_their_password() {
    use super::redacted_url;
    assert_eq!(
        redacted_url("postgres://mc:s3cr:et@db.internal:5432/mc?sslmode=require"),
        "postgres://mc:***@db.internal:5432/mc?sslmode=require"
    );
    assert_eq!(
        redacted_url("postgres://db/mc?user=mc&password=hunter2&sslmode=disable"),
        "postgres://db/mc?user=mc&password=***&sslmode=disable"
    );
    assert_eq!(redacted_url("postgres://mc@db/mc"), "postgres://mc@db/mc");
    assert_eq!(redacted_url("sqlite://relay.db"), "sqlite://relay.db");
    assert_eq!(redacted_url("sqlite::memory:"), "sqlite::memory:");
}

use super::*;

#[test]
fn defaults_are_the_spec_defaults() {
    let s = Settings::resolve(&ServeArgs::default()).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.database, "sqlite://mc.db");
    assert_eq!(s.http.max_frame_bytes(), 65_536);
    assert_eq!(s.http.socket_limits().write_timeout(), std::time::Duration::from_secs(10));
    assert_eq!(s.limits.max_content_bytes(), 16_384);
    assert_eq!(s.sqlite_synchronous, mc_store_sqlite::Synchronous::Normal);
    assert_eq!(s.sqlite_cache_kib, None);
    assert!(!s.demo);
}

#[test]
fn a_server_with_its_own_certificate_hands_out_wss_urls() {
    let plain = Settings::resolve(&ServeArgs::default()).unwrap();
    assert!(!plain.http.serves_tls());
    let tls = ServeArgs {
        tls_cert: Some("cert.pem".into()),
        tls_key: Some("key.pem".into()),
        ..Default::default()
    };
    assert!(Settings::resolve(&tls).unwrap().http.serves_tls());
}

#[test]
fn outbound_ranges_are_read_as_cidrs() {
    let args =
        ServeArgs { outbound_allow: Some("10.0.0.0/8, fd00::/8".into()), ..Default::default() };
    let ranges = Settings::resolve(&args).unwrap().http.outbound_allow().clone();
    let shown: Vec<String> = ranges.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["10.0.0.0/8", "fd00::/8"]);
    assert!(Settings::resolve(&ServeArgs::default()).unwrap().http.outbound_allow().is_empty());
}

#[test]
fn bad_values_name_the_setting() {
    let cases = [
        (ServeArgs { listen: Some("here".into()), ..Default::default() }, "MC_LISTEN"),
        (ServeArgs { database: Some("mysql://x".into()), ..Default::default() }, "MC_DATABASE_URL"),
        (ServeArgs { jwt_secret: Some("short".into()), ..Default::default() }, "MC_JWT_SECRET"),
        (
            ServeArgs { database: Some("postgres://x/y".into()), ..Default::default() },
            "MC_JWT_SECRET",
        ),
        (ServeArgs { max_frame_bytes: Some(0), ..Default::default() }, "MC_MAX_FRAME_BYTES"),
        (
            ServeArgs { max_content_bytes: Some(1 << 20), ..Default::default() },
            "MC_MAX_CONTENT_BYTES",
        ),
        (
            ServeArgs { allowed_origins: Some("evil".into()), ..Default::default() },
            "MC_ALLOWED_ORIGINS",
        ),
        (ServeArgs { log_format: Some("xml".into()), ..Default::default() }, "MC_LOG_FORMAT"),
        (
            ServeArgs { metrics_listen: Some("metrics".into()), ..Default::default() },
            "MC_METRICS_LISTEN",
        ),
        (
            ServeArgs { outbound_allow: Some("10.0.0.0/8,lan".into()), ..Default::default() },
            "MC_OUTBOUND_ALLOW",
        ),
        (
            ServeArgs { metrics_token: Some("short".parse().unwrap()), ..Default::default() },
            "MC_METRICS_TOKEN",
        ),
        (
            ServeArgs { sqlite_synchronous: Some("off".into()), ..Default::default() },
            "MC_SQLITE_SYNCHRONOUS",
        ),
        (ServeArgs { sqlite_cache_kib: Some(63), ..Default::default() }, "MC_SQLITE_CACHE_KIB"),
        (
            ServeArgs { sqlite_cache_kib: Some(5 * 1024 * 1024), ..Default::default() },
            "MC_SQLITE_CACHE_KIB",
        ),
        (ServeArgs { max_reply_bytes: Some(0), ..Default::default() }, "MC_MAX_REPLY_BYTES"),
        (
            ServeArgs { redis: Some("redis://127.0.0.1".into()), ..Default::default() },
            "MC_REDIS_URL",
        ),
        (
            ServeArgs {
                redis: Some("http://127.0.0.1".into()),
                database: Some("postgres://db/x".into()),
                jwt_secret: Some("k".repeat(40).into()),
                ..Default::default()
            },
            "MC_REDIS_URL",
        ),
        (ServeArgs { instance_id: Some("a b".into()), ..Default::default() }, "MC_INSTANCE_ID"),
        (
            ServeArgs { config: Some("/nonexistent/mc.toml".into()), ..Default::default() },
            "MC_CONFIG",
        ),
    ];
    for (args, name) in cases {
        let err = Settings::resolve(&args).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn the_file_fills_what_flags_leave_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mc.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:9999\"\nrate_limit_per_sec = 5\ndemo = true\n")
        .unwrap();
    let args =
        ServeArgs { config: Some(path.clone()), rate_limit_per_sec: Some(7), ..Default::default() };
    let s = Settings::resolve(&args).unwrap();
    assert_eq!(s.listen.port(), 9999);
    assert!(s.demo);
    std::fs::write(&path, "lisen = \"typo\"\n").unwrap();
    let err =
        Settings::resolve(&ServeArgs { config: Some(path), ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    assert_eq!(sqlite_file("sqlite://data/mc.db?mode=rwc"), Some(PathBuf::from("data/mc.db")));
    assert_eq!(sqlite_file("sqlite::memory:"), None);
}
