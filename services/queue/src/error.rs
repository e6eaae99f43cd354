//! The queue's errors.

use std::path::{Path, PathBuf};

/// What can go wrong in the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A file operation failed.
    #[error("{doing} {}: {source}", path.display())]
    Io {
        /// What was being done.
        doing: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An envelope that does not parse.
    #[error("reading the envelope of {0}: {1}")]
    Corrupt(String, String),
    /// No message with this id is queued.
    #[error("no queued message {0}")]
    NotFound(String),
    /// Another process delivers from this folder.
    #[error("another process holds {}", .0.display())]
    Locked(PathBuf),
    /// A DKIM key that cannot be used.
    #[error("dkim key {}: {message}", file.display())]
    Key {
        /// The key file.
        file: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

impl QueueError {
    /// An I/O error while `doing` something to `path`.
    pub fn io(doing: &'static str, path: &Path, source: std::io::Error) -> QueueError {
        QueueError::Io {
            doing,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A result with a [`QueueError`].
pub type Result<T> = std::result::Result<T, QueueError>;
