//! Any bytes as a POP3 command line, and as a stored message streamed by RETR and TOP.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailfold_pop3::transfer::Stuffer;

fuzz_target!(|bytes: &[u8]| {
    let _ = mailfold_pop3::codec::parse(bytes);

    // The wire form always ends with the terminator and never holds a bare LF.
    let mut out = Vec::new();
    let mut stuffer = Stuffer::whole();
    stuffer.push(bytes, &mut out);
    stuffer.finish(&mut out);
    assert!(out.ends_with(b".\r\n"));
    assert!(out.windows(2).all(|pair| pair[1] != b'\n' || pair[0] == b'\r'));
});
