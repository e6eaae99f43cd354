//! Durable delivery of one message to several mailboxes.
//!
//! For each recipient, the Maildir protocol with every step made durable:
//!
//! 1. quota: the message must fit (checked again here, whatever SMTP checked at RCPT);
//! 2. a unique name in `tmp/` (`,S=<size>` in it), created exclusively, the content written
//!    and fsync'd;
//! 3. a hard link from `tmp/` to `new/`, then an fsync of `new/`: only now is the message
//!    visible, and only now is it durable;
//! 4. the `tmp/` name removed and the delivery added to `maildirsize`.
//!
//! A crash at any point leaves at most a file in `tmp/`, never a partial one in `new/` or
//! `cur/`; [`crate::Maildir::clean_tmp`] removes it later.
//!
//! The content is written once per filesystem: the first recipient on a filesystem gets a
//! copy of the source, the others a hard link to that copy (hard links share the data, and
//! each recipient's flags live in its own file name). A recipient that fails (over quota,
//! disk full) does not fail the others: the result is per recipient.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::maildir::{Maildir, sync_dir};
use crate::name;

/// Size of the copy buffer: the message is streamed, never held whole in memory.
const COPY_BUFFER: usize = 64 * 1024;

/// One recipient of a delivery.
#[derive(Debug, Clone)]
pub struct Recipient<'a> {
    /// Its mailbox.
    pub maildir: &'a Maildir,
    /// Bytes written before the message for this recipient only (`Return-Path:`,
    /// `Delivered-To:`). A recipient with a prefix gets its own copy; one without shares the
    /// content with the others on its filesystem.
    pub prefix: Option<&'a [u8]>,
}

/// A message that is now in a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Its unique id in the mailbox.
    pub id: String,
    /// Its size there, prefix included.
    pub size: u64,
    /// Its file in `new/`.
    pub path: PathBuf,
}

/// Delivers the complete message in `source` to each recipient; one result per recipient,
/// in order.
pub fn deliver(source: &Path, recipients: &[Recipient<'_>]) -> Vec<Result<Delivered>> {
    let size = match fs::metadata(source) {
        Ok(metadata) => metadata.len(),
        Err(e) => {
            let error = || StoreError::io("reading spool file", source, clone_error(&e));
            return recipients.iter().map(|_| Err(error())).collect();
        }
    };

    // Shared copies already placed, one per filesystem.
    let mut shared: Vec<Shared> = Vec::new();
    let results: Vec<Result<Delivered>> = recipients
        .iter()
        .map(|recipient| deliver_one(source, size, recipient, &mut shared))
        .collect();

    // The shared tmp/ names were kept so later recipients could link to them.
    for copy in shared {
        let _ = fs::remove_file(copy.path);
    }
    results
}

/// A copy of the message in some mailbox's `tmp/`, for the next recipients on its filesystem.
struct Shared {
    device: u64,
    path: PathBuf,
    virtual_size: u64,
}

fn deliver_one(
    source: &Path,
    source_size: u64,
    recipient: &Recipient<'_>,
    shared: &mut Vec<Shared>,
) -> Result<Delivered> {
    let maildir = recipient.maildir;
    let size = source_size + recipient.prefix.map_or(0, |p| p.len() as u64);
    maildir.create()?;
    maildir.check_fits(size)?;

    let tmp = maildir.root().join("tmp");
    let device = fs::metadata(&tmp)
        .map_err(|e| StoreError::io("reading", &tmp, e))?
        .dev();
    let id = name::unique(size);
    let temporary = tmp.join(&id);

    // Step 2: the content in tmp/, durable, by link where a copy is on this filesystem.
    let linked = if recipient.prefix.is_none() {
        shared
            .iter()
            .find(|copy| copy.device == device)
            .filter(|copy| fs::hard_link(&copy.path, &temporary).is_ok())
            .map(|copy| copy.virtual_size)
    } else {
        None
    };
    let (virtual_size, keep_temporary) = match linked {
        Some(virtual_size) => (virtual_size, false),
        None => {
            let virtual_size = write_copy(source, recipient.prefix, &temporary)?;
            let shareable = recipient.prefix.is_none();
            if shareable {
                shared.push(Shared {
                    device,
                    path: temporary.clone(),
                    virtual_size,
                });
            }
            (virtual_size, shareable)
        }
    };

    // Step 3: visible and durable, under the final name, which adds the CRLF size.
    let id = format!("{id},W={virtual_size}");
    let new = maildir.root().join("new");
    let visible = new.join(&id);
    let published = fs::hard_link(&temporary, &visible)
        .map_err(|e| StoreError::io("linking into", &new, e))
        .and_then(|()| sync_dir(&new));

    // Step 4: count it, while the tmp/ name still marks the change as in flight. The message
    // is delivered either way: a failed quota update leaves maildirsize behind, which the
    // next rebuild repairs, and must not make the sender deliver it twice.
    if published.is_ok()
        && let Err(error) = maildir.record(size as i64, 1)
    {
        tracing::warn!(mailbox = %maildir.root().display(), cause = %error, "quota not updated");
    }
    if !keep_temporary {
        let _ = fs::remove_file(&temporary);
    }
    published?;
    Ok(Delivered {
        id,
        size,
        path: visible,
    })
}

/// Writes `prefix` then the source into a new file at `path`, and fsyncs it. Returns the
/// copy's size with CRLF line endings, counted on the way.
fn write_copy(source: &Path, prefix: Option<&[u8]>, path: &Path) -> Result<u64> {
    let mut crlf = name::CrlfSize::default();
    let result = (|| -> io::Result<()> {
        let mut input = fs::File::open(source)?;
        let mut output = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        if let Some(prefix) = prefix {
            output.write_all(prefix)?;
            crlf.push(prefix);
        }
        let mut buffer = vec![0u8; COPY_BUFFER];
        loop {
            let read = input.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            output.write_all(&buffer[..read])?;
            crlf.push(&buffer[..read]);
        }
        output.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(path);
        return Err(StoreError::io("writing", path, e));
    }
    Ok(crlf.total())
}

fn clone_error(error: &io::Error) -> io::Error {
    io::Error::new(error.kind(), error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{QuotaLimit, Store, StoreError};
    use std::collections::BTreeMap;

    fn store(root: &Path) -> Store {
        Store::new(BTreeMap::from([("s1".to_string(), root.to_path_buf())]))
    }

    fn spool(dir: &Path, body: &[u8]) -> PathBuf {
        let path = dir.join("spool.eml");
        fs::write(&path, body).unwrap();
        path
    }

    #[test]
    fn a_delivery_is_complete_in_new_and_leaves_nothing_in_tmp() {
        let shard = tempfile::tempdir().unwrap();
        let mailbox = store(shard.path())
            .mailbox("s1", "ab/cd/u1", QuotaLimit::default())
            .unwrap();
        let source = spool(shard.path(), b"Subject: hi\r\n\r\nbody\r\n");
        let results = deliver(
            &source,
            &[Recipient {
                maildir: &mailbox,
                prefix: None,
            }],
        );
        let delivered = results.into_iter().next().unwrap().unwrap();

        assert_eq!(
            fs::read(&delivered.path).unwrap(),
            b"Subject: hi\r\n\r\nbody\r\n"
        );
        assert!(delivered.id.ends_with(",S=21,W=21"), "{}", delivered.id);
        assert_eq!(fs::read_dir(mailbox.root().join("tmp")).unwrap().count(), 0);
        let mode = fs::metadata(&delivered.path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn recipients_on_one_filesystem_share_the_content_unless_they_have_a_prefix() {
        let shard = tempfile::tempdir().unwrap();
        let store = store(shard.path());
        let a = store.mailbox("s1", "a", QuotaLimit::default()).unwrap();
        let b = store.mailbox("s1", "b", QuotaLimit::default()).unwrap();
        let c = store.mailbox("s1", "c", QuotaLimit::default()).unwrap();
        let source = spool(shard.path(), b"body\r\n");
        let prefix = b"Delivered-To: c@x.test\r\n".as_slice();
        let results = deliver(
            &source,
            &[
                Recipient {
                    maildir: &a,
                    prefix: None,
                },
                Recipient {
                    maildir: &b,
                    prefix: None,
                },
                Recipient {
                    maildir: &c,
                    prefix: Some(prefix),
                },
            ],
        );
        let paths: Vec<PathBuf> = results.into_iter().map(|r| r.unwrap().path).collect();
        let inode = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(inode(&paths[0]), inode(&paths[1]), "a and b share one copy");
        assert_ne!(inode(&paths[0]), inode(&paths[2]));
        assert_eq!(
            fs::read(&paths[2]).unwrap(),
            b"Delivered-To: c@x.test\r\nbody\r\n"
        );
        for mailbox in [&a, &b, &c] {
            assert_eq!(fs::read_dir(mailbox.root().join("tmp")).unwrap().count(), 0);
        }
    }

    #[test]
    fn one_recipient_over_quota_does_not_fail_the_others() {
        let shard = tempfile::tempdir().unwrap();
        let store = store(shard.path());
        let full = store
            .mailbox(
                "s1",
                "full",
                QuotaLimit {
                    bytes: 10,
                    messages: 0,
                },
            )
            .unwrap();
        let roomy = store
            .mailbox(
                "s1",
                "roomy",
                QuotaLimit {
                    bytes: 1000,
                    messages: 0,
                },
            )
            .unwrap();
        let source = spool(shard.path(), &[b'x'; 100]);
        let results = deliver(
            &source,
            &[
                Recipient {
                    maildir: &full,
                    prefix: None,
                },
                Recipient {
                    maildir: &roomy,
                    prefix: None,
                },
            ],
        );
        assert!(matches!(
            results[0],
            Err(StoreError::OverQuota { permanent: true })
        ));
        assert!(results[1].is_ok());
        assert_eq!(full.list(None).unwrap().len(), 0);
        assert_eq!(roomy.usage().unwrap().messages, 1);
    }

    #[test]
    fn a_missing_spool_file_fails_every_recipient_temporarily() {
        let shard = tempfile::tempdir().unwrap();
        let mailbox = store(shard.path())
            .mailbox("s1", "u", QuotaLimit::default())
            .unwrap();
        let results = deliver(
            &shard.path().join("gone"),
            &[Recipient {
                maildir: &mailbox,
                prefix: None,
            }],
        );
        assert!(results[0].as_ref().unwrap_err().is_temporary());
    }
}
