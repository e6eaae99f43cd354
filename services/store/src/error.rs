//! The store's error type, split by what a front-end must answer.

use crate::folder_name::FolderNameError;

/// A failed storage operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The mailbox's shard is not in the configuration.
    #[error("unknown shard {0:?}")]
    UnknownShard(String),
    /// The store path from the directory is not acceptable (traversal, symlink escape, ...).
    /// Temporary: mail waits while an operator repairs the directory entry.
    #[error("invalid store path {0}")]
    InvalidStorePath(String),
    /// The filesystem failed: shard root missing or unreadable, disk full, I/O error.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The message does not fit the mailbox's quota. `permanent` when it could never fit
    /// (larger than the whole quota), so SMTP can answer `552 5.2.2` instead of `452 4.2.2`.
    #[error("over quota")]
    OverQuota {
        /// The message alone exceeds the limit.
        permanent: bool,
    },
    /// No message with that id in the folder.
    #[error("no such message")]
    NoSuchMessage,
    /// The folder does not exist.
    #[error("no such folder")]
    NoSuchFolder,
    /// A folder name a client gave is not acceptable.
    #[error("invalid folder name: {0}")]
    InvalidFolder(#[from] FolderNameError),
}

impl StoreError {
    /// Whether the caller should try again later (`4xx`).
    pub fn is_temporary(&self) -> bool {
        match self {
            StoreError::UnknownShard(_)
            | StoreError::InvalidStorePath(_)
            | StoreError::Unavailable(_) => true,
            StoreError::OverQuota { permanent } => !permanent,
            StoreError::NoSuchMessage | StoreError::NoSuchFolder | StoreError::InvalidFolder(_) => {
                false
            }
        }
    }

    pub(crate) fn io(doing: &str, path: &std::path::Path, error: std::io::Error) -> StoreError {
        StoreError::Unavailable(format!("{doing} {}: {error}", path.display()))
    }
}

/// Result of a storage operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
