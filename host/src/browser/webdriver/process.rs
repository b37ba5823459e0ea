//! chromedriver processes: start one per session on a free port, and make
//! sure neither it nor the Chromium it starts outlives the session.
//!
//! Three layers, because each covers a case the others miss:
//! - chromedriver runs in its own process group, which Chromium inherits;
//!   stopping a session kills the whole group.
//! - [`GroupGuard`] kills the group when dropped, so a session task that is
//!   aborted (runtime shutdown, panic) leaves nothing behind.
//! - after a crash of the host nothing runs its drops, so [`sweep`] kills
//!   processes whose command line names this host's profile folder; the
//!   provider runs it at start-up and before each session's launch.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::WebDriverError;

/// Kills a process group when dropped.
#[derive(Debug)]
pub struct GroupGuard {
    pgid: Option<u32>,
}

impl GroupGuard {
    /// Kills the group now (idempotent).
    pub fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            kill_group(pgid);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILL to every process of group `pgid`. Uses kill(1), so the host
/// needs no unsafe code; waiting for it is quick and bounded.
fn kill_group(pgid: u32) {
    if pgid <= 1 {
        return;
    }
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn kill_pid(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A running chromedriver.
#[derive(Debug)]
pub struct Driver {
    pub url: String,
    child: Child,
    guard: GroupGuard,
}

impl Driver {
    /// Starts `binary` on a free loopback port and waits until it answers.
    /// `marker` (a log file under the profiles folder) puts this host's data
    /// folder on chromedriver's command line, which is how [`sweep`] finds
    /// it after a crash.
    pub async fn start(binary: &Path, marker: &Path) -> Result<Driver, WebDriverError> {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let mut cmd = Command::new(binary);
            cmd.arg(format!("--port={port}"))
                .arg(format!("--log-path={}", marker.display()))
                .arg("--log-level=WARNING")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .process_group(0);
            let child = cmd.spawn().map_err(|e| {
                WebDriverError::Launch(format!(
                    "cannot start chromedriver {}: {e} (set CHROMEDRIVER_PATH or install chromium-driver)",
                    binary.display()
                ))
            })?;
            let pgid = child.id();
            let mut driver = Driver {
                url: format!("http://127.0.0.1:{port}"),
                child,
                guard: GroupGuard { pgid },
            };
            match driver.wait_listening(port).await {
                Ok(()) => return Ok(driver),
                Err(e) => {
                    last = e;
                    driver.kill().await;
                }
            }
        }
        Err(WebDriverError::Launch(format!(
            "chromedriver did not start: {last}"
        )))
    }

    async fn wait_listening(&mut self, port: u16) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("chromedriver exited with {status}"));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err("chromedriver did not listen within 20s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills chromedriver and every process of its group (Chromium).
    pub async fn kill(&mut self) {
        self.guard.kill();
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

fn free_port() -> Result<u16, WebDriverError> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| WebDriverError::Launch(format!("no free port for chromedriver: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| WebDriverError::Launch(format!("no free port for chromedriver: {e}")))
}

/// Finds an executable on `PATH`.
pub fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in names {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Kills every process (but this one) with a command-line argument for
/// which `matches` holds, and returns how many. Linux only (reads `/proc`);
/// elsewhere it finds nothing.
pub fn sweep(matches: impl Fn(&str) -> bool) -> usize {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut n = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let hit = raw
            .split(|b| *b == 0)
            .any(|arg| matches(&String::from_utf8_lossy(arg)));
        if hit {
            kill_pid(pid);
            n += 1;
        }
    }
    n
}
