//! `mailfold queue list|show|retry|delete` and `mailfold dkim generate`: the operator's
//! view of the outbound queue and of DKIM keys.
//!
//! The commands work on the queue folder directly. While a `queue` role holds the folder's
//! delivery lock, `retry` and `delete` leave a request in `control/` for it (it acts within
//! a second); with no role running they change the folder themselves, under the lock.

use std::process::ExitCode;

use mailfold_queue::{QueueError, QueueFolder, Request, State};

use crate::config::Config;

/// What `mailfold queue` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Every queued message, one a line.
    List,
    /// One message's envelope.
    Show(String),
    /// Try one message, or all, now.
    Retry(Option<String>),
    /// Remove a message without delivering it.
    Delete(String),
}

/// Runs `action` on the configured queue folder.
pub fn run(config: &Config, action: Action) -> anyhow::Result<ExitCode> {
    let folder = QueueFolder::open(&config.queue.folder)?;
    match action {
        Action::List => list(&folder),
        Action::Show(id) => match folder.load(&id) {
            Ok(envelope) => {
                println!("{}", serde_json::to_string_pretty(&envelope)?);
                println!("message file: {}", folder.message_path(&id).display());
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => not_found(error),
        },
        Action::Retry(id) => retry(&folder, id),
        Action::Delete(id) => delete(&folder, &id),
    }
}

fn list(folder: &QueueFolder) -> anyhow::Result<ExitCode> {
    let now = mailfold_queue::folder::now();
    let ids = folder.ids()?;
    println!(
        "{:<40} {:<9} {:>7} {:>9} {:>7} {:>7}  SENDER",
        "ID", "STATE", "AGE", "SIZE", "PENDING", "NEXT"
    );
    let mut count = 0;
    for id in ids {
        // A message delivered while listing is simply not shown.
        let Ok(envelope) = folder.load(&id) else {
            continue;
        };
        count += 1;
        let pending = envelope.pending().count();
        let next = envelope.next_attempt.saturating_sub(now);
        println!(
            "{:<40} {:<9} {:>7} {:>9} {:>3}/{:<3} {:>7}  <{}>",
            envelope.id,
            envelope.display_state(),
            age(now.saturating_sub(envelope.created)),
            envelope.size,
            pending,
            envelope.recipients.len(),
            age(next),
            envelope.sender
        );
        for recipient in &envelope.recipients {
            let state = match recipient.state {
                State::Pending => "pending",
                State::Sent => "sent",
                State::Failed => "failed",
            };
            let reply = recipient.last_reply.as_deref().unwrap_or("");
            println!("    {state:<8} <{}> {reply}", recipient.address);
        }
    }
    println!("{count} message(s) queued");
    Ok(ExitCode::SUCCESS)
}

fn retry(folder: &QueueFolder, id: Option<String>) -> anyhow::Result<ExitCode> {
    let request = match &id {
        Some(id) if !folder.contains(id) => return not_found(QueueError::NotFound(id.clone())),
        Some(id) => Request::Retry(id.clone()),
        None => Request::RetryAll,
    };
    match folder.lock() {
        Ok(_lock) => {
            // No queue role runs: the next start tries these at once.
            let ids = match id {
                Some(id) => vec![id],
                None => folder.ids()?,
            };
            for id in &ids {
                let mut envelope = folder.load(id)?;
                envelope.next_attempt = 0;
                folder.save(&envelope)?;
            }
            println!(
                "{} message(s) will be tried when the queue role starts",
                ids.len()
            );
        }
        Err(QueueError::Locked(_)) => {
            folder.request(&request)?;
            println!("retry requested from the running queue role");
        }
        Err(error) => return Err(error.into()),
    }
    Ok(ExitCode::SUCCESS)
}

fn delete(folder: &QueueFolder, id: &str) -> anyhow::Result<ExitCode> {
    if !folder.contains(id) {
        return not_found(QueueError::NotFound(id.to_string()));
    }
    match folder.lock() {
        Ok(_lock) => {
            folder.remove(id)?;
            println!("{id} deleted");
        }
        Err(QueueError::Locked(_)) => {
            folder.request(&Request::Delete(id.to_string()))?;
            println!("deletion of {id} requested from the running queue role");
        }
        Err(error) => return Err(error.into()),
    }
    Ok(ExitCode::SUCCESS)
}

fn not_found(error: QueueError) -> anyhow::Result<ExitCode> {
    eprintln!("mailfold: {error}");
    Ok(ExitCode::from(1))
}

fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// `mailfold dkim generate DOMAIN`: a new key in the key folder, and the DNS record to
/// publish for it on standard output.
pub fn generate_dkim(config: &Config, domain: &str, rsa: bool) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let domain = mailfold_directory::Domain::parse(domain)
        .map_err(|_| anyhow::anyhow!("{domain:?} is not a domain name"))?
        .to_string();
    let dkim = &config.queue.dkim;
    let folder = dkim
        .key_folder
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no [queue.dkim] key_folder"))?;
    std::fs::create_dir_all(folder)?;
    let path = folder.join(format!("{domain}.key"));
    let algorithm = match rsa {
        true => mailfold_queue::dkim::Algorithm::Rsa,
        false => mailfold_queue::dkim::Algorithm::Ed25519,
    };
    let (pem, record) = mailfold_queue::dkim::generate(algorithm)
        .map_err(|e| anyhow::anyhow!("generating the key: {e}"))?;
    // A key already published must not be replaced by accident.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()?;
    eprintln!("key written to {}", path.display());

    // TXT strings hold at most 255 characters each (RFC 1035 §3.3.14).
    let strings: Vec<String> = record
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    println!(
        "{}._domainkey.{domain}. IN TXT {}",
        dkim.selector,
        strings.join(" ")
    );
    Ok(ExitCode::SUCCESS)
}
