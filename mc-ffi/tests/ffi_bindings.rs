//! mc-ffi's generated bindings against a real `mc-server` over TLS: the Python suite
//! (`mc-ffi/tests/python`, pytest) and the Kotlin test (`mc-ffi/tests/kotlin`, kotlinc + JNA
//! on the JVM). Both build the library and bindings with `mc-ffi/generate-bindings.sh
//! --debug`, so this is a test binary of its own (slow on first run).
//!
//! Skipped, with a printed line, when pytest or the Kotlin compiler is missing;
//! `MC_REQUIRE_BINDINGS=1` (set by `.ci/run`, which installs them) makes that a failure.
//! Swift bindings are generated too but not compiled: there is no Swift toolchain here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn require(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("MC_REQUIRE_BINDINGS").is_ok_and(|v| v == "1") {
        panic!("MC_REQUIRE_BINDINGS=1 but {what} is missing");
    }
    println!("skipped: {what} is missing");
    false
}

/// The generated bindings (once per run) and a certificate for 127.0.0.1.
struct Fixture {
    out: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bindings");
        // A clean environment: the variables cargo sets for this test would make the inner
        // build of mc-ffi rebuild its dependencies.
        let mut script = Command::new("bash");
        script.env_clear();
        for keep in ["PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN", "TMPDIR"] {
            if let Some(value) = std::env::var_os(keep) {
                script.env(keep, value);
            }
        }
        let status = script
            .arg(workspace().join("mc-ffi/generate-bindings.sh"))
            .arg("--debug")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success(), "generate-bindings.sh failed");
        for generated in [
            "kotlin/dev/missioncontrol/relay/mc_ffi.kt",
            "swift/McFfi.swift",
            "swift/McFfiFFI.h",
            "python/mc_ffi.py",
            "python/libmc_ffi.so",
        ] {
            assert!(out.join(generated).is_file(), "{generated} was generated");
        }
        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
                .unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        Fixture { out, cert, key, _dir: dir }
    })
}

#[test]
fn python_bindings_end_to_end() {
    let has_pytest = Command::new("python3")
        .args(["-m", "pytest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !require("pytest (pip install pytest)", has_pytest) {
        return;
    }
    let f = fixture();
    let status = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(workspace().join("mc-ffi/tests/python"))
        .env("MC_FFI_PYTHON", f.out.join("python"))
        .env("MC_SERVER_BIN", testkit::program("mc-server"))
        .env("MC_TEST_CERT", &f.cert)
        .env("MC_TEST_KEY", &f.key)
        .status()
        .unwrap();
    assert!(status.success(), "the Python binding tests failed");
}

/// Where the Kotlin compiler is: `MC_KOTLIN_HOME`, or the npm package cached by `.ci/run`.
fn kotlin_home() -> Option<PathBuf> {
    let home = std::env::var_os("MC_KOTLIN_HOME").map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/mc-relay/kotlin/node_modules/kotlin-compiler"))
    })?;
    home.join("bin/kotlinc").is_file().then_some(home)
}

#[test]
fn kotlin_bindings_end_to_end() {
    let home = kotlin_home();
    let jna = PathBuf::from("/usr/share/java/jna.jar");
    if !require("the Kotlin compiler (npm kotlin-compiler)", home.is_some())
        || !require("JNA (/usr/share/java/jna.jar, Debian's libjna-java)", jna.is_file())
    {
        return;
    }
    let home = home.unwrap();
    let f = fixture();
    let classes = f.out.join("kotlin-classes");
    let coroutines = home.join("lib/kotlinx-coroutines-core-jvm.jar");
    let classpath = format!("{}:{}", jna.display(), coroutines.display());
    let status = Command::new(home.join("bin/kotlinc"))
        .arg(f.out.join("kotlin/dev/missioncontrol/relay/mc_ffi.kt"))
        .arg(workspace().join("mc-ffi/tests/kotlin/ClientTest.kt"))
        .args(["-nowarn", "-cp", &classpath, "-d"])
        .arg(&classes)
        .status()
        .unwrap();
    assert!(status.success(), "kotlinc failed");

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/mc.db", dir.path().display());
    let mut server = Command::new(testkit::program("mc-server"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--database", &db])
        .args(["--rate-limit-per-sec", "100", "--rate-limit-burst", "200", "--tls-cert"])
        .arg(&f.cert)
        .arg("--tls-key")
        .arg(&f.key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let (mut password, mut url) = (None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.split("alice / ").nth(1) {
            password = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(u) = line.strip_prefix("listening on ") {
            url = Some(u.to_owned());
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    let (password, url) = (password.unwrap(), url.unwrap());
    assert!(url.starts_with("https://"), "{url}");

    let java_classpath = format!(
        "{}:{}:{}:{}",
        classes.display(),
        home.join("lib/kotlin-stdlib.jar").display(),
        coroutines.display(),
        jna.display()
    );
    let status = Command::new("java")
        .arg(format!("-Djna.library.path={}", f.out.join("lib").display()))
        .args(["-cp", &java_classpath, "ClientTestKt", &url])
        .arg(&f.cert)
        .arg(&password)
        .status()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(status.success(), "the Kotlin binding test failed");
}
