//! `mailfold serve`: open the directory, start the enabled roles, stop cleanly on a signal.
//!
//! Start-up fails fast on what an operator must fix (a listener that cannot bind, an LDIF file
//! that does not parse) and does not wait for what may come later (an LDAP server that is not
//! up yet only keeps `/readyz` at 503). On SIGTERM or SIGINT every role stops accepting, work
//! in flight gets [`GRACE`] to finish, and the process exits 0.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mailfold_directory::Directory;
use mailfold_telemetry::Metrics;
use tokio::sync::watch;

use crate::config::{Config, Role};

/// How long roles may take to finish after a stop signal.
const GRACE: Duration = Duration::from_secs(10);

/// Runs until a stop signal.
pub fn run(config: Config) -> anyhow::Result<ExitCode> {
    mailfold_telemetry::init_logging(&config.log.filter, config.log.format)?;
    mailfold_net::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating state folder {}", config.state_dir.display()))?;
    create_local_shards(&config)?;
    let metrics = Metrics::new();
    let directory = Arc::new(
        Directory::open(&config.directory, metrics.registry()).context("opening the directory")?,
    );
    let (stop, stopping) = watch::channel(false);

    let mut roles = tokio::task::JoinSet::new();
    for role in &config.roles {
        match role {
            Role::Api => {
                let state = mailfold_api::ApiState {
                    directory: directory.clone(),
                    metrics: metrics.clone(),
                };
                for address in &config.api.listen {
                    let listener = tokio::net::TcpListener::bind(address)
                        .await
                        .with_context(|| format!("listening on {address} for the api role"))?;
                    tracing::info!(role = "api", %address, "listening");
                    let shutdown = stopped(stopping.clone());
                    roles.spawn(mailfold_api::serve(listener, state.clone(), shutdown));
                }
            }
        }
    }
    tracing::info!(backend = directory.backend_kind(), "mailfold started");

    wait_for_signal().await?;
    tracing::info!("stopping");
    let _ = stop.send(true);
    let finished = tokio::time::timeout(GRACE, async {
        while let Some(result) = roles.join_next().await {
            match result {
                Ok(Err(error)) => tracing::error!(cause = %error, "role ended with an error"),
                Err(error) => tracing::error!(cause = %error, "role task failed"),
                Ok(Ok(())) => {}
            }
        }
    })
    .await;
    if finished.is_err() {
        tracing::warn!(grace = ?GRACE, "roles still busy after the grace period; exiting");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Creates the shard roots that lie inside the state folder (the quick start's). Any other
/// root must exist already: a volume that failed to mount must not quietly become a folder
/// on the container's own disk.
fn create_local_shards(config: &Config) -> anyhow::Result<()> {
    for (id, root) in &config.shards {
        if root.starts_with(&config.state_dir) {
            std::fs::create_dir_all(root)
                .with_context(|| format!("creating shard {id} at {}", root.display()))?;
        } else if !root.is_dir() {
            tracing::warn!(shard = %id, root = %root.display(), "shard root missing; deliveries to it will wait");
        }
    }
    Ok(())
}

/// Completes when the stop flag is raised (or its sender is gone).
async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
        _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "signal received"),
    }
    Ok(())
}
