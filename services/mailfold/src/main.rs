//! `mailfold`: the one binary of the Mailfold mail hosting platform.
//!
//! # Layout
//!
//! - `main`: the command line (clap) and exit codes.
//! - [`config`]: the configuration file, parsed in two phases with every error reported.
//! - [`serve`]: `mailfold serve`, which wires the enabled roles and handles signals.
//! - [`lookup`]: `mailfold lookup`, an operator's view of how an address routes.
//! - [`queue_config`]: the `[queue]` section of the configuration.
//! - [`queue_cli`]: `mailfold queue` and `mailfold dkim`.
//!
//! `anyhow` is used here, at the edge, and nowhere in the library crates.

mod config;
mod lookup;
mod queue_cli;
mod queue_config;
mod serve;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The Mailfold mail hosting platform.
#[derive(Parser)]
#[command(name = "mailfold", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the roles the configuration enables until SIGTERM or SIGINT.
    Serve {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and print every problem with its key.
    CheckConfig {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Read a password on standard input and print its {ARGON2} hash for userPassword.
    HashPassword,
    /// Inspect and steer the outbound queue.
    Queue {
        #[command(subcommand)]
        action: QueueCommand,
        /// The configuration file.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// DKIM keys.
    Dkim {
        #[command(subcommand)]
        action: DkimCommand,
    },
    /// Show how the directory routes an address: mailbox, alias expansion, catch-all, unknown.
    Lookup {
        /// The address to look up.
        address: String,
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Every queued message with its recipients' states.
    List,
    /// One message's envelope.
    Show {
        /// The queue id.
        id: String,
    },
    /// Try a message (or every message) now.
    Retry {
        /// The queue id.
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Every queued message.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Remove a message without delivering it.
    Delete {
        /// The queue id.
        id: String,
    },
}

#[derive(Subcommand)]
enum DkimCommand {
    /// Make a key for DOMAIN in the key folder and print the DNS record to publish.
    Generate {
        /// The signing domain.
        domain: String,
        /// `rsa` (2048 bits, the default: every verifier knows it) or `ed25519` (RFC 8463).
        #[arg(long, default_value = "rsa", value_parser = ["rsa", "ed25519"])]
        algorithm: String,
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => load(&config).and_then(serve::run),
        Command::CheckConfig { config } => check_config(&config),
        Command::HashPassword => hash_password(),
        Command::Queue { action, config } => {
            let action = match action {
                QueueCommand::List => queue_cli::Action::List,
                QueueCommand::Show { id } => queue_cli::Action::Show(id),
                QueueCommand::Retry { id, .. } => queue_cli::Action::Retry(id),
                QueueCommand::Delete { id } => queue_cli::Action::Delete(id),
            };
            match config {
                Some(config) => load(&config).and_then(|config| queue_cli::run(&config, action)),
                None => Err(anyhow::anyhow!("--config is required")),
            }
        }
        Command::Dkim {
            action:
                DkimCommand::Generate {
                    domain,
                    algorithm,
                    config,
                },
        } => load(&config)
            .and_then(|config| queue_cli::generate_dkim(&config, &domain, algorithm == "rsa")),
        Command::Lookup { address, config } => {
            load(&config).and_then(|config| lookup::run(&config, &address))
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("mailfold: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the configuration, printing each problem on its own line.
fn load(path: &std::path::Path) -> anyhow::Result<config::Config> {
    config::load(path).map_err(|errors| {
        for error in &errors {
            eprintln!("{}: {error}", path.display());
        }
        anyhow::anyhow!("{} problem(s) in {}", errors.len(), path.display())
    })
}

fn check_config(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let roles: Vec<String> = config.roles.iter().map(ToString::to_string).collect();
    println!("{}: ok (roles: {})", path.display(), roles.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// At most this much is read from standard input: a password, not a file.
const MAX_PASSWORD: u64 = 4096;

fn hash_password() -> anyhow::Result<ExitCode> {
    let mut input = String::new();
    std::io::stdin()
        .take(MAX_PASSWORD + 1)
        .read_to_string(&mut input)?;
    if input.len() as u64 > MAX_PASSWORD {
        anyhow::bail!("password longer than {MAX_PASSWORD} bytes");
    }
    // One line: the newline that ends it is not part of the password.
    let password = input.strip_suffix('\n').unwrap_or(&input);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        anyhow::bail!("empty password");
    }
    println!("{}", mailfold_directory::password::hash_argon2(password));
    Ok(ExitCode::SUCCESS)
}
