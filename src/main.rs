//! argv -> `serve` (the daemon), `check-config`, or an admin CLI command.

use clap::{Parser, Subcommand};
use hookd::config::Config;
use hookd::daemon::{self, Control, Listeners};
use hookd::systemd::Notifier;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

/// The static build's allocator. With musl's own malloc the static binary ran
/// up to 45% below the glibc build under the benchmark (sled copies leaves
/// and hyper buffers on every request); with mimalloc it is within about 10%
/// of it. Built without transparent huge pages, which added 30-40 MiB of RSS
/// under load.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// hookd: durable webhook delivery in one binary.
///
/// `hookd serve` runs the daemon; every other command talks to a running
/// daemon over its admin socket.
#[derive(Parser)]
#[command(name = "hookd", version, about, long_about = None)]
struct Cli {
    /// The admin socket of the daemon to talk to [default: ./hookd.sock if
    /// present, else /run/hookd/admin.sock].
    #[arg(long, global = true, env = "HOOKD_SOCKET")]
    socket: Option<PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (without --config: development defaults in the current directory).
    Serve {
        /// The TOML config file; see config.example.toml.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and print the effective values.
    CheckConfig {
        /// The TOML config file to check.
        file: PathBuf,
    },
    #[command(flatten)]
    Admin(hookd::cli::AdminCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(config) => {
                println!(
                    "# {file}: ok; effective values:\n{}",
                    config.render_effective(),
                    file = file.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Admin(command) => {
            let socket = cli.socket.unwrap_or_else(hookd::cli::default_socket);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime starts");
            match runtime.block_on(hookd::cli::run(&socket, cli.json, command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
    }
}

fn serve(config_path: Option<PathBuf>) -> ExitCode {
    let config = match &config_path {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::development(),
    };
    let log = hookd::logging::init(&config.log.level);
    if config_path.is_none() {
        tracing::info!(
            "no --config: development mode (store ./hookd-data, socket ./hookd.sock, loopback delivery allowed)"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Handlers first: a signal that came after the ports are bound but
        // before a lazily made handler was polled would kill the process
        // (the default action), with no clean shutdown.
        let signals = Signals::install();
        let listeners = Listeners::bind(&config)?;
        let (reload_tx, reloads) = mpsc::channel(1);
        tokio::spawn(reload_on_hangup(signals.hangup, config_path, reload_tx));
        let control = Control {
            shutdown: shutdown_signal(signals.terminate, signals.interrupt),
            reloads,
            log: Some(log),
            notifier: Notifier::from_env(),
        };
        daemon::run(config, listeners, control).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "hookd stopped");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The signals the daemon handles, their handlers installed from creation on.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    fn install() -> Signals {
        let install = |kind: SignalKind, name: &str| {
            signal(kind).unwrap_or_else(|e| panic!("the {name} handler cannot install: {e}"))
        };
        Signals {
            terminate: install(SignalKind::terminate(), "SIGTERM"),
            interrupt: install(SignalKind::interrupt(), "SIGINT"),
            hangup: install(SignalKind::hangup(), "SIGHUP"),
        }
    }
}

/// SIGTERM or SIGINT.
async fn shutdown_signal(mut term: Signal, mut int: Signal) {
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// On each SIGHUP, loads the config file again and hands it to the daemon;
/// a file that does not load is refused here and the running config stays.
async fn reload_on_hangup(
    mut hangup: Signal,
    path: Option<PathBuf>,
    reloads: mpsc::Sender<Config>,
) {
    while hangup.recv().await.is_some() {
        let Some(path) = &path else {
            tracing::warn!("SIGHUP: no --config file to reload (development mode)");
            continue;
        };
        tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
        match Config::load(path) {
            Ok(config) => {
                if reloads.send(config).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "config reload refused; the running config stays")
            }
        }
    }
}
