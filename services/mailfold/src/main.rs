//! `mailfold`: the one binary of the Mailfold mail hosting platform.
//!
//! # Layout
//!
//! - `main`: the command line (clap) and exit codes.
//! - [`config`]: the configuration file, parsed in two phases with every error reported.
//! - [`serve`]: `mailfold serve`, which wires the enabled roles and handles signals.
//! - [`lookup`]: `mailfold lookup`, an operator's view of how an address routes.
//!
//! `anyhow` is used here, at the edge, and nowhere in the library crates.

mod config;
mod lookup;
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
    /// Show how the directory routes an address: mailbox, alias expansion, catch-all, unknown.
    Lookup {
        /// The address to look up.
        address: String,
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
