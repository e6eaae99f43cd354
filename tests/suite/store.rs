//! The store end to end: concurrent deliveries from threads and from other processes, SIGKILL
//! in the middle of deliveries, store paths that try to leave their shard, quotas, and
//! Maildir++ trees exchanged with a real Dovecot 2.3 in both directions.
//!
//! Messages here check themselves: the last line of each states the length and a checksum
//! of everything before it (the format `store-stress` writes, checked by [`verify`]), so a
//! truncated or mixed-up file is caught whoever wrote it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mailfold_store::{
    Delivered, FolderName, Maildir, MessageInfo, QuotaLimit, Recipient, Store, StoreError, Usage,
    deliver, quota,
};
use mailfold_tests::binary::built_binary;
use mailfold_tests::dovecot::{self, Dovecot};

/// Length of the closing line of a self-checking message: `check `, ten digits, a space,
/// sixteen hex digits, CRLF.
const CHECK_LINE: usize = 35;

/// A quota no test run comes near, so that deliveries are counted but never refused.
const ROOMY: QuotaLimit = QuotaLimit {
    bytes: 1 << 30,
    messages: 1_000_000,
};

// --- concurrency and crashes ---

#[test]
fn concurrent_deliveries_from_threads_and_two_processes_each_arrive_exactly_once_and_intact() {
    let run = ConcurrentRun::deliver();
    let maildir = &run.maildir;

    // Every id is there exactly once, with the content that was sent under it.
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    for message in maildir.list(None).unwrap() {
        let text = read(maildir, None, &message);
        let tag = verify(&text).unwrap_or_else(|e| panic!("{}: {e}", message.path.display()));
        assert_eq!(message.size, text.len() as u64, "{}", message.id);
        let previous = found.insert(message.id.clone(), tag);
        assert!(previous.is_none(), "{} is listed twice", message.id);
    }
    assert_eq!(found, run.expected);
    assert_eq!(files_in(&maildir.root().join("tmp")).len(), 0);
}

#[test]
fn maildirsize_agrees_with_a_recalculation_after_concurrent_deliveries() {
    let run = ConcurrentRun::deliver();
    let root = run.maildir.root();
    let listed = run.maildir.list(None).unwrap();
    let on_disk = Usage {
        bytes: listed.iter().map(|m| m.size).sum(),
        messages: listed.len() as u64,
    };
    assert_eq!(on_disk.messages as usize, run.expected.len());

    // What a front-end would read next (it rebuilds the file only if it has grown too long).
    let recorded = quota::usage(root, ROOMY).unwrap();
    let recalculated = quota::recalculate(root, ROOMY).unwrap();
    assert_eq!(recalculated, on_disk);
    assert_eq!(
        recorded, on_disk,
        "maildirsize drifted while rebuilds raced the deliveries' appends"
    );
}

/// One mailbox after 16 threads delivered 50 messages each into it while two `store-stress`
/// processes delivered 200 each, with a quota set so that every delivery is counted.
struct ConcurrentRun {
    _shard: tempfile::TempDir,
    maildir: Maildir,
    /// Every acknowledged id, with the tag of the message sent under it.
    expected: BTreeMap<String, String>,
}

impl ConcurrentRun {
    fn deliver() -> ConcurrentRun {
        const THREADS: usize = 16;
        const PER_THREAD: usize = 50;
        const PER_PROCESS: usize = 200;
        let shard = tempfile::tempdir().unwrap();
        let store = store_on(shard.path());
        let maildir = store.mailbox("s1", "ab/cd/shared", ROOMY).unwrap();

        // The two processes start first, so that they deliver while the threads do.
        let count = PER_PROCESS.to_string();
        let processes: Vec<Child> = (0..2)
            .map(|_| stress(shard.path(), "ab/cd/shared", &count, 2048, ROOMY))
            .collect();
        let mut expected: BTreeMap<String, String> = BTreeMap::new();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..THREADS)
                .map(|thread| {
                    let (maildir, spool_dir) = (&maildir, shard.path());
                    scope.spawn(move || {
                        let mut delivered = Vec::new();
                        for n in 0..PER_THREAD {
                            let tag = format!("t{thread}-{n}");
                            // Sizes from 200 bytes to just over two copy buffers.
                            let size = 200 + (thread * 7919 + n * 104_729) % 140_000;
                            let spool = spool(spool_dir, &tag, &compose(&tag, size));
                            let result = deliver(&spool, &[recipient(maildir)]).remove(0);
                            delivered.push((result.unwrap().id, tag));
                            fs::remove_file(spool).unwrap();
                        }
                        delivered
                    })
                })
                .collect();
            for worker in workers {
                expected.extend(worker.join().unwrap());
            }
        });
        for child in processes {
            let pid = child.id();
            let (success, ids, errors) = finish(child);
            assert!(success, "store-stress {pid} failed:\n{errors}");
            assert_eq!(ids.len(), PER_PROCESS, "store-stress {pid}:\n{errors}");
            for (n, id) in ids.into_iter().enumerate() {
                expected.insert(id, format!("p{pid}-{n}"));
            }
        }
        let total = THREADS * PER_THREAD + 2 * PER_PROCESS;
        assert_eq!(expected.len(), total, "ids are unique");
        ConcurrentRun {
            _shard: shard,
            maildir,
            expected,
        }
    }
}

#[test]
fn deliveries_killed_at_random_moments_leave_whole_messages_or_none() {
    let shard = tempfile::tempdir().unwrap();
    let store = store_on(shard.path());
    let maildir = store.mailbox("s1", "kill/me", ROOMY).unwrap();
    let mut random = Random::seeded();
    eprintln!("random seed {}", random.0);

    // Twenty processes, each SIGKILLed 0 to 50 ms after it started, or after its first
    // delivery (a loaded machine may take longer than 50 ms to start one); half of them with
    // messages large enough to take several writes.
    let mut acknowledged = Vec::new();
    for round in 0..20 {
        let size = if round % 2 == 0 { 3_000 } else { 400_000 };
        let mut child = stress(shard.path(), "kill/me", "forever", size, ROOMY);
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        if (round / 2) % 2 == 1 {
            let mut first = String::new();
            stdout.read_line(&mut first).unwrap();
            acknowledged.extend(first.lines().map(str::to_string));
        }
        std::thread::sleep(Duration::from_millis(random.below(51)));
        child.kill().unwrap();

        // Whatever it printed before it died was acknowledged.
        acknowledged.extend(stdout.lines().map(Result::unwrap));
        let (_, _, errors) = finish(child);
        assert!(
            !errors.contains("store-stress:"),
            "round {round} failed before the kill:\n{errors}"
        );
    }
    eprintln!(
        "{} deliveries acknowledged before the kills",
        acknowledged.len()
    );
    assert!(
        !acknowledged.is_empty(),
        "no round got as far as one delivery"
    );

    // Nothing partial in new/ or cur/, and everything acknowledged is there.
    let mut on_disk = Usage::default();
    for sub in ["new", "cur"] {
        for path in files_in(&maildir.root().join(sub)) {
            let text = fs::read(&path).unwrap();
            verify(&text).unwrap_or_else(|e| panic!("{} is partial: {e}", path.display()));
            on_disk.bytes += text.len() as u64;
            on_disk.messages += 1;
        }
    }
    let listed: BTreeSet<String> = maildir
        .list(None)
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    for id in &acknowledged {
        assert!(listed.contains(id), "acknowledged {id} is missing");
    }
    assert_eq!(listed.len() as u64, on_disk.messages);

    // The quota is repaired from the files, and the leftovers in tmp/ are removed.
    assert_eq!(quota::recalculate(maildir.root(), ROOMY).unwrap(), on_disk);
    assert_eq!(maildir.usage().unwrap(), on_disk);
    let leftovers = files_in(&maildir.root().join("tmp")).len();
    eprintln!("{leftovers} files left in tmp/");
    assert_eq!(maildir.clean_tmp(Duration::ZERO).unwrap(), leftovers);
    assert_eq!(files_in(&maildir.root().join("tmp")).len(), 0);
    assert_eq!(maildir.list(None).unwrap().len() as u64, on_disk.messages);
}

// --- store paths ---

#[test]
fn store_paths_that_would_leave_the_shard_are_refused_as_temporary_errors() {
    let shard = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let store = store_on(shard.path());
    let long_segment = "a".repeat(300);
    let long_path = vec!["abcdefgh"; 200].join("/");
    let absolute = outside.path().join("u1").display().to_string();
    for path in [
        "..",
        "../escaped",
        "ab/../../escaped",
        "ab/..",
        "/etc",
        absolute.as_str(),
        "ab\0cd",
        "ab/\0",
        long_segment.as_str(),
        long_path.as_str(),
        "",
    ] {
        let error = store.mailbox("s1", path, ROOMY).unwrap_err();
        assert!(
            matches!(error, StoreError::InvalidStorePath(_)),
            "{path:?}: {error}"
        );
        assert!(error.is_temporary(), "{path:?}: mail must wait, not bounce");
    }

    // A symlink inside the shard that points out of it, as the mailbox or above it.
    std::os::unix::fs::symlink(outside.path(), shard.path().join("ab")).unwrap();
    for path in ["ab", "ab/u1", "ab/cd/u1"] {
        let error = store.mailbox("s1", path, ROOMY).unwrap_err();
        assert!(
            matches!(error, StoreError::InvalidStorePath(_)),
            "{path:?}: {error}"
        );
        assert!(error.is_temporary());
    }
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);

    let error = store.mailbox("s9", "ok/u1", ROOMY).unwrap_err();
    assert!(matches!(error, StoreError::UnknownShard(_)), "{error}");
    assert!(error.is_temporary());
}

#[test]
fn a_dangling_symlink_out_of_the_shard_never_gets_a_message_written_through_it() {
    let shard = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("not-yet");
    std::os::unix::fs::symlink(&target, shard.path().join("ab")).unwrap();
    let store = store_on(shard.path());

    // Refused at once, or failing (temporarily) at delivery: never a file outside the shard.
    match store.mailbox("s1", "ab/u1", ROOMY) {
        Err(error) => assert!(error.is_temporary(), "{error}"),
        Ok(maildir) => {
            let source = spool(shard.path(), "dangling", b"Subject: x\r\n\r\nx\r\n");
            let result = deliver(&source, &[recipient(&maildir)]).remove(0);
            let error = result.expect_err("a delivery through a dangling symlink succeeded");
            assert!(error.is_temporary(), "{error}");
        }
    }
    assert!(!target.exists());
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

// --- quota ---

#[test]
fn a_bytes_limit_refuses_the_message_that_would_cross_it_for_now() {
    let shard = tempfile::tempdir().unwrap();
    let limit = QuotaLimit {
        bytes: 1_000,
        messages: 0,
    };
    let maildir = store_on(shard.path()).mailbox("s1", "u1", limit).unwrap();
    deliver_text(&maildir, &compose("a", 400)).unwrap();
    deliver_text(&maildir, &compose("b", 400)).unwrap();
    assert!(maildir.check_fits(200).is_ok());

    let error = deliver_text(&maildir, &compose("c", 400)).unwrap_err();
    assert!(
        matches!(error, StoreError::OverQuota { permanent: false }),
        "{error}"
    );
    assert!(error.is_temporary());
    assert!(matches!(
        maildir.check_fits(400),
        Err(StoreError::OverQuota { permanent: false })
    ));
    assert_eq!(
        maildir.usage().unwrap(),
        Usage {
            bytes: 800,
            messages: 2
        }
    );
    assert_eq!(maildir.list(None).unwrap().len(), 2);
}

#[test]
fn a_message_limit_refuses_the_next_message_for_now() {
    let shard = tempfile::tempdir().unwrap();
    let limit = QuotaLimit {
        bytes: 0,
        messages: 3,
    };
    let maildir = store_on(shard.path()).mailbox("s1", "u1", limit).unwrap();
    for tag in ["a", "b", "c"] {
        deliver_text(&maildir, &compose(tag, 100)).unwrap();
    }
    let error = deliver_text(&maildir, &compose("d", 100)).unwrap_err();
    assert!(
        matches!(error, StoreError::OverQuota { permanent: false }),
        "{error}"
    );
    assert!(error.is_temporary());

    // Room again once a message is expunged.
    let first = maildir.list(None).unwrap().remove(0);
    maildir.expunge(None, &first.id).unwrap();
    deliver_text(&maildir, &compose("d", 100)).unwrap();
    assert_eq!(maildir.usage().unwrap().messages, 3);
}

#[test]
fn an_unlimited_mailbox_takes_every_message() {
    let shard = tempfile::tempdir().unwrap();
    let maildir = store_on(shard.path())
        .mailbox("s1", "u1", QuotaLimit::default())
        .unwrap();
    assert!(maildir.check_fits(u64::MAX / 2).is_ok());
    let mut bytes = 0;
    for n in 0..30 {
        let text = compose(&format!("m{n}"), 10_000 + n * 1_000);
        bytes += text.len() as u64;
        deliver_text(&maildir, &text).unwrap();
    }
    assert_eq!(maildir.list(None).unwrap().len(), 30);
    assert_eq!(
        maildir.usage().unwrap(),
        Usage {
            bytes,
            messages: 30
        }
    );
}

#[test]
fn a_message_larger_than_the_whole_quota_is_permanently_over_quota() {
    let shard = tempfile::tempdir().unwrap();
    let limit = QuotaLimit {
        bytes: 5_000,
        messages: 10,
    };
    let maildir = store_on(shard.path()).mailbox("s1", "u1", limit).unwrap();
    let error = deliver_text(&maildir, &compose("huge", 6_000)).unwrap_err();
    assert!(
        matches!(error, StoreError::OverQuota { permanent: true }),
        "{error}"
    );
    assert!(!error.is_temporary(), "retrying can never help: 5xx");
    assert_eq!(maildir.list(None).unwrap().len(), 0);
    assert_eq!(files_in(&maildir.root().join("tmp")).len(), 0);

    // The check before the body is sent (SMTP RCPT with SIZE) says the same.
    let checked = maildir.check_fits(5_001);
    assert!(
        matches!(checked, Err(StoreError::OverQuota { permanent: true })),
        "{checked:?}"
    );
    assert!(maildir.check_fits(5_000).is_ok());
}

#[test]
fn the_check_before_the_body_answers_for_a_mailbox_that_never_received_mail() {
    let shard = tempfile::tempdir().unwrap();
    let limit = QuotaLimit {
        bytes: 5_000,
        messages: 10,
    };
    // A new mailbox has no folder yet: the first message to it must still be checked, not
    // refused as a storage failure.
    let maildir = store_on(shard.path())
        .mailbox("s1", "fresh/u1", limit)
        .unwrap();
    let checked = maildir.check_fits(100);
    assert!(checked.is_ok(), "{checked:?}");
    let checked = maildir.check_fits(5_001);
    assert!(
        matches!(checked, Err(StoreError::OverQuota { permanent: true })),
        "{checked:?}"
    );
}

#[test]
fn usage_is_rebuilt_from_the_messages_after_maildirsize_is_deleted() {
    let shard = tempfile::tempdir().unwrap();
    let limit = QuotaLimit {
        bytes: 100_000,
        messages: 50,
    };
    let maildir = store_on(shard.path()).mailbox("s1", "u1", limit).unwrap();
    let sent = FolderName::parse("Sent").unwrap();
    maildir.create_folder(&sent).unwrap();
    let mut expected = Usage::default();
    for n in 0..6 {
        let text = compose(&format!("m{n}"), 1_000 + n * 333);
        expected.bytes += text.len() as u64;
        expected.messages += 1;
        let delivered = deliver_text(&maildir, &text).unwrap();
        if n % 2 == 0 {
            maildir.move_to(None, &delivered.id, Some(&sent)).unwrap();
        }
    }
    assert_eq!(maildir.usage().unwrap(), expected);

    fs::remove_file(maildir.root().join("maildirsize")).unwrap();
    assert_eq!(maildir.usage().unwrap(), expected);
    assert_eq!(quota::recalculate(maildir.root(), limit).unwrap(), expected);

    // Counting goes on from the rebuilt figures.
    let text = compose("after", 2_000);
    deliver_text(&maildir, &text).unwrap();
    expected.bytes += text.len() as u64;
    expected.messages += 1;
    assert_eq!(maildir.usage().unwrap(), expected);
    assert_eq!(quota::recalculate(maildir.root(), limit).unwrap(), expected);
}

#[test]
fn one_recipient_over_quota_does_not_stop_the_others_from_getting_the_message() {
    let shard = tempfile::tempdir().unwrap();
    let store = store_on(shard.path());
    let first = store.mailbox("s1", "aa/first", ROOMY).unwrap();
    let full = QuotaLimit {
        bytes: 0,
        messages: 1,
    };
    let crowded = store.mailbox("s1", "bb/crowded", full).unwrap();
    let last = store.mailbox("s1", "cc/last", ROOMY).unwrap();
    deliver_text(&crowded, &compose("already", 100)).unwrap();

    let text = compose("shared", 5_000);
    let source = spool(shard.path(), "shared", &text);
    let prefix = b"Delivered-To: last@example.test\r\n".as_slice();
    let results = deliver(
        &source,
        &[
            recipient(&first),
            recipient(&crowded),
            Recipient {
                maildir: &last,
                prefix: Some(prefix),
            },
        ],
    );
    assert_eq!(results.len(), 3);
    let error = results[1].as_ref().unwrap_err();
    assert!(
        matches!(error, StoreError::OverQuota { permanent: false }),
        "{error}"
    );

    let to_first = results[0].as_ref().unwrap();
    assert_eq!(fs::read(&to_first.path).unwrap(), text);
    let to_last = results[2].as_ref().unwrap();
    assert_eq!(fs::read(&to_last.path).unwrap(), [prefix, &text].concat());
    assert_eq!(crowded.list(None).unwrap().len(), 1);
    for (maildir, size) in [(&first, text.len()), (&last, text.len() + prefix.len())] {
        let usage = maildir.usage().unwrap();
        assert_eq!((usage.bytes, usage.messages), (size as u64, 1));
        assert_eq!(files_in(&maildir.root().join("tmp")).len(), 0);
    }
}

// --- Dovecot interoperability ---

#[test]
fn dovecot_reads_a_maildir_written_by_mailfold_with_its_folder_flags_and_quota() {
    let (shard, store) = shard_for_dovecot();
    let limit = QuotaLimit {
        bytes: 1_000_000,
        messages: 100,
    };
    let maildir = store.mailbox("s1", "ab/cd/u1", limit).unwrap();

    // INBOX: one message still in new/, one seen, one answered and seen. Sent: one moved
    // there with its flags, and a copy of the seen one.
    let mut expected: BTreeMap<String, (&str, Vec<u8>, &str)> = BTreeMap::new();
    let mut put = |subject: &str, flags: &'static str, folder: Option<&FolderName>| -> String {
        let text = format!(
            "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\r\n\
             Hello from Mailfold: {subject}.\r\n"
        )
        .into_bytes();
        let id = deliver_text(&maildir, &text).unwrap().id;
        if let Some(folder) = folder {
            maildir.move_to(None, &id, Some(folder)).unwrap();
        }
        if !flags.is_empty() {
            maildir.set_flags(folder, &id, flags).unwrap();
        }
        let name = folder.map_or("INBOX", |_| "Sent");
        expected.insert(id.clone(), (name, text, flags));
        id
    };
    let sent = FolderName::parse("Sent").unwrap();
    maildir.create_folder(&sent).unwrap();
    put("unread", "", None);
    let seen = put("seen", "S", None);
    put("answered", "RS", None);
    put("sent", "SF", Some(&sent));
    let copy = maildir.copy(None, &seen, Some(&sent)).unwrap();
    let seen_text = expected[&seen].1.clone();
    expected.insert(copy.id, ("Sent", seen_text, "S"));
    let usage = maildir.usage().unwrap();
    assert_eq!(usage.messages, 5);
    let maildirsize = fs::read(maildir.root().join(quota::FILE_NAME)).unwrap();

    let dovecot = Dovecot::start(maildir.root(), limit);
    dovecot.hand_over(shard.path());

    // The folder is a mailbox for Dovecot.
    let mailboxes = dovecot.doveadm(&["mailbox", "list", "-u", dovecot::USER]);
    let mailboxes: BTreeSet<&str> = mailboxes.lines().collect();
    assert_eq!(mailboxes, BTreeSet::from(["INBOX", "Sent"]));

    // Every message, its text to the byte, and its flags.
    let mut fetched = BTreeMap::new();
    for mailbox in ["INBOX", "Sent"] {
        for (guid, flags, text) in fetch_all(&dovecot, mailbox) {
            fetched.insert(guid, (mailbox, text, flags));
        }
    }
    let wanted: BTreeMap<String, (&str, Vec<u8>, BTreeSet<String>)> = expected
        .into_iter()
        .map(|(id, (mailbox, text, flags))| (id, (mailbox, text, imap_flags(flags))))
        .collect();
    assert_eq!(fetched, wanted);

    // Dovecot reads the quota Mailfold kept (it reports kilobytes, rounded up), and takes the
    // file as it is: a definition or a line it disliked would have made it rewrite the file.
    assert_eq!(
        dovecot_quota(&dovecot),
        (usage.bytes.div_ceil(1024), usage.messages)
    );
    let after = fs::read(maildir.root().join(quota::FILE_NAME)).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&after),
        String::from_utf8_lossy(&maildirsize)
    );

    // And after Dovecot moved things around (new/ to cur/, its index files), Mailfold still
    // sees the same messages under the same ids.
    assert_eq!(maildir.list(None).unwrap().len(), 3);
    assert_eq!(maildir.list(Some(&sent)).unwrap().len(), 2);
    assert_eq!(maildir.folders().unwrap(), vec![sent]);
}

#[test]
fn mailfold_reads_a_maildir_written_by_dovecot_with_its_folders_flags_sizes_and_quota() {
    let (_shard, store) = shard_for_dovecot();
    let limit = QuotaLimit {
        bytes: 2_000_000,
        messages: 200,
    };
    let maildir = store.mailbox("s1", "ef/gh/u2", limit).unwrap();
    let dovecot = Dovecot::start(maildir.root(), limit);
    let user = dovecot::USER;

    // Dovecot writes: three INBOX messages, two folders (one nested, Maildir++ style), flags
    // including a keyword, and maildirsize through a recalculation.
    let message = |subject: &str, lines: usize| -> Vec<u8> {
        let mut text = format!("From: carol@example.test\nSubject: {subject}\n\n");
        for n in 0..lines {
            text.push_str(&format!("line {n} of the message called {subject}\n"));
        }
        text.into_bytes()
    };
    let saved = [
        ("INBOX", "plain", message("plain", 3), &[][..], ""),
        ("INBOX", "seen", message("seen", 200), &["\\Seen"][..], "S"),
        (
            "INBOX",
            "answered",
            message("answered", 40),
            &["\\Answered", "\\Seen"][..],
            "RS",
        ),
        (
            "Sent",
            "flagged",
            message("flagged", 10),
            &["\\Flagged", "$Junk"][..],
            "Fa",
        ),
        (
            "Archive.2024",
            "archived",
            message("archived", 5_000),
            &["\\Seen", "\\Deleted"][..],
            "ST",
        ),
    ];
    dovecot.doveadm(&["mailbox", "create", "-u", user, "Sent", "Archive.2024"]);
    for (mailbox, subject, text, flags, _) in &saved {
        dovecot.doveadm_with_input(&["save", "-u", user, "-m", mailbox], text);
        if !flags.is_empty() {
            let flags = flags.join(" ");
            let query = ["mailbox", mailbox, "subject", subject];
            dovecot.doveadm(&[&["flags", "add", "-u", user, &flags][..], &query].concat());
        }
    }
    dovecot.doveadm(&["quota", "recalc", "-u", user]);

    // Mailfold finds each message, with Dovecot's flags and sizes, and the same bytes.
    let mut total = Usage::default();
    for (mailbox, subject, text, _, letters) in &saved {
        let folder = match *mailbox {
            "INBOX" => None,
            name => Some(FolderName::from_directory(&format!(".{name}")).unwrap()),
        };
        let listed = maildir.list(folder.as_ref()).unwrap();
        let found: Vec<_> = listed
            .iter()
            .filter(|m| read(&maildir, folder.as_ref(), m) == *text)
            .collect();
        assert_eq!(found.len(), 1, "{subject} in {mailbox}: {listed:?}");
        let message = found[0];
        assert_eq!(message.flags, *letters, "{subject}");
        assert_eq!(message.size, text.len() as u64, "{subject}");
        let query = ["mailbox", mailbox, "guid", &message.id];
        let dovecot_text = dovecot.doveadm(&[&["fetch", "-u", user, "text"][..], &query].concat());
        assert_eq!(
            dovecot_text.strip_prefix("text:\n").map(str::as_bytes),
            Some(&text[..])
        );
        total.bytes += message.size;
        total.messages += 1;
    }
    assert_eq!(maildir.list(None).unwrap().len(), 3);

    // The folders are Dovecot's (its implicit parent "Archive" has no directory of its own).
    let folders: Vec<String> = maildir
        .folders()
        .unwrap()
        .iter()
        .map(|f| f.directory().to_string())
        .collect();
    assert_eq!(folders, [".Archive.2024", ".Sent"]);
    let listed = dovecot.doveadm(&["mailbox", "list", "-u", user]);
    for folder in &folders {
        assert!(
            listed.lines().any(|l| *folder == format!(".{l}")),
            "{listed}"
        );
    }

    // Dovecot's maildirsize, read by Mailfold, agrees with what Dovecot reports.
    let usage = maildir.usage().unwrap();
    assert_eq!(usage, total);
    assert_eq!(
        dovecot_quota(&dovecot),
        (usage.bytes.div_ceil(1024), usage.messages)
    );
}

// --- helpers ---

fn store_on(shard: &Path) -> Store {
    Store::new(BTreeMap::from([("s1".to_string(), shard.to_path_buf())]))
}

/// A shard whose folders the Dovecot user can reach (it is not root; see dovecot.rs).
fn shard_for_dovecot() -> (tempfile::TempDir, Store) {
    let shard = tempfile::tempdir().unwrap();
    fs::set_permissions(shard.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let store = store_on(shard.path());
    (shard, store)
}

fn recipient(maildir: &Maildir) -> Recipient<'_> {
    Recipient {
        maildir,
        prefix: None,
    }
}

/// Writes a spool file named after `name` in `dir`.
fn spool(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let path = dir.join(format!("spool-{name}.eml"));
    fs::write(&path, text).unwrap();
    path
}

/// Delivers `text` to one mailbox through a spool file beside the shard.
fn deliver_text(maildir: &Maildir, text: &[u8]) -> Result<Delivered, StoreError> {
    let spool_file = tempfile::NamedTempFile::new().unwrap();
    fs::write(spool_file.path(), text).unwrap();
    deliver(spool_file.path(), &[recipient(maildir)]).remove(0)
}

/// The bytes of a listed message, through [`Maildir::open`].
fn read(maildir: &Maildir, folder: Option<&FolderName>, message: &MessageInfo) -> Vec<u8> {
    let mut text = Vec::new();
    let mut file = maildir.open(folder, message).unwrap();
    file.read_to_end(&mut text).unwrap();
    text
}

/// The files in a folder, sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Starts `store-stress` delivering `count` messages of `size` bytes into `store_path`.
fn stress(shard: &Path, store_path: &str, count: &str, size: usize, quota: QuotaLimit) -> Child {
    Command::new(built_binary("store-stress"))
        .arg(shard)
        .args([store_path, count, &size.to_string()])
        .args([quota.bytes.to_string(), quota.messages.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting store-stress")
}

/// Waits for a `store-stress`: whether it succeeded, the ids it printed, what it said.
fn finish(child: Child) -> (bool, Vec<String>, String) {
    let output = child.wait_with_output().expect("waiting for store-stress");
    let stdout = String::from_utf8(output.stdout).expect("ids are text");
    let ids = stdout.lines().map(str::to_string).collect();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), ids, stderr)
}

/// A self-checking message of `size` bytes (a little more when `size` is too small for the
/// headers), `Subject: <tag>`, in the format `store-stress` writes.
fn compose(tag: &str, size: usize) -> Vec<u8> {
    let mut text = format!("From: test@mailfold.test\r\nSubject: {tag}\r\n\r\n").into_bytes();
    let mut body = size.saturating_sub(CHECK_LINE).max(text.len());
    if body == text.len() + 1 {
        body += 1;
    }
    let mut column = 0;
    while text.len() < body {
        let left = body - text.len();
        if left == 2 || (column >= 70 && left != 3) {
            text.extend_from_slice(b"\r\n");
            column = 0;
        } else {
            text.push(b'a' + (text.len() % 26) as u8);
            column += 1;
        }
    }
    let check = format!("check {:010} {:016x}\r\n", text.len(), fnv1a(&text));
    text.extend_from_slice(check.as_bytes());
    text
}

/// Checks a self-checking message: its closing line must state the length and checksum of
/// everything before it. Returns its tag.
fn verify(text: &[u8]) -> Result<String, String> {
    if text.len() < CHECK_LINE {
        return Err(format!("{} bytes, shorter than the check line", text.len()));
    }
    let (body, check) = text.split_at(text.len() - CHECK_LINE);
    let check = std::str::from_utf8(check).map_err(|_| "check line is not text".to_string())?;
    let fields: Vec<&str> = check
        .strip_suffix("\r\n")
        .ok_or("no CRLF at the end")?
        .split(' ')
        .collect();
    let [word, length, checksum] = fields[..] else {
        return Err(format!("not a check line: {check:?}"));
    };
    if word != "check" || !body.ends_with(b"\r\n") {
        return Err(format!("not a check line: {check:?}"));
    }
    if length.parse::<usize>() != Ok(body.len()) {
        return Err(format!(
            "{} bytes before a check line saying {length}",
            body.len()
        ));
    }
    if checksum != format!("{:016x}", fnv1a(body)) {
        return Err("checksum mismatch".into());
    }
    let body = String::from_utf8_lossy(body);
    let tag = body.lines().find_map(|line| line.strip_prefix("Subject: "));
    Ok(tag.ok_or("no subject")?.trim_end().to_string())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Maildir flag letters as IMAP system flags (maildir.html; RFC 9051 §2.3.2).
fn imap_flags(letters: &str) -> BTreeSet<String> {
    letters
        .chars()
        .map(|letter| match letter {
            'D' => "\\Draft",
            'F' => "\\Flagged",
            'R' => "\\Answered",
            'S' => "\\Seen",
            'T' => "\\Deleted",
            other => panic!("no IMAP flag for {other:?}"),
        })
        .map(str::to_string)
        .collect()
}

/// `doveadm fetch "guid flags text"` of every message in a mailbox: (guid, flags without
/// `\Recent`, text). Records of the pager format are separated by a form feed line.
fn fetch_all(dovecot: &Dovecot, mailbox: &str) -> Vec<(String, BTreeSet<String>, Vec<u8>)> {
    let output = dovecot.doveadm(&[
        "fetch",
        "-u",
        dovecot::USER,
        "guid flags text",
        "mailbox",
        mailbox,
        "all",
    ]);
    output
        .split("\x0c\n")
        .filter(|record| !record.is_empty())
        .map(|record| {
            let rest = record.strip_prefix("guid: ").expect(record);
            let (guid, rest) = rest.split_once("\nflags: ").expect(record);
            let (flags, text) = rest.split_once("\ntext:\n").expect(record);
            let flags = flags
                .split_whitespace()
                .filter(|flag| *flag != "\\Recent")
                .map(str::to_string)
                .collect();
            (guid.to_string(), flags, text.as_bytes().to_vec())
        })
        .collect()
}

/// `doveadm quota get`: (storage in kilobytes, messages).
fn dovecot_quota(dovecot: &Dovecot) -> (u64, u64) {
    let output = dovecot.doveadm(&["-f", "tab", "quota", "get", "-u", dovecot::USER]);
    let value = |kind: &str| -> u64 {
        output
            .lines()
            .map(|line| line.split('\t').collect::<Vec<_>>())
            .find(|fields| fields.get(1) == Some(&kind))
            .and_then(|fields| fields.get(2)?.parse().ok())
            .unwrap_or_else(|| panic!("no {kind} in doveadm quota get:\n{output}"))
    };
    (value("STORAGE"), value("MESSAGE"))
}

/// A small xorshift generator, seeded per run (the seed is printed for a rerun by hand).
struct Random(u64);

impl Random {
    fn seeded() -> Random {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        Random(hasher.finish() | 1)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}
