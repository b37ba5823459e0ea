//! The `wasync` binary: the command line, then either the server
//! (configuration, logging, signals; the rest is `app`) or the plugin
//! developer kit (`devkit`).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use wasync::app::{App, Tuning};
use wasync::cli::{Cli, Command, PluginCommand, PluginFiles};
use wasync::config::Config;
use wasync::devkit::{self, DevkitError, RunOptions};

/// mimalloc rather than glibc's malloc: under a steady load of connections
/// coming and going, glibc's arenas kept freed memory and the resident set
/// crept for ten minutes before it settled (BENCHMARKS.md, S1); mimalloc
/// gives freed pages back, so the set stays flat.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve.config.as_deref()),
        Some(Command::Serve(args)) => serve(args.config.as_deref()),
        Some(Command::Plugin(cmd)) => plugin(cmd),
        Some(Command::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "wasync", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

fn serve(file: Option<&Path>) -> ExitCode {
    let pages = wasync::app::small_pages();
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = match Config::load(&env, file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wasync: {e}");
            return ExitCode::from(2);
        }
    };
    wasync::telemetry::init_logging(&config.log);
    if let Err(e) = pages {
        tracing::warn!(error = %e, "transparent huge pages stay on (prctl PR_SET_THP_DISABLE failed)");
    }
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

/// `wasync plugin ...`: the report on stdout as JSON; the plugin's log
/// lines and any error on stderr. Exit 0: accepted / every call answered;
/// 1: refused / a call failed; 2: the command could not run as asked.
fn plugin(cmd: PluginCommand) -> ExitCode {
    // The plugin's own log lines (and the host's warnings about them) go
    // to stderr, so stdout stays one JSON document.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let (name, result) = match cmd {
        PluginCommand::Check { plugin } => (
            "check",
            devkit::check(&plugin.wasm, &plugin.manifest(), max_bytes(&plugin))
                .map(|r| (json(&r), true)),
        ),
        PluginCommand::Run {
            plugin,
            input,
            chat,
            repeat,
            session,
            trigger,
        } => {
            let opts = RunOptions {
                manifest: plugin.manifest(),
                max_component_bytes: max_bytes(&plugin),
                wasm: plugin.wasm,
                input,
                chats: chat,
                repeat,
                session_id: session,
                trigger,
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("wasync plugin run: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            (
                "run",
                rt.block_on(devkit::run(&opts))
                    .map(|r| (json(&r), !r.failed)),
            )
        }
    };
    match result {
        Ok((out, ok)) => {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{out}");
            match ok {
                true => ExitCode::SUCCESS,
                false => ExitCode::from(1),
            }
        }
        Err(e) => {
            eprintln!("wasync plugin {name}: {} ({})", e, e.code());
            if let DevkitError::Usage(_) = e {
                eprintln!("\n{}", Cli::command().render_usage());
            }
            ExitCode::from(if e.is_refusal() { 1 } else { 2 })
        }
    }
}

fn max_bytes(p: &PluginFiles) -> usize {
    usize::try_from(p.max_bytes).unwrap_or(usize::MAX)
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
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
