//! POP3 listeners, through the accept loop the front-ends share (`mailfold_net::server`).

use std::sync::Arc;

use mailfold_net::server::{ListenerOptions, Transport};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Services;
use crate::session::{Peer, Session};

/// Accepts POP3 connections until `stopping` turns true.
pub async fn serve(
    listener: TcpListener,
    transport: Transport,
    services: Arc<Services>,
    stopping: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let options = ListenerOptions {
        role: "pop3",
        proxy_protocol: services.policy.proxy_protocol,
        limits: services.limits.clone(),
        tls: services.tls.clone(),
        // RFC 3206 §4: a temporary condition of the server.
        over_limit: "-ERR [SYS/TEMP] too many connections, try again later\r\n",
    };
    mailfold_net::server::serve(
        listener,
        transport,
        options,
        stopping,
        move |stream, address| {
            let services = services.clone();
            async move {
                services.metrics.connection_opened();
                let result = Session::new(services.clone(), Peer { address }, stream)
                    .run()
                    .await;
                services.metrics.connection_closed();
                result
            }
        },
    )
    .await
}
