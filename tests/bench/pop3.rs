//! POP3 throughput and memory of a running `mailfold serve`: messages retrieved per second by
//! concurrent sessions, the server's CPU time per message and peak memory, and the memory an
//! idle session costs.
//!
//!     cargo build --release -p mailfold
//!     cargo bench -p mailfold-tests --bench pop3
//!
//! The server is the release binary beside the bench (`target/release/mailfold`, or
//! `MAILFOLD_BIN`), run with a generated LDIF directory of [`IDLE_SESSIONS`] mailboxes under
//! one tenant, all with the quick start's `{SSHA}` hash of `frank-pw`, so the password hash
//! costs next to nothing and logins measure the session, not argon2. Failed-login and
//! connection limits are raised out of the way.
//!
//! 1. Throughput: [`SESSIONS`] client tasks at once, each logging in to its own mailbox of
//!    [`MESSAGES_PER_MAILBOX`] messages of [`MESSAGE_SIZE`] bytes, RETR of every message,
//!    QUIT without DELE. CPU time is the server's utime + stime from /proc/<pid>/stat.
//! 2. Idle memory: [`IDLE_SESSIONS`] connections opened and greeted, then logged in and left
//!    idle; the server's VmRSS before and after each step, divided by the count.
//!
//! The clients run in this process on the same two cores as the server, over loopback and
//! without TLS. Prints one markdown table.

use mailfold_tests::fixture::{bench_address, bench_directory, bench_store_path};
use mailfold_tests::process::{cpu_times, pid_of, resident};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailfold_store::{QuotaLimit, Recipient, Store, deliver};
use mailfold_tests::binary::{Server, free_port, mailfold_binary};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Concurrent sessions of the throughput run.
const SESSIONS: usize = 50;
/// Messages in each of their mailboxes.
const MESSAGES_PER_MAILBOX: usize = 100;
/// Size of each message.
const MESSAGE_SIZE: usize = 4096;
/// Idle sessions to open, if the file-descriptor limit allows.
const IDLE_SESSIONS: usize = 5000;
/// Logins in flight at once while the idle sessions open.
const OPENING_AT_ONCE: usize = 100;
const PASSWORD: &str = "frank-pw";
/// The goals of the role.
const CPU_GOAL: Duration = Duration::from_millis(1);
const IDLE_GOAL_BYTES: u64 = 20 << 10;

fn main() {
    let binary = mailfold_binary();
    assert!(
        binary.is_file(),
        "{} is missing: cargo build --release -p mailfold",
        binary.display()
    );
    let descriptors = raise_descriptor_limit(2 * IDLE_SESSIONS + 500);
    let idle_sessions = IDLE_SESSIONS.min(descriptors.saturating_sub(500) / 2);

    let folder = tempfile::tempdir().unwrap();
    let bench = Bench::start(folder.path(), IDLE_SESSIONS);
    let delivered = Instant::now();
    bench.fill_mailboxes();
    let fill_time = delivered.elapsed();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let throughput = runtime.block_on(bench.retrieve_all());
    let latency = runtime.block_on(bench.retr_latency());
    let idle = runtime.block_on(bench.idle_sessions(idle_sessions));

    let per_message = throughput.cpu / (SESSIONS * MESSAGES_PER_MAILBOX) as u32;
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    println!(
        "POP3 bench: {} ({} sessions x {} messages of {} bytes; {} mailboxes filled in {:.1?})",
        binary.display(),
        SESSIONS,
        MESSAGES_PER_MAILBOX,
        MESSAGE_SIZE,
        SESSIONS,
        fill_time
    );
    println!();
    println!("| measure | value | goal |");
    println!("| --- | --- | --- |");
    println!(
        "| RETR throughput, {SESSIONS} sessions | {:.0} messages/s, {:.1} MB/s | |",
        throughput.messages as f64 / throughput.elapsed.as_secs_f64(),
        throughput.bytes as f64 / 1e6 / throughput.elapsed.as_secs_f64()
    );
    println!(
        "| RETR round trip, one session alone | median {:.1} ms, fastest {:.1} ms | |",
        latency.0.as_secs_f64() * 1e3,
        latency.1.as_secs_f64() * 1e3
    );
    println!(
        "| server CPU per message (login, RETR, QUIT shared out) | {:.1} µs | under 1 ms: {} |",
        per_message.as_secs_f64() * 1e6,
        verdict(per_message < CPU_GOAL)
    );
    println!(
        "| server peak RSS (VmHWM) after the run | {:.1} MiB | |",
        throughput.peak_rss as f64 / (1 << 20) as f64
    );
    let limited = if idle.count < IDLE_SESSIONS {
        format!(" (limited by RLIMIT_NOFILE {descriptors})")
    } else {
        String::new()
    };
    println!(
        "| idle connections, greeted, not logged in | {}{limited}: {:.1} KiB each | |",
        idle.count,
        idle.per_greeted as f64 / 1024.0
    );
    println!(
        "| idle sessions, logged in (TRANSACTION) | {}{limited}: {:.1} KiB each | under 20 KiB: {} |",
        idle.count,
        idle.per_logged_in as f64 / 1024.0,
        verdict(idle.per_logged_in < IDLE_GOAL_BYTES)
    );
    println!(
        "| of which the login (maildrop, lock, heartbeat task) | {:.1} KiB each | |",
        idle.per_logged_in.saturating_sub(idle.per_greeted) as f64 / 1024.0
    );
    println!(
        "| server RSS: start, after the run, {} greeted, {} logged in | {:.1} / {:.1} / {:.1} / {:.1} MiB | |",
        idle.count,
        idle.count,
        throughput.start_rss as f64 / (1 << 20) as f64,
        idle.before as f64 / (1 << 20) as f64,
        idle.greeted as f64 / (1 << 20) as f64,
        idle.logged_in as f64 / (1 << 20) as f64
    );
}

/// A running server on a generated directory.
struct Bench {
    server: Server,
    pid: u32,
    pop3: u16,
    shard: PathBuf,
}

/// Figures of the throughput run.
struct Throughput {
    messages: usize,
    bytes: u64,
    elapsed: Duration,
    cpu: Duration,
    start_rss: u64,
    peak_rss: u64,
}

/// Figures of the idle run, in bytes.
struct Idle {
    count: usize,
    before: u64,
    greeted: u64,
    logged_in: u64,
    per_greeted: u64,
    per_logged_in: u64,
}

impl Bench {
    fn start(folder: &Path, mailboxes: usize) -> Bench {
        let seed = folder.join("bench.ldif");
        fs::write(&seed, bench_directory(mailboxes)).unwrap();
        let (api, pop3, pop3s) = (free_port(), free_port(), free_port());
        let config = folder.join("bench.toml");
        fs::write(
            &config,
            format!(
                "roles = [\"api\", \"pop3\"]\nstate_dir = \"var\"\n\
                 [log]\nlevel = \"info\"\n\
                 [directory]\nbackend = \"ldif\"\nbase_dn = \"dc=example,dc=test\"\n\
                 [directory.ldif]\npath = \"var/directory.ldif\"\nseed = \"bench.ldif\"\n\
                 [shards]\nlocal = \"var/mail\"\n\
                 [api]\nlisten = [\"127.0.0.1:{api}\"]\n\
                 [pop3]\nlisten = [\"127.0.0.1:{pop3}\"]\nlisten_tls = [\"127.0.0.1:{pop3s}\"]\n\
                 plaintext = \"loopback\"\nmax_connections = 1000000\n\
                 max_connections_per_ip = 1000000\n\
                 [auth]\nmax_failures_per_ip = 1000000\nmax_failures_per_account = 1000000\n\
                 failure_delay = \"0ms\"\n"
            ),
        )
        .unwrap();
        let ready = format!("http://127.0.0.1:{api}/readyz");
        let server = Server::start(&config, folder.join("serve.log"), &ready);
        let pid = pid_of(&config);

        // The api answers before the pop3 listener is bound.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", pop3)).is_err() {
            assert!(Instant::now() < deadline, "no pop3 listener");
            std::thread::sleep(Duration::from_millis(50));
        }
        Bench {
            server,
            pid,
            pop3,
            shard: folder.join("var/mail"),
        }
    }

    /// Delivers the messages of the throughput run through the store, as a delivery would.
    fn fill_mailboxes(&self) {
        let store = Store::new(BTreeMap::from([("local".to_string(), self.shard.clone())]));
        let spool = self.shard.join("spool.eml");
        for mailbox in 0..SESSIONS {
            let maildir = store
                .mailbox("local", &bench_store_path(mailbox), QuotaLimit::default())
                .unwrap();
            for number in 0..MESSAGES_PER_MAILBOX {
                fs::write(&spool, message(mailbox, number)).unwrap();
                let recipient = Recipient {
                    maildir: &maildir,
                    prefix: None,
                };
                for result in deliver(&spool, &[recipient]) {
                    result.unwrap();
                }
            }
        }
        fs::remove_file(spool).unwrap();
    }

    async fn retrieve_all(&self) -> Throughput {
        let start_rss = resident(self.pid, "VmRSS:");
        let cpu_before = cpu_time(self.pid);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for mailbox in 0..SESSIONS {
            let port = self.pop3;
            tasks.spawn(async move { retrieve_mailbox(port, mailbox).await });
        }
        let mut bytes = 0;
        while let Some(result) = tasks.join_next().await {
            bytes += result.expect("client task");
        }
        let elapsed = started.elapsed();
        let cpu = cpu_time(self.pid) - cpu_before;
        Throughput {
            messages: SESSIONS * MESSAGES_PER_MAILBOX,
            bytes,
            elapsed,
            cpu,
            start_rss,
            peak_rss: resident(self.pid, "VmHWM:"),
        }
    }

    /// One session alone: the median and the fastest time from sending RETR to reading the
    /// end of the message.
    async fn retr_latency(&self) -> (Duration, Duration) {
        let mut connection = Connection::open(self.pop3).await;
        assert!(connection.login(&bench_address(0)).await.starts_with("+OK"));
        let mut times = Vec::with_capacity(MESSAGES_PER_MAILBOX);
        for number in 1..=MESSAGES_PER_MAILBOX {
            let started = Instant::now();
            let status = connection.command(&format!("RETR {number}")).await;
            assert!(status.starts_with("+OK"), "RETR {number}: {status}");
            connection.until_terminator().await;
            times.push(started.elapsed());
        }
        assert_eq!(connection.command("QUIT").await, "+OK bye");
        times.sort();
        (times[times.len() / 2], times[0])
    }

    async fn idle_sessions(&self, count: usize) -> Idle {
        settle().await;
        let before = resident(self.pid, "VmRSS:");

        // Step one: connections that got their greeting and wait in AUTHORIZATION.
        let limit = Arc::new(tokio::sync::Semaphore::new(OPENING_AT_ONCE));
        let mut opening = tokio::task::JoinSet::new();
        for index in 0..count {
            let (port, limit) = (self.pop3, limit.clone());
            opening.spawn(async move {
                let _permit = limit.acquire().await.expect("semaphore open");
                (index, Connection::open(port).await)
            });
        }
        let mut connections = Vec::with_capacity(count);
        while let Some(result) = opening.join_next().await {
            connections.push(result.expect("opening task"));
        }
        settle().await;
        let greeted = resident(self.pid, "VmRSS:");

        // Step two: each logs in to its own mailbox and stays idle in TRANSACTION.
        let mut logging_in = tokio::task::JoinSet::new();
        for (index, mut connection) in connections {
            let limit = limit.clone();
            logging_in.spawn(async move {
                let _permit = limit.acquire().await.expect("semaphore open");
                let reply = connection.login(&bench_address(index)).await;
                assert!(reply.starts_with("+OK"), "login {index}: {reply}");
                connection
            });
        }
        let mut sessions = Vec::with_capacity(count);
        while let Some(result) = logging_in.join_next().await {
            sessions.push(result.expect("login task"));
        }
        settle().await;
        let logged_in = resident(self.pid, "VmRSS:");
        assert!(
            self.server.log_text().matches("maildrop opened").count() >= count,
            "not every idle session opened its maildrop"
        );
        drop(sessions);

        let per = |from: u64, to: u64| to.saturating_sub(from) / count.max(1) as u64;
        Idle {
            count,
            before,
            greeted,
            logged_in,
            per_greeted: per(before, greeted),
            per_logged_in: per(before, logged_in),
        }
    }
}

/// One session of the throughput run: login, RETR of every message, QUIT. Returns the bytes
/// of the message bodies received.
async fn retrieve_mailbox(port: u16, mailbox: usize) -> u64 {
    let mut connection = Connection::open(port).await;
    let reply = connection.login(&bench_address(mailbox)).await;
    assert_eq!(
        reply,
        format!("+OK logged in, {MESSAGES_PER_MAILBOX} messages")
    );
    let mut bytes = 0;
    for number in 1..=MESSAGES_PER_MAILBOX {
        let status = connection.command(&format!("RETR {number}")).await;
        assert!(status.starts_with("+OK"), "RETR {number}: {status}");
        let body = connection.until_terminator().await;
        // CRLF lines without leading dots: the body is the message and ".\r\n".
        assert_eq!(
            body,
            (MESSAGE_SIZE + 3) as u64,
            "RETR {number} of {mailbox}"
        );
        bytes += body;
    }
    assert_eq!(connection.command("QUIT").await, "+OK bye");
    bytes
}

/// A raw POP3 client connection.
struct Connection {
    stream: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl Connection {
    async fn open(port: u16) -> Connection {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connecting to pop3");
        let mut connection = Connection {
            stream: BufReader::new(stream),
            line: Vec::with_capacity(128),
        };
        let greeting = connection.reply().await;
        assert!(greeting.starts_with("+OK"), "greeting: {greeting}");
        connection
    }

    async fn reply(&mut self) -> String {
        self.line.clear();
        let read = self.stream.read_until(b'\n', &mut self.line).await;
        assert!(read.expect("reading a reply") > 0, "connection closed");
        String::from_utf8_lossy(&self.line).trim_end().to_string()
    }

    async fn command(&mut self, line: &str) -> String {
        let stream = self.stream.get_mut();
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("sending");
        self.reply().await
    }

    async fn login(&mut self, user: &str) -> String {
        let reply = self.command(&format!("USER {user}")).await;
        if !reply.starts_with("+OK") {
            return reply;
        }
        self.command(&format!("PASS {PASSWORD}")).await
    }

    /// Reads a multi-line body to its `.` line; the bytes read, terminator included.
    async fn until_terminator(&mut self) -> u64 {
        let mut total = 0;
        loop {
            self.line.clear();
            let read = self.stream.read_until(b'\n', &mut self.line).await;
            let read = read.expect("reading a body");
            assert!(read > 0, "connection closed inside a body");
            total += read as u64;
            if self.line == b".\r\n" {
                return total;
            }
        }
    }
}

/// A message of exactly [`MESSAGE_SIZE`] bytes in CRLF lines, none starting with a dot.
fn message(mailbox: usize, number: usize) -> Vec<u8> {
    let mut text = format!(
        "From: sender@example.test\r\nTo: {}\r\nSubject: message {number}\r\n\
         Message-ID: <{mailbox}.{number}@bench.test>\r\n\r\n",
        bench_address(mailbox)
    )
    .into_bytes();
    let line = format!("{}\r\n", "0123456789abcdef".repeat(4));
    while text.len() + line.len() <= MESSAGE_SIZE - 2 {
        text.extend_from_slice(line.as_bytes());
    }
    let last = MESSAGE_SIZE - text.len() - 2;
    text.extend(std::iter::repeat_n(b'z', last));
    text.extend_from_slice(b"\r\n");
    assert_eq!(text.len(), MESSAGE_SIZE);
    text
}

/// Lets the server finish what the last replies set off before memory is read.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// Raises this process's open-file limit to `wanted` where allowed (with prlimit, the
/// `ulimit -n` of another process: the server inherits it), and returns the limit in force.
fn raise_descriptor_limit(wanted: usize) -> usize {
    let current = soft_descriptor_limit();
    if current >= wanted {
        return current;
    }
    let pid = std::process::id().to_string();
    let raised = Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={wanted}:{wanted}")])
        .status();
    if !raised.is_ok_and(|s| s.success()) {
        // Not privileged: up to the hard limit.
        let _ = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={wanted}:")])
            .status();
    }
    let limit = soft_descriptor_limit();
    if limit < wanted {
        let _ = writeln!(
            std::io::stderr(),
            "open-file limit is {limit}, below the {wanted} wanted"
        );
    }
    limit
}

fn soft_descriptor_limit() -> usize {
    let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1024)
}

/// utime + stime of the server.
fn cpu_time(pid: u32) -> Duration {
    let (user, system) = cpu_times(pid);
    user + system
}
