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
    // One registry and one set of mailgraph series for every role, capped once.
    let metrics = Metrics::with_max_tenants(config.metrics.max_tenants);
    let directory = Arc::new(
        Directory::open(&config.directory, metrics.registry()).context("opening the directory")?,
    );
    let (stop, stopping) = watch::channel(false);

    let mut roles = tokio::task::JoinSet::new();
    // One certificate for every role that speaks TLS, loaded (or made) once.
    let mail_roles = [Role::Pop3, Role::Smtp, Role::Lmtp];
    let api_tls = config.roles.contains(&Role::Api) && config.api.tls;
    let tls = match api_tls || config.roles.iter().any(|r| mail_roles.contains(r)) {
        true => Some(tls_acceptor(&config)?),
        false => None,
    };
    if config.roles.contains(&Role::Api) {
        let acceptor = if api_tls { tls.clone() } else { None };
        start_api(
            &config, &directory, &metrics, acceptor, &stopping, &mut roles,
        )
        .await?;
    }
    if config.roles.contains(&Role::Pop3) {
        start_pop3(
            &config,
            &directory,
            &metrics,
            tls.clone(),
            &stopping,
            &mut roles,
        )
        .await?;
    }
    let queue = if config.roles.contains(&Role::Queue) {
        Some(start_queue(
            &config, &directory, &metrics, &stopping, &mut roles,
        )?)
    } else if config.queue.handover {
        // Another process's queue role owns the folder and delivers from it.
        tracing::info!(folder = %config.queue.folder.display(), "queueing for another process");
        Some(Arc::new(open_queue(&config)?))
    } else {
        None
    };
    if config.roles.contains(&Role::Smtp) || config.roles.contains(&Role::Lmtp) {
        let services = (&directory, &metrics, queue);
        start_smtp(&config, services, tls, &stopping, &mut roles).await?;
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

/// Starts the JSON API on every `[api] listen` address.
async fn start_api(
    config: &Config,
    directory: &Arc<Directory>,
    metrics: &Metrics,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stopping: &watch::Receiver<bool>,
    roles: &mut tokio::task::JoinSet<std::io::Result<()>>,
) -> anyhow::Result<()> {
    let api = &config.api;
    if api.operator_token.is_none() {
        tracing::info!("no [api] operator_token_file; the operator api is closed");
    }
    let settings = mailfold_api::ApiSettings {
        operator_token: api.operator_token.clone(),
        token_lifetime: api.token_lifetime,
        max_body_bytes: api.max_body_size,
        shards: config.shards.keys().cloned().collect(),
        shard_policy: api.shard_placement,
    };
    let state = mailfold_api::ApiState::new(
        directory.clone(),
        metrics.clone(),
        mailfold_store::Store::new(config.shards.clone()),
        settings,
        login_throttle(&config.auth),
    );
    let options = mailfold_api::ServerOptions {
        tls,
        limits: Arc::new(mailfold_net::ConnectionLimits::new(
            api.max_connections,
            api.max_connections_per_ip,
        )),
        request_timeout: api.request_timeout,
        proxy_protocol: api.proxy_protocol,
    };
    for address in &api.listen {
        let listener = bind(address, "api").await?;
        tracing::info!(role = "api", %address, tls = options.tls.is_some(), "listening");
        let serve = mailfold_api::serve(
            listener,
            state.clone(),
            options.clone(),
            stopped(stopping.clone()),
        );
        roles.spawn(serve);
    }
    Ok(())
}

/// The TLS acceptor of the mail front-ends: the configured certificate, or a self-signed one
/// kept in `<state_dir>/tls/` (generated on first start) when none is configured.
fn tls_acceptor(config: &Config) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let (certificate, key) = match &config.tls {
        Some(files) => (files.certificate.clone(), files.key.clone()),
        None => {
            let folder = config.state_dir.join("tls");
            tracing::warn!(folder = %folder.display(), "no [tls] certificate configured; using a self-signed one");
            mailfold_net::certificate::self_signed(&folder, &["localhost", "127.0.0.1"])
                .context("creating a self-signed certificate")?
        }
    };
    let server =
        mailfold_net::server_config(&certificate, &key).context("loading the tls certificate")?;
    Ok(tokio_rustls::TlsAcceptor::from(server))
}

async fn start_pop3(
    config: &Config,
    directory: &Arc<Directory>,
    metrics: &Metrics,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stopping: &watch::Receiver<bool>,
    roles: &mut tokio::task::JoinSet<std::io::Result<()>>,
) -> anyhow::Result<()> {
    use mailfold_net::limits::ConnectionLimits;
    use mailfold_net::server::Transport;
    use mailfold_pop3::server::serve;

    let pop3 = &config.pop3;
    let services = Arc::new(mailfold_pop3::Services {
        directory: directory.clone(),
        store: Arc::new(mailfold_store::Store::new(config.shards.clone())),
        metrics: mailfold_pop3::Pop3Metrics::new(metrics),
        throttle: Arc::new(login_throttle(&config.auth)),
        limits: Arc::new(ConnectionLimits::new(
            pop3.max_connections,
            pop3.max_connections_per_ip,
        )),
        tls,
        policy: mailfold_pop3::Policy {
            plaintext: pop3.plaintext,
            idle_timeout: pop3.idle_timeout,
            proxy_protocol: pop3.proxy_protocol,
        },
    });
    let listeners = pop3.listen.iter().map(|a| (a, Transport::Plain));
    for (address, transport) in
        listeners.chain(pop3.listen_tls.iter().map(|a| (a, Transport::ImplicitTls)))
    {
        let listener = bind(address, "pop3").await?;
        tracing::info!(role = "pop3", %address, tls = transport == Transport::ImplicitTls, "listening");
        roles.spawn(serve(
            listener,
            transport,
            services.clone(),
            stopping.clone(),
        ));
    }
    Ok(())
}

async fn start_smtp(
    config: &Config,
    (directory, metrics, queue): (
        &Arc<Directory>,
        &Metrics,
        Option<Arc<mailfold_queue::Queue>>,
    ),
    tls: Option<tokio_rustls::TlsAcceptor>,
    stopping: &watch::Receiver<bool>,
    roles: &mut tokio::task::JoinSet<std::io::Result<()>>,
) -> anyhow::Result<()> {
    use mailfold_net::limits::ConnectionLimits;
    use mailfold_net::server::Transport;
    use mailfold_smtp::Mode;

    let smtp = &config.smtp;
    let services = Arc::new(mailfold_smtp::Services {
        directory: directory.clone(),
        store: Arc::new(mailfold_store::Store::new(config.shards.clone())),
        spool_dir: config.state_dir.join("spool"),
        hostname: smtp.hostname.clone(),
        metrics: mailfold_smtp::SmtpMetrics::new(metrics),
        throttle: Arc::new(login_throttle(&config.auth)),
        limits: Arc::new(ConnectionLimits::new(
            smtp.max_connections,
            smtp.max_connections_per_ip,
        )),
        tls,
        policy: mailfold_smtp::Policy {
            max_message_size: smtp.max_message_size,
            bare_line_endings: smtp.bare_line_endings,
            plaintext: smtp.plaintext,
            proxy_protocol: smtp.proxy_protocol,
            postmaster: smtp.postmaster.clone(),
            max_hops: config.queue.max_hops,
        },
        queue,
    });
    let mut listeners = Vec::new();
    if config.roles.contains(&Role::Smtp) {
        listeners.extend(smtp.mx.iter().map(|a| (a, Transport::Plain, Mode::Mx)));
        listeners.extend(
            smtp.submission
                .iter()
                .map(|a| (a, Transport::Plain, Mode::Submission)),
        );
        listeners.extend(
            smtp.submissions
                .iter()
                .map(|a| (a, Transport::ImplicitTls, Mode::Submission)),
        );
    }
    if config.roles.contains(&Role::Lmtp) {
        listeners.extend(smtp.lmtp.iter().map(|a| (a, Transport::Plain, Mode::Lmtp)));
    }
    if config.roles.contains(&Role::Lmtp)
        && let Some(path) = &smtp.lmtp_socket
    {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        // A socket file left by an earlier run would make the bind fail.
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(path);
        }
        let listener = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("listening on {} for lmtp", path.display()))?;
        // The local MTA's group may connect; nobody else.
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660));
        tracing::info!(role = "lmtp", socket = %path.display(), "listening");
        let serve =
            mailfold_smtp::server::serve_lmtp_unix(listener, services.clone(), stopping.clone());
        roles.spawn(serve);
    }
    for (address, transport, mode) in listeners {
        let listener = bind(address, &format!("{mode:?}")).await?;
        tracing::info!(role = ?mode, %address, tls = transport == Transport::ImplicitTls, "listening");
        let serve = mailfold_smtp::server::serve(
            listener,
            transport,
            mode,
            services.clone(),
            stopping.clone(),
        );
        roles.spawn(serve);
    }
    Ok(())
}

/// The queue role: the folder (shared with the SMTP role, which queues into it) and the
/// worker delivering from it. Fails when another process delivers from the same folder.
fn start_queue(
    config: &Config,
    directory: &Arc<Directory>,
    metrics: &Metrics,
    stopping: &watch::Receiver<bool>,
    roles: &mut tokio::task::JoinSet<std::io::Result<()>>,
) -> anyhow::Result<Arc<mailfold_queue::Queue>> {
    use mailfold_queue::client::{ClientOptions, Timeouts, TlsPolicy};
    use mailfold_queue::route::{Relay, Routes};

    let settings = &config.queue;
    let queue = Arc::new(open_queue(config)?);
    let relay = |r: &crate::queue_config::RelayConfig| Relay {
        host: r.host.clone(),
        port: r.port,
        auth: r.auth.clone(),
    };
    let resolver = mailfold_queue::route::resolver(&settings.nameservers)
        .map_err(|e| anyhow::anyhow!("setting up dns for the queue: {e}"))?;
    let routes = Routes {
        routes: settings
            .routes
            .iter()
            .map(|(d, r)| (d.clone(), relay(r)))
            .collect(),
        smarthost: settings.smarthost.as_ref().map(relay),
        mx_port: settings.mx_port,
        resolver,
    };
    let tls_config = mailfold_queue::client::tls_config(settings.tls_ca_file.as_deref())
        .map_err(|e| anyhow::anyhow!("setting up tls for the queue: {e}"))?;
    let options = mailfold_queue::DeliveryOptions {
        routes,
        client: ClientOptions {
            hostname: settings.hostname.clone(),
            tls: if settings.require_tls {
                TlsPolicy::Require
            } else {
                TlsPolicy::Opportunistic
            },
            tls_config,
            timeouts: Timeouts {
                connect: settings.connect_timeout,
                ..Timeouts::default()
            },
        },
        schedule: mailfold_queue::Schedule {
            intervals: settings.retry_intervals.clone(),
            lifetime: settings.lifetime,
            delay_warning: settings.delay_warning,
            scan_interval: settings.scan_interval,
        },
        per_destination: settings.per_destination,
        hostname: settings.hostname.clone(),
    };
    let deliverer = mailfold_queue::Deliverer::new(
        queue.clone(),
        options,
        directory.clone(),
        Arc::new(mailfold_store::Store::new(config.shards.clone())),
        mailfold_queue::QueueMetrics::new(metrics),
    )
    .with_context(|| format!("starting the queue in {}", settings.folder.display()))?;
    tracing::info!(role = "queue", folder = %settings.folder.display(), "delivering");
    roles.spawn(deliverer.run(stopping.clone()));
    Ok(queue)
}

/// The queue folder with the configured SRS and DKIM settings.
pub fn open_queue(config: &Config) -> anyhow::Result<mailfold_queue::Queue> {
    let settings = &config.queue;
    let srs = settings
        .srs
        .as_ref()
        .map(|s| mailfold_queue::Srs::new(s.secret.as_bytes(), &s.domain, s.max_age_days));
    let dkim = mailfold_queue::dkim::DkimSigning::new(settings.dkim.clone());
    mailfold_queue::Queue::open(&settings.folder, srs, dkim)
        .with_context(|| format!("opening the queue folder {}", settings.folder.display()))
}

/// A TCP listener, or an error naming the address and the role it was for.
async fn bind(
    address: &std::net::SocketAddr,
    role: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address} for the {role} role"))
}

/// The failed-login limits of `[auth]`, for a role's own throttle.
fn login_throttle(auth: &crate::config::AuthConfig) -> mailfold_net::LoginThrottle {
    mailfold_net::LoginThrottle::new(mailfold_net::LoginPolicy {
        failures_per_ip: auth.max_failures_per_ip as usize,
        failures_per_account: auth.max_failures_per_account as usize,
        window: auth.failure_window,
        failure_delay: auth.failure_delay,
        ..mailfold_net::LoginPolicy::default()
    })
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
    mailfold_net::server::stopped(&mut stopping).await;
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
