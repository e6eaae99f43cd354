//! The HTTP server loop: accept, optional TLS, HTTP/1.1 with timeouts, graceful stop.
//!
//! axum's own `serve` has no header timeout and no TLS, so the loop is written here on hyper:
//! - a connection limit in total and per client network, shared logic with the mail roles;
//! - optionally a PROXY protocol header first (from a load balancer), whose client address
//!   then counts for the limits and the login throttle;
//! - a TLS handshake limited to [`HANDSHAKE_TIMEOUT`], in the connection's own task so that a
//!   slow client cannot hold up the accept loop;
//! - the request head must arrive within [`HEADER_TIMEOUT`] and stay under
//!   [`MAX_HEAD_BYTES`] (hyper answers `431` past it);
//! - each request is answered within the configured request timeout, else `503`;
//! - on stop, listening ends at once, idle keep-alive connections are closed, and requests in
//!   flight finish (the binary bounds the wait).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use mailfold_net::server::stopped;
use mailfold_net::{ConnectionLimits, MaybeTls};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::auth::Peer;
use crate::error::ApiError;

/// Longest wait for a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a request's head (request line and headers).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How one listener serves.
#[derive(Clone)]
pub struct ServerOptions {
    /// TLS for every connection, or plain HTTP.
    pub tls: Option<TlsAcceptor>,
    /// Connection limits.
    pub limits: Arc<ConnectionLimits>,
    /// Longest time to answer one request.
    pub request_timeout: Duration,
    /// Read a PROXY protocol header (v1 or v2) first and take the client address from it.
    pub proxy_protocol: bool,
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(cause = %error, "accepting an http connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (router, options, stopping) = (router.clone(), options.clone(), stopping.clone());
        connections.spawn(async move {
            let Some((stream, peer)) = client_of(stream, peer, &options).await else {
                return;
            };
            let Some(_permit) = options.limits.try_acquire(peer.ip()) else {
                tracing::warn!(%peer, "http connection refused: too many connections");
                return;
            };
            connection(stream, peer, router, options, stopping).await;
        });
        // Reap finished connections so the set does not grow with the listener's lifetime.
        while connections.try_join_next().is_some() {}
    }

    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// The connection and its client's address: the TCP peer, or the one a PROXY header names.
/// `None` when a PROXY header was expected and did not come in time or was malformed.
async fn client_of(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    options: &ServerOptions,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    if !options.proxy_protocol {
        return Some((stream, peer));
    }
    match mailfold_net::proxy::read_proxy_header(&mut stream, HANDSHAKE_TIMEOUT).await {
        Ok(header) => Some((stream, header.client(peer))),
        Err(error) => {
            tracing::warn!(%peer, cause = %error, "bad proxy header on the api listener");
            None
        }
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    options: ServerOptions,
    mut stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let stream = match &options.tls {
        None => MaybeTls::Plain(stream),
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => MaybeTls::Tls(Box::new(tls)),
                Ok(Err(error)) => {
                    tracing::debug!(%peer, cause = %error, "tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "tls handshake timed out");
                    return;
                }
            }
        }
    };

    let timeout = options.request_timeout;
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(Peer(peer));
        let router = router.clone();
        async move {
            let answer = router.oneshot(request.map(axum::body::Body::new));
            match tokio::time::timeout(timeout, answer).await {
                Ok(response) => response,
                Err(_) => Ok(ApiError::timeout().into_response()),
            }
        }
    });
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(http);
    tokio::select! {
        result = http.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, cause = %error, "http connection ended with an error");
            }
        }
        _ = stopped(&mut stopping) => {
            // Finish the request in flight, then close instead of keeping the connection.
            http.as_mut().graceful_shutdown();
            let _ = http.await;
        }
    }
}
