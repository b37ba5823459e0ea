//! The `wasync` binary: configuration, logging, signals; the rest is `app`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use wasync::app::{App, Tuning};
use wasync::config::Config;

const USAGE: &str = "usage: wasync [--config FILE]

Runs the wasync server. Settings come from environment variables
(WASYNC_LISTEN, WASYNC_DATA_DIR, MONGODB_URI, AMQP_URL, ...; see the README)
and, optionally, a TOML file whose keys mirror them. The environment wins.";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut file: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "-V" | "--version" => {
                println!("wasync {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--config" => match args.next() {
                Some(f) => file = Some(PathBuf::from(f)),
                None => {
                    eprintln!("wasync: --config needs a file\n\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!("wasync: unknown argument {other:?}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = match Config::load(&env, file.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wasync: {e}");
            return ExitCode::from(2);
        }
    };
    wasync::telemetry::init_logging(&config.log);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wasync: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasync: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} (WASYNC_LISTEN): {e}",
                config.server.listen
            )
        })?;
    let app = App::start(config, listener, Tuning::default()).await?;
    println!("wasync: dashboard at http://{}/", app.local_addr());
    shutdown_signal().await;
    tracing::info!("shutting down");
    app.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
