//! P7: from `exec` of the real `wasync` binary to its first answer, with
//! five plugins to load, once with an empty compile cache and then again
//! with the cache the first start left behind.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wasync_tests::plugins::PluginDir;

/// The plugins a start loads: the three shipped ones and two test
/// fixtures, five different components, so a cold start compiles five.
const PLUGINS: [&str; 5] = [
    "redact-pii",
    "keyword-tagger",
    "chat-filter",
    "fixture-sandbox-probe",
    "fixture-id-rewrite",
];

pub struct Startup {
    pub plugins: usize,
    /// Median over the runs, cold cache then warm.
    pub cold_ms: f64,
    pub warm_ms: f64,
    pub runs: usize,
}

/// Kills the host when a measure panics half-way.
struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One start: spawn, wait for the "dashboard at" line (printed once the
/// plugins are loaded and the server is accepting), confirm `/readyz`
/// answers 200, stop the host. Returns spawn → 200.
async fn start_once(data: &Path, plugins: &Path) -> Duration {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut child = Command::new(wasync_tests::wasync_binary())
        .env_clear()
        .env("WASYNC_LISTEN", "127.0.0.1:0")
        .env("WASYNC_DATA_DIR", data)
        .env("WASYNC_PLUGINS_DIR", plugins)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn wasync");
    let stdout = child.stdout.take().expect("stdout");
    let host = Host(child);
    let line = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("dashboard at"))
    })
    .await
    .expect("reader")
    .expect("the host printed its address");
    let url = line
        .split("http://")
        .nth(1)
        .map(|a| format!("http://{}readyz", a.trim()))
        .expect("address in the line");
    let resp = http.get(&url).send().await.expect("readyz");
    let took = started.elapsed();
    assert_eq!(resp.status(), 200, "{url}");
    drop(host);
    took
}

/// The median of `v`, in ms.
fn median(v: Vec<Duration>) -> f64 {
    let ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    crate::cluster::median(&ms)
}

pub async fn p7(quick: bool) -> Startup {
    let runs = if quick { 1 } else { 5 };
    let dir = PLUGINS
        .iter()
        .fold(PluginDir::new(), |d, name| d.with(name));
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        // A fresh data dir holds an empty compile cache (`plugin-cache/`).
        let data = tempfile::tempdir().expect("temp dir");
        cold.push(start_once(data.path(), dir.path()).await);
        warm.push(start_once(data.path(), dir.path()).await);
    }
    Startup {
        plugins: PLUGINS.len(),
        cold_ms: median(cold),
        warm_ms: median(warm),
        runs,
    }
}
