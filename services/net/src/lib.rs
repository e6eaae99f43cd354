//! Networking shared by the Mailfold front-ends.
//!
//! # Layout
//!
//! - [`tls`]: PEM files into rustls server and client configurations, with ring as the one
//!   crypto provider ([`install_crypto_provider`]).
//! - [`certificate`]: a self-signed certificate made once in a folder and reused.
//! - [`date`]: RFC 5322 dates for the headers Mailfold writes.
//! - [`proxy`]: the PROXY protocol header (versions 1 and 2) a load balancer sends first.
//! - [`limits`]: connection limits per listener and client network, and login throttling.
//! - [`stream`]: a connection that may switch to TLS, and a capped line reader.
//! - [`sasl`]: SASL PLAIN decoding for every AUTH command.
//! - [`server`]: the accept loop: PROXY header, limits, implicit TLS, a span per connection.

pub mod certificate;
pub mod date;
pub mod limits;
pub mod proxy;
pub mod sasl;
pub mod server;
pub mod stream;
pub mod tls;

pub use certificate::self_signed;
pub use date::rfc5322_date;
pub use limits::{ConnectionLimits, ConnectionPermit, LoginPolicy, LoginThrottle, Plaintext};
pub use proxy::{
    Decoded, ProxyError, ProxyHeader, decode, decode_v1, decode_v2, read_proxy_header,
};
pub use stream::{Line, LineReader, MaybeTls};
pub use tls::{TlsError, client_config, install_crypto_provider, server_config};
