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
