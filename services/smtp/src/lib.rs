//! The `smtp` and `lmtp` roles: how mail gets into the platform.
//!
//! # Layout
//!
//! - [`data`]: the DATA section and BDAT chunks, streamed into the spool, with the strict
//!   end-of-data rule that closes SMTP smuggling.
//! - [`spool`]: the per-transaction spool file.
//! - [`received`]: the `Received:` trace header and RFC 5322 dates.
//!
//! This crate is being built: the command codec, the sessions and the listeners are still to
//! come, and no role runs it yet.

pub mod data;
pub mod received;
pub mod spool;
