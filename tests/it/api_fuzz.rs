//! The server and its document agree: Schemathesis (from PyPI, in the
//! project's `.venv`, installed by `scripts/setup.sh`) reads `/openapi.json`
//! from a live host and sends what the document allows and what it does
//! not, with every check it has (status codes, content types, response
//! schemas, valid data accepted, invalid data refused, auth not ignored).
//! It runs with and without an API key, with a fixed seed and a bounded
//! number of examples per operation, so it takes about a minute.
//!
//! `tests/schemathesis.toml` lists the few places where the document cannot
//! say everything the server checks, each with its reason.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use wasync_tests::{HostOptions, TestHost, fast_tuning};

fn schemathesis() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = root.join(".venv/bin/schemathesis");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup.sh (it installs Schemathesis into .venv)",
        bin.display()
    );
    bin
}

/// A host whose sessions stay cheap: simulated accounts only (a fuzzed
/// `provider: webdriver` must not start browsers), and room for every
/// session the fuzz creates.
async fn host(key: Option<&str>) -> TestHost {
    let mut opts = HostOptions {
        tuning: fast_tuning(),
        ..Default::default()
    }
    .var(wasync::config::WASYNC_MAX_SESSIONS, "100000")
    .var(
        wasync::config::CHROMEDRIVER_PATH,
        "/nonexistent/chromedriver",
    )
    .var(wasync::config::CHROMIUM_PATH, "/nonexistent/chromium");
    if let Some(k) = key {
        opts = opts.var(wasync::config::WASYNC_API_KEY, k);
    }
    TestHost::spawn_with(opts).await
}

async fn fuzz(host: &TestHost, key: Option<&str>) {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    let report = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(schemathesis());
    cmd.arg("--no-color")
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(host.url("/openapi.json"))
        .args(["--max-examples", "25"])
        .args(["--seed", "20240601"])
        .args(["--workers", "2"])
        .args(["--request-timeout", "10"])
        .args(["--max-failures", "20"])
        .args(["--generation-database", "none"])
        .arg("--report-dir")
        .arg(report.path())
        // Its crash cache (`.schemathesis/`) goes there too, not into the tree.
        .current_dir(report.path())
        .kill_on_drop(true);
    if let Some(k) = key {
        cmd.args(["-H", &format!("Authorization: Bearer {k}")]);
    }
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("the fuzz finished within 3 minutes")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "schemathesis ({}) took {:.1}s",
        if key.is_some() {
            "with a key"
        } else {
            "without a key"
        },
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "the server and /openapi.json disagree:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_server_does_what_its_document_says() {
    let host = host(None).await;
    fuzz(&host, None).await;
    host.stop().await;
}

#[tokio::test]
async fn the_server_does_what_its_document_says_with_a_key() {
    let key = "fuzz-key-0123456789abcdef";
    let host = host(Some(key)).await;
    fuzz(&host, Some(key)).await;
    host.stop().await;
}
