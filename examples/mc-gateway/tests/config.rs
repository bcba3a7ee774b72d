//! `mc-gateway`'s configuration as an operator meets it: a bad config file exits 2 and names
//! the setting, before anything is registered or dialled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

const ORG: &str = "0194f4a0-7b1c-7000-8000-000000000001";

/// Writes `yaml` as the config and runs `mc-gateway ARGS --config <it>`; (exit code, stderr).
fn run(dir: &Path, yaml: &str, args: &[&str]) -> (Option<i32>, String) {
    let config = dir.join("gw.yaml");
    std::fs::write(&config, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mc-gateway"))
        .args(args)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn config(api_server: &str, extra: &str) -> String {
    format!(
        "mission_control:\n  api_server: \"{api_server}\"\n  organization_id: \"{ORG}\"\n  \
         registration_token: \"gw_reg_x\"\ngateway:\n  name: \"g\"\n{extra}"
    )
}

#[test]
fn a_bad_config_exits_2_and_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run(dir.path(), &config("ftp://x", ""), &["--echo"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("mission_control.api_server"), "{err}");

    let (code, err) =
        run(dir.path(), &config("http://127.0.0.1:1", "  colour: blue\n"), &["--echo"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("colour"), "an unknown key is named: {err}");

    let (code, err) = run(dir.path(), &config("http://127.0.0.1:1", ""), &[]);
    assert_eq!(code, Some(2), "without --echo, a local gateway must be named: {err}");
    assert!(err.contains("openclaw.url"), "{err}");

    for (url, says) in
        [("wss://127.0.0.1:1", "wss:// is not built"), ("http://x", "not a ws:// URL")]
    {
        let openclaw = format!("openclaw:\n  url: \"{url}\"\n");
        let (code, err) = run(dir.path(), &config("http://127.0.0.1:1", &openclaw), &[]);
        assert_eq!(code, Some(2), "{url}: {err}");
        assert!(err.contains("openclaw.url") && err.contains(says), "{err}");
    }

    let missing = Command::new(env!("CARGO_BIN_EXE_mc-gateway"))
        .args(["--echo", "--config"])
        .arg(dir.path().join("absent.yaml"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("absent.yaml"));
}
