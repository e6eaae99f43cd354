//! POP3 listeners: accept, apply connection limits, read a PROXY header when configured, start
//! TLS for implicit-TLS listeners, run a session per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailfold_net::stream::MaybeTls;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::Instrument;

use crate::Services;
use crate::codec::{self, Code};
use crate::session::{Peer, Session};

/// How long a client may take to send its PROXY header or finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which kind of listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain POP3 (port 110), with STLS when TLS is configured.
    Plain,
    /// TLS from the first byte (port 995, RFC 8314).
    ImplicitTls,
}

/// Accepts connections until `stopping` turns true. Sessions in progress keep running; the
/// process's grace period bounds them.
pub async fn serve(
    listener: TcpListener,
    transport: Transport,
    services: Arc<Services>,
    mut stopping: watch::Receiver<bool>,
) -> std::io::Result<()> {
    loop {
        let (stream, address) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(cause = %error, "accepting a pop3 connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut stopping) => return Ok(()),
        };
        let services = services.clone();
        tokio::spawn(async move {
            if let Err(error) = connection(stream, address, transport, services).await {
                tracing::debug!(peer = %address, cause = %error, "pop3 connection ended with an error");
            }
        });
    }
}

/// Completes when the stop flag is raised; the watch guard is dropped before it returns.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

async fn connection(
    mut stream: TcpStream,
    mut address: SocketAddr,
    transport: Transport,
    services: Arc<Services>,
) -> std::io::Result<()> {
    if services.policy.proxy_protocol {
        let header = mailfold_net::proxy::read_proxy_header(&mut stream, HANDSHAKE_TIMEOUT).await;
        match header {
            Ok(header) => {
                if let Some(source) = header.source {
                    address = source;
                }
            }
            Err(error) => {
                tracing::warn!(peer = %address, cause = %error, "bad proxy header");
                return Ok(());
            }
        }
    }

    // Replies are small and each one waits for the client: send them at once (no Nagle).
    let _ = stream.set_nodelay(true);
    let span = tracing::info_span!("pop3", peer = %address);
    connection_as(stream, address, transport, services)
        .instrument(span)
        .await
}

/// The rest of a connection, inside the span that names the client.
async fn connection_as(
    mut stream: TcpStream,
    address: SocketAddr,
    transport: Transport,
    services: Arc<Services>,
) -> std::io::Result<()> {
    let Some(_permit) = services.limits.try_acquire(address.ip()) else {
        tracing::warn!(peer = %address, "pop3 connection refused: limit reached");
        let reply = codec::err(Some(Code::SysTemp), "too many connections, try again later");
        let _ = stream.write_all(reply.as_bytes()).await;
        return Ok(());
    };

    let stream = match transport {
        Transport::Plain => MaybeTls::Plain(stream),
        Transport::ImplicitTls => {
            let Some(acceptor) = services.tls.clone() else {
                return Ok(());
            };
            let upgraded = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                MaybeTls::Plain(stream).upgrade(&acceptor),
            )
            .await;
            match upgraded {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(peer = %address, cause = %error, "tls handshake failed");
                    return Ok(());
                }
                Err(_) => return Ok(()),
            }
        }
    };

    services.metrics.connection_opened();
    tracing::info!(peer = %address, tls = stream.is_tls(), "pop3 connection");
    let result = Session::new(services.clone(), Peer { address }, stream)
        .run()
        .await;
    services.metrics.connection_closed();
    result
}
