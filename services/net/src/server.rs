//! The accept loop every mail front-end shares: accept, read a PROXY header when configured,
//! apply connection limits, start TLS on implicit-TLS listeners, then hand the connection to
//! the role's session, inside a span that names the real client.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::Instrument;

use crate::limits::ConnectionLimits;
use crate::stream::MaybeTls;

/// How long a client may take to send its PROXY header or finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which kind of listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain, with an in-protocol upgrade (STARTTLS, STLS) when TLS is configured.
    Plain,
    /// TLS from the first byte (RFC 8314).
    ImplicitTls,
}

/// What the loop needs besides the listener.
#[derive(Clone)]
pub struct ListenerOptions {
    /// The role's name, for spans and logs (`pop3`, `smtp`).
    pub role: &'static str,
    /// Expect a PROXY protocol header first.
    pub proxy_protocol: bool,
    /// Connection limits.
    pub limits: Arc<ConnectionLimits>,
    /// TLS for implicit-TLS listeners.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The line sent to a client over the connection limit, CRLF included.
    pub over_limit: &'static str,
}

/// Accepts connections until `stopping` turns true, running `session(stream, client)` for each.
/// Sessions in progress keep running; the process's grace period bounds them.
pub async fn serve<S, F>(
    listener: TcpListener,
    transport: Transport,
    options: ListenerOptions,
    mut stopping: watch::Receiver<bool>,
    session: S,
) -> std::io::Result<()>
where
    S: Fn(MaybeTls, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = std::io::Result<()>> + Send + 'static,
{
    loop {
        let (stream, address) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(role = options.role, cause = %error, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut stopping) => return Ok(()),
        };
        let (options, session) = (options.clone(), session.clone());
        tokio::spawn(async move {
            if let Err(error) = connection(stream, address, transport, &options, session).await {
                tracing::debug!(role = options.role, peer = %address, cause = %error, "connection ended with an error");
            }
        });
    }
}

/// Completes when the stop flag is raised; the watch guard is dropped before it returns.
pub async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

async fn connection<S, F>(
    mut stream: TcpStream,
    mut address: SocketAddr,
    transport: Transport,
    options: &ListenerOptions,
    session: S,
) -> std::io::Result<()>
where
    S: Fn(MaybeTls, SocketAddr) -> F,
    F: Future<Output = std::io::Result<()>>,
{
    if options.proxy_protocol {
        match crate::proxy::read_proxy_header(&mut stream, HANDSHAKE_TIMEOUT).await {
            Ok(header) => address = header.client(address),
            Err(error) => {
                tracing::warn!(role = options.role, peer = %address, cause = %error, "bad proxy header");
                return Ok(());
            }
        }
    }
    // Replies are small and each waits for the client: send them at once (no Nagle delay).
    let _ = stream.set_nodelay(true);
    let span = tracing::info_span!("connection", role = options.role, peer = %address);
    accepted(stream, address, transport, options, session)
        .instrument(span)
        .await
}

/// The rest of a connection, inside the span that names the client.
async fn accepted<S, F>(
    mut stream: TcpStream,
    address: SocketAddr,
    transport: Transport,
    options: &ListenerOptions,
    session: S,
) -> std::io::Result<()>
where
    S: Fn(MaybeTls, SocketAddr) -> F,
    F: Future<Output = std::io::Result<()>>,
{
    let Some(_permit) = options.limits.try_acquire(address.ip()) else {
        tracing::warn!("connection refused: limit reached");
        let _ = stream.write_all(options.over_limit.as_bytes()).await;
        return Ok(());
    };
    let stream = match transport {
        Transport::Plain => MaybeTls::Plain(stream),
        Transport::ImplicitTls => {
            let Some(acceptor) = options.tls.clone() else {
                return Ok(());
            };
            let upgrade = MaybeTls::Plain(stream).upgrade(&acceptor);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, upgrade).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(cause = %error, "tls handshake failed");
                    return Ok(());
                }
                Err(_) => return Ok(()),
            }
        }
    };
    tracing::info!(peer = %address, tls = stream.is_tls(), "{} connection", options.role);
    session(stream, address).await
}

/// Accepts connections on a unix socket until `stopping` turns true. A unix socket is a local
/// client (an MTA on the same machine): no PROXY header and no TLS; limits count it as
/// loopback, and the session sees the peer `127.0.0.1:0`.
pub async fn serve_unix<S, F>(
    listener: tokio::net::UnixListener,
    options: ListenerOptions,
    mut stopping: watch::Receiver<bool>,
    session: S,
) -> std::io::Result<()>
where
    S: Fn(MaybeTls, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(role = options.role, cause = %error, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut stopping) => return Ok(()),
        };
        let (options, session) = (options.clone(), session.clone());
        let span = tracing::info_span!("connection", role = options.role, peer = "unix");
        tokio::spawn(
            async move {
                let Some(_permit) = options.limits.try_acquire(local.ip()) else {
                    let mut stream = stream;
                    let _ = stream.write_all(options.over_limit.as_bytes()).await;
                    return;
                };
                tracing::info!("{} connection on a unix socket", options.role);
                if let Err(error) = session(MaybeTls::Unix(stream), local).await {
                    tracing::debug!(cause = %error, "connection ended with an error");
                }
            }
            .instrument(span),
        );
    }
}
