//! `mailfold lookup ADDRESS`: how the directory routes an address, for an operator.
//!
//! The answer is printed as indented text, one fact a line. The exit code is 0 when the address
//! reaches someone (a mailbox, or an expansion with at least one recipient), 1 when it does not
//! (unknown, not local, inactive, an empty expansion), and 2 when the directory could not
//! answer.

use std::fmt::Write;
use std::process::ExitCode;

use mailfold_directory::{Directory, Expansion, Mailbox, Resolution};
use mailfold_store::{QuotaLimit, Store};
use mailfold_telemetry::Metrics;

use crate::config::Config;

/// Looks `address` up and prints the routing.
pub fn run(config: &Config, address: &str) -> anyhow::Result<ExitCode> {
    mailfold_telemetry::init_logging("warn", config.log.format)?;
    mailfold_net::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let directory = Directory::open(&config.directory, Metrics::new().registry())?;
        let store = Store::new(config.shards.clone());
        match directory.resolve_recipient(address).await {
            Ok(resolution) => {
                print!("{}", describe(address, &resolution, &store));
                Ok(if reaches_someone(&resolution) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            }
            Err(error) if error.is_temporary() => {
                eprintln!("mailfold: {address}: {error}");
                Ok(ExitCode::from(2))
            }
            Err(error) => {
                println!("{address}: rejected: {error}");
                Ok(ExitCode::from(1))
            }
        }
    })
}

fn reaches_someone(resolution: &Resolution) -> bool {
    match resolution {
        Resolution::Mailbox(_) => true,
        Resolution::Alias { expansion, .. } | Resolution::CatchAll { expansion } => {
            !expansion.is_empty()
        }
        Resolution::Inactive { .. } | Resolution::Unknown | Resolution::NotLocal => false,
    }
}

/// The text `lookup` prints.
pub fn describe(address: &str, resolution: &Resolution, store: &Store) -> String {
    let mut out = String::new();
    match resolution {
        Resolution::Mailbox(mailbox) => {
            let _ = writeln!(out, "{address}: mailbox");
            mailbox_lines(&mut out, mailbox, "  ", store);
        }
        Resolution::Alias { alias, expansion } => {
            let _ = writeln!(out, "{address}: alias {}", alias.address);
            let _ = writeln!(out, "  targets: {}", alias.targets.join(", "));
            expansion_lines(&mut out, expansion, store);
        }
        Resolution::CatchAll { expansion } => {
            let _ = writeln!(out, "{address}: catch-all");
            expansion_lines(&mut out, expansion, store);
        }
        Resolution::Inactive { status } => {
            let _ = writeln!(out, "{address}: inactive ({status})");
        }
        Resolution::Unknown => {
            let _ = writeln!(out, "{address}: unknown (local domain, no such address)");
        }
        Resolution::NotLocal => {
            let _ = writeln!(out, "{address}: not local (domain not hosted here)");
        }
    }
    out
}

fn mailbox_lines(out: &mut String, mailbox: &Mailbox, indent: &str, store: &Store) {
    let services: Vec<&str> = mailbox.services.iter().map(|s| s.as_str()).collect();
    let _ = writeln!(out, "{indent}address: {}", mailbox.address);
    let _ = writeln!(
        out,
        "{indent}id: {}  tenant: {}  domain: {}",
        mailbox.id, mailbox.tenant, mailbox.domain
    );
    let _ = writeln!(out, "{indent}store: {}:{}", mailbox.shard, mailbox.store);
    let _ = writeln!(
        out,
        "{indent}status: {}  services: {}",
        mailbox.status,
        services.join(" ")
    );
    let _ = writeln!(
        out,
        "{indent}quota: {} bytes, {} messages  max message size: {} bytes (0 = unlimited)",
        mailbox.quota_bytes, mailbox.quota_messages, mailbox.max_message_size
    );
    if !mailbox.forward.is_empty() {
        let _ = writeln!(out, "{indent}forward: {}", mailbox.forward.join(", "));
    }
    let quota = QuotaLimit {
        bytes: mailbox.quota_bytes,
        messages: mailbox.quota_messages,
    };
    match store.mailbox(&mailbox.shard, &mailbox.store, quota) {
        Ok(maildir) if maildir.root().join("cur").is_dir() => match maildir.usage() {
            Ok(usage) => {
                let _ = writeln!(out, "{indent}maildir: {}", maildir.root().display());
                let _ = writeln!(
                    out,
                    "{indent}usage: {} bytes, {} messages",
                    usage.bytes, usage.messages
                );
            }
            Err(error) => {
                let _ = writeln!(
                    out,
                    "{indent}maildir: {} ({error})",
                    maildir.root().display()
                );
            }
        },
        Ok(maildir) => {
            let _ = writeln!(
                out,
                "{indent}maildir: {} (created on first delivery)",
                maildir.root().display()
            );
        }
        Err(error) => {
            let _ = writeln!(out, "{indent}maildir: unavailable ({error})");
        }
    }
}

fn expansion_lines(out: &mut String, expansion: &Expansion, store: &Store) {
    for mailbox in &expansion.mailboxes {
        let _ = writeln!(out, "  -> mailbox {}", mailbox.address);
        mailbox_lines(out, mailbox, "       ", store);
    }
    for external in &expansion.external {
        let _ = writeln!(out, "  -> external {external}");
    }
    for (target, skip) in &expansion.skipped {
        let _ = writeln!(out, "  -- skipped {target}: {}", skip.as_str());
    }
    if expansion.is_empty() {
        let _ = writeln!(out, "  (reaches no one)");
    }
}
