//! Networking shared by the Mailfold front-ends.
//!
//! # Layout
//!
//! - [`tls`]: PEM files into rustls server and client configurations, with ring as the one
//!   crypto provider ([`install_crypto_provider`]).
//!
//! Listeners, connection limits, the PROXY protocol and SASL arrive here with the front-ends
//! that need them.

pub mod tls;

pub use tls::{TlsError, client_config, install_crypto_provider, server_config};
