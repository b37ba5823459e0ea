//! The `wasync` binary refuses bad configuration before binding, naming
//! each bad variable. `scripts/test.sh` builds the binary first.

use std::path::PathBuf;
use std::process::Command;

fn binary() -> PathBuf {
    wasync_tests::wasync_binary()
}

#[test]
fn bad_configuration_is_reported_by_variable_name() {
    let out = Command::new(binary())
        .env_clear()
        .env("WASYNC_LISTEN", "0.0.0.0:0")
        .env("MONGODB_URI", "postgres://nope")
        .env("AMQP_PUBLISH_MESSAGES", "sometimes")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for var in [
        "WASYNC_LISTEN",
        "WASYNC_API_KEY",
        "MONGODB_URI",
        "AMQP_PUBLISH_MESSAGES",
    ] {
        assert!(err.contains(var), "{var} not named in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");

    let out = Command::new(binary()).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: wasync"));
    let out = Command::new(binary()).arg("--config").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--config needs a file");

    let out = Command::new(binary())
        .args(["--config", "/nonexistent/wasync.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

/// The server turns transparent huge pages off for its process before it
/// serves (`wasync::app::small_pages`; BENCHMARKS.md, P2).
#[test]
fn the_server_runs_on_small_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary())
        .env_clear()
        .env("WASYNC_LISTEN", "127.0.0.1:0")
        .env("WASYNC_DATA_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let started = std::time::Instant::now();
    let thp = loop {
        let text = std::fs::read_to_string(&status).unwrap_or_default();
        let thp = text
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:"))
            .map(|v| v.trim().to_owned());
        if thp.as_deref() == Some("0") || started.elapsed() > std::time::Duration::from_secs(10) {
            break thp;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        thp.as_deref(),
        Some("0"),
        "THP_enabled in {status} (Linux shows it from 5.0 on)"
    );
}
