//! [`Nginx`]: a real nginx on loopback as a WebSocket reverse proxy in front of one upstream,
//! for tests (the OpenClaw pairing test reaches its gateway through it, as a relay reaching a
//! remote gateway behind a proxy would: OpenClaw treats proxied connections as remote); and
//! the shipped `deploy/nginx` configuration in front of several instances.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where nginx is, if installed (`apt-get install nginx-light`).
pub fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

/// An nginx process proxying `127.0.0.1:port` to an upstream; stopped when dropped.
#[derive(Debug)]
pub struct Nginx {
    _dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl Nginx {
    /// Starts nginx on a free loopback port in front of `127.0.0.1:upstream`; waits until it
    /// accepts connections. It sets `X-Forwarded-For` to `client` when given (so the upstream
    /// sees a client from elsewhere: nothing is ever sent to that address), else appends the
    /// peer as proxies do.
    pub fn start(upstream: u16, client: Option<&str>) -> anyhow::Result<Self> {
        let forwarded = client.unwrap_or("$proxy_add_x_forwarded_for");
        if forwarded.chars().any(|c| !(c.is_ascii_alphanumeric() || "$_.:".contains(c))) {
            bail!("not a client address: {forwarded}");
        }
        let dir = tempfile::tempdir()?;
        let port = crate::free_port()?;
        let server = format!(
            "server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
               proxy_pass http://127.0.0.1:{upstream};\n      proxy_http_version 1.1;\n\
               proxy_set_header Upgrade $http_upgrade;\n      proxy_set_header Connection \"upgrade\";\n\
               proxy_set_header Host $host;\n      proxy_set_header X-Forwarded-For {forwarded};\n\
               proxy_read_timeout 600s;\n      proxy_send_timeout 600s;\n    }}\n  }}\n"
        );
        Self::run(dir, &server, port)
    }

    /// Starts nginx with the shipped `deploy/nginx/mc-relay.conf` (read from `config`) in front
    /// of the instances on `upstreams` (its two `server 127.0.0.1:808x` lines become these
    /// ports; more are added), listening on a free port instead of 8000.
    pub fn deploy(config: &Path, upstreams: &[u16]) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(config)
            .with_context(|| format!("read {}", config.display()))?;
        let [first, rest @ ..] = upstreams else { bail!("no upstream") };
        let dir = tempfile::tempdir()?;
        let port = crate::free_port()?;
        let mut servers = String::new();
        for upstream in std::iter::once(first).chain(rest) {
            servers.push_str(&format!(
                "    server 127.0.0.1:{upstream} max_fails=1 fail_timeout=5s;\n"
            ));
        }
        let mut lines = vec![];
        let mut placed = false;
        for line in text.lines() {
            if line.trim_start().starts_with("server 127.0.0.1:808") {
                if !placed {
                    lines.push(servers.trim_end().to_owned());
                    placed = true;
                }
            } else if line.trim() == "listen 127.0.0.1:8000;" {
                lines.push(format!("    listen 127.0.0.1:{port};"));
            } else {
                lines.push(line.to_owned());
            }
        }
        if !placed {
            bail!("{} has no `server 127.0.0.1:808x` upstream lines", config.display());
        }
        Self::run(dir, &lines.join("\n"), port)
    }

    /// Runs nginx with `server_block` inside a minimal `http { }` of its own directory.
    fn run(dir: tempfile::TempDir, server_block: &str, port: u16) -> anyhow::Result<Self> {
        let binary =
            nginx_binary().context("nginx is not installed (apt-get install nginx-light)")?;
        let root = dir.path().display();
        let config = format!(
            "daemon off;\nmaster_process off;\npid {root}/nginx.pid;\nerror_log {root}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {root}/body;\n  proxy_temp_path {root}/proxy;\n\
               fastcgi_temp_path {root}/fastcgi;\n  uwsgi_temp_path {root}/uwsgi;\n  scgi_temp_path {root}/scgi;\n\
               {server_block}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, config)?;
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start nginx")?;
        let mut proxy = Self { _dir: dir, child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = proxy.child.try_wait()? {
                bail!("nginx exited with {status}");
            }
            if Instant::now() > deadline {
                bail!("nginx did not listen on 127.0.0.1:{port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(proxy)
    }

    /// Its `ws://` address.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Its `http://` address.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
