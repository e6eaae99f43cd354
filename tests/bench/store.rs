//! Store throughput: durable deliveries per second of 4 KiB messages, next to the machine's
//! own ceiling for the same durable steps.
//!
//!     cargo bench -p mailfold-tests --bench store
//!
//! Deliverers are threads calling `mailfold_store::deliver`, at 1, 8 and 64 at once, each
//! into its own mailbox or all into one. The ceiling is measured here, on the same disk and at
//! the same concurrency: write 4 KiB into a new file in a `tmp` folder, fsync it, rename it
//! into the `new` folder beside it, fsync that folder; with one pair of folders per deliverer
//! or one pair for all, as the mailboxes are. That is the least a durable Maildir delivery can
//! do; the ratio says how close the store comes to it. Mailfold is measured with a quota (so
//! `maildirsize` is read and appended to, as in production) and without one. Prints one
//! markdown table; docs/performance.md records the figures.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use mailfold_store::{Maildir, QuotaLimit, Recipient, Store, deliver};

/// The message size.
const SIZE: usize = 4096;
/// Deliveries per thread, by concurrency: enough for a steady rate, small enough that the
/// whole bench stays well under two minutes on two cores.
const ROWS: [(usize, usize); 3] = [(1, 3_000), (8, 800), (64, 160)];
/// Rounds per row; each kind of run takes its turn in every round.
const ROUNDS: usize = 5;
/// A quota no run comes near.
const ROOMY: QuotaLimit = QuotaLimit {
    bytes: 1 << 40,
    messages: 100_000_000,
};

/// Where the deliverers write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Each deliverer into its own mailbox.
    Own,
    /// All deliverers into one mailbox.
    Shared,
}

fn main() {
    let started = Instant::now();
    println!(
        "| mailboxes | deliverers | messages | ceiling /s | Mailfold /s (quota) | ratio \
         | Mailfold /s (no quota) | ratio |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for layout in [Layout::Own, Layout::Shared] {
        for (threads, per_thread) in ROWS {
            // The disk's speed drifts: the three runs take turns, and each figure is the
            // median of its rounds.
            let per_round = per_thread / ROUNDS;
            let messages = threads * per_round;
            let (mut ceiling, mut quota, mut unlimited) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                ceiling.push(rate(messages, raw_run(layout, threads, per_round)));
                quota.push(rate(
                    messages,
                    mailfold_run(layout, threads, per_round, ROOMY),
                ));
                let run = mailfold_run(layout, threads, per_round, QuotaLimit::default());
                unlimited.push(rate(messages, run));
            }
            let (ceiling, quota, unlimited) = (median(ceiling), median(quota), median(unlimited));
            let mailboxes = match layout {
                Layout::Own => "one each",
                Layout::Shared => "one for all",
            };
            println!(
                "| {mailboxes} | {threads} | {} | {ceiling:.0} | {quota:.0} | {:.0}% \
                 | {unlimited:.0} | {:.0}% |",
                messages * ROUNDS,
                100.0 * quota / ceiling,
                100.0 * unlimited / ceiling,
            );
            let _ = std::io::stdout().flush();
        }
    }
    println!();
    println!(
        "{SIZE}-byte messages, {} cores, files in {}, median of {ROUNDS} rounds; whole bench \
         {:.0} s",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::temp_dir().display(),
        started.elapsed().as_secs_f64()
    );
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn rate(messages: usize, elapsed: Duration) -> f64 {
    messages as f64 / elapsed.as_secs_f64()
}

/// `threads` deliverers, each delivering `per_thread` messages through the store; returns
/// the time from the common start to the last one's end.
fn mailfold_run(layout: Layout, threads: usize, per_thread: usize, quota: QuotaLimit) -> Duration {
    let shard = tempfile::tempdir().expect("creating the shard");
    let store = Store::new(BTreeMap::from([(
        "bench".to_string(),
        shard.path().to_path_buf(),
    )]));
    let mailboxes: Vec<Maildir> = match layout {
        Layout::Own => (0..threads)
            .map(|n| store.mailbox("bench", &format!("m/{n}"), quota))
            .collect::<Result<_, _>>(),
        Layout::Shared => store.mailbox("bench", "m/shared", quota).map(|m| vec![m]),
    }
    .expect("opening the mailboxes");
    let spools: Vec<PathBuf> = (0..threads)
        .map(|n| {
            let path = shard.path().join(format!("spool-{n}"));
            fs::write(&path, message(n)).expect("writing a spool file");
            path
        })
        .collect();

    // A first delivery to each mailbox creates its folders outside the timing.
    for (n, maildir) in mailboxes.iter().enumerate() {
        deliver_or_panic(&spools[n], maildir);
    }

    timed(threads, |thread| {
        let maildir = &mailboxes[thread % mailboxes.len()];
        for _ in 0..per_thread {
            deliver_or_panic(&spools[thread], maildir);
        }
    })
}

fn deliver_or_panic(spool: &Path, maildir: &Maildir) {
    let recipient = Recipient {
        maildir,
        prefix: None,
    };
    if let Some(Err(e)) = deliver(spool, &[recipient]).pop() {
        panic!("delivering: {e}");
    }
}

/// The ceiling: the same durable steps done directly, with nothing else.
fn raw_run(layout: Layout, threads: usize, per_thread: usize) -> Duration {
    let root = tempfile::tempdir().expect("creating the raw folder");
    for n in 0..threads {
        fs::create_dir_all(root.path().join(format!("{n}/tmp"))).expect("creating tmp");
        fs::create_dir_all(root.path().join(format!("{n}/new"))).expect("creating new");
    }
    let texts: Vec<Vec<u8>> = (0..threads).map(message).collect();
    timed(threads, |thread| {
        // The same folders a Maildir has: one pair per mailbox.
        let folder = match layout {
            Layout::Own => root.path().join(thread.to_string()),
            Layout::Shared => root.path().join("0"),
        };
        let (tmp, new) = (folder.join("tmp"), folder.join("new"));
        for n in 0..per_thread {
            let name = format!("{thread}-{n}");
            let temporary = tmp.join(&name);
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temporary)
                .expect("creating a file");
            file.write_all(&texts[thread]).expect("writing");
            file.sync_all().expect("syncing the file");
            fs::rename(&temporary, new.join(&name)).expect("renaming");
            fs::File::open(&new)
                .and_then(|folder| folder.sync_all())
                .expect("syncing the folder");
        }
    })
}

/// Runs `work(thread)` on `threads` threads released together; the time until all are done.
fn timed(threads: usize, work: impl Fn(usize) + Sync) -> Duration {
    let start = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (start, work) = (&start, &work);
                scope.spawn(move || {
                    start.wait();
                    work(thread);
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        for worker in workers {
            worker.join().expect("a deliverer panicked");
        }
        began.elapsed()
    })
}

/// A 4 KiB message: headers, then lines of text.
fn message(seed: usize) -> Vec<u8> {
    let mut text =
        format!("From: bench@mailfold.test\r\nSubject: bench {seed}\r\n\r\n").into_bytes();
    while text.len() < SIZE - 2 {
        let line_end = text.len() % 78 == 76;
        if line_end {
            text.extend_from_slice(b"\r\n");
        } else {
            text.push(b'a' + (text.len() % 26) as u8);
        }
    }
    text.truncate(SIZE - 2);
    text.extend_from_slice(b"\r\n");
    text
}
