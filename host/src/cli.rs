//! The command line. With no subcommand `wasync` serves, as it always has;
//! the environment and the optional TOML file configure the server, so the
//! command line carries only `--config` for it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Links WhatsApp accounts through WhatsApp Web, syncs their chats into
/// MongoDB, streams progress over WebSocket and runs sandboxed WASM plugins.
#[derive(Debug, Parser)]
#[command(name = "wasync", version, propagate_version = true)]
#[command(
    after_help = "Settings come from environment variables (WASYNC_LISTEN, \
WASYNC_DATA_DIR, MONGODB_URI, AMQP_URL, ...; see the README) and, optionally, a \
TOML file whose keys mirror them. The environment wins."
)]
pub struct Cli {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (what `wasync` with no subcommand does).
    Serve(ServeArgs),
    /// The plugin developer kit: check and run a plugin offline.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Print a shell completion script (e.g. `wasync completions bash >
    /// /etc/bash_completion.d/wasync`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// A TOML file of settings (keys mirror the environment variables).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Validate a component and its manifest exactly as an upload
    /// (`POST /plugins`) would, offline. Prints what would be installed as
    /// JSON; on refusal prints the upload's error code and exits 1.
    Check {
        #[command(flatten)]
        plugin: PluginFiles,
    },
    /// Run a plugin on messages and chats under the production limits and
    /// policies, and print per call the outcomes, wall time, memory and
    /// instructions as JSON. Exits 1 when a call failed.
    Run {
        #[command(flatten)]
        plugin: PluginFiles,
        /// Messages, as `GET .../messages` returns them (a page, or an
        /// array); `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Chats, as `GET .../chats` returns them (one, an array or a
        /// page), for the chat hooks.
        #[arg(long, value_name = "FILE")]
        chat: Option<PathBuf>,
        /// Run the whole input N times and report the cost per message.
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u32).range(1..=100_000))]
        repeat: u32,
        /// The session id the calls see.
        #[arg(long, value_name = "ID", default_value = "plugin-run")]
        session: String,
        /// The trigger the calls see.
        #[arg(long, value_parser = ["auto", "manual", "live"], default_value = "manual")]
        trigger: String,
    },
}

/// A component and its manifest.
#[derive(Debug, Args)]
pub struct PluginFiles {
    /// The component (`.wasm`).
    #[arg(value_name = "FILE.wasm")]
    pub wasm: PathBuf,
    /// Its manifest; by default the `.toml` beside the component.
    #[arg(long, value_name = "FILE.toml")]
    pub manifest: Option<PathBuf>,
    /// The upload size cap to check against, bytes.
    #[arg(long, value_name = "BYTES", env = "WASYNC_MAX_PLUGIN_BYTES",
          default_value_t = crate::config::DEFAULT_MAX_PLUGIN_BYTES as u64,
          value_parser = clap::value_parser!(u64)
              .range(1024..=crate::config::MAX_MAX_PLUGIN_BYTES as u64))]
    pub max_bytes: u64,
}

impl PluginFiles {
    /// The manifest's path.
    pub fn manifest(&self) -> PathBuf {
        self.manifest
            .clone()
            .unwrap_or_else(|| crate::devkit::manifest_beside(&self.wasm))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_subcommand_serves_and_plugin_commands_parse() {
        let cli = Cli::try_parse_from(["wasync", "--config", "w.toml"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.config, Some(PathBuf::from("w.toml")));

        let cli = Cli::try_parse_from(["wasync", "plugin", "check", "p.wasm"]).unwrap();
        let Some(Command::Plugin(PluginCommand::Check { plugin })) = cli.command else {
            panic!("not a check");
        };
        assert_eq!(plugin.manifest(), PathBuf::from("p.toml"));

        let err = Cli::try_parse_from(["wasync", "plugin", "run", "p.wasm", "--repeat", "0"])
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from(["wasync", "--bogus"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
