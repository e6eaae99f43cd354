//! The built `mailfold` binary, run as an operator would run it.
//!
//! The binary is looked up beside the test executable (`target/<profile>/mailfold`), so the
//! suite tests what `cargo build` made; `tests/run.sh` builds the workspace before the tests.
//! `MAILFOLD_BIN` points elsewhere when set.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn mailfold_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MAILFOLD_BIN") {
        return PathBuf::from(path);
    }
    built_binary("mailfold")
}

/// Path of the workspace binary `name` that cargo built beside the test executable
/// (`target/<profile>/<name>`); fails the test when it is not there.
pub fn built_binary(name: &str) -> PathBuf {
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let exe = std::env::current_exe().expect("test executable path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile folder");
    let binary = profile.join(name);
    assert!(
        binary.is_file(),
        "{} is missing: build it first (cargo build --workspace --bins)",
        binary.display()
    );
    binary
}

/// Runs `mailfold ARGS` to completion, with `stdin` as its input.
pub fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(mailfold_binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting mailfold");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin pipe");
        input.write_all(stdin.as_bytes()).expect("writing stdin");
    }
    child.wait_with_output().expect("waiting for mailfold")
}

/// A free TCP port on 127.0.0.1 (free when asked; a race with another process is possible
/// but rare, and shows up as a clear bind error).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding port 0");
    listener.local_addr().expect("local address").port()
}

/// `N` free ports, no two alike: a port given back by one [`free_port`] call may be handed out
/// again by the next, and two listeners on one port would fail the start.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let mut ports = Vec::with_capacity(N);
    while ports.len() < N {
        let port = free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    std::array::from_fn(|index| ports[index])
}

/// A `mailfold serve` process, killed on drop.
pub struct Server {
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    /// Starts `mailfold serve --config CONFIG` and waits until `ready_url` answers, for at most
    /// 20 seconds.
    pub fn start(config: &Path, log: PathBuf, ready_url: &str) -> Server {
        Server::start_when(config, log, || curl(ready_url).is_some())
    }

    /// Like [`Server::start`], with readiness decided by `ready` (for listeners `curl`
    /// cannot reach without options, such as HTTPS with a test certificate).
    pub fn start_when(config: &Path, log: PathBuf, ready: impl Fn() -> bool) -> Server {
        let stderr = std::fs::File::create(&log).expect("creating server log");
        let child = Command::new(mailfold_binary())
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting mailfold serve");
        let mut server = Server {
            child: Some(child),
            log,
        };

        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready() {
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "mailfold serve exited with {status}:\n{}",
                    server.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mailfold did not come up:\n{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Sends SIGTERM and waits for the exit, for at most 15 seconds.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server still running");
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("waiting for mailfold") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("mailfold ignored SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server wrote to standard error so far.
    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A GET with the real curl client: `(status, body)`, or `None` when nothing answered.
pub fn curl(url: &str) -> Option<(u16, String)> {
    let output = Command::new("curl")
        .args([
            "--silent",
            "--max-time",
            "5",
            "--write-out",
            "\n%{http_code}",
            url,
        ])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_string()))
}
