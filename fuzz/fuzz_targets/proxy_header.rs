//! Any bytes as the start of a PROXY protocol header (v1 or v2).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailfold_net::proxy::{Decoded, decode};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(Decoded::Header { length, .. }) = decode(bytes) {
        assert!(length <= bytes.len());
    }
});
