//! Any text as an address, a DN, an LDIF document and a stored password: each parser refuses
//! or accepts, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailfold_directory::{Address, dn::Dn, ldif_format, password};

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let _ = Address::parse(text);
    let _ = Dn::parse(text);
    if let Ok(entries) = ldif_format::parse(text) {
        let _ = ldif_format::parse(&ldif_format::write(&entries));
    }
    // Cheap schemes only: the expensive ones are cost-capped, but slow the fuzzer down.
    if !text.starts_with("{ARGON2}") && !text.to_ascii_uppercase().starts_with("{CRYPT}") {
        let _ = password::verify("secret", text);
    }
});
