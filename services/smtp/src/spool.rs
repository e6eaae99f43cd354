//! The spool file a message is received into before delivery.
//!
//! One file per transaction in the state folder's `spool/`, written through a 64 KiB buffer,
//! so a message of any size costs the same memory (invariant 3). The store copies it into each
//! mailbox durably; the spool file itself needs no fsync, because nothing is acknowledged
//! until the mailbox copies are on disk. It is removed when dropped: a transaction that fails,
//! or a connection that drops, leaves nothing behind.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncWriteExt, BufWriter};

/// Size of the write buffer.
const BUFFER: usize = 64 * 1024;

/// A message being received.
pub struct Spool {
    path: PathBuf,
    file: BufWriter<tokio::fs::File>,
    size: u64,
}

impl Spool {
    /// A new, empty spool file in `folder`.
    pub async fn create(folder: &Path) -> io::Result<Spool> {
        tokio::fs::create_dir_all(folder).await?;
        let name = mailfold_store::name::unique(0);
        let path = folder.join(format!("{name}.eml"));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .await?;
        Ok(Spool {
            path,
            file: BufWriter::with_capacity(BUFFER, file),
            size: 0,
        })
    }

    /// Appends bytes.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.size += bytes.len() as u64;
        self.file.write_all(bytes).await
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Flushes the buffer, so the file holds everything written.
    pub async fn finish(&mut self) -> io::Result<()> {
        self.file.flush().await
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
