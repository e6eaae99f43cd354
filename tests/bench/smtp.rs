//! SMTP delivery throughput and memory of a running `mailfold serve`, MX listener: messages
//! delivered per second by concurrent connections, the server's CPU time per message and peak
//! memory, and what one very large message costs.
//!
//!     cargo build --release -p mailfold
//!     cargo bench -p mailfold-tests --bench smtp
//!
//! The server is the release binary beside the bench (`target/release/mailfold`, or
//! `MAILFOLD_BIN`), run with a generated directory of [`MAILBOXES`] mailboxes under one tenant
//! (`{SSHA}` passwords, as the POP3 bench), served three ways: the LDIF backend; a private
//! slapd loaded with the same LDIF, behind the directory's default answer cache (60 s, so the
//! runs search LDAP about once per mailbox); and the same slapd with the cache off
//! (`max_entries = 0`), so every RCPT searches LDAP. Connection limits are raised out of the
//! way. The whole bench takes 1 to 1.5 minutes on two cores.
//!
//! 1. Throughput: [`MESSAGES`] messages of [`MESSAGE_SIZE`] bytes, message `k` to mailbox
//!    `k % MAILBOXES`, shared out over 1, 10 and 50 connections. Each connection sends EHLO
//!    once, then per message MAIL, RCPT and DATA in one pipelined group (RFC 2920 §3.1: DATA
//!    may end a group), the body after the 354, and waits for the 250. A fresh server per run,
//!    so its VmHWM is that run's peak. Messages delivered are counted in the Maildirs after the
//!    run; CPU time is the server's utime + stime from /proc/<pid>/stat.
//! 2. One message of [`LARGE_SIZE`] bytes, generated block by block as it is sent (the client
//!    holds one 64 KiB block), to one mailbox: time from DATA to the 250, the server's CPU
//!    time and peak RSS.
//!
//! The clients run in this process on the same two cores as the server, over loopback and
//! without TLS; the Maildirs are on the disk under the temporary folder, fsynced as in
//! production. Prints one markdown table.

use mailfold_tests::fixture::{bench_address, bench_directory};
use mailfold_tests::process::{cpu_times, pid_of, resident};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mailfold_tests::binary::{Server, free_port, mailfold_binary};
use mailfold_tests::fixture::{READER_ACCOUNT, SUFFIX};
use mailfold_tests::slapd::{Slapd, SlapdOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Messages of each throughput run.
const MESSAGES: usize = 5000;
/// Mailboxes they are spread over.
const MAILBOXES: usize = 100;
/// Size of each message as sent.
const MESSAGE_SIZE: usize = 4096;
/// Connections at once, one run each.
const CONCURRENCY: [usize; 3] = [1, 10, 50];
/// Size of the large message.
const LARGE_SIZE: u64 = 1 << 30;
/// The block the large message is sent in.
const BLOCK_SIZE: usize = 64 * 1024;
/// The goals of the role.
const CPU_GOAL: Duration = Duration::from_millis(1);
const RSS_GOAL_BYTES: u64 = 64 << 20;

fn main() {
    let binary = mailfold_binary();
    assert!(
        binary.is_file(),
        "{} is missing: cargo build --release -p mailfold",
        binary.display()
    );
    let started = Instant::now();
    let folder = tempfile::tempdir().unwrap();
    let seed = folder.path().join("bench.ldif");
    fs::write(&seed, bench_directory(MAILBOXES)).unwrap();
    let slapd = Slapd::start(SlapdOptions {
        suffix: SUFFIX.to_string(),
        data: vec![seed.clone()],
        tls: false,
    })
    .unwrap_or_else(|e| panic!("starting slapd: {e}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut runs = Vec::new();
    let backends = [
        Backend::Ldif,
        Backend::Ldap(&slapd),
        Backend::LdapUncached(&slapd),
    ];
    for backend in backends {
        for concurrency in CONCURRENCY {
            let place = folder
                .path()
                .join(format!("{}-{concurrency}", backend.name()));
            let bench = Bench::start(&place, &seed, &backend);
            runs.push(runtime.block_on(bench.transfer(backend.name(), concurrency)));
        }
    }
    let large = {
        let bench = Bench::start(&folder.path().join("large"), &seed, &Backend::Ldif);
        runtime.block_on(bench.large())
    };
    let total = started.elapsed();

    print_table(&binary, &runs, &large, total);
}

/// Prints the results as one markdown table, with the goals.
fn print_table(binary: &Path, runs: &[Run], large: &Large, total: Duration) {
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    println!(
        "SMTP bench: {} (MX listener; {MESSAGES} messages of {MESSAGE_SIZE} bytes to \
         {MAILBOXES} mailboxes per run; whole bench {total:.1?})",
        binary.display()
    );
    println!();
    println!(
        "| directory | connections | delivered | messages/s | server CPU per message | server RSS start / peak | goals (CPU < 1 ms; RSS < 64 MiB at c=50) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for run in runs {
        let per_message = run.cpu / run.delivered.max(1) as u32;
        let rss_goal = if run.concurrency == 50 {
            format!("; RSS {}", verdict(run.peak_rss < RSS_GOAL_BYTES))
        } else {
            String::new()
        };
        println!(
            "| {} | {} | {} | {:.0} | {:.0} µs ({:.0}% kernel) | {:.1} / {:.1} MiB | CPU {}{rss_goal} |",
            run.backend,
            run.concurrency,
            run.delivered,
            run.delivered as f64 / run.elapsed.as_secs_f64(),
            per_message.as_secs_f64() * 1e6,
            100.0 * run.system.as_secs_f64() / run.cpu.as_secs_f64().max(1e-9),
            mib(run.start_rss),
            mib(run.peak_rss),
            verdict(per_message < CPU_GOAL),
        );
    }
    println!(
        "| ldif | 1, one message of {:.0} MiB | {} ({:.0} MiB stored) | {:.1?} DATA to 250 ({:.0} MB/s) | {:.1?} in all | {:.1} / {:.1} MiB | RSS {} |",
        mib(large.sent),
        large.delivered,
        mib(large.stored),
        large.elapsed,
        large.sent as f64 / 1e6 / large.elapsed.as_secs_f64(),
        large.cpu,
        mib(large.start_rss),
        mib(large.peak_rss),
        verdict(large.peak_rss < RSS_GOAL_BYTES),
    );
}

/// Where the server finds its directory.
enum Backend<'a> {
    /// `backend = "ldif"`, seeded with the generated file.
    Ldif,
    /// `backend = "ldap"`, the private slapd loaded with the same file.
    Ldap(&'a Slapd),
    /// The same, with the directory's answer cache off: every RCPT is an LDAP search.
    LdapUncached(&'a Slapd),
}

impl Backend<'_> {
    fn name(&self) -> &'static str {
        match self {
            Backend::Ldif => "ldif",
            Backend::Ldap(_) => "ldap (slapd)",
            Backend::LdapUncached(_) => "ldap (slapd), cache off",
        }
    }

    /// The `[directory]` sections of the configuration.
    fn config(&self, seed: &Path) -> String {
        match self {
            Backend::Ldif => format!(
                "[directory]\nbackend = \"ldif\"\nbase_dn = \"{SUFFIX}\"\n\
                 [directory.ldif]\npath = \"var/directory.ldif\"\nseed = {:?}\n",
                seed.display().to_string()
            ),
            Backend::Ldap(slapd) | Backend::LdapUncached(slapd) => format!(
                "[directory]\nbackend = \"ldap\"\nbase_dn = \"{SUFFIX}\"\n\
                 [directory.ldap]\nurl = \"{}\"\nbind_dn = \"{}\"\nbind_password = \"{}\"\n\
                 timeout = \"5s\"\n{}",
                slapd.url(),
                READER_ACCOUNT.0,
                READER_ACCOUNT.1,
                match self {
                    Backend::LdapUncached(_) => "[directory.cache]\nmax_entries = 0\n",
                    _ => "",
                }
            ),
        }
    }
}

/// A running server.
struct Bench {
    _server: Server,
    pid: u32,
    mx: u16,
    shard: PathBuf,
}

/// Figures of one throughput run.
struct Run {
    backend: &'static str,
    concurrency: usize,
    delivered: usize,
    elapsed: Duration,
    cpu: Duration,
    /// The part of `cpu` spent in the kernel.
    system: Duration,
    start_rss: u64,
    peak_rss: u64,
}

/// Figures of the large message.
struct Large {
    sent: u64,
    delivered: usize,
    stored: u64,
    elapsed: Duration,
    cpu: Duration,
    start_rss: u64,
    peak_rss: u64,
}

impl Bench {
    /// A fresh server in `folder`, its own state and Maildirs, the MX listener only.
    fn start(folder: &Path, seed: &Path, backend: &Backend<'_>) -> Bench {
        fs::create_dir_all(folder).unwrap();
        let (api, mx) = (free_port(), free_port());
        let config = folder.join("bench.toml");
        fs::write(
            &config,
            format!(
                "roles = [\"api\", \"smtp\"]\nstate_dir = \"var\"\n\
                 [log]\nlevel = \"info\"\n\
                 {}\
                 [shards]\nlocal = \"var/mail\"\n\
                 [api]\nlisten = [\"127.0.0.1:{api}\"]\n\
                 [smtp]\nhostname = \"mx.bench.test\"\nmx = [\"127.0.0.1:{mx}\"]\n\
                 submission = []\nsubmissions = []\nlmtp = []\n\
                 max_message_size = {}\nmax_connections = 1000000\n\
                 max_connections_per_ip = 1000000\n",
                backend.config(seed),
                2 * LARGE_SIZE
            ),
        )
        .unwrap();
        let ready = format!("http://127.0.0.1:{api}/readyz");
        let server = Server::start(&config, folder.join("serve.log"), &ready);
        let pid = pid_of(&config);

        // The api answers before the smtp listener is bound.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", mx)).is_err() {
            assert!(Instant::now() < deadline, "no mx listener");
            std::thread::sleep(Duration::from_millis(50));
        }
        Bench {
            _server: server,
            pid,
            mx,
            shard: folder.join("var/mail"),
        }
    }

    /// The throughput run: [`MESSAGES`] messages over `concurrency` connections.
    async fn transfer(&self, backend: &'static str, concurrency: usize) -> Run {
        let start_rss = resident(self.pid, "VmRSS:");
        let (user_before, system_before) = cpu_times(self.pid);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for connection in 0..concurrency {
            let port = self.mx;
            tasks.spawn(async move { send_share(port, connection, concurrency).await });
        }
        let mut accepted = 0;
        while let Some(result) = tasks.join_next().await {
            accepted += result.expect("client task");
        }
        let elapsed = started.elapsed();
        let (user, system) = cpu_times(self.pid);
        let system = system - system_before;
        let cpu = user - user_before + system;
        let peak_rss = resident(self.pid, "VmHWM:");

        // The 250s are promises: the Maildirs must hold every message.
        let delivered = maildir_messages(&self.shard).len();
        assert_eq!(accepted, MESSAGES, "messages accepted");
        assert_eq!(delivered, MESSAGES, "messages in the maildirs");
        Run {
            backend,
            concurrency,
            delivered,
            elapsed,
            cpu,
            system,
            start_rss,
            peak_rss,
        }
    }

    /// One message of [`LARGE_SIZE`] bytes, streamed.
    async fn large(&self) -> Large {
        let start_rss = resident(self.pid, "VmRSS:");
        let cpu_before = total(cpu_times(self.pid));
        let mut connection = Connection::open(self.mx).await;
        connection.ehlo().await;
        let to = bench_address(0);
        connection
            .send(format!("MAIL FROM:<sender@example.test> SIZE={LARGE_SIZE}\r\nRCPT TO:<{to}>\r\nDATA\r\n").as_bytes())
            .await;
        connection.expect(250, "MAIL").await;
        connection.expect(250, "RCPT").await;
        connection.expect(354, "DATA").await;

        let started = Instant::now();
        let sent = stream_large(&mut connection, &to).await;
        connection.expect(250, "end of the large message").await;
        let elapsed = started.elapsed();
        connection.quit().await;
        let cpu = total(cpu_times(self.pid)) - cpu_before;
        let peak_rss = resident(self.pid, "VmHWM:");

        let stored = maildir_messages(&self.shard);
        assert_eq!(stored.len(), 1, "the large message in the maildir");
        let size = fs::metadata(&stored[0]).unwrap().len();
        assert!(size > sent, "stored {size} bytes of {sent} sent");
        Large {
            sent,
            delivered: stored.len(),
            stored: size,
            elapsed,
            cpu,
            start_rss,
            peak_rss,
        }
    }
}

/// One connection's share of the throughput run: messages `connection`, `connection +
/// concurrency`, ... Returns how many got their 250.
async fn send_share(port: u16, connection: usize, concurrency: usize) -> usize {
    let mut client = Connection::open(port).await;
    client.ehlo().await;
    let mut accepted = 0;
    for number in (connection..MESSAGES).step_by(concurrency) {
        let to = bench_address(number % MAILBOXES);
        // RFC 2920 §3.1: MAIL, RCPT and DATA in one group; the body waits for the 354.
        let group = format!(
            "MAIL FROM:<sender@example.test> SIZE={MESSAGE_SIZE}\r\nRCPT TO:<{to}>\r\nDATA\r\n"
        );
        client.send(group.as_bytes()).await;
        client.expect(250, "MAIL").await;
        client.expect(250, "RCPT").await;
        client.expect(354, "DATA").await;
        let mut body = message(&to, number);
        // RFC 5321 §4.1.1.4: the body ends with CRLF "." CRLF.
        body.extend_from_slice(b".\r\n");
        client.send(&body).await;
        client.expect(250, "end of data").await;
        accepted += 1;
    }
    client.quit().await;
    accepted
}

/// Sends the large message: headers, then [`BLOCK_SIZE`] blocks of 78-byte lines until
/// [`LARGE_SIZE`] bytes are out, then the end of data. Returns the bytes of the message.
async fn stream_large(connection: &mut Connection, to: &str) -> u64 {
    let header = format!(
        "From: sender@example.test\r\nTo: {to}\r\nSubject: large\r\n\
         Message-ID: <large@bench.test>\r\n\r\n"
    );
    connection.send(header.as_bytes()).await;
    // Base64-like lines of 76 characters; none starts with a dot.
    let line = format!(
        "{}\r\n",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ABCDEFGHIJKL"
    );
    let block: Vec<u8> = line.as_bytes().repeat(BLOCK_SIZE / line.len());
    let mut sent = header.len() as u64;
    while sent < LARGE_SIZE {
        connection.send(&block).await;
        sent += block.len() as u64;
    }
    connection.send(b".\r\n").await;
    sent
}

/// A raw SMTP client connection.
struct Connection {
    stream: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl Connection {
    async fn open(port: u16) -> Connection {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connecting to the mx listener");
        stream.set_nodelay(true).expect("setting TCP_NODELAY");
        let mut connection = Connection {
            stream: BufReader::new(stream),
            line: Vec::with_capacity(256),
        };
        connection.expect(220, "greeting").await;
        connection
    }

    async fn send(&mut self, bytes: &[u8]) {
        let stream = self.stream.get_mut();
        stream.write_all(bytes).await.expect("sending");
    }

    /// Reads one reply, all its lines (RFC 5321 §4.2.1: `-` after the code continues it), and
    /// checks its code; returns its text.
    async fn expect(&mut self, code: u16, what: &str) -> String {
        let mut text = String::new();
        loop {
            self.line.clear();
            let read = self.stream.read_until(b'\n', &mut self.line).await;
            assert!(
                read.expect("reading a reply") > 0,
                "connection closed at {what}"
            );
            let line = String::from_utf8_lossy(&self.line).trim_end().to_string();
            assert!(
                line.starts_with(&code.to_string()),
                "{what}: expected {code}, got {line:?}"
            );
            let last = line.as_bytes().get(3) != Some(&b'-');
            text.push_str(&line);
            text.push('\n');
            if last {
                return text;
            }
        }
    }

    async fn ehlo(&mut self) {
        self.send(b"EHLO client.bench.test\r\n").await;
        let capabilities = self.expect(250, "EHLO").await;
        assert!(
            capabilities.contains("PIPELINING"),
            "no PIPELINING: {capabilities}"
        );
    }

    async fn quit(&mut self) {
        self.send(b"QUIT\r\n").await;
        self.expect(221, "QUIT").await;
    }
}

/// A message of exactly [`MESSAGE_SIZE`] bytes in CRLF lines, none starting with a dot.
fn message(to: &str, number: usize) -> Vec<u8> {
    let mut text = format!(
        "From: sender@example.test\r\nTo: {to}\r\nSubject: message {number}\r\n\
         Message-ID: <{number}@bench.test>\r\n\r\n"
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

/// The message files in every Maildir's `new/` under the shard root.
fn maildir_messages(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        let in_new = folder.file_name().is_some_and(|n| n == "new");
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file() && in_new {
                found.push(entry.path());
            }
        }
    }
    found
}

fn total((user, system): (Duration, Duration)) -> Duration {
    user + system
}
