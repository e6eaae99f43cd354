//! Support for Mailfold's end-to-end suites: real servers, real clients, the built binary.
//!
//! # Layout
//!
//! - [`slapd`]: a private OpenLDAP server per test, on a free loopback port, with the
//!   project's schema and ACLs.
//! - [`fixture`]: the test directory data (the quick start plus the conformance extras), served
//!   by either backend.
//! - [`binary`]: finding and running the built `mailfold` binary (and the test binaries).
//! - [`dovecot`]: a private Dovecot (doveadm) over a Maildir, for interoperability tests.
//! - [`process`]: another process's memory and CPU time, for the benchmarks.
//!
//! The suites themselves are in `tests/suite/`.

pub mod binary;
pub mod dovecot;
pub mod fixture;
pub mod process;
pub mod slapd;

use std::path::PathBuf;

/// Runs each named `async fn name(kind: Kind)` of the calling suite once per backend, as
/// `ldap::name` (a private slapd) and `ldif::name` (the LDIF backend).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod ldap {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() { super::$name($crate::fixture::Kind::Ldap).await })*
        }
        mod ldif {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() { super::$name($crate::fixture::Kind::Ldif).await })*
        }
    };
}

/// The repository's top folder.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Base64 (RFC 4648 §4), for the AUTH PLAIN lines the suites send by hand.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for chunk in bytes.chunks(3) {
        let group = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(ALPHABET[(group >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                text.push('=');
            }
        }
    }
    text
}
