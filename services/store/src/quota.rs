//! Maildir++ quota: the `maildirsize` file at the root of one mailbox, read, appended to and
//! rebuilt so that Dovecot (`quota = maildir`) and Courier can share it with Mailfold.
//!
//! # The file
//!
//! The format is Courier's Maildir++ quota extension (README.maildirquota in courier-libs,
//! the specification Dovecot's backend also follows). The first line is the quota definition,
//! comma-separated `<n>S` (bytes) and `<n>C` (messages) items, either absent, `0` meaning no
//! limit: `1000000S,1000C`, `1000000S`, `1000C`. Every further line holds two integers, a
//! change in bytes and in messages, negative for removals; usage is their sum:
//!
//! ```text
//! 2048000S,60C
//! 36 2
//! 18 1
//! -18 -1
//! ```
//!
//! With no limit at all Mailfold writes `0S`, as Dovecot does (its `maildirsize_write` avoids an
//! empty first line on purpose); Courier writes an empty first line instead, and both parse
//! either form as unlimited. Mailfold writes lines without padding, as Dovecot does; Courier pads
//! its numbers to 12 columns, which the reader here accepts. These forms were checked against
//! the files `doveadm` of Dovecot 2.3.19 writes.
//!
//! # What counts
//!
//! A rebuild counts every message file in `new/` and `cur/` of the root (INBOX) and of every
//! folder directory `.<name>` in it, `.Trash` included, messages flagged `T` (deleted, not yet
//! expunged) included; `tmp/` is not counted. That is Dovecot's default. Courier, built without
//! `--with-trashquota` (its default), leaves `.Trash` and `T`-flagged messages out, relying on
//! Trash being purged on a timer; Mailfold has no such purge, so leaving Trash out would let a
//! mailbox grow without bound. A Courier mailbox moved in may therefore show more usage after
//! its first rebuild here. Names starting with `.` are not messages (Maildir), folders starting
//! with `..` do not exist (Maildir++), and symbolic links are not followed. A message's size is
//! the `,S=<n>` field of its name when there is one (both Courier and Dovecot write it), its
//! file size otherwise.
//!
//! # When the file is rebuilt
//!
//! [`usage`] trusts the file unless one of these holds, the union of Courier's and Dovecot's
//! rules, and then rebuilds it with [`recalculate`]:
//!
//! - it is missing;
//! - it is 5120 bytes or more (Courier's rule; Dovecot reads at most 5120 bytes and rebuilds
//!   when they fill its buffer, which comes to the same), so the file stays short and any
//!   drift from lost or doubled lines is corrected after a few hundred changes;
//! - it is malformed: no complete first line, a definition it cannot read, a line that is not
//!   two integers, a NUL byte, a negative total (Dovecot: "corrupted"). An unfinished last line
//!   without a newline is ignored, as Dovecot does, since it is an append still being written;
//! - its definition differs from the limit the caller gives (the directory is the authority);
//! - the sums are over quota and the file has more than one change line or was last changed
//!   15 minutes ago or more (both Courier and Dovecot), so mail removed by a client that does
//!   not update the file cannot keep a mailbox blocked for long.
//!
//! # Concurrency
//!
//! Changes are appended with a single `write` of a short line on a descriptor opened with
//! `O_APPEND`, as the specification and Dovecot do. That is atomic on a local file system; on
//! NFS the client computes the offset, so two replicas appending at the same moment can
//! overwrite each other's line. Neither Courier nor Dovecot guards against that either (a
//! comment in Dovecot's backend says as much): the damage is one miscounted message until the
//! next rebuild, and a torn line makes the file malformed, which rebuilds it.
//!
//! A rebuild writes the new file in `tmp/` and renames it over `maildirsize`, so readers see the
//! old or the new file, never half of one. An append that lands in the old file after the scan
//! but before the rename is lost; Courier's procedure deals with that and Mailfold follows it:
//! before reading each `new/` and `cur/` the rebuild records its modification time, and after
//! the rename it checks them again (and the list of folders). If anything changed, a message
//! arrived or left during the scan, and the rebuild runs again, up to three scans in all. The
//! check sees changes as fine as the file system's timestamps (a few milliseconds on Linux);
//! anything finer is left for the next rebuild, a miss the specification accepts.
//!
//! Mailfold goes one step further, to keep the file exact rather than nearly so: a rebuild
//! that lands between a change and its line (a delivery linked into `new/` but not yet
//! appended) counts the change and then gets its line too. So every change keeps a name in the
//! root's `tmp/` until its line is written (a delivery its temporary file, an expunge or copy a
//! marker), and the file is only replaced while `tmp/` holds nothing younger than
//! [`IN_FLIGHT_WINDOW`] from a live writer; until then [`usage`] sums the lines, however long
//! the file has grown. A rebuild that still races after its last scan removes the file instead
//! of writing a wrong one.
//!
//! The specification uses no lock, and Dovecot 2.3 takes none for this file (it writes a
//! temporary file and renames it, as above). Older Dovecot releases (as in the dovecot-239
//! source Apple published) took a non-blocking dotlock `maildirsize.lock` with a 30 second
//! stale timeout around the rewrite. Mailfold takes that same dotlock around a rebuild: created
//! with `O_CREAT|O_EXCL`, which NFSv3 and later make atomic (unlike `flock`/`fcntl` locks on
//! many NFS set-ups), considered stale when its modification time is 30 seconds old, and touched
//! while a long scan runs. It is not needed for correctness, which rests on the checks above;
//! it stops the replicas from all rescanning a large mailbox at once when its file goes stale.
//! A rebuild that finds the lock taken waits up to ten seconds and then uses the file the other
//! process wrote; if the lock is still held then, it scans on its own and leaves the file alone.
//! Appends never take the lock, since Dovecot and Courier do not either.
//!
//! Every function takes the mailbox root (the INBOX directory), never a folder: Courier walks up
//! from a folder holding `maildirfolder`, but here the caller always knows the root. Everything
//! here is blocking file I/O.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The quota file's name in the mailbox root.
pub const FILE_NAME: &str = "maildirsize";

/// The dotlock guarding a rebuild, the name older Dovecot releases use.
const LOCK_NAME: &str = "maildirsize.lock";

/// A file this long or longer is rebuilt (README.maildirquota).
const MAX_FILE_BYTES: usize = 5120;

/// Over-quota sums from a single-line file are trusted this long (README.maildirquota).
const OVER_QUOTA_TRUSTED_FOR: Duration = Duration::from_secs(15 * 60);

/// A lock not touched for this long belongs to a dead process (older Dovecot's setting).
const LOCK_STALE_AFTER: Duration = Duration::from_secs(30);

/// How often a rebuild holding the lock touches it; well inside the stale timeout.
const LOCK_KEEP_ALIVE_EVERY: Duration = Duration::from_secs(10);

/// How long a rebuild waits for another process's rebuild before scanning on its own.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Scans a rebuild makes at most while messages keep arriving under it.
const MAX_SCANS: usize = 3;

/// Limits from the directory; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuotaLimit {
    /// Total size of all messages, in bytes.
    pub bytes: u64,
    /// Number of messages.
    pub messages: u64,
}

impl QuotaLimit {
    /// Whether neither bytes nor messages are limited.
    pub fn is_unlimited(&self) -> bool {
        self.bytes == 0 && self.messages == 0
    }

    /// The definition line as Dovecot writes it: `1000S,50C`, `1000S`, `50C`, or `0S` for
    /// no limit at all.
    pub fn definition(&self) -> String {
        let mut items = Vec::with_capacity(2);
        if self.bytes != 0 || self.messages == 0 {
            items.push(format!("{}S", self.bytes));
        }
        if self.messages != 0 {
            items.push(format!("{}C", self.messages));
        }
        items.join(",")
    }
}

/// Current usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Total size of all messages, in bytes.
    pub bytes: u64,
    /// Number of messages.
    pub messages: u64,
}

impl Usage {
    /// Whether one more message of `size` bytes fits under `limit`: a message that brings
    /// usage exactly to a limit fits, one byte or one message more does not.
    pub fn fits(&self, limit: QuotaLimit, size: u64) -> bool {
        let bytes_fit = limit.bytes == 0 || self.bytes.saturating_add(size) <= limit.bytes;
        let messages_fit = limit.messages == 0 || self.messages.saturating_add(1) <= limit.messages;
        bytes_fit && messages_fit
    }

    /// Whether usage is already beyond a limit ("over quota" in the rebuild rules).
    fn exceeds(&self, limit: QuotaLimit) -> bool {
        (limit.bytes != 0 && self.bytes > limit.bytes)
            || (limit.messages != 0 && self.messages > limit.messages)
    }
}

/// Reads usage from `<root>/maildirsize`, recalculating the file first when it is missing,
/// malformed, 5120 bytes or longer, its definition differs from `limit`, or it is over quota
/// and stale (see the module documentation for the exact rules). Never fails because the file
/// is absent or corrupt: it rebuilds it. Fails when the root cannot be read or written.
///
/// A mailbox that does not exist yet uses nothing. While a change is in flight (see
/// [`IN_FLIGHT_WINDOW`]) the file is not rebuilt: its change lines are summed whatever its
/// length, because replacing it now could drop or double the change in flight.
pub fn usage(root: &Path, limit: QuotaLimit) -> io::Result<Usage> {
    if !root.is_dir() {
        return Ok(Usage::default());
    }
    if let Some(usage) = trusted_usage(root, limit)? {
        return Ok(usage);
    }
    if !settled(root)? {
        return match logged_usage(root)? {
            Some(usage) => Ok(usage),
            None => Ok(Scan::run(root, None)?.usage),
        };
    }
    recalculate(root, limit)
}

/// How long a file in the root's `tmp/` counts as a change in flight. Deliveries keep their
/// `tmp/` name until their change line is written, and expunges and copies leave a marker
/// there for the same span, so a file younger than this means a change line may be pending.
/// Older files are leftovers of crashes, which `Maildir::clean_tmp` removes later.
pub const IN_FLIGHT_WINDOW: Duration = Duration::from_secs(60);

/// Whether no change is in flight in the mailbox (nothing recent in the root's `tmp/`).
fn settled(root: &Path) -> io::Result<bool> {
    let tmp = root.join("tmp");
    let entries = match fs::read_dir(&tmp) {
        Ok(entries) => entries,
        Err(error) if is_gone(&error) => return Ok(true),
        Err(error) => return Err(context(error, format_args!("listing {}", tmp.display()))),
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        // The rebuild's own temporary file is not a change to count.
        if entry.file_name().to_string_lossy().ends_with(FILE_NAME) {
            continue;
        }
        let recent = entry
            .metadata()
            .and_then(|m| m.modified())
            .map(|time| now.duration_since(time).unwrap_or_default() < IN_FLIGHT_WINDOW)
            .unwrap_or(false);
        if recent && !left_by_a_dead_process(&entry.file_name().to_string_lossy()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether a `tmp/` file was made by a process of this host that no longer runs: a crash's
/// leftover, however recent, not a change in flight. Files from other hosts (replicas on a
/// shared shard) are judged by age alone.
fn left_by_a_dead_process(file_name: &str) -> bool {
    match crate::name::writer(file_name) {
        Some((pid, host)) if host == crate::name::host() => {
            !Path::new("/proc").join(pid.to_string()).exists()
        }
        _ => false,
    }
}

/// The sum of the file's change lines, however long or old the file is; `None` when it is
/// missing or malformed.
fn logged_usage(root: &Path) -> io::Result<Option<Usage>> {
    let path = root.join(FILE_NAME);
    let mut text = Vec::new();
    match File::open(&path) {
        // A bound all the same: a deferred rebuild lets the file grow, but not without limit.
        Ok(file) => {
            if let Err(error) = file.take(MAX_DEFERRED_BYTES).read_to_end(&mut text) {
                if is_gone(&error) {
                    return Ok(None);
                }
                return Err(context(error, format_args!("reading {}", path.display())));
            }
        }
        Err(error) if is_gone(&error) => return Ok(None),
        Err(error) => return Err(context(error, format_args!("reading {}", path.display()))),
    }
    Ok(QuotaFile::parse(&text).map(|file| file.usage))
}

/// Longest file summed while a rebuild waits for changes to settle.
const MAX_DEFERRED_BYTES: u64 = 1 << 20;

/// Records a change (a delivery: `+size, +1`; an expunge: `-size, -1`) by appending one line
/// with a single `O_APPEND` write. Call it after the message is in place (or gone): when the
/// file is missing it is created by recalculation, which then already counts the change, so
/// nothing is appended. A change of zero writes nothing.
pub fn record(root: &Path, limit: QuotaLimit, bytes: i64, messages: i64) -> io::Result<()> {
    if bytes == 0 && messages == 0 {
        return Ok(());
    }
    let path = root.join(FILE_NAME);
    let mut file = match OpenOptions::new().append(true).open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            // No file: the next rebuild, made once no change is in flight, counts this one.
            if settled(root)? {
                recalculate(root, limit)?;
            }
            return Ok(());
        }
        Err(error) => return Err(context(error, format_args!("opening {}", path.display()))),
    };

    // One write call for the whole line, repeated only when interrupted before writing
    // anything: finishing a partial write later could land after another process's line.
    let line = format!("{bytes} {messages}\n");
    loop {
        match file.write(line.as_bytes()) {
            Ok(written) if written == line.len() => return Ok(()),
            Ok(written) => {
                let message = format!(
                    "appending to {}: wrote {written} of {} bytes",
                    path.display(),
                    line.len()
                );
                return Err(io::Error::new(io::ErrorKind::WriteZero, message));
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            // NFS: the file was replaced by a rebuild, whose scan covers this change.
            Err(error) if error.kind() == io::ErrorKind::StaleNetworkFileHandle => return Ok(()),
            Err(error) => {
                return Err(context(
                    error,
                    format_args!("appending to {}", path.display()),
                ));
            }
        }
    }
}

/// Rebuilds the file from the messages on disk and returns the usage. Counts every message in
/// `new/` and `cur/` of the INBOX (the root) and of every `.Folder` below it, `.Trash` included
/// (Dovecot's default; Courier leaves Trash out by default, see the module documentation). A
/// message's size is the `,S=<n>` field of its file name when present, else its file size.
/// The file is written in `tmp/` and renamed into place, so readers never see a half file.
/// When another process is rebuilding at the same moment, waits for it and returns its result.
pub fn recalculate(root: &Path, limit: QuotaLimit) -> io::Result<Usage> {
    let lock = match Dotlock::acquire(root)? {
        Acquired::Immediately(lock) => Some(lock),
        Acquired::AfterWaiting(lock) => {
            // Another process has just rebuilt the file; its scan is as recent as ours would be.
            if let Some(usage) = trusted_usage(root, limit)? {
                return Ok(usage);
            }
            Some(lock)
        }
        Acquired::TimedOut => None,
    };

    let mut usage = Usage::default();
    for attempt in 0..MAX_SCANS {
        let settled_before = settled(root)?;
        let scan = Scan::run(root, lock.as_ref())?;
        usage = scan.usage;
        // Without the lock another process owns the file, and with a change in flight a new
        // file could miss or double it: count, but leave the file alone. A file this rebuild
        // wrote in an earlier pass and found wrong goes, though: better none than a wrong one.
        if lock.is_none() || !settled_before {
            if attempt > 0 {
                remove_file_if_present(&root.join(FILE_NAME))?;
            }
            return Ok(usage);
        }
        write_file(root, limit, usage)?;
        // README.maildirquota: a newer timestamp after the rename means the scan raced a change.
        // Timestamps are only as fine as the kernel's clock tick, so a change made and
        // finished within one tick of the scan escapes that check: a second count, after the
        // rename, must agree too.
        if !scan.changed(root)? && settled(root)? && Scan::run(root, lock.as_ref())?.usage == usage
        {
            return Ok(usage);
        }
    }
    // Still racing after every scan: leave no file rather than a wrong one. The next rebuild
    // made while nothing is in flight writes it, and appends until then find no file.
    remove_file_if_present(&root.join(FILE_NAME))?;
    Ok(usage)
}

fn remove_file_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if !is_gone(&error) => {
            Err(context(error, format_args!("removing {}", path.display())))
        }
        _ => Ok(()),
    }
}

/// The usage the file states, when the rules allow trusting it.
fn trusted_usage(root: &Path, limit: QuotaLimit) -> io::Result<Option<Usage>> {
    let Some((text, modified)) = read_file(root)? else {
        return Ok(None);
    };
    let Some(file) = QuotaFile::parse(&text) else {
        return Ok(None);
    };
    if file.limit != limit {
        return Ok(None);
    }

    // Over quota: trust only a fresh file holding nothing but a rebuild's own line.
    if file.usage.exceeds(limit) {
        let age = SystemTime::now()
            .duration_since(modified)
            .unwrap_or_default();
        if file.changes > 1 || age >= OVER_QUOTA_TRUSTED_FOR {
            return Ok(None);
        }
    }
    Ok(Some(file.usage))
}

/// The file's bytes and modification time; `None` when it is missing or too long to trust.
fn read_file(root: &Path) -> io::Result<Option<(Vec<u8>, SystemTime)>> {
    let path = root.join(FILE_NAME);
    let reading = |error| context(error, format_args!("reading {}", path.display()));
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if is_gone(&error) => return Ok(None),
        Err(error) => return Err(reading(error)),
    };
    let modified = file
        .metadata()
        .and_then(|m| m.modified())
        .map_err(reading)?;

    // Reading stops at MAX_FILE_BYTES: a file that long is rebuilt whatever it holds.
    let mut text = Vec::with_capacity(MAX_FILE_BYTES);
    match file.take(MAX_FILE_BYTES as u64).read_to_end(&mut text) {
        Ok(_) if text.len() >= MAX_FILE_BYTES => Ok(None),
        Ok(_) => Ok(Some((text, modified))),
        // Replaced by a rebuild while being read (NFS): read it again next time.
        Err(error) if is_gone(&error) => Ok(None),
        Err(error) => Err(reading(error)),
    }
}

/// The parsed contents of a `maildirsize` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QuotaFile {
    /// The limit the definition line states.
    limit: QuotaLimit,
    /// The sum of all change lines.
    usage: Usage,
    /// How many change lines there are (a fresh rebuild has one).
    changes: usize,
}

impl QuotaFile {
    /// Parses the file; `None` when it is malformed in any way that calls for a rebuild.
    fn parse(bytes: &[u8]) -> Option<QuotaFile> {
        if bytes.contains(&0) {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?;

        // An unfinished last line is an append in flight: ignore it, as Dovecot does.
        let (complete, _unfinished) = text.rsplit_once('\n')?;
        let mut lines = complete.split('\n');
        let limit = parse_definition(lines.next()?)?;

        // Sum in a wider type so no sequence of lines can overflow.
        let (mut bytes, mut messages, mut changes) = (0i128, 0i128, 0usize);
        for line in lines {
            let (line_bytes, line_messages) = parse_change(line)?;
            bytes += i128::from(line_bytes);
            messages += i128::from(line_messages);
            changes += 1;
        }

        // Negative totals cannot be true: Dovecot and Courier both rebuild on them.
        let usage = Usage {
            bytes: u64::try_from(bytes).ok()?,
            messages: u64::try_from(messages).ok()?,
        };
        Some(QuotaFile {
            limit,
            usage,
            changes,
        })
    }
}

/// Parses a definition line: `<n>S` and `<n>C` items separated by commas, in any order, either
/// absent; an empty line (Courier's "no quota") is unlimited.
fn parse_definition(line: &str) -> Option<QuotaLimit> {
    let mut limit = QuotaLimit::default();
    for item in line
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        if let Some(digits) = item.strip_suffix('S') {
            limit.bytes = parse_count(digits)?;
        } else if let Some(digits) = item.strip_suffix('C') {
            limit.messages = parse_count(digits)?;
        } else {
            return None;
        }
    }
    Some(limit)
}

/// Parses an unsigned decimal of ASCII digits only (no sign, no spaces).
fn parse_count(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Parses a change line: two signed integers separated by white space, which may also pad the
/// line (Courier right-aligns both numbers in 12 columns).
fn parse_change(line: &str) -> Option<(i64, i64)> {
    let mut fields = line.split_ascii_whitespace();
    let bytes = parse_signed(fields.next()?)?;
    let messages = parse_signed(fields.next()?)?;
    match fields.next() {
        Some(_) => None,
        None => Some((bytes, messages)),
    }
}

/// Parses a decimal with an optional leading `-`.
fn parse_signed(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The size a message file name records in its `,S=<n>` field, looked for before the `:`
/// that starts the flags. The digits must end the field (`,` or the end of the unique part
/// follow); anything else means the size must come from the file itself, as Dovecot decides.
fn size_from_name(name: &[u8]) -> Option<u64> {
    let unique = name.split(|&b| b == b':').next().unwrap_or(name);
    unique.split(|&b| b == b',').skip(1).find_map(|field| {
        let digits = field.strip_prefix(b"S=")?;
        let digits = std::str::from_utf8(digits).ok()?;
        parse_count(digits)
    })
}

/// One pass over the messages of a mailbox, with what is needed to tell whether it raced.
#[derive(Debug)]
struct Scan {
    /// What the pass counted.
    usage: Usage,
    /// Each `new/` and `cur/` read, with its modification time taken before reading it.
    stamps: Vec<(PathBuf, Option<SystemTime>)>,
    /// The folder directories found in the root.
    folders: BTreeSet<OsString>,
}

impl Scan {
    /// Counts the root and every folder, touching `lock` between folders.
    fn run(root: &Path, lock: Option<&Dotlock>) -> io::Result<Scan> {
        let folders = folder_directories(root)?;
        let mut scan = Scan {
            usage: Usage::default(),
            stamps: Vec::new(),
            folders,
        };
        let maildirs: Vec<PathBuf> = std::iter::once(root.to_path_buf())
            .chain(scan.folders.iter().map(|folder| root.join(folder)))
            .collect();
        for maildir in maildirs {
            for sub in ["new", "cur"] {
                scan.count(&maildir.join(sub))?;
            }
            if let Some(lock) = lock {
                lock.keep_alive();
            }
        }
        Ok(scan)
    }

    /// Adds the messages of one `new/` or `cur/` directory.
    fn count(&mut self, directory: &Path) -> io::Result<()> {
        // The stamp is taken first, so a change made while reading shows as a newer stamp.
        let stamp = modified(directory)?;
        self.stamps.push((directory.to_path_buf(), stamp));
        if stamp.is_none() {
            return Ok(());
        }
        let listing = |error| context(error, format_args!("listing {}", directory.display()));
        let entries = match fs::read_dir(directory) {
            Ok(entries) => entries,
            Err(error) if is_gone(&error) => return Ok(()),
            Err(error) => return Err(listing(error)),
        };

        for entry in entries {
            let entry = entry.map_err(listing)?;
            let name = entry.file_name();
            let name = name.as_encoded_bytes();
            // Maildir: names starting with a dot are not messages.
            if name.first() == Some(&b'.') {
                continue;
            }
            let size = match size_from_name(name) {
                Some(size) => size,
                None => match entry.metadata() {
                    Ok(metadata) if metadata.is_file() => metadata.len(),
                    Ok(_) => continue,
                    // Expunged while we looked: it no longer counts.
                    Err(error) if is_gone(&error) => continue,
                    Err(error) => return Err(listing(error)),
                },
            };
            self.usage.bytes = self.usage.bytes.saturating_add(size);
            self.usage.messages += 1;
        }
        Ok(())
    }

    /// Whether any directory read changed since its stamp, or folders came or went.
    fn changed(&self, root: &Path) -> io::Result<bool> {
        for (directory, stamp) in &self.stamps {
            if modified(directory)? != *stamp {
                return Ok(true);
            }
        }
        Ok(folder_directories(root)? != self.folders)
    }
}

/// The folder directories in a mailbox root: `.<name>`, not `.`, `..` or `..<name>`, real
/// directories only (a symbolic link could lead out of the mailbox).
fn folder_directories(root: &Path) -> io::Result<BTreeSet<OsString>> {
    let listing = |error| context(error, format_args!("listing {}", root.display()));
    let mut folders = BTreeSet::new();
    for entry in fs::read_dir(root).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let name = entry.file_name();
        let bytes = name.as_encoded_bytes();
        if bytes.len() < 2 || bytes[0] != b'.' || bytes[1] == b'.' {
            continue;
        }
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => {
                folders.insert(name);
            }
            Ok(_) => {}
            Err(error) if is_gone(&error) => {}
            Err(error) => return Err(listing(error)),
        }
    }
    Ok(folders)
}

/// A directory's modification time, `None` when it does not exist.
fn modified(directory: &Path) -> io::Result<Option<SystemTime>> {
    match fs::metadata(directory).and_then(|metadata| metadata.modified()) {
        Ok(time) => Ok(Some(time)),
        Err(error) if is_gone(&error) => Ok(None),
        Err(error) => Err(context(
            error,
            format_args!("reading {}", directory.display()),
        )),
    }
}

/// Writes a fresh file in `tmp/` and renames it over `maildirsize`.
fn write_file(root: &Path, limit: QuotaLimit, usage: Usage) -> io::Result<()> {
    let contents = format!(
        "{}\n{} {}\n",
        limit.definition(),
        usage.bytes,
        usage.messages
    );
    let (temporary, mut file) = create_temporary(&root.join("tmp"))?;
    let path = root.join(FILE_NAME);

    // fsync before the rename, so a crash cannot leave an empty file under the real name.
    let written = file
        .write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| context(error, format_args!("writing {}", temporary.display())))
        .and_then(|()| {
            fs::rename(&temporary, &path).map_err(|error| {
                context(
                    error,
                    format_args!("renaming {} to {}", temporary.display(), path.display()),
                )
            })
        });
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// Creates a new, uniquely named file in `tmp/` (made if missing), never reusing a name.
fn create_temporary(tmp: &Path) -> io::Result<(PathBuf, File)> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let creating = |error| context(error, format_args!("creating a file in {}", tmp.display()));
    let mut made_tmp = false;
    loop {
        // Time, pid, sequence and a per-process random part; O_EXCL settles the rest.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(sequence);
        let name = format!(
            "{}.M{}P{}Q{}R{:016x}.maildirsize",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            sequence,
            hasher.finish()
        );
        let path = tmp.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) if error.kind() == io::ErrorKind::NotFound && !made_tmp => {
                made_tmp = true;
                match fs::create_dir(tmp) {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(error) => return Err(creating(error)),
                }
            }
            Err(error) => return Err(creating(error)),
        }
    }
}

/// The outcome of trying to take the rebuild lock.
enum Acquired {
    /// The lock was free.
    Immediately(Dotlock),
    /// Another process held the lock and released it while we waited.
    AfterWaiting(Dotlock),
    /// Another process still holds the lock after [`LOCK_WAIT`].
    TimedOut,
}

/// The dotlock `maildirsize.lock`, removed when dropped.
#[derive(Debug)]
struct Dotlock {
    /// Where the lock file is.
    path: PathBuf,
    /// The lock file, kept open to touch it.
    file: File,
    /// Device and inode of our lock file, so we never remove a lock someone else took over.
    identity: (u64, u64),
    /// When the lock was last touched.
    touched: Cell<Instant>,
}

impl Dotlock {
    /// Takes the lock, breaking a stale one and waiting up to [`LOCK_WAIT`] for a live one.
    fn acquire(root: &Path) -> io::Result<Acquired> {
        let path = root.join(LOCK_NAME);
        let started = Instant::now();
        let mut pause = Duration::from_millis(10);
        let mut waited = false;
        loop {
            // O_CREAT|O_EXCL: atomic on local file systems and on NFSv3 and later.
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    // Pid and host: a lock left by a dead process of this host is broken at once.
                    let _ = writeln!(file, "{} {}", std::process::id(), crate::name::host());
                    let metadata = file.metadata().map_err(|error| {
                        context(error, format_args!("reading {}", path.display()))
                    })?;
                    let identity = (metadata.dev(), metadata.ino());
                    let lock = Dotlock {
                        path,
                        file,
                        identity,
                        touched: Cell::new(Instant::now()),
                    };
                    return Ok(if waited {
                        Acquired::AfterWaiting(lock)
                    } else {
                        Acquired::Immediately(lock)
                    });
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) => {
                    return Err(context(error, format_args!("creating {}", path.display())));
                }
            }

            // Held by someone: break it when stale, else wait a little longer each time.
            if lock_is_stale(&path)? {
                match fs::remove_file(&path) {
                    Ok(()) => continue,
                    Err(error) if is_gone(&error) => continue,
                    Err(error) => {
                        return Err(context(error, format_args!("removing {}", path.display())));
                    }
                }
            }
            if started.elapsed() >= LOCK_WAIT {
                return Ok(Acquired::TimedOut);
            }
            waited = true;
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Refreshes the lock's modification time now and then, so a long scan is not taken for
    /// a dead one. A failure only risks another process rebuilding too.
    fn keep_alive(&self) {
        if self.touched.get().elapsed() >= LOCK_KEEP_ALIVE_EVERY {
            let _ = self.file.set_modified(SystemTime::now());
            self.touched.set(Instant::now());
        }
    }
}

impl Drop for Dotlock {
    fn drop(&mut self) {
        // Only our own lock: after a stale break the name may belong to another process.
        if let Ok(metadata) = fs::symlink_metadata(&self.path)
            && (metadata.dev(), metadata.ino()) == self.identity
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Whether a lock file was last touched [`LOCK_STALE_AFTER`] ago or more. A lock that vanished
/// meanwhile counts as stale, so the caller simply tries again.
fn lock_is_stale(path: &Path) -> io::Result<bool> {
    // A holder of this host that is gone (killed mid-rebuild) left it: no need to wait.
    if let Ok(content) = fs::read_to_string(path)
        && let Some((pid, host)) = content.trim().split_once(' ')
        && host == crate::name::host()
        && pid.parse::<u32>().is_ok()
        && !Path::new("/proc").join(pid).exists()
    {
        return Ok(true);
    }
    match fs::symlink_metadata(path).and_then(|metadata| metadata.modified()) {
        Ok(modified) => {
            let age = SystemTime::now()
                .duration_since(modified)
                .unwrap_or_default();
            Ok(age >= LOCK_STALE_AFTER)
        }
        Err(error) if is_gone(&error) => Ok(true),
        Err(error) => Err(context(error, format_args!("reading {}", path.display()))),
    }
}

/// Whether an error means the file is not there (any more): missing, or a stale NFS handle.
fn is_gone(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::StaleNetworkFileHandle
    )
}

/// Prefixes an I/O error with what was being done, keeping its kind.
fn context(error: io::Error, doing: fmt::Arguments<'_>) -> io::Error {
    io::Error::new(error.kind(), format!("{doing}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    /// An empty mailbox: `new/`, `cur/` and `tmp/` in a fresh directory.
    fn mailbox() -> TempDir {
        let root = tempfile::tempdir().unwrap();
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir(root.path().join(sub)).unwrap();
        }
        root
    }

    /// A folder `.name` with its own `new/`, `cur/` and `tmp/`.
    fn folder(root: &Path, name: &str) -> PathBuf {
        let folder = root.join(name);
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir_all(folder.join(sub)).unwrap();
        }
        File::create(folder.join("maildirfolder")).unwrap();
        folder
    }

    /// A message file holding `length` bytes.
    fn message(directory: &Path, name: &str, length: usize) {
        fs::write(directory.join(name), vec![b'x'; length]).unwrap();
    }

    fn write_quota_file(root: &Path, contents: &str) {
        fs::write(root.join(FILE_NAME), contents).unwrap();
    }

    fn quota_file(root: &Path) -> String {
        fs::read_to_string(root.join(FILE_NAME)).unwrap()
    }

    fn set_age(path: &Path, age: Duration) {
        let file = OpenOptions::new().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    const UNLIMITED: QuotaLimit = limit_of(0, 0);

    const fn limit_of(bytes: u64, messages: u64) -> QuotaLimit {
        QuotaLimit { bytes, messages }
    }

    const fn usage_of(bytes: u64, messages: u64) -> Usage {
        Usage { bytes, messages }
    }

    #[test]
    fn changes_are_summed_below_the_definition_line() {
        let root = mailbox();
        let limit = limit_of(1_000_000, 1000);
        // Nothing is on disk, so the answer can only come from the file.
        write_quota_file(root.path(), "1000000S,1000C\n100 1\n250 2\n  4000 1\n");
        assert_eq!(usage(root.path(), limit).unwrap(), usage_of(4350, 4));
        assert_eq!(
            quota_file(root.path()),
            "1000000S,1000C\n100 1\n250 2\n  4000 1\n"
        );
    }

    #[test]
    fn courier_padded_lines_are_read() {
        let root = mailbox();
        let limit = limit_of(10_000_000, 0);
        let courier = format!(
            "10000000S\n{:>12} {:>12}\n{:>12} {:>12}\n",
            5000, 3, -1000, -1
        );
        write_quota_file(root.path(), &courier);
        assert_eq!(usage(root.path(), limit).unwrap(), usage_of(4000, 2));
    }

    #[test]
    fn negative_changes_subtract_expunged_messages() {
        let root = mailbox();
        write_quota_file(root.path(), "0S\n500 5\n-200 -2\n-100 -1\n");
        assert_eq!(usage(root.path(), UNLIMITED).unwrap(), usage_of(200, 2));
    }

    #[test]
    fn definition_line_is_written_as_dovecot_writes_it() {
        // The lines doveadm (Dovecot 2.3.19) wrote for these limits.
        assert_eq!(UNLIMITED.definition(), "0S");
        assert_eq!(limit_of(1_024_000, 0).definition(), "1024000S");
        assert_eq!(limit_of(0, 50).definition(), "50C");
        assert_eq!(limit_of(2_048_000, 60).definition(), "2048000S,60C");
        for limit in [UNLIMITED, limit_of(7, 0), limit_of(7, 9)] {
            assert_eq!(parse_definition(&limit.definition()), Some(limit));
        }
    }

    #[test]
    fn unlimited_quota_is_kept_as_0s_and_never_goes_over() {
        let root = mailbox();
        message(&root.path().join("new"), "1.M1P1.host,S=10", 10);
        assert_eq!(
            recalculate(root.path(), UNLIMITED).unwrap(),
            usage_of(10, 1)
        );
        assert_eq!(quota_file(root.path()), "0S\n10 1\n");

        // Huge sums over many lines stay trusted: nothing is over an absent limit.
        write_quota_file(root.path(), "0S\n999999999999 99999\n1 1\n");
        let usage = usage(root.path(), UNLIMITED).unwrap();
        assert_eq!(usage, usage_of(1_000_000_000_000, 100_000));
        assert!(usage.fits(UNLIMITED, u64::MAX));
    }

    #[test]
    fn courier_empty_definition_means_unlimited() {
        let root = mailbox();
        write_quota_file(root.path(), "\n10 1\n");
        assert_eq!(usage(root.path(), UNLIMITED).unwrap(), usage_of(10, 1));
        assert_eq!(quota_file(root.path()), "\n10 1\n");
    }

    #[test]
    fn missing_file_is_rebuilt_from_inbox_and_folders() {
        let root = mailbox();
        let inbox = root.path();
        // INBOX: a size from the name (the file itself is shorter) and one from the file.
        message(&inbox.join("new"), "1.M1P1.host,S=100", 5);
        message(&inbox.join("cur"), "2.M2P2.host:2,S", 7);
        // Sent: the same two kinds, the size field followed by W= and flags.
        let sent = folder(inbox, ".Sent");
        message(&sent.join("new"), "3.M3P3.host,S=1000,W=1020:2,", 1);
        message(&sent.join("cur"), "4.M4P4.host", 3);
        // Trash counts, as in Dovecot, and so does a message flagged deleted.
        let trash = folder(inbox, ".Trash");
        message(&trash.join("cur"), "5.M5P5.host,S=50:2,ST", 1);
        // Not messages: tmp/, dot files, a directory in cur/, a non-folder "..x", a plain file.
        message(&inbox.join("tmp"), "6.M6P6.host,S=999", 1);
        message(&sent.join("tmp"), "7.M7P7.host,S=999", 1);
        // Old enough to be a crash's leftover, not a delivery in flight.
        set_age(&inbox.join("tmp/6.M6P6.host,S=999"), IN_FLIGHT_WINDOW * 2);
        message(&inbox.join("cur"), ".hidden,S=999", 1);
        fs::create_dir(inbox.join("cur").join("subdirectory")).unwrap();
        folder(inbox, "..odd");
        message(&inbox.join("..odd").join("new"), "8.M8P8.host,S=999", 1);
        message(inbox, ".notafolder", 999);

        let limit = limit_of(1_000_000, 0);
        let expected = usage_of(100 + 7 + 1000 + 3 + 50, 5);
        assert_eq!(usage(inbox, limit).unwrap(), expected);
        assert_eq!(quota_file(inbox), "1000000S\n1160 5\n");

        // The rebuild left no temporary file and no lock behind.
        let tmp: Vec<_> = fs::read_dir(inbox.join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(tmp, vec![OsString::from("6.M6P6.host,S=999")]);
        assert!(!inbox.join(LOCK_NAME).exists());
    }

    #[test]
    fn rebuild_creates_a_missing_tmp_directory() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("cur")).unwrap();
        message(&root.path().join("cur"), "1.M1P1.host,S=5:2,S", 5);
        assert_eq!(recalculate(root.path(), UNLIMITED).unwrap(), usage_of(5, 1));
        assert_eq!(quota_file(root.path()), "0S\n5 1\n");
    }

    #[test]
    fn a_mailbox_that_was_never_created_uses_nothing_and_gets_no_file() {
        let parent = tempfile::tempdir().unwrap();
        let absent = parent.path().join("absent");
        assert_eq!(usage(&absent, limit_of(100, 0)).unwrap(), Usage::default());
        assert!(!absent.exists());
    }

    #[test]
    fn no_rebuild_replaces_the_file_while_a_change_is_in_flight() {
        let root = mailbox();
        message(&root.path().join("new"), "1.M1P1.host,S=300", 1);
        // A long file, which would be rebuilt, but a delivery is still in tmp/.
        let mut contents = String::from("1000S\n");
        contents.push_str(&"1 0\n".repeat(2000));
        write_quota_file(root.path(), &contents);
        message(&root.path().join("tmp"), "2.M2P2.host,S=5", 5);
        assert_eq!(
            usage(root.path(), limit_of(1000, 0)).unwrap(),
            usage_of(2000, 0)
        );
        assert_eq!(quota_file(root.path()), contents, "left alone");

        // Once settled, the rebuild counts what is on disk.
        fs::remove_file(root.path().join("tmp/2.M2P2.host,S=5")).unwrap();
        assert_eq!(
            usage(root.path(), limit_of(1000, 0)).unwrap(),
            usage_of(300, 1)
        );
    }

    #[test]
    fn changed_limit_triggers_a_rebuild_with_the_new_definition() {
        let root = mailbox();
        message(&root.path().join("new"), "1.M1P1.host,S=300", 1);
        write_quota_file(root.path(), "1000S\n5 1\n");
        let limit = limit_of(2000, 0);
        assert_eq!(usage(root.path(), limit).unwrap(), usage_of(300, 1));
        assert_eq!(quota_file(root.path()), "2000S\n300 1\n");

        // Adding a message limit is a change too.
        let limit = limit_of(2000, 10);
        write_quota_file(root.path(), "2000S\n5 1\n");
        assert_eq!(usage(root.path(), limit).unwrap(), usage_of(300, 1));
        assert_eq!(quota_file(root.path()), "2000S,10C\n300 1\n");
    }

    #[test]
    fn file_of_5120_bytes_or_more_is_rebuilt() {
        let root = mailbox();
        message(&root.path().join("new"), "1.M1P1.host,S=77", 1);
        let header = "0S\n";
        let filler = |length: usize| {
            let mut text = String::from(header);
            while text.len() + 4 <= length {
                text.push_str("1 1\n");
            }
            while text.len() < length {
                text.insert(header.len(), ' ');
            }
            assert_eq!(text.len(), length);
            text
        };

        // 5119 bytes is still read; its sum is not what is on disk.
        write_quota_file(root.path(), &filler(5119));
        assert_ne!(usage(root.path(), UNLIMITED).unwrap(), usage_of(77, 1));

        for length in [5120, 5121, 20_000] {
            write_quota_file(root.path(), &filler(length));
            assert_eq!(usage(root.path(), UNLIMITED).unwrap(), usage_of(77, 1));
            assert_eq!(quota_file(root.path()), "0S\n77 1\n");
        }
    }

    #[test]
    fn corrupt_files_are_rebuilt() {
        let root = mailbox();
        message(&root.path().join("cur"), "1.M1P1.host,S=42:2,S", 1);
        let corrupt: [&[u8]; 12] = [
            b"",
            b"0S",
            b"garbage\n",
            b"12X\n1 1\n",
            b"S\n1 1\n",
            b"0S\nabc def\n",
            b"0S\n1 2 3\n",
            b"0S\n1\n",
            b"0S\n\n",
            b"0S\n1 1\0\0\0\n",
            b"0S\n-10 -1\n",
            b"0S\n\xff\xfe 1\n",
        ];
        for contents in corrupt {
            fs::write(root.path().join(FILE_NAME), contents).unwrap();
            let usage = usage(root.path(), UNLIMITED).unwrap();
            assert_eq!(
                usage,
                usage_of(42, 1),
                "{:?}",
                String::from_utf8_lossy(contents)
            );
            assert_eq!(quota_file(root.path()), "0S\n42 1\n");
        }
    }

    #[test]
    fn unfinished_last_line_is_an_append_in_flight_and_ignored() {
        let root = mailbox();
        write_quota_file(root.path(), "0S\n10 1\n5");
        assert_eq!(usage(root.path(), UNLIMITED).unwrap(), usage_of(10, 1));
        assert_eq!(quota_file(root.path()), "0S\n10 1\n5");
    }

    #[test]
    fn over_quota_with_several_lines_is_rebuilt() {
        let root = mailbox();
        message(&root.path().join("new"), "1.M1P1.host,S=50", 1);
        let limit = limit_of(100, 0);
        write_quota_file(root.path(), "100S\n80 1\n80 1\n");
        assert_eq!(usage(root.path(), limit).unwrap(), usage_of(50, 1));

        // Over the message limit counts as over quota too.
        let limit = limit_of(0, 2);
        write_quota_file(root.path(), "2C\n0 2\n0 1\n");
        assert_eq!(usage(root.path(), limit).unwrap(), usage_of(50, 1));

        // Exactly at the limit is not over it: several lines are trusted.
        write_quota_file(root.path(), "2C\n0 1\n0 1\n");
        assert_eq!(usage(root.path(), limit).unwrap(), usage_of(0, 2));
    }

    #[test]
    fn over_quota_single_line_is_trusted_for_fifteen_minutes() {
        let root = mailbox();
        message(&root.path().join("new"), "1.M1P1.host,S=50", 1);
        let limit = limit_of(100, 0);
        write_quota_file(root.path(), "100S\n160 2\n");
        assert_eq!(usage(root.path(), limit).unwrap(), usage_of(160, 2));

        set_age(&root.path().join(FILE_NAME), Duration::from_secs(14 * 60));
        assert_eq!(usage(root.path(), limit).unwrap(), usage_of(160, 2));

        set_age(&root.path().join(FILE_NAME), Duration::from_secs(15 * 60));
        assert_eq!(usage(root.path(), limit).unwrap(), usage_of(50, 1));
    }

    #[test]
    fn old_file_under_quota_is_trusted() {
        let root = mailbox();
        let limit = limit_of(1000, 0);
        write_quota_file(root.path(), "1000S\n160 2\n10 1\n");
        set_age(&root.path().join(FILE_NAME), Duration::from_secs(24 * 3600));
        assert_eq!(usage(root.path(), limit).unwrap(), usage_of(170, 3));
    }

    #[test]
    fn record_appends_one_line_per_change() {
        let root = mailbox();
        let limit = limit_of(1000, 10);
        recalculate(root.path(), limit).unwrap();
        record(root.path(), limit, 100, 1).unwrap();
        record(root.path(), limit, -40, -1).unwrap();
        record(root.path(), limit, 0, 0).unwrap();
        assert_eq!(quota_file(root.path()), "1000S,10C\n0 0\n100 1\n-40 -1\n");
        assert_eq!(usage(root.path(), limit).unwrap(), usage_of(60, 0));
    }

    #[test]
    fn record_rebuilds_a_missing_file_without_counting_twice() {
        let root = mailbox();
        let limit = limit_of(1000, 0);
        // The delivery is on disk before it is recorded, so the rebuild already counts it.
        message(&root.path().join("new"), "1.M1P1.host,S=100", 1);
        record(root.path(), limit, 100, 1).unwrap();
        assert_eq!(quota_file(root.path()), "1000S\n100 1\n");
        assert_eq!(usage(root.path(), limit).unwrap(), usage_of(100, 1));
    }

    #[test]
    fn parallel_records_from_eight_threads_sum_exactly() {
        let root = mailbox();
        let limit = limit_of(0, 0);
        recalculate(root.path(), limit).unwrap();

        let threads: Vec<_> = (1..=8i64)
            .map(|thread| {
                let root = root.path().to_path_buf();
                thread::spawn(move || {
                    for call in 0..200i64 {
                        // Deliveries and expunges of various sizes, so lines differ in length.
                        let (bytes, messages) = if call % 5 == 4 {
                            (-thread, -1)
                        } else {
                            (thread * 1000 + call, 1)
                        };
                        record(&root, limit, bytes, messages).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }

        // Read the whole file: it is far past 5120 bytes, so usage() would rebuild it.
        let text = fs::read(root.path().join(FILE_NAME)).unwrap();
        let file = QuotaFile::parse(&text).unwrap();
        let expected_bytes: i64 = (1..=8i64)
            .flat_map(|thread| {
                (0..200i64).map(move |call| {
                    if call % 5 == 4 {
                        -thread
                    } else {
                        thread * 1000 + call
                    }
                })
            })
            .sum();
        assert_eq!(file.changes, 1 + 8 * 200);
        assert_eq!(file.usage, usage_of(expected_bytes as u64, 8 * (160 - 40)));
    }

    #[test]
    fn stale_lock_is_broken() {
        let root = mailbox();
        let lock = root.path().join(LOCK_NAME);
        fs::write(&lock, "12345\n").unwrap();
        set_age(&lock, LOCK_STALE_AFTER + Duration::from_secs(1));
        message(&root.path().join("new"), "1.M1P1.host,S=9", 1);

        let started = Instant::now();
        assert_eq!(recalculate(root.path(), UNLIMITED).unwrap(), usage_of(9, 1));
        assert!(started.elapsed() < LOCK_WAIT);
        assert_eq!(quota_file(root.path()), "0S\n9 1\n");
        assert!(!lock.exists());
    }

    #[test]
    fn rebuild_waits_for_a_held_lock_and_uses_the_other_result() {
        let root = mailbox();
        let lock = root.path().join(LOCK_NAME);
        fs::write(&lock, "12345\n").unwrap();

        // Another process finishes its rebuild 300 ms from now.
        let other = {
            let root = root.path().to_path_buf();
            let lock = lock.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(300));
                fs::write(root.join(FILE_NAME), "0S\n42 3\n").unwrap();
                fs::remove_file(lock).unwrap();
            })
        };

        // The disk holds nothing: 42 bytes can only come from the other process's file.
        let started = Instant::now();
        assert_eq!(
            recalculate(root.path(), UNLIMITED).unwrap(),
            usage_of(42, 3)
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        other.join().unwrap();
        assert!(!lock.exists());
    }

    #[test]
    fn lock_taken_over_by_another_process_is_not_removed() {
        let root = mailbox();
        let lock = match Dotlock::acquire(root.path()).unwrap() {
            Acquired::Immediately(lock) => lock,
            _ => panic!("the lock was free"),
        };
        // Someone judged it stale and took it over: a new file under the same name.
        fs::remove_file(root.path().join(LOCK_NAME)).unwrap();
        fs::write(root.path().join(LOCK_NAME), "other\n").unwrap();
        drop(lock);
        assert_eq!(
            fs::read_to_string(root.path().join(LOCK_NAME)).unwrap(),
            "other\n"
        );
    }

    #[test]
    fn scan_notices_deliveries_and_new_folders_made_while_it_ran() {
        let root = mailbox();
        folder(root.path(), ".Sent");
        let scan = Scan::run(root.path(), None).unwrap();
        assert!(!scan.changed(root.path()).unwrap());

        // Past the file system's timestamp granularity, so the change shows.
        thread::sleep(Duration::from_millis(50));
        message(&root.path().join(".Sent").join("new"), "1.M1P1.host,S=1", 1);
        assert!(scan.changed(root.path()).unwrap());

        let scan = Scan::run(root.path(), None).unwrap();
        folder(root.path(), ".Archive");
        assert!(scan.changed(root.path()).unwrap());
    }

    #[test]
    fn sizes_come_from_the_s_field_before_the_flags() {
        assert_eq!(size_from_name(b"1.M1P1.host,S=42"), Some(42));
        assert_eq!(size_from_name(b"1.M1P1.host,S=42:2,S"), Some(42));
        assert_eq!(size_from_name(b"1.M1P1.host,S=42,W=45:2,"), Some(42));
        assert_eq!(size_from_name(b"1.M1P1.host,W=45,S=42:2,"), Some(42));
        assert_eq!(size_from_name(b"1.M1P1.host,S=:2,"), None);
        assert_eq!(size_from_name(b"1.M1P1.host,S=4a2:2,"), None);
        assert_eq!(size_from_name(b"1.M1P1.host,S=-4"), None);
        assert_eq!(size_from_name(b"1.M1P1.host:2,S=5"), None);
        assert_eq!(size_from_name(b"1.M1P1.host"), None);
    }

    #[test]
    fn fits_checks_the_bytes_limit() {
        let limit = limit_of(1000, 0);
        let usage = usage_of(900, 500);
        assert!(usage.fits(limit, 99));
        assert!(!usage.fits(limit, 101));
        assert!(!usage.fits(limit, u64::MAX));
    }

    #[test]
    fn fits_checks_the_message_limit() {
        let limit = limit_of(0, 10);
        assert!(usage_of(1 << 40, 9).fits(limit, 1 << 40));
        assert!(!usage_of(0, 10).fits(limit, 0));
    }

    #[test]
    fn fits_anything_when_both_are_unlimited() {
        let usage = usage_of(u64::MAX, u64::MAX);
        assert!(usage.fits(UNLIMITED, u64::MAX));
    }

    #[test]
    fn message_exactly_filling_the_quota_fits() {
        let limit = limit_of(1000, 10);
        assert!(usage_of(900, 9).fits(limit, 100));
        assert!(!usage_of(900, 9).fits(limit, 101));
        assert!(!usage_of(900, 10).fits(limit, 100));
        assert!(!usage_of(1000, 0).fits(limit, 1));
    }
}
