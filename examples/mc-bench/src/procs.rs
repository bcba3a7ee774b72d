//! The processes a benchmark runs: started, read line by line, measured from `/proc`, and
//! stopped when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// A child process (this binary with a hidden subcommand, or a server such as `nats-server`).
pub struct ChildProcess {
    child: Child,
    lines: Option<std::io::Lines<BufReader<std::process::ChildStdout>>>,
}

impl ChildProcess {
    /// Starts this binary with `args`; its stdout is read with [`line`](Self::line), and its
    /// stdin closing tells it to stop.
    pub fn itself(args: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("start a child process")?;
        let lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
        Ok(Self { child, lines: Some(lines) })
    }

    /// Starts another program, its output discarded; it is killed when dropped.
    pub fn program(program: &str, args: &[String]) -> anyhow::Result<Self> {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {program}"))?;
        Ok(Self { child, lines: None })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line it printed.
    pub fn line(&mut self) -> anyhow::Result<String> {
        let lines = self.lines.as_mut().context("the child's output is not read")?;
        Ok(lines.next().context("the child exited")??)
    }

    /// User + system CPU seconds it used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(self.pid())
    }

    /// Its peak resident memory (KiB).
    pub fn peak_rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmHWM:")
    }

    /// Its resident memory now (KiB).
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmRSS:")
    }

    /// Its resident anonymous memory now (KiB): the heap and stacks, without mapped file pages
    /// (SQLite's mmap of a growing database shows in `rss_kib` but is not a leak).
    pub fn anon_rss_kib(&self) -> u64 {
        status_kib(self.pid(), "RssAnon:")
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.lines.is_some() {
            drop(self.child.stdin.take());
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Reads a field (in KiB) of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU seconds of a process (0 when it is gone).
pub fn cpu_seconds_of(pid: u32) -> f64 {
    stat_cpu_seconds(std::path::Path::new(&format!("/proc/{pid}/stat")))
}

/// User + system CPU seconds in a `/proc` `stat` file (0 when it is gone).
fn stat_cpu_seconds(path: &std::path::Path) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// User + system CPU seconds of `pid`'s threads whose name starts with `name` (a thread's
/// name is at most 15 bytes in `/proc`).
pub fn thread_cpu_seconds(pid: u32, name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0.0 };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end().starts_with(name))
        })
        .map(|task| stat_cpu_seconds(&task.path().join("stat")))
        .sum()
}

/// User + system CPU seconds of every process named `command` (e.g. `postgres`: the server
/// and all its backends).
pub fn command_cpu_seconds(command: &str) -> f64 {
    let Ok(procs) = std::fs::read_dir("/proc") else { return 0.0 };
    procs
        .flatten()
        .filter(|p| p.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter(|p| {
            std::fs::read_to_string(p.path().join("comm")).is_ok_and(|c| c.trim_end() == command)
        })
        .map(|p| stat_cpu_seconds(&p.path().join("stat")))
        .sum()
}

/// Blocks until stdin closes (the parent stopped the benchmark).
pub async fn until_stdin_closes() -> anyhow::Result<()> {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).map(|n| n > 0).unwrap_or(false) {}
    })
    .await?;
    Ok(())
}
