//! SMTP, submission and LMTP listeners, through the shared accept loop.

use std::sync::Arc;

use mailfold_net::server::{ListenerOptions, Transport};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::session::Session;
use crate::{Mode, Services};

fn options(mode: Mode, services: &Services) -> ListenerOptions {
    ListenerOptions {
        role: match mode {
            Mode::Mx => "smtp",
            Mode::Submission => "submission",
            Mode::Lmtp => "lmtp",
        },
        proxy_protocol: services.policy.proxy_protocol,
        limits: services.limits.clone(),
        tls: services.tls.clone(),
        // RFC 5321 §3.8: 421 when the service is not available for now.
        over_limit: "421 4.7.0 too many connections, try again later\r\n",
    }
}

/// Accepts LMTP connections on a unix socket until `stopping` turns true (RFC 2033 §5 names
/// the unix socket as LMTP's usual transport on one machine).
pub async fn serve_lmtp_unix(
    listener: tokio::net::UnixListener,
    services: Arc<Services>,
    stopping: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut options = options(Mode::Lmtp, &services);
    options.proxy_protocol = false;
    mailfold_net::server::serve_unix(listener, options, stopping, move |stream, peer| {
        let services = services.clone();
        async move {
            services.metrics.connection_opened(Mode::Lmtp);
            let result = Session::new(services.clone(), Mode::Lmtp, peer, stream)
                .run()
                .await;
            services.metrics.connection_closed(Mode::Lmtp);
            result
        }
    })
    .await
}

/// Accepts connections in `mode` until `stopping` turns true.
pub async fn serve(
    listener: TcpListener,
    transport: Transport,
    mode: Mode,
    services: Arc<Services>,
    stopping: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let options = options(mode, &services);
    mailfold_net::server::serve(
        listener,
        transport,
        options,
        stopping,
        move |stream, peer| {
            let services = services.clone();
            async move {
                services.metrics.connection_opened(mode);
                let result = Session::new(services.clone(), mode, peer, stream)
                    .run()
                    .await;
                services.metrics.connection_closed(mode);
                result
            }
        },
    )
    .await
}
