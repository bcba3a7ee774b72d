//! `mc-chat` as a user runs it, against `mc-server serve --demo`: sign in with the printed
//! password, type a line, see the streamed reply, `/quit`; and a server that cannot be
//! reached is said so, with a failing exit code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use testkit::processes::Proc;

/// Starts `mc-server serve --demo` on a free port; returns it, its base URL and alice's
/// password (printed by the demo).
fn demo_server(dir: &std::path::Path) -> (Proc, String, String) {
    let db = format!("sqlite://{}", dir.join("demo.db").display());
    let mut child = Command::new(testkit::program("mc-server"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--database", &db])
        .env("MC_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut password, mut base) = (None, None);
    while password.is_none() || base.is_none() {
        let line = lines.next().expect("the demo prints its address and passwords").unwrap();
        if let Some(rest) = line.trim().strip_prefix("alice / ") {
            password = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(url) = line.strip_prefix("listening on ") {
            base = Some(url.to_owned());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (Proc { child }, base.unwrap(), password.unwrap())
}

#[test]
fn a_user_chats_from_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, base, password) = demo_server(dir.path());
    let mut chat = Command::new(env!("CARGO_BIN_EXE_mc-chat"))
        .args(["--server", &base, "--org", "demo", "--username", "alice", "--password", &password])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = chat.stdin.take().unwrap();
    writeln!(input, "from the terminal").unwrap();
    let mut output = BufReader::new(chat.stdout.take().unwrap()).lines();
    let echoed =
        (&mut output).map_while(Result::ok).find(|l| l.contains("Echo: from the terminal"));
    assert!(echoed.is_some(), "mc-chat printed the streamed reply");
    writeln!(input, "/quit").unwrap();
    assert!(chat.wait().unwrap().success());
}

#[test]
fn an_unreachable_server_is_an_error() {
    let port = testkit::free_port().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mc-chat"))
        .args(["--server", &format!("http://127.0.0.1:{port}"), "--username", "alice"])
        .args(["--password", "whatever-it-is"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("error"), "{err}");
}
