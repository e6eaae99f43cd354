//! `store-stress`: delivers self-checking messages into one mailbox in a loop, through
//! `mailfold_store::deliver`, so the store suite can run several delivering processes at once
//! and kill them at random moments.
//!
//! ```text
//! store-stress <shard root> <store path> <count|forever> <size> [quota bytes] [quota messages]
//! ```
//!
//! Each delivered id is printed on its own line of standard output, flushed at once: a line
//! there means `deliver` reported the message durable. A failed delivery is reported on
//! standard error and ends the run with status 1; bad arguments end it with status 64.
//!
//! Every message is `size` bytes (at least [`CHECK_LINE`] plus its headers) and ends with a
//! line `check <length> <checksum>` stating the byte length of everything before that line
//! and its FNV-1a 64 checksum, so a reader can tell a complete file from a truncated one
//! without knowing who wrote it. tests/suite/store.rs checks that format independently.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use mailfold_store::{QuotaLimit, Recipient, Store, deliver};

/// Length of the closing line: `check `, ten digits, a space, sixteen hex digits, CRLF.
const CHECK_LINE: usize = 35;

/// The run the arguments ask for.
struct Run {
    shard_root: PathBuf,
    store_path: String,
    /// `None`: until killed.
    count: Option<u64>,
    size: usize,
    quota: QuotaLimit,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = match parse(&args) {
        Ok(run) => run,
        Err(message) => {
            eprintln!("store-stress: {message}");
            eprintln!(
                "usage: store-stress <shard root> <store path> <count|forever> <size> \
                 [quota bytes] [quota messages]"
            );
            return ExitCode::from(64);
        }
    };
    match deliver_all(&run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("store-stress: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> Result<Run, String> {
    if !(4..=6).contains(&args.len()) {
        return Err(format!("expected 4 to 6 arguments, got {}", args.len()));
    }
    let number = |index: usize, what: &str| -> Result<u64, String> {
        match args.get(index) {
            None => Ok(0),
            Some(text) => text
                .parse()
                .map_err(|e| format!("reading {what} {text:?}: {e}")),
        }
    };
    let count = match args[2].as_str() {
        "forever" => None,
        _ => Some(number(2, "count")?),
    };
    let size = usize::try_from(number(3, "size")?).map_err(|e| format!("reading size: {e}"))?;
    Ok(Run {
        shard_root: PathBuf::from(&args[0]),
        store_path: args[1].clone(),
        count,
        size,
        quota: QuotaLimit {
            bytes: number(4, "quota bytes")?,
            messages: number(5, "quota messages")?,
        },
    })
}

fn deliver_all(run: &Run) -> Result<(), String> {
    let store = Store::new(BTreeMap::from([(
        "stress".to_string(),
        run.shard_root.clone(),
    )]));
    let maildir = store
        .mailbox("stress", &run.store_path, run.quota)
        .map_err(|e| format!("opening mailbox: {e}"))?;

    // The spool file sits on the shard, outside every Maildir, one per process.
    let pid = std::process::id();
    let spool = run.shard_root.join(format!("stress-spool.{pid}"));
    let mut stdout = std::io::stdout().lock();
    let mut sequence = 0u64;
    while run.count.is_none_or(|count| sequence < count) {
        let tag = format!("p{pid}-{sequence}");
        std::fs::write(&spool, compose(&tag, run.size))
            .map_err(|e| format!("writing spool file {}: {e}", spool.display()))?;
        let recipient = Recipient {
            maildir: &maildir,
            prefix: None,
        };
        let result = deliver(&spool, &[recipient]).pop();
        let delivered = match result {
            Some(Ok(delivered)) => delivered,
            Some(Err(e)) => return Err(format!("delivering message {tag}: {e}")),
            None => return Err(format!("delivering message {tag}: no result")),
        };
        writeln!(stdout, "{}", delivered.id)
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("writing to standard output: {e}"))?;
        sequence += 1;
    }
    let _ = std::fs::remove_file(&spool);
    Ok(())
}

/// A message of `size` bytes (or just over, when `size` is too small for the headers) with
/// `tag` as its subject and the closing check line.
fn compose(tag: &str, size: usize) -> Vec<u8> {
    let mut text = format!("From: stress@mailfold.test\r\nSubject: {tag}\r\n\r\n").into_bytes();
    let mut body = size.saturating_sub(CHECK_LINE).max(text.len());
    if body == text.len() + 1 {
        // One byte cannot be a line: a filler line needs at least its CRLF.
        body += 1;
    }

    // Filler lines of the tag's own letters, so no two messages share their content; the
    // last one ends with CRLF, so the check line is a line of its own.
    let pattern: Vec<u8> = tag.bytes().chain(*b" filler ").collect();
    let mut column = 0;
    while text.len() < body {
        let left = body - text.len();
        if left == 2 || (column >= 76 && left != 3) {
            text.extend_from_slice(b"\r\n");
            column = 0;
        } else {
            text.push(pattern[text.len() % pattern.len()]);
            column += 1;
        }
    }
    let check = format!("check {:010} {:016x}\r\n", text.len(), fnv1a(&text));
    text.extend_from_slice(check.as_bytes());
    text
}

/// FNV-1a, 64 bits: enough to notice a truncated or mixed-up file.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
