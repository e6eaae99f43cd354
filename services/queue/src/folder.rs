//! The queue folder on disk: message files, envelopes, requests from the command line.
//!
//! ```text
//! <queue folder>/
//!   tmp/            files being written; nothing here is queued yet
//!   q/<id>          the message, exactly as received (immutable once there)
//!   q/<id>.json     its envelope, rewritten atomically after each attempt
//!   control/        requests from `mailfold queue retry|delete` to the running queue role
//!   lock            held (flock) by the one process that delivers from this folder
//! ```
//!
//! A message is queued once its envelope is in `q/`. The message file and the first envelope
//! are written to `tmp/` and fsync'd, then renamed into `q/` (message first), and `q/` is
//! fsync'd once for both (invariant 1): three flushes, where separate folders would need four.
//! A crash before that last fsync may leave either rename undone; nothing was acknowledged
//! then, and a lone message file or a lone envelope is debris, removed at the next start.
//! Removal goes the other way: envelope first, then the message file, without an fsync (a
//! removal lost in a crash brings the message back, which is a duplicate, not a loss).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::envelope::Envelope;
use crate::error::{QueueError, Result};

/// Files in `tmp/` and message files without an envelope older than this are debris of a
/// crash (an enqueue takes milliseconds), removed at start.
const DEBRIS_AGE: Duration = Duration::from_secs(3600);

/// A request left in `control/` for the running queue role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Try this message now.
    Retry(String),
    /// Try every message now.
    RetryAll,
    /// Remove this message without delivering it.
    Delete(String),
}

/// The queue folder.
#[derive(Debug, Clone)]
pub struct QueueFolder {
    root: PathBuf,
}

/// The exclusive right to deliver from a folder, held until dropped.
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
}

impl QueueFolder {
    /// The folder at `root`, with its sub-folders created.
    pub fn open(root: &Path) -> Result<QueueFolder> {
        for sub in ["tmp", "q", "control"] {
            let path = root.join(sub);
            fs::create_dir_all(&path).map_err(|e| QueueError::io("creating", &path, e))?;
        }
        Ok(QueueFolder {
            root: root.to_path_buf(),
        })
    }

    /// The folder's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the delivery lock, or fails with [`QueueError::Locked`] when another process
    /// holds it.
    pub fn lock(&self) -> Result<FolderLock> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| QueueError::io("opening", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(FolderLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(QueueError::Locked(path)),
            Err(fs::TryLockError::Error(e)) => Err(QueueError::io("locking", &path, e)),
        }
    }

    /// The message file of `id`.
    pub fn message_path(&self, id: &str) -> PathBuf {
        self.root.join("q").join(id)
    }

    fn envelope_path(&self, id: &str) -> PathBuf {
        self.root.join("q").join(format!("{id}.json"))
    }

    /// Queues the message in `source` (left in place) with `envelope`, whose `id`, `size` and
    /// `created` are filled in here. Returns once both files are durable.
    pub fn enqueue(&self, source: &Path, mut envelope: Envelope) -> Result<Envelope> {
        let id = new_id();
        let temporary = self.root.join("tmp").join(&id);

        // The message: a hard link when the spool shares the filesystem, else a copy.
        if fs::hard_link(source, &temporary).is_err() {
            fs::copy(source, &temporary).map_err(|e| QueueError::io("copying", source, e))?;
        }
        let file = File::open(&temporary).map_err(|e| QueueError::io("opening", &temporary, e))?;
        file.sync_all()
            .map_err(|e| QueueError::io("syncing", &temporary, e))?;
        envelope.size = file
            .metadata()
            .map_err(|e| QueueError::io("reading", &temporary, e))?
            .len();

        envelope.id = id.clone();
        envelope.created = now();
        if envelope.next_attempt == 0 {
            envelope.next_attempt = envelope.created;
        }
        let temporary_envelope = self.write_envelope(&envelope)?;

        // Message first, so a listed envelope always has its message once q/ is synced.
        let target = self.message_path(&id);
        fs::rename(&temporary, &target).map_err(|e| QueueError::io("renaming", &target, e))?;
        let target = self.envelope_path(&id);
        fs::rename(&temporary_envelope, &target)
            .map_err(|e| QueueError::io("renaming", &target, e))?;
        sync_folder(&self.root.join("q"))?;
        Ok(envelope)
    }

    /// The envelope written and fsync'd in `tmp/`; its path there.
    fn write_envelope(&self, envelope: &Envelope) -> Result<PathBuf> {
        let text = serde_json::to_vec_pretty(envelope)
            .map_err(|e| QueueError::Corrupt(envelope.id.clone(), e.to_string()))?;
        let temporary = self.root.join("tmp").join(format!("{}.json", envelope.id));
        write_synced(&temporary, &text)?;
        Ok(temporary)
    }

    /// Writes `envelope` atomically: a temporary file, fsync, rename, fsync of `q/`.
    pub fn save(&self, envelope: &Envelope) -> Result<()> {
        let temporary = self.write_envelope(envelope)?;
        let target = self.envelope_path(&envelope.id);
        fs::rename(&temporary, &target).map_err(|e| QueueError::io("renaming", &target, e))?;
        sync_folder(&self.root.join("q"))
    }

    /// The envelope of `id`.
    pub fn load(&self, id: &str) -> Result<Envelope> {
        if !valid_id(id) {
            return Err(QueueError::NotFound(id.to_string()));
        }
        let path = self.envelope_path(id);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(QueueError::NotFound(id.to_string()));
            }
            Err(e) => return Err(QueueError::io("reading", &path, e)),
        };
        serde_json::from_slice(&text)
            .map_err(|e| QueueError::Corrupt(id.to_string(), e.to_string()))
    }

    /// Whether `id` is still queued.
    pub fn contains(&self, id: &str) -> bool {
        valid_id(id) && self.envelope_path(id).is_file()
    }

    /// Removes `id`: the envelope (so it is no longer queued), then the message file.
    pub fn remove(&self, id: &str) -> Result<()> {
        if !valid_id(id) {
            return Err(QueueError::NotFound(id.to_string()));
        }
        let path = self.envelope_path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(QueueError::NotFound(id.to_string()));
            }
            Err(e) => return Err(QueueError::io("removing", &path, e)),
        }
        // No fsync of q/: a removal lost in a crash only means the message is sent again.
        let _ = fs::remove_file(self.message_path(id));
        Ok(())
    }

    /// The ids of every queued message, sorted (oldest first: ids start with the time).
    pub fn ids(&self) -> Result<Vec<String>> {
        let folder = self.root.join("q");
        let entries = fs::read_dir(&folder).map_err(|e| QueueError::io("listing", &folder, e))?;
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id = name.strip_suffix(".json")?;
                valid_id(id).then(|| id.to_string())
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Leaves `request` for the running queue role.
    pub fn request(&self, request: &Request) -> Result<()> {
        let name = match request {
            Request::Retry(id) => format!("{id}.retry"),
            Request::RetryAll => "all.retry".to_string(),
            Request::Delete(id) => format!("{id}.delete"),
        };
        let path = self.root.join("control").join(name);
        write_synced(&path, b"")
    }

    /// The requests left so far, removed as they are read.
    pub fn take_requests(&self) -> Vec<Request> {
        let folder = self.root.join("control");
        let Ok(entries) = fs::read_dir(&folder) else {
            return Vec::new();
        };
        let mut requests = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let _ = fs::remove_file(entry.path());
            let request = match name.rsplit_once('.') {
                Some(("all", "retry")) => Request::RetryAll,
                Some((id, "retry")) if valid_id(id) => Request::Retry(id.to_string()),
                Some((id, "delete")) if valid_id(id) => Request::Delete(id.to_string()),
                _ => continue,
            };
            requests.push(request);
        }
        requests
    }

    /// Removes what a crash left behind: old files in `tmp/`, old message files that no
    /// envelope refers to, and envelopes whose message file is missing (only a crash before
    /// the enqueue's fsync leaves one: that message was never acknowledged). Returns how many
    /// were removed.
    pub fn remove_debris(&self) -> usize {
        let mut removed = 0;
        let old = |path: &Path| {
            fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > DEBRIS_AGE)
        };
        for folder in ["tmp", "q"] {
            let Ok(entries) = fs::read_dir(self.root.join(folder)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let debris = match (folder, name.strip_suffix(".json")) {
                    ("tmp", _) => old(&path),
                    (_, Some(id)) => !self.message_path(id).exists(),
                    (_, None) => !self.contains(&name) && old(&path),
                };
                if debris && fs::remove_file(&path).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A fresh queue id: letters and digits only, starting with the time so that ids sort by age.
pub fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded from the OS per process: two processes never share a stream.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(sequence);
    hasher.write_u128(time.as_nanos());
    format!(
        "{:010x}{:05x}{:x}Q{:x}R{:08x}",
        time.as_secs(),
        time.subsec_micros(),
        std::process::id(),
        sequence,
        hasher.finish() as u32
    )
}

/// Ids are what [`new_id`] makes: nothing else names a file here.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| QueueError::io("creating", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| QueueError::io("writing", path, e))
}

fn sync_folder(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| QueueError::io("syncing", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Kind, Recipient};

    fn envelope() -> Envelope {
        Envelope {
            id: String::new(),
            kind: Kind::Message,
            sender: "alice@acme.test".into(),
            tenant: "acme".into(),
            recipients: vec![Recipient::pending("bob@example.org")],
            prefix: String::new(),
            size: 0,
            smtputf8: false,
            eight_bit: false,
            created: 0,
            next_attempt: 0,
            attempts: 0,
            delay_warned: false,
        }
    }

    #[test]
    fn an_enqueued_message_is_listed_loaded_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let folder = QueueFolder::open(&dir.path().join("queue")).unwrap();
        let source = dir.path().join("spool.eml");
        fs::write(&source, b"Subject: x\r\n\r\nbody\r\n").unwrap();
        let queued = folder.enqueue(&source, envelope()).unwrap();
        assert!(source.is_file(), "the spool file is left to its owner");
        assert_eq!(queued.size, 20);
        assert_eq!(folder.ids().unwrap(), vec![queued.id.clone()]);
        assert_eq!(folder.load(&queued.id).unwrap(), queued);
        assert_eq!(fs::read(folder.message_path(&queued.id)).unwrap().len(), 20);
        folder.remove(&queued.id).unwrap();
        assert!(folder.ids().unwrap().is_empty());
        assert!(!folder.message_path(&queued.id).exists());
    }

    #[test]
    fn an_envelope_without_its_message_is_debris_and_a_young_lone_message_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let folder = QueueFolder::open(dir.path()).unwrap();
        let source = dir.path().join("spool.eml");
        fs::write(&source, b"x\r\n").unwrap();
        let kept = folder.enqueue(&source, envelope()).unwrap();
        let lost = folder.enqueue(&source, envelope()).unwrap();
        fs::remove_file(folder.message_path(&lost.id)).unwrap();
        // A message whose envelope another process is about to rename in.
        fs::write(dir.path().join("q/0123young"), b"y").unwrap();
        assert_eq!(folder.remove_debris(), 1);
        assert_eq!(folder.ids().unwrap(), vec![kept.id]);
        assert!(dir.path().join("q/0123young").exists());
    }

    #[test]
    fn a_second_process_cannot_take_the_delivery_lock() {
        let dir = tempfile::tempdir().unwrap();
        let folder = QueueFolder::open(dir.path()).unwrap();
        let held = folder.lock().unwrap();
        // A second open file description conflicts with flock even within one process.
        assert!(matches!(folder.lock(), Err(QueueError::Locked(_))));
        drop(held);
        assert!(folder.lock().is_ok());
    }

    #[test]
    fn requests_are_taken_once_and_bad_names_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let folder = QueueFolder::open(dir.path()).unwrap();
        folder.request(&Request::Retry("abc1".into())).unwrap();
        folder.request(&Request::RetryAll).unwrap();
        fs::write(dir.path().join("control/../x.delete"), b"").unwrap();
        fs::write(dir.path().join("control/a-b.delete"), b"").unwrap();
        let mut taken = folder.take_requests();
        taken.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(
            taken,
            vec![Request::Retry("abc1".into()), Request::RetryAll]
        );
        assert!(folder.take_requests().is_empty());
    }

    #[test]
    fn ids_are_unique_and_safe_as_file_names() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert!(valid_id(&a) && valid_id(&b));
        assert!(!valid_id("../etc") && !valid_id(""));
    }
}
