//! Any bytes as an SMTP command line: the parser must answer, never panic, and its error
//! must format as a single reply line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    for utf8 in [false, true] {
        if let Err(error) = mailfold_smtp::codec::parse(line, utf8) {
            let wire = error.reply().to_wire();
            assert!(wire.ends_with("\r\n") && wire.matches("\r\n").count() == 1);
        }
    }
});
