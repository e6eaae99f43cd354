//! Exclusive access to a maildrop (RFC 1939 §8: "the POP3 server acquires an exclusive-access
//! lock on the maildrop"), across processes and hosts sharing a shard.
//!
//! The lock is a file, `mailfold-pop3.lock`, in the mailbox root, created with an exclusive
//! create (atomic on local disks and on NFS v3 and later, unlike `flock`). Its holder touches
//! it every [`HEARTBEAT`]; a lock not touched for [`STALE_AFTER`] belongs to a process that
//! died, and the next session takes it over. The file holds a random token, so a session only
//! ever removes its own lock.
//!
//! Taking over a stale lock renames it aside first, so two sessions racing for the same stale
//! lock cannot both remove it: only one rename of the file succeeds.

use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Name of the lock file in the mailbox root.
pub const LOCK_FILE: &str = "mailfold-pop3.lock";
/// How often a holder refreshes the lock.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// A lock older than this is abandoned.
pub const STALE_AFTER: Duration = Duration::from_secs(120);

/// A held maildrop lock; released when dropped.
#[derive(Debug)]
pub struct MaildropLock {
    path: PathBuf,
    token: String,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live session holds it.
    #[error("maildrop in use")]
    InUse,
    /// The filesystem failed.
    #[error("locking {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl MaildropLock {
    /// Takes the lock of the mailbox at `root`, taking over an abandoned one.
    pub fn acquire(root: &Path) -> Result<MaildropLock, LockError> {
        let path = root.join(LOCK_FILE);
        let token = token();
        for _ in 0..3 {
            match create(&path, &token) {
                Ok(()) => return Ok(MaildropLock { path, token }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !is_stale(&path) {
                        return Err(LockError::InUse);
                    }
                    take_over_stale(&path);
                }
                Err(source) => return Err(LockError::Io { path, source }),
            }
        }
        Err(LockError::InUse)
    }

    /// Refreshes the lock's time, so other sessions see it is alive.
    pub fn refresh(&self) -> io::Result<()> {
        let file = fs::OpenOptions::new().append(true).open(&self.path)?;
        file.set_modified(SystemTime::now())
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        // Only our own lock: after a takeover the file may belong to someone else.
        if fs::read_to_string(&self.path).is_ok_and(|content| content.trim() == self.token) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn create(path: &Path, token: &str) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(token.as_bytes())?;
    file.write_all(b"\n")
}

fn is_stale(path: &Path) -> bool {
    let modified = fs::metadata(path).and_then(|m| m.modified());
    match modified {
        Ok(time) => SystemTime::now()
            .duration_since(time)
            .is_ok_and(|age| age > STALE_AFTER),
        // Gone meanwhile: not held, try again.
        Err(_) => true,
    }
}

/// Moves a stale lock aside and removes it, unless it turned fresh in between (a new holder
/// created it after our check): then it is put back.
fn take_over_stale(path: &Path) {
    let aside = path.with_extension(format!("stale-{}", token()));
    if fs::rename(path, &aside).is_err() {
        return;
    }
    if is_stale(&aside) {
        let _ = fs::remove_file(&aside);
    } else {
        // Put it back without replacing a lock created meanwhile; then drop our link.
        let _ = fs::hard_link(&aside, path);
        let _ = fs::remove_file(&aside);
    }
}

/// A token unique to this lock: process id, time, and per-process random state.
fn token() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    format!("{}-{:016x}", std::process::id(), hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_session_is_refused_while_the_first_holds_the_lock() {
        let root = tempfile::tempdir().unwrap();
        let first = MaildropLock::acquire(root.path()).unwrap();
        assert!(matches!(
            MaildropLock::acquire(root.path()),
            Err(LockError::InUse)
        ));
        drop(first);
        assert!(!root.path().join(LOCK_FILE).exists());
        MaildropLock::acquire(root.path()).unwrap();
    }

    #[test]
    fn a_stale_lock_from_a_dead_process_is_taken_over() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join(LOCK_FILE);
        fs::write(&path, "12345-dead\n").unwrap();
        let old = SystemTime::now() - STALE_AFTER - Duration::from_secs(5);
        fs::File::options()
            .append(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();

        let lock = MaildropLock::acquire(root.path()).unwrap();
        assert_ne!(fs::read_to_string(lock.path()).unwrap(), "12345-dead\n");
        let leftovers = fs::read_dir(root.path()).unwrap().count();
        assert_eq!(leftovers, 1, "only the new lock remains");
    }

    #[test]
    fn dropping_a_lock_that_was_taken_over_leaves_the_new_holder_alone() {
        let root = tempfile::tempdir().unwrap();
        let first = MaildropLock::acquire(root.path()).unwrap();
        fs::write(first.path(), "someone-else\n").unwrap();
        drop(first);
        assert_eq!(
            fs::read_to_string(root.path().join(LOCK_FILE)).unwrap(),
            "someone-else\n"
        );
    }

    #[test]
    fn refresh_keeps_a_lock_fresh() {
        let root = tempfile::tempdir().unwrap();
        let lock = MaildropLock::acquire(root.path()).unwrap();
        let old = SystemTime::now() - STALE_AFTER - Duration::from_secs(5);
        fs::File::options()
            .append(true)
            .open(lock.path())
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(is_stale(lock.path()));
        lock.refresh().unwrap();
        assert!(!is_stale(lock.path()));
    }
}
