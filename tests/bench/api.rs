//! JSON API throughput of a running `mailfold serve`: reads and alias writes per second, with
//! the server's CPU time per request, on the LDIF backend and on a private slapd.
//!
//!     cargo build --release -p mailfold
//!     cargo bench -p mailfold-tests --bench api
//!
//! The server is the release binary (`target/release/mailfold`, or `MAILFOLD_BIN`) with only
//! the api role, on the quick start plus a generated tenant of [`MAILBOXES`] mailboxes, so the
//! LDIF file has the size of a small provider's directory. The tenant administrator jane
//! (`{SSHA}` password) works with a bearer token. Failed-login limits are out of the way.
//!
//! 1. Reads: [`READERS`] keep-alive connections each asking `GET /v1/domains/acme.test/aliases`
//!    for [`READ_TIME`].
//! 2. Logins: the same with HTTP Basic instead of the token: a directory bind per request.
//! 3. Writes: [`WRITERS`] connections creating [`ALIASES`] aliases in all, then deleting them.
//!    Each write is made as jane (proxied authorization on slapd); on the LDIF backend each
//!    rewrites the whole file durably.
//!
//! The clients are raw HTTP/1.1 over loopback in this process, on the same two cores as the
//! server. Prints one markdown table.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use mailfold_tests::binary::{Server, free_port, mailfold_binary};
use mailfold_tests::fixture::{API_ACCOUNT, SUFFIX, bench_directory};
use mailfold_tests::process::{cpu_times, pid_of};
use mailfold_tests::slapd::{Slapd, SlapdOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Mailboxes of the generated tenant.
const MAILBOXES: usize = 10_000;
/// Concurrent readers.
const READERS: usize = 20;
/// How long each read run lasts.
const READ_TIME: Duration = Duration::from_secs(5);
/// Concurrent writers.
const WRITERS: usize = 4;
/// Aliases created (and deleted) per write run.
const ALIASES: usize = 400;
const OPERATOR_TOKEN: &str = "bench-operator-token-0123456789abcdefghij";

fn main() {
    let binary = mailfold_binary();
    assert!(
        binary.is_file(),
        "{} is missing: cargo build --release -p mailfold",
        binary.display()
    );
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

    println!(
        "API bench: {} ({MAILBOXES} extra mailboxes in the directory; {READERS} readers for \
         {READ_TIME:?}, {WRITERS} writers of {ALIASES} aliases)\n",
        binary.display()
    );
    println!(
        "| directory | workload | requests | requests/s | p50 | p99 | server CPU per request |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (name, slapd) in [("ldif", None), ("ldap (slapd)", Some(&slapd))] {
        let place = folder.path().join(name.replace(' ', "-"));
        let bench = Bench::start(&place, &seed, slapd);
        let token = runtime.block_on(bench.token());
        let bearer = format!("Bearer {token}");
        let basic = "Basic amFuZUBhY21lOmphbmUtcHc="; // jane@acme:jane-pw
        for (workload, auth) in [
            ("list aliases, token", bearer.as_str()),
            ("list aliases, Basic", basic),
        ] {
            let run = runtime.block_on(bench.reads(auth));
            run.print(name, workload);
        }
        let (create, delete) = runtime.block_on(bench.writes(&bearer));
        create.print(name, "create alias");
        delete.print(name, "delete alias");
    }
}

/// Figures of one run.
struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
    cpu: Duration,
}

impl Run {
    fn print(mut self, backend: &str, workload: &str) {
        self.latencies.sort();
        let at = |q: f64| {
            let index = ((self.latencies.len() as f64 * q) as usize).min(self.latencies.len() - 1);
            self.latencies[index]
        };
        let count = self.latencies.len();
        println!(
            "| {backend} | {workload} | {count} | {:.0} | {:.2?} | {:.2?} | {:.0?} |",
            count as f64 / self.elapsed.as_secs_f64(),
            at(0.5),
            at(0.99),
            self.cpu / count as u32
        );
    }
}

/// A running server.
struct Bench {
    _server: Server,
    pid: u32,
    port: u16,
}

impl Bench {
    fn start(folder: &Path, seed: &Path, slapd: Option<&Slapd>) -> Bench {
        fs::create_dir_all(folder).unwrap();
        let port = free_port();
        let token = folder.join("operator-token");
        fs::write(&token, OPERATOR_TOKEN).unwrap();
        let directory = match slapd {
            None => format!(
                "[directory]\nbackend = \"ldif\"\nbase_dn = \"{SUFFIX}\"\n\
                 [directory.ldif]\npath = \"var/directory.ldif\"\nseed = {:?}\n",
                seed.display().to_string()
            ),
            Some(slapd) => format!(
                "[directory]\nbackend = \"ldap\"\nbase_dn = \"{SUFFIX}\"\n\
                 [directory.ldap]\nurl = \"{}\"\nbind_dn = \"{}\"\nbind_password = \"{}\"\n\
                 timeout = \"5s\"\n",
                slapd.url(),
                API_ACCOUNT.0,
                API_ACCOUNT.1
            ),
        };
        let config = folder.join("bench.toml");
        fs::write(
            &config,
            format!(
                "roles = [\"api\"]\nstate_dir = \"var\"\n[log]\nlevel = \"warn\"\n{directory}\
                 [shards]\nlocal = \"var/mail\"\n\
                 [api]\nlisten = [\"127.0.0.1:{port}\"]\noperator_token_file = {:?}\n\
                 max_connections_per_ip = 1000\n\
                 [auth]\nfailure_delay = \"0ms\"\nmax_failures_per_ip = 1000000\nmax_failures_per_account = 1000000\n",
                token.display().to_string()
            ),
        )
        .unwrap();
        let ready = format!("http://127.0.0.1:{port}/readyz");
        let server = Server::start(&config, folder.join("serve.log"), &ready);
        let pid = pid_of(&config);
        Bench {
            _server: server,
            pid,
            port,
        }
    }

    /// A token for jane, and acme's alias limit lifted for the write runs.
    async fn token(&self) -> String {
        let mut client = Client::open(self.port).await;
        let basic = "Basic amFuZUBhY21lOmphbmUtcHc=";
        let (status, body) = client.call("POST", "/v1/tokens", basic, None).await;
        assert_eq!(status, 201, "{body}");
        let issued: serde_json::Value = serde_json::from_str(&body).unwrap();
        let operator = format!("Bearer {OPERATOR_TOKEN}");
        let lift = r#"{"limits": {"max_aliases": null}}"#;
        let (status, body) = client
            .call("PATCH", "/v1/admin/tenants/acme", &operator, Some(lift))
            .await;
        assert_eq!(status, 200, "{body}");
        issued["token"].as_str().expect("a token").to_string()
    }

    async fn reads(&self, auth: &str) -> Run {
        let cpu_before = total(cpu_times(self.pid));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..READERS {
            let (port, auth) = (self.port, auth.to_string());
            tasks.push(tokio::spawn(async move {
                let mut client = Client::open(port).await;
                let mut latencies = Vec::new();
                while started.elapsed() < READ_TIME {
                    let asked = Instant::now();
                    let (status, body) = client
                        .call("GET", "/v1/domains/acme.test/aliases", &auth, None)
                        .await;
                    assert_eq!(status, 200, "{body}");
                    latencies.push(asked.elapsed());
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.unwrap());
        }
        Run {
            latencies,
            elapsed: started.elapsed(),
            cpu: total(cpu_times(self.pid)) - cpu_before,
        }
    }

    /// Creates [`ALIASES`] aliases over [`WRITERS`] connections, then deletes them.
    async fn writes(&self, auth: &str) -> (Run, Run) {
        let create = self.write_run(auth, true).await;
        let delete = self.write_run(auth, false).await;
        (create, delete)
    }

    async fn write_run(&self, auth: &str, create: bool) -> Run {
        let cpu_before = total(cpu_times(self.pid));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let (port, auth) = (self.port, auth.to_string());
            tasks.push(tokio::spawn(async move {
                let mut client = Client::open(port).await;
                let mut latencies = Vec::new();
                for index in (writer..ALIASES).step_by(WRITERS) {
                    let address = format!("bench-{index}@acme.test");
                    let asked = Instant::now();
                    let (status, body) = if create {
                        let body =
                            format!(r#"{{"address": "{address}", "targets": ["bob@acme.test"]}}"#);
                        let path = "/v1/domains/acme.test/aliases";
                        client.call("POST", path, &auth, Some(&body)).await
                    } else {
                        let path = format!("/v1/domains/acme.test/aliases/{address}");
                        client.call("DELETE", &path, &auth, None).await
                    };
                    assert!(status == 201 || status == 204, "{status} {body}");
                    latencies.push(asked.elapsed());
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.unwrap());
        }
        Run {
            latencies,
            elapsed: started.elapsed(),
            cpu: total(cpu_times(self.pid)) - cpu_before,
        }
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    async fn open(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// Sends one request; the status and body of the answer.
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        auth: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.reader
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();

        let mut line = String::new();
        self.reader.read_line(&mut line).await.unwrap();
        let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut answer = vec![0; length];
        self.reader.read_exact(&mut answer).await.unwrap();
        (status, String::from_utf8_lossy(&answer).into_owned())
    }
}

fn total((user, system): (Duration, Duration)) -> Duration {
    user + system
}
