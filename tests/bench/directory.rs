//! Directory throughput: recipient lookups and logins per second against each backend, with
//! and without the cache, from several concurrent tasks.
//!
//!     cargo bench -p mailfold-tests --bench directory
//!
//! Starts a private slapd with the test data, like the conformance suite. Prints one table;
//! docs/performance.md records the figures and the machine they came from.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailfold_directory::{CacheConfig, Directory, Service};
use mailfold_tests::fixture::{Kind, Options, TestDirectory};

/// Concurrent tasks, as front-end sessions would be.
const TASKS: usize = 8;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("| backend | operation | cache | tasks | operations | per second | mean latency |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for kind in [Kind::Ldif, Kind::Ldap] {
        for cached in [false, true] {
            let mut options = Options::new(kind);
            if cached {
                options.cache = CacheConfig::default();
            }
            let test = TestDirectory::start(options);
            let directory = Arc::new(test.directory);
            let total = if cached { 200_000 } else { 4_000 };
            runtime.block_on(measure(
                kind,
                "resolve alias (3 mailboxes)",
                cached,
                total,
                {
                    let directory = directory.clone();
                    move || {
                        let directory = directory.clone();
                        async move { resolve(&directory, "team@acme.test").await }
                    }
                },
            ));
            runtime.block_on(measure(kind, "resolve mailbox", cached, total, {
                let directory = directory.clone();
                move || {
                    let directory = directory.clone();
                    async move { resolve(&directory, "alice@acme.test").await }
                }
            }));
            if !cached {
                // Logins are never cached; {SSHA} keeps the hash cost out of the figure.
                runtime.block_on(measure(kind, "login ({SSHA})", false, 2_000, {
                    let directory = directory.clone();
                    move || {
                        let directory = directory.clone();
                        async move {
                            let login = directory.authenticate(
                                "frank@acme.test",
                                "frank-pw",
                                Service::Imap,
                            );
                            assert!(login.await.is_ok());
                        }
                    }
                }));
            }
            if !cached {
                // argon2id at the default cost: the hash dominates, whichever backend checks it.
                runtime.block_on(measure(kind, "login ({ARGON2})", false, 160, {
                    let directory = directory.clone();
                    move || {
                        let directory = directory.clone();
                        async move {
                            let login = directory.authenticate(
                                "alice@acme.test",
                                "alice-pw",
                                Service::Imap,
                            );
                            assert!(login.await.is_ok());
                        }
                    }
                }));
            }
            drop(test.slapd);
        }
    }
}

async fn resolve(directory: &Directory, address: &str) {
    let resolution = directory.resolve_recipient(address).await.expect("lookup");
    std::hint::black_box(resolution);
}

async fn measure<F, Fut>(kind: Kind, operation: &str, cached: bool, total: usize, make: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    // Warm-up: pool connections, cache entries.
    for _ in 0..TASKS {
        make().await;
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let make = make.clone();
        tasks.spawn(async move {
            for _ in 0..total / TASKS {
                make().await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let per_second = total as f64 / elapsed.as_secs_f64();
    let latency = elapsed.mul_f64(TASKS as f64 / total as f64);
    println!(
        "| {kind:?} | {operation} | {} | {TASKS} | {total} | {per_second:.0} | {} |",
        if cached { "on" } else { "off" },
        format_duration(latency)
    );
}

fn format_duration(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.1} µs")
    } else {
        format!("{:.2} ms", micros / 1000.0)
    }
}
