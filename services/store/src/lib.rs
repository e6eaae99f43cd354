//! Mailfold's mail storage: mailboxes as Maildir++ trees on shards.
//!
//! A shard is a folder root (a local disk, or a ReadWriteMany volume shared by every
//! front-end replica). The configuration maps shard ids to roots; the directory names each
//! mailbox's shard and its store path below the root. The trees are plain Maildir++, as
//! Dovecot and Courier write them, so a provider can move mailboxes in and out.
//!
//! # Layout
//!
//! - [`path`]: store paths checked as text and resolved within the shard root.
//! - [`name`]: unique Maildir file names, and size and flags read back from them.
//! - [`maildir`]: one mailbox: folders, listing, reading, flags, expunge, copy, move,
//!   clean-up of `tmp/`.
//! - [`mod@deliver`]: durable delivery of one message to several mailboxes.
//! - [`quota`]: the Maildir++ `maildirsize` file.
//! - [`folder_name`]: folder names as clients see them and as directories hold them.
//!
//! # Invariants
//!
//! - No message is visible in `new/` or `cur/` before it is complete and fsync'd, and a
//!   delivery reports success only after the folder holding it is fsync'd too.
//! - No operation leaves the shard root: store paths and folder names are validated first.
//! - Nothing locks a mailbox: every change is one atomic rename, link or unlink, which NFS
//!   keeps atomic too.
//!
//! Everything here is blocking file I/O: async callers run it on a blocking thread.

pub mod deliver;
pub mod error;
pub mod folder_name;
pub mod maildir;
pub mod name;
pub mod path;
pub mod quota;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use deliver::{Delivered, Recipient, deliver};
pub use error::{Result, StoreError};
pub use folder_name::FolderName;
pub use maildir::{Maildir, MessageInfo, State};
pub use quota::{QuotaLimit, Usage};

/// The shards: id to root folder.
#[derive(Debug, Clone, Default)]
pub struct Store {
    shards: BTreeMap<String, PathBuf>,
}

impl Store {
    /// A store over these shards. Roots are checked when a mailbox is opened, so a volume
    /// that is not mounted yet makes deliveries wait instead of stopping the process.
    pub fn new(shards: BTreeMap<String, PathBuf>) -> Store {
        Store { shards }
    }

    /// The configured shards.
    pub fn shards(&self) -> &BTreeMap<String, PathBuf> {
        &self.shards
    }

    /// The mailbox at `store_path` on `shard`, with its quota. The path is validated and
    /// resolved within the shard root; nothing is created yet.
    pub fn mailbox(&self, shard: &str, store_path: &str, quota: QuotaLimit) -> Result<Maildir> {
        let root = self
            .shards
            .get(shard)
            .ok_or_else(|| StoreError::UnknownShard(shard.to_string()))?;
        let relative = path::validate_store_path(store_path)?;
        let resolved = path::resolve_within(root, relative)?;
        Ok(Maildir::new(resolved, quota))
    }
}
