//! Any bytes as the lines of a remote server's replies, and any text as an SRS address or a
//! header section: the queue's parsers refuse or accept, and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailfold_queue::reply::{Extensions, ReplyReader};
use mailfold_queue::srs::Srs;

fuzz_target!(|bytes: &[u8]| {
    let mut reader = ReplyReader::default();
    for line in bytes.split(|&b| b == b'\n') {
        match reader.line(line.strip_suffix(b"\r").unwrap_or(line)) {
            Ok(Some(reply)) => {
                let _ = Extensions::parse(&reply);
                let _ = reply.status();
                let _ = reply.summary();
            }
            Ok(None) => {}
            Err(_) => reader = ReplyReader::default(),
        }
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let srs = Srs::new(b"fuzzing secret", "fwd.example.test", 21);
        let _ = srs.reverse(text);
        let _ = srs.forward(text);
    }
});
