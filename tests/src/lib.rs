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

/// The repository's top folder.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}
