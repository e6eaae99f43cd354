//! One mailbox's Maildir++ tree: its folders, their messages, flags and expunges.
//!
//! Every change is a single `rename`, `link` or `unlink`, which are atomic on a local disk
//! and on NFS, so readers and writers in several processes (two front-end replicas on one
//! shard) need no lock: a reader that finds a message gone because another process just
//! renamed it (new flags, moved to `cur/`) looks it up again by its unique id.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Result, StoreError};
use crate::folder_name::FolderName;
use crate::name;
use crate::quota::{self, QuotaLimit, Usage};

/// A mailbox's Maildir++ root (its INBOX) and its quota.
#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
    quota: QuotaLimit,
}

/// Where a message sits in a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// In `new/`: not yet seen by any client.
    New,
    /// In `cur/`.
    Cur,
}

/// A message as listed: enough for POP3 and IMAP without opening it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// The unique part of the file name: stable across flag changes and restarts.
    pub id: String,
    /// Size in bytes, from `,S=` when the name has it.
    pub size: u64,
    /// Size with CRLF line endings, from `,W=` when the name has it (POP3 and IMAP report
    /// this one).
    pub virtual_size: Option<u64>,
    /// Flag letters, normalised.
    pub flags: String,
    /// `new/` or `cur/`.
    pub state: State,
    /// Its file when listed (it may have been renamed since; see [`Maildir::open`]).
    pub path: PathBuf,
}

impl Maildir {
    /// A handle on the Maildir at `root` (nothing is created yet).
    pub(crate) fn new(root: PathBuf, quota: QuotaLimit) -> Maildir {
        Maildir { root, quota }
    }

    /// The root folder (the INBOX).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The quota limit this handle was opened with.
    pub fn quota(&self) -> QuotaLimit {
        self.quota
    }

    /// Creates `cur/`, `new/` and `tmp/` of the INBOX if missing, private to the owner. Each
    /// must be a real folder: a symlink planted in their place is refused, so a delivery can
    /// never be sent outside the shard through one.
    pub fn create(&self) -> Result<()> {
        if !subfolders_ready(&self.root)? {
            create_tree(&self.root)?;
            if !subfolders_ready(&self.root)? {
                let shown = self.root.display();
                return Err(StoreError::InvalidStorePath(format!(
                    "{shown}: cur, new or tmp is not a folder"
                )));
            }
        }
        Ok(())
    }

    /// Marks a change (an expunge, a copy) as in flight until the guard is dropped, so that a
    /// quota rebuild meanwhile leaves `maildirsize` alone (see `quota::IN_FLIGHT_WINDOW`).
    fn change_in_flight(&self) -> Result<InFlight> {
        let path = self
            .root
            .join("tmp")
            .join(format!("{}.change", name::unique(0)));
        fs::write(&path, b"").map_err(|e| StoreError::io("marking a change in", &path, e))?;
        Ok(InFlight(path))
    }

    /// The folder's directory: the root for INBOX (`None`), `.Name` below it otherwise.
    pub fn folder_path(&self, folder: Option<&FolderName>) -> PathBuf {
        match folder {
            None => self.root.clone(),
            Some(folder) => self.root.join(folder.directory()),
        }
    }

    /// The folder's directory, which must exist.
    fn existing_folder(&self, folder: Option<&FolderName>) -> Result<PathBuf> {
        let path = self.folder_path(folder);
        if !path.join("cur").is_dir() {
            return Err(StoreError::NoSuchFolder);
        }
        Ok(path)
    }

    /// Creates a folder (and its parents, as Maildir++ expects each level to exist).
    pub fn create_folder(&self, folder: &FolderName) -> Result<()> {
        self.create()?;
        if let Some(parent) = folder.parent() {
            self.create_folder(&parent)?;
        }
        let path = self.folder_path(Some(folder));
        create_tree(&path)?;
        // Courier marks folders with an empty `maildirfolder` file; its deliverquota needs it.
        let marker = path.join("maildirfolder");
        if !marker.exists() {
            fs::write(&marker, b"").map_err(|e| StoreError::io("creating", &marker, e))?;
        }
        Ok(())
    }

    /// The folders below the INBOX, sorted by name.
    pub fn folders(&self) -> Result<Vec<FolderName>> {
        let mut folders = Vec::new();
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(folders),
            Err(e) => return Err(StoreError::io("listing", &self.root, e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if let (true, Some(folder)) =
                (is_dir, name.to_str().and_then(FolderName::from_directory))
            {
                folders.push(folder);
            }
        }
        folders.sort_by(|a, b| a.display().cmp(b.display()));
        Ok(folders)
    }

    /// Usage against the quota, from `maildirsize` (rebuilt when missing or stale).
    pub fn usage(&self) -> Result<Usage> {
        quota::usage(&self.root, self.quota)
            .map_err(|e| StoreError::io("reading quota of", &self.root, e))
    }

    /// The cheap check before a message is sent (SMTP RCPT with SIZE): would `size` fit?
    pub fn check_fits(&self, size: u64) -> Result<()> {
        if self.quota == QuotaLimit::default() {
            return Ok(());
        }
        let usage = self.usage()?;
        if usage.fits(self.quota, size) {
            return Ok(());
        }
        let permanent = self.quota.bytes > 0 && size > self.quota.bytes;
        Err(StoreError::OverQuota { permanent })
    }

    /// The messages of a folder (INBOX for `None`), `new/` first, then `cur/`, each sorted by
    /// id so that the order is stable between two listings of an unchanged folder.
    pub fn list(&self, folder: Option<&FolderName>) -> Result<Vec<MessageInfo>> {
        let base = self.folder_path(folder);
        if folder.is_some() && !base.is_dir() {
            return Err(StoreError::NoSuchFolder);
        }
        let mut messages = Vec::new();
        for (sub, state) in [("new", State::New), ("cur", State::Cur)] {
            let dir = base.join(sub);
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("listing", &dir, e)),
            };
            let mut found = Vec::new();
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(file_name) = file_name.to_str() else {
                    continue;
                };
                let Some(parsed) = name::parse(file_name) else {
                    continue;
                };
                let size = match parsed.size {
                    Some(size) => size,
                    None => entry.metadata().map(|m| m.len()).unwrap_or(0),
                };
                found.push(MessageInfo {
                    id: parsed.id.to_string(),
                    size,
                    virtual_size: parsed.virtual_size,
                    flags: name::normalise_flags(parsed.flags),
                    state,
                    path: entry.path(),
                });
            }
            found.sort_by(|a, b| a.id.cmp(&b.id));
            messages.extend(found);
        }
        Ok(messages)
    }

    /// Where the message `id` is now, looking in `new/` and `cur/`.
    // TODO: a lookup in cur/ lists the folder; the IMAP role will keep an id-to-name map per
    // session, and this marker goes when it does.
    pub fn find(&self, folder: Option<&FolderName>, id: &str) -> Result<MessageInfo> {
        let base = self.folder_path(folder);
        let new = base.join("new").join(id);
        if let Ok(metadata) = fs::metadata(&new) {
            let parsed = name::parse(id);
            let size = parsed
                .as_ref()
                .and_then(|p| p.size)
                .unwrap_or(metadata.len());
            return Ok(MessageInfo {
                id: id.to_string(),
                size,
                virtual_size: parsed.and_then(|p| p.virtual_size),
                flags: String::new(),
                state: State::New,
                path: new,
            });
        }
        self.list(folder)?
            .into_iter()
            .find(|m| m.id == id)
            .ok_or(StoreError::NoSuchMessage)
    }

    /// The message's size with CRLF line endings: from its name when it carries `,W=`, else
    /// by reading it once (messages written by software that records no such size).
    pub fn crlf_size(&self, folder: Option<&FolderName>, message: &MessageInfo) -> Result<u64> {
        if let Some(size) = message.virtual_size {
            return Ok(size);
        }
        let mut file = self.open(folder, message)?;
        let mut size = name::CrlfSize::default();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = io::Read::read(&mut file, &mut buffer)
                .map_err(|e| StoreError::io("reading", &message.path, e))?;
            if read == 0 {
                return Ok(size.total());
            }
            size.push(&buffer[..read]);
        }
    }

    /// Opens a message for reading, following it if it was renamed since it was listed.
    pub fn open(&self, folder: Option<&FolderName>, message: &MessageInfo) -> Result<fs::File> {
        match fs::File::open(&message.path) {
            Ok(file) => Ok(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let now = self.find(folder, &message.id)?;
                fs::File::open(&now.path).map_err(|e| StoreError::io("opening", &now.path, e))
            }
            Err(e) => Err(StoreError::io("opening", &message.path, e)),
        }
    }

    /// Sets the message's flags (moving it to `cur/` if it is in `new/`).
    pub fn set_flags(
        &self,
        folder: Option<&FolderName>,
        id: &str,
        flags: &str,
    ) -> Result<MessageInfo> {
        let target = self
            .folder_path(folder)
            .join("cur")
            .join(name::with_flags(id, flags));
        // Another process may rename the file between our lookup and our rename: look again.
        for _ in 0..4 {
            let current = self.find(folder, id)?;
            if current.path == target {
                return Ok(current);
            }
            match fs::rename(&current.path, &target) {
                Ok(()) => {
                    return Ok(MessageInfo {
                        flags: name::normalise_flags(flags),
                        state: State::Cur,
                        path: target,
                        ..current
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("renaming", &current.path, e)),
            }
        }
        Err(StoreError::Unavailable(format!("message {id} kept moving")))
    }

    /// Moves a message from `new/` to `cur/` keeping its flags (a client has seen the list).
    pub fn mark_current(&self, folder: Option<&FolderName>, id: &str) -> Result<MessageInfo> {
        let current = self.find(folder, id)?;
        match current.state {
            State::Cur => Ok(current),
            State::New => self.set_flags(folder, id, &current.flags),
        }
    }

    /// Removes a message for good and updates the quota.
    pub fn expunge(&self, folder: Option<&FolderName>, id: &str) -> Result<()> {
        let current = self.find(folder, id)?;
        let _in_flight = self.change_in_flight()?;
        match fs::remove_file(&current.path) {
            Ok(()) => {}
            // Gone already: another session expunged it. Nothing to count twice.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("removing", &current.path, e)),
        }
        self.record(-(current.size as i64), -1)
    }

    /// Adds a change to `maildirsize`. A mailbox without a quota and without the file is
    /// left without one, as Dovecot does; the file is built when a quota is first set.
    pub(crate) fn record(&self, bytes: i64, messages: i64) -> Result<()> {
        let unlimited = self.quota == QuotaLimit::default();
        if unlimited && !self.root.join("maildirsize").exists() {
            return Ok(());
        }
        quota::record(&self.root, self.quota, bytes, messages)
            .map_err(|e| StoreError::io("updating quota of", &self.root, e))
    }

    /// Copies a message into another folder (a new file name there, the same content through
    /// a hard link). Returns the copy.
    pub fn copy(
        &self,
        from: Option<&FolderName>,
        id: &str,
        to: Option<&FolderName>,
    ) -> Result<MessageInfo> {
        let source = self.find(from, id)?;
        self.check_fits(source.size)?;
        let target_base = self.existing_folder(to)?;
        let new_id = match source.virtual_size {
            Some(virtual_size) => format!("{},W={virtual_size}", name::unique(source.size)),
            None => name::unique(source.size),
        };
        let target = target_base
            .join("cur")
            .join(name::with_flags(&new_id, &source.flags));
        if fs::hard_link(&source.path, &target).is_err() {
            // Linking can fail on filesystems without hard links: copy durably instead.
            let temporary = target_base.join("tmp").join(&new_id);
            fs::copy(&source.path, &temporary)
                .map_err(|e| StoreError::io("copying", &source.path, e))?;
            sync_file(&temporary)?;
            fs::rename(&temporary, &target)
                .map_err(|e| StoreError::io("renaming", &temporary, e))?;
        }
        sync_dir(&target_base.join("cur"))?;
        self.record(source.size as i64, 1)?;
        Ok(MessageInfo {
            id: new_id,
            size: source.size,
            virtual_size: source.virtual_size,
            flags: source.flags,
            state: State::Cur,
            path: target,
        })
    }

    /// Moves a message into another folder, keeping its id and flags; quota is unchanged.
    pub fn move_to(
        &self,
        from: Option<&FolderName>,
        id: &str,
        to: Option<&FolderName>,
    ) -> Result<MessageInfo> {
        let source = self.find(from, id)?;
        let target_base = self.existing_folder(to)?;
        let target = target_base
            .join("cur")
            .join(name::with_flags(id, &source.flags));
        fs::rename(&source.path, &target).map_err(|e| StoreError::io("moving", &source.path, e))?;
        sync_dir(&target_base.join("cur"))?;
        Ok(MessageInfo {
            state: State::Cur,
            path: target,
            ..source
        })
    }

    /// Removes files left in `tmp/` (of the INBOX and every folder) by deliveries that never
    /// finished, once they are older than `age`. Maildir's rule is 36 hours
    /// (maildir.html: "a file in tmp that has not been accessed in 36 hours"). Returns how many.
    pub fn clean_tmp(&self, age: Duration) -> Result<usize> {
        let mut removed = 0;
        let mut bases = vec![self.root.clone()];
        bases.extend(self.folders()?.iter().map(|f| self.folder_path(Some(f))));
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        for base in bases {
            let Ok(entries) = fs::read_dir(base.join("tmp")) else {
                continue;
            };
            for entry in entries.flatten() {
                let stale = entry
                    .metadata()
                    .and_then(|m| m.accessed().or_else(|_| m.modified()))
                    .is_ok_and(|time| time < cutoff);
                if stale && fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// Removes its marker when the change is complete (or abandoned).
struct InFlight(PathBuf);

impl Drop for InFlight {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Whether `cur/`, `new/` and `tmp/` exist under `base` as real folders (not symlinks).
fn subfolders_ready(base: &Path) -> Result<bool> {
    for sub in ["cur", "new", "tmp"] {
        let path = base.join(sub);
        match fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.file_type().is_dir() => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::io("checking", &path, e)),
        }
    }
    Ok(true)
}

/// `cur/`, `new/`, `tmp/` under `base`, mode 0700.
fn create_tree(base: &Path) -> Result<()> {
    for sub in ["cur", "new", "tmp"] {
        let path = base.join(sub);
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&path)
            .map_err(|e| StoreError::io("creating", &path, e))?;
    }
    Ok(())
}

/// Flushes a file's data and metadata.
pub(crate) fn sync_file(path: &Path) -> Result<()> {
    let file = fs::File::open(path).map_err(|e| StoreError::io("opening", path, e))?;
    file.sync_all()
        .map_err(|e| StoreError::io("syncing", path, e))
}

/// Flushes a folder, making the renames and links in it durable.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    let dir = fs::File::open(path).map_err(|e| StoreError::io("opening", path, e))?;
    dir.sync_all()
        .map_err(|e| StoreError::io("syncing", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Recipient, Store, deliver};
    use std::collections::BTreeMap;
    use std::io::Read;

    fn mailbox(shard: &Path, quota: QuotaLimit) -> Maildir {
        let store = Store::new(BTreeMap::from([("s".to_string(), shard.to_path_buf())]));
        store.mailbox("s", "u1", quota).unwrap()
    }

    fn put(maildir: &Maildir, body: &[u8]) -> String {
        let source = maildir.root().parent().unwrap().join("spool");
        fs::write(&source, body).unwrap();
        deliver(
            &source,
            &[Recipient {
                maildir,
                prefix: None,
            }],
        )
        .remove(0)
        .unwrap()
        .id
    }

    #[test]
    fn messages_move_to_cur_and_keep_their_id_through_flag_changes() {
        let shard = tempfile::tempdir().unwrap();
        let maildir = mailbox(shard.path(), QuotaLimit::default());
        let id = put(&maildir, b"one");
        assert_eq!(maildir.list(None).unwrap()[0].state, State::New);

        let current = maildir.mark_current(None, &id).unwrap();
        assert_eq!((current.state, current.flags.as_str()), (State::Cur, ""));
        let flagged = maildir.set_flags(None, &id, "SR").unwrap();
        assert!(flagged.path.to_str().unwrap().ends_with(":2,RS"));
        let listed = maildir.list(None).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].id.as_str(), listed[0].flags.as_str()),
            (id.as_str(), "RS")
        );
        assert_eq!(listed[0].size, 3);
    }

    #[test]
    fn a_message_renamed_after_listing_can_still_be_opened() {
        let shard = tempfile::tempdir().unwrap();
        let maildir = mailbox(shard.path(), QuotaLimit::default());
        let id = put(&maildir, b"content");
        let listed = maildir.list(None).unwrap().remove(0);
        maildir.set_flags(None, &id, "S").unwrap();
        let mut text = String::new();
        maildir
            .open(None, &listed)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "content");
    }

    #[test]
    fn expunge_copy_and_move_keep_the_quota_exact() {
        let shard = tempfile::tempdir().unwrap();
        let maildir = mailbox(
            shard.path(),
            QuotaLimit {
                bytes: 1_000_000,
                messages: 100,
            },
        );
        let a = put(&maildir, &[b'a'; 100]);
        let b = put(&maildir, &[b'b'; 50]);
        let archive = FolderName::parse("Archive").unwrap();
        maildir.create_folder(&archive).unwrap();

        let copy = maildir.copy(None, &a, Some(&archive)).unwrap();
        assert_ne!(copy.id, a);
        maildir.move_to(None, &b, Some(&archive)).unwrap();
        maildir.expunge(None, &a).unwrap();

        assert_eq!(maildir.list(None).unwrap().len(), 0);
        assert_eq!(maildir.list(Some(&archive)).unwrap().len(), 2);
        assert_eq!(
            maildir.usage().unwrap(),
            Usage {
                bytes: 150,
                messages: 2
            }
        );
        assert_eq!(
            quota::recalculate(maildir.root(), maildir.quota()).unwrap(),
            Usage {
                bytes: 150,
                messages: 2
            }
        );
        assert_eq!(maildir.folders().unwrap(), vec![archive]);
    }

    #[test]
    fn stale_tmp_files_are_removed_and_fresh_ones_kept() {
        let shard = tempfile::tempdir().unwrap();
        let maildir = mailbox(shard.path(), QuotaLimit::default());
        maildir.create().unwrap();
        fs::write(maildir.root().join("tmp/interrupted"), b"half").unwrap();
        assert_eq!(
            maildir.clean_tmp(Duration::from_secs(36 * 3600)).unwrap(),
            0
        );
        assert_eq!(maildir.clean_tmp(Duration::ZERO).unwrap(), 1);
    }

    #[test]
    fn unknown_messages_and_folders_are_errors() {
        let shard = tempfile::tempdir().unwrap();
        let maildir = mailbox(shard.path(), QuotaLimit::default());
        maildir.create().unwrap();
        assert!(matches!(
            maildir.find(None, "nope"),
            Err(StoreError::NoSuchMessage)
        ));
        let missing = FolderName::parse("Missing").unwrap();
        assert!(matches!(
            maildir.list(Some(&missing)),
            Err(StoreError::NoSuchFolder)
        ));
    }
}
