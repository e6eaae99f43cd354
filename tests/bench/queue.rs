//! Outbound relay throughput of a running `mailfold serve`: messages submitted through
//! submission and relayed by the queue to a local `smtp-sink` (Postfix's test server), and how
//! the queue grows behind a slow remote.
//!
//!     cargo build --release -p mailfold
//!     cargo bench -p mailfold-tests --bench queue
//!
//! The server is the release binary (`target/release/mailfold`, or `MAILFOLD_BIN`) with the
//! api, smtp and queue roles, the generated bench directory in an LDIF file, and a static
//! route sending `example.org` to `smtp-sink` on loopback. Each run is a fresh server.
//!
//! 1. Throughput: [`MESSAGES`] messages of [`MESSAGE_SIZE`] bytes submitted by 10 and by 50
//!    connections at once (AUTH PLAIN once per connection, then MAIL, RCPT and DATA pipelined
//!    per message), each to its own `example.org` recipient. Timed from the first connection
//!    to the last message accepted by the sink, as `mailfold_queue_deliveries_total{result=
//!    "sent"}` counts it, so the figure is end to end: received, queued durably, relayed.
//! 2. Slow remote: the sink waits [`SLOW_DELAY`] before answering each DATA, the queue keeps
//!    [`SLOW_CONNECTIONS`] connections to it, and [`SLOW_MESSAGES`] messages are submitted as
//!    fast as they are taken. The queue depth (`mailfold_queue_messages`) is sampled every
//!    second until it is empty again.
//!
//! Clients, server and sink share the machine's cores over loopback, without TLS. Prints
//! markdown tables.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailfold_tests::binary::{Server, curl, free_port, mailfold_binary};
use mailfold_tests::fixture::bench_directory;
use mailfold_tests::process::{cpu_times, pid_of, resident};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Messages of each throughput run.
const MESSAGES: usize = 2000;
/// Size of each message as sent.
const MESSAGE_SIZE: usize = 4096;
/// Connections at once, one run each.
const CONCURRENCY: [usize; 2] = [10, 50];
/// Messages of the slow-remote run.
const SLOW_MESSAGES: usize = 200;
/// The sink's wait before each DATA reply in the slow-remote run, in seconds.
const SLOW_DELAY: u64 = 1;
/// The queue's connections to the slow sink.
const SLOW_CONNECTIONS: usize = 4;

fn main() {
    let binary = mailfold_binary();
    assert!(
        binary.is_file(),
        "{} is missing: cargo build --release -p mailfold",
        binary.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let folder = tempfile::tempdir().unwrap();
    let seed = folder.path().join("bench.ldif");
    fs::write(&seed, bench_directory(1)).unwrap();

    println!(
        "| concurrency | messages | submitted in | relayed in | relayed/s | server CPU/msg | peak RSS |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    // MAILFOLD_BENCH_MESSAGES makes the runs longer, for profiling the server with perf.
    let messages = std::env::var("MAILFOLD_BENCH_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(MESSAGES);
    for concurrency in CONCURRENCY {
        let run = folder.path().join(format!("run-{concurrency}"));
        let sink = Sink::start(0);
        let bench = Bench::start(&run, &seed, sink.port, 16);
        let (submitted, relayed) = runtime.block_on(bench.throughput(concurrency, messages));
        let cpu = {
            let (user, system) = cpu_times(bench.pid);
            user + system
        };
        println!(
            "| {concurrency} | {messages} | {:.2} s | {:.2} s | {:.0} | {:.2} ms | {} MiB |",
            submitted.as_secs_f64(),
            relayed.as_secs_f64(),
            messages as f64 / relayed.as_secs_f64(),
            cpu.as_secs_f64() * 1000.0 / messages as f64,
            resident(bench.pid, "VmHWM:") >> 20
        );
    }

    println!();
    println!(
        "Slow remote ({SLOW_DELAY} s per DATA, {SLOW_CONNECTIONS} connections), {SLOW_MESSAGES} messages:"
    );
    println!();
    println!("| second | queued | relayed |");
    println!("| --- | --- | --- |");
    let sink = Sink::start(SLOW_DELAY);
    let bench = Bench::start(
        &folder.path().join("slow"),
        &seed,
        sink.port,
        SLOW_CONNECTIONS,
    );
    let started = Instant::now();
    let submission = bench.submission;
    let submit = runtime.spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for connection in 0..10 {
            tasks.spawn(submit_share(submission, connection, 10, SLOW_MESSAGES));
        }
        let mut accepted = 0;
        while let Some(result) = tasks.join_next().await {
            accepted += result.expect("client task");
        }
        (accepted, started.elapsed())
    });
    let mut second = 0;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        second += 1;
        let queued = bench.gauge("mailfold_queue_messages");
        let sent = bench.counter("mailfold_queue_deliveries_total{result=\"sent\"}");
        if second <= 5 || second % 10 == 0 || sent as usize >= SLOW_MESSAGES {
            println!("| {second} | {queued} | {sent} |");
        }
        if sent as usize >= SLOW_MESSAGES {
            break;
        }
        assert!(second < 600, "the slow run did not drain");
    }
    let (accepted, submitted) = runtime.block_on(submit).expect("submission task");
    assert_eq!(accepted, SLOW_MESSAGES);
    println!();
    println!(
        "all {SLOW_MESSAGES} accepted after {:.1} s",
        submitted.as_secs_f64()
    );
    println!();
    println!("drained in {:.1} s", started.elapsed().as_secs_f64());
}

/// `smtp-sink` on a free port; killed on drop.
struct Sink {
    child: Child,
    port: u16,
}

impl Sink {
    fn start(delay: u64) -> Sink {
        let port = free_port();
        let mut command = Command::new("/usr/sbin/smtp-sink");
        if delay > 0 {
            command.args(["-w", &delay.to_string()]);
        }
        // As root it must drop privileges (-u); it answers every command with success.
        let child = command
            .args(["-u", "nobody"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("1024")
            .stdout(Stdio::null())
            .spawn()
            .expect("smtp-sink (tests/install-deps.sh installs postfix)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "smtp-sink did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sink { child, port }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Bench {
    _server: Server,
    pid: u32,
    api: u16,
    submission: u16,
}

impl Bench {
    fn start(folder: &Path, seed: &Path, sink: u16, connections: usize) -> Bench {
        fs::create_dir_all(folder).unwrap();
        let (api, submission) = (free_port(), free_port());
        let config = folder.join("bench.toml");
        fs::write(
            &config,
            format!(
                "roles = [\"api\", \"smtp\", \"queue\"]\nstate_dir = \"var\"\n\
                 [log]\nlevel = \"warn\"\n\
                 [directory]\nbackend = \"ldif\"\nbase_dn = \"dc=example,dc=test\"\n\
                 [directory.ldif]\npath = \"var/directory.ldif\"\nseed = {:?}\n\
                 [shards]\nlocal = \"var/mail\"\n\
                 [api]\nlisten = [\"127.0.0.1:{api}\"]\n\
                 [smtp]\nhostname = \"mx.bench.test\"\nmx = []\nsubmission = [\"127.0.0.1:{submission}\"]\n\
                 submissions = []\nlmtp = []\nplaintext = \"always\"\n\
                 max_connections = 1000000\nmax_connections_per_ip = 1000000\n\
                 [auth]\nmax_failures_per_ip = 1000000\n\
                 [queue]\nper_destination = {connections}\nscan_interval = \"1s\"\n\
                 [queue.routes]\n\"example.org\" = \"127.0.0.1:{sink}\"\n",
                seed.display().to_string()
            ),
        )
        .unwrap();
        let ready = format!("http://127.0.0.1:{api}/readyz");
        let server = Server::start(&config, folder.join("serve.log"), &ready);
        let pid = pid_of(&config);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", submission)).is_err() {
            assert!(Instant::now() < deadline, "no submission listener");
            std::thread::sleep(Duration::from_millis(50));
        }
        Bench {
            _server: server,
            pid,
            api,
            submission,
        }
    }

    /// Submits `messages` over `concurrency` connections; returns the time until the last
    /// 250 and the time until the last relay.
    async fn throughput(&self, concurrency: usize, messages: usize) -> (Duration, Duration) {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for connection in 0..concurrency {
            let port = self.submission;
            tasks.spawn(async move { submit_share(port, connection, concurrency, messages).await });
        }
        let mut accepted = 0;
        while let Some(result) = tasks.join_next().await {
            accepted += result.expect("client task");
        }
        assert_eq!(accepted, messages, "messages accepted");
        let submitted = started.elapsed();
        loop {
            let sent = self.counter("mailfold_queue_deliveries_total{result=\"sent\"}");
            if sent as usize >= messages {
                return (submitted, started.elapsed());
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "relay did not finish"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn metrics(&self) -> String {
        curl(&format!("http://127.0.0.1:{}/metrics", self.api))
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The value of the first series line starting with `series`.
    fn counter(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    }

    /// The sum of every label of gauge `name`.
    fn gauge(&self, name: &str) -> u64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

/// One connection's share: messages `connection`, `connection + concurrency`, ... Returns
/// how many got their 250.
async fn submit_share(port: u16, connection: usize, concurrency: usize, messages: usize) -> usize {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connecting");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let mut client = BufReader::new(stream);
    expect(&mut client, 220).await;
    send(&mut client, b"EHLO bench.test\r\n").await;
    expect(&mut client, 250).await;
    // AUTH PLAIN "\0m00000@bench.test\0frank-pw".
    send(
        &mut client,
        b"AUTH PLAIN AG0wMDAwMEBiZW5jaC50ZXN0AGZyYW5rLXB3\r\n",
    )
    .await;
    expect(&mut client, 235).await;
    let mut accepted = 0;
    for number in (connection..messages).step_by(concurrency) {
        let group = format!(
            "MAIL FROM:<m00000@bench.test> SIZE={MESSAGE_SIZE}\r\nRCPT TO:<r{number}@example.org>\r\nDATA\r\n"
        );
        send(&mut client, group.as_bytes()).await;
        expect(&mut client, 250).await;
        expect(&mut client, 250).await;
        expect(&mut client, 354).await;
        let mut body = message(number);
        body.extend_from_slice(b".\r\n");
        send(&mut client, &body).await;
        expect(&mut client, 250).await;
        accepted += 1;
    }
    send(&mut client, b"QUIT\r\n").await;
    accepted
}

async fn send(client: &mut BufReader<TcpStream>, bytes: &[u8]) {
    client.get_mut().write_all(bytes).await.expect("sending");
}

/// Reads one whole reply and checks its code.
async fn expect(client: &mut BufReader<TcpStream>, code: u16) {
    loop {
        let mut line = String::new();
        let read = client.read_line(&mut line).await.expect("reading a reply");
        assert!(read > 0, "connection closed waiting for {code}");
        assert!(
            line.starts_with(&code.to_string()),
            "expected {code}, got {line}"
        );
        if line.as_bytes().get(3) != Some(&b'-') {
            return;
        }
    }
}

/// A message of exactly [`MESSAGE_SIZE`] bytes.
fn message(number: usize) -> Vec<u8> {
    let mut text = format!(
        "From: m00000@bench.test\r\nTo: r{number}@example.org\r\nSubject: relay {number}\r\n\
         Message-ID: <relay-{number}@bench.test>\r\n\r\n"
    )
    .into_bytes();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd\r\n";
    while text.len() + line.len() <= MESSAGE_SIZE - 2 {
        text.extend_from_slice(line);
    }
    text.resize(MESSAGE_SIZE - 2, b'x');
    text.extend_from_slice(b"\r\n");
    assert_eq!(text.len(), MESSAGE_SIZE);
    text
}
