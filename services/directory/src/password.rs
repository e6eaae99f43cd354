//! Checking a password against a stored `userPassword` value, and hashing new ones.
//!
//! The `ldap` backend never sees hashes: it binds as the user and lets the server decide. The
//! `ldif` backend has no server, so it verifies the schemes a Mailfold directory can hold:
//! `{ARGON2}` (what Mailfold writes), `{CRYPT}` with `$1$`, `$5$`, `$6$` and bcrypt, and the
//! salted SHA family (`{SSHA}`, `{SSHA256}`, `{SSHA512}`) from migrated directories. Anything
//! else, cleartext included, is [`Verification::Unsupported`] on purpose: a quick-start file
//! should not be able to hold a readable password and still log people in.
//!
//! Every stored value is untrusted text from a file: nothing here panics on it, and parameters
//! that would make one login cost minutes or gigabytes are refused before any work is done.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, Params, PasswordHash};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::Digest;

/// The outcome of checking a password against a stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The password is the one the stored value was made from.
    Match,
    /// The password is wrong, empty, or the stored value is malformed (it can match nothing).
    Mismatch,
    /// The stored value uses something this module does not verify; the text names it:
    /// a scheme (`{MD5}`), `cleartext`, a crypt method (`{CRYPT}$y$`), or parameters above
    /// the cost limits (Argon2 m above 256 MiB, t or p above 16; SHA-crypt rounds above
    /// 1000000; bcrypt cost above 16). The caller refuses the login and tells the operator.
    Unsupported(String),
}

/// Largest Argon2 memory cost verified, in KiB (256 MiB): a higher `m=` is refused rather than
/// allocated, since one such login per worker thread would exhaust the machine.
const ARGON2_MAX_MEMORY_KIB: u32 = 256 * 1024;

/// Largest Argon2 pass count (`t=`) verified.
const ARGON2_MAX_PASSES: u32 = 16;

/// Largest Argon2 lane count (`p=`) verified; lanes run one after another here.
const ARGON2_MAX_LANES: u32 = 16;

/// Largest SHA-crypt `rounds=` verified (glibc's default is 5000, the ceiling 999999999).
const SHA_CRYPT_MAX_ROUNDS: u32 = 1_000_000;

/// Largest bcrypt cost verified (2^16 key expansions; common settings are 10 to 13).
const BCRYPT_MAX_COST: u32 = 16;

/// Checks `password` against `stored`, a `userPassword` value such as `{SSHA}...`.
///
/// The scheme prefix is case-insensitive. An empty password is a [`Verification::Mismatch`]
/// without looking at `stored`, because an empty LDAP bind password means "unauthenticated".
/// A malformed stored value (bad base64, a digest without salt, a broken crypt string) is also
/// a `Mismatch`: no password can match it, and telling the two apart would only help a caller
/// that should not care.
pub fn verify(password: &str, stored: &str) -> Verification {
    if password.is_empty() {
        return Verification::Mismatch;
    }
    let Some((scheme, encoded)) = split_scheme(stored) else {
        return Verification::Unsupported("cleartext".to_string());
    };

    let scheme = scheme.to_ascii_uppercase();
    match scheme.as_str() {
        "ARGON2" => verify_argon2(password, encoded),
        "CRYPT" => verify_crypt(password, encoded),
        "SSHA" => verify_salted::<sha1::Sha1>(password, encoded),
        "SSHA256" => verify_salted::<sha2::Sha256>(password, encoded),
        "SSHA512" => verify_salted::<sha2::Sha512>(password, encoded),
        _ => Verification::Unsupported(format!("{{{scheme}}}")),
    }
}

/// Hashes `password` for storage: `{ARGON2}` with argon2id, the argon2 crate's default
/// parameters (m=19456, t=2, p=1) and a fresh random salt.
pub fn hash_argon2(password: &str) -> String {
    // The only failure left with default parameters and a generated 16-byte salt is the OS
    // random source being unavailable, which getrandom(2) on Linux does not report once booted.
    let hash = Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 with default parameters and an OS-generated salt cannot fail");
    format!("{{ARGON2}}{hash}")
}

/// Splits `{SCHEME}rest` into its scheme and rest; `None` when the value has no scheme prefix.
///
/// A value starting with `{` but without a short alphanumeric scheme and a closing `}` is
/// cleartext that happens to start with a brace.
fn split_scheme(stored: &str) -> Option<(&str, &str)> {
    let rest = stored.strip_prefix('{')?;
    let (scheme, encoded) = rest.split_once('}')?;
    let well_formed = !scheme.is_empty()
        && scheme.len() <= 32
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then_some((scheme, encoded))
}

/// `{ARGON2}`: a PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), any of the three
/// variants; the parameters come from the string.
fn verify_argon2(password: &str, phc: &str) -> Verification {
    // slapd 2.5.13's pw-argon2 stores the PHC string with its C terminator(s) included.
    let phc = phc.trim_end_matches('\0');
    let Ok(hash) = PasswordHash::new(phc) else {
        return Verification::Mismatch;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return Verification::Mismatch;
    };

    if params.m_cost() > ARGON2_MAX_MEMORY_KIB
        || params.t_cost() > ARGON2_MAX_PASSES
        || params.p_cost() > ARGON2_MAX_LANES
    {
        return Verification::Unsupported(format!(
            "{{ARGON2}} with m={},t={},p={} (above m={ARGON2_MAX_MEMORY_KIB},\
             t={ARGON2_MAX_PASSES},p={ARGON2_MAX_LANES})",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }

    // The verifier takes algorithm, version and parameters from the hash, not from `default()`,
    // and compares the outputs in constant time.
    match Argon2::default().verify_password(password.as_bytes(), &hash) {
        Ok(()) => Verification::Match,
        Err(_) => Verification::Mismatch,
    }
}

/// `{SSHA}`, `{SSHA256}`, `{SSHA512}`: base64 of `digest(password || salt) || salt`.
///
/// The salt is whatever follows the digest (slapd writes 4 or 8 bytes); a value too short to
/// hold a digest and at least one byte of salt is malformed.
fn verify_salted<D: Digest>(password: &str, encoded: &str) -> Verification {
    let Ok(decoded) = BASE64.decode(encoded) else {
        return Verification::Mismatch;
    };
    let digest_len = <D as Digest>::output_size();
    if decoded.len() <= digest_len {
        return Verification::Mismatch;
    }

    let (expected, salt) = decoded.split_at(digest_len);
    let mut hasher = D::new();
    hasher.update(password.as_bytes());
    hasher.update(salt);
    let computed = hasher.finalize();
    if constant_time_eq(&computed, expected) {
        Verification::Match
    } else {
        Verification::Mismatch
    }
}

/// Whether `a == b`, taking the same time wherever they differ (the lengths are not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(difference) == 0
}

/// The crypt(3) methods, as told by the string's prefix.
enum CryptMethod<'a> {
    /// `$1$salt$checksum`.
    Md5(&'a str),
    /// `$5$[rounds=N$]salt$checksum`.
    Sha256(&'a str),
    /// `$6$[rounds=N$]salt$checksum`.
    Sha512(&'a str),
    /// `$2a$`, `$2b$`, `$2y$`: a two-digit cost, `$`, 22 characters of salt and 31 of checksum.
    Bcrypt(&'a str),
    /// Another method this module does not compute (DES, `$y$` yescrypt, `$7$` scrypt...).
    Other(String),
    /// Not a crypt string (a locked `!` or `*`, an empty value, a stray `$`).
    Malformed,
}

/// `{CRYPT}`: the crypt(3) string after the prefix.
///
/// pwhash recomputes the whole string from its salt and compares, so the string is checked
/// against its method's shape first: pwhash 1.0 indexes a table with each salt character and
/// panics on a non-ASCII one (and, in debug builds, on a control character), and it spends
/// whatever cost the string asks for.
fn verify_crypt(password: &str, hash: &str) -> Verification {
    // crypt(3) takes a C string: a password with a NUL would match on its prefix alone.
    if password.contains('\0') {
        return Verification::Mismatch;
    }

    let shape = match crypt_method(hash) {
        CryptMethod::Md5(rest) => md5_crypt_shape(rest),
        CryptMethod::Sha256(rest) => sha_crypt_shape("$5$", rest, 43),
        CryptMethod::Sha512(rest) => sha_crypt_shape("$6$", rest, 86),
        CryptMethod::Bcrypt(rest) => bcrypt_shape(rest),
        CryptMethod::Other(method) => {
            return Verification::Unsupported(format!("{{CRYPT}}{method}"));
        }
        CryptMethod::Malformed => return Verification::Mismatch,
    };

    match shape {
        CryptShape::Valid if pwhash::unix::verify(password, hash) => Verification::Match,
        CryptShape::Valid | CryptShape::Malformed => Verification::Mismatch,
        CryptShape::TooCostly(what) => Verification::Unsupported(format!("{{CRYPT}}{what}")),
    }
}

/// Tells the crypt method from the prefix of `hash`; the known ones carry what follows
/// `$id$`.
fn crypt_method(hash: &str) -> CryptMethod<'_> {
    let Some(modular) = hash.strip_prefix('$') else {
        // Traditional DES is 13 characters; BSDi extended DES is `_` and 19 more.
        let des = (hash.len() == 13 && is_hash64_text(hash))
            || hash
                .strip_prefix('_')
                .is_some_and(|rest| is_hash64_of_len(rest, 19));
        return if des {
            CryptMethod::Other("des".to_string())
        } else {
            CryptMethod::Malformed
        };
    };
    let Some((id, rest)) = modular.split_once('$') else {
        return CryptMethod::Malformed;
    };

    match id {
        "1" => CryptMethod::Md5(rest),
        "5" => CryptMethod::Sha256(rest),
        "6" => CryptMethod::Sha512(rest),
        "2a" | "2b" | "2y" => CryptMethod::Bcrypt(rest),
        _ if !id.is_empty() && id.len() <= 8 && id.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            CryptMethod::Other(format!("${id}$"))
        }
        _ => CryptMethod::Malformed,
    }
}

/// Whether a crypt string can be handed to pwhash.
enum CryptShape {
    /// Well-formed and within the cost limits.
    Valid,
    /// Well-formed, but verifying it would cost more than the limits allow.
    TooCostly(String),
    /// Not of its method's shape.
    Malformed,
}

/// After `$1$`: up to 8 salt characters, `$`, 22 checksum characters.
fn md5_crypt_shape(rest: &str) -> CryptShape {
    match rest.split_once('$') {
        Some((salt, checksum))
            if salt.len() <= 8 && is_hash64_text(salt) && is_hash64_of_len(checksum, 22) =>
        {
            CryptShape::Valid
        }
        _ => CryptShape::Malformed,
    }
}

/// After `$5$` or `$6$`: an optional `rounds=N$`, up to 16 salt characters, `$`, the checksum.
fn sha_crypt_shape(id: &str, rest: &str, checksum_len: usize) -> CryptShape {
    let mut rest = rest;
    let mut rounds = None;
    if let Some(after) = rest.strip_prefix("rounds=") {
        let Some((digits, after)) = after.split_once('$') else {
            return CryptShape::Malformed;
        };
        // Digits only, no sign, and short enough that the u32 parse cannot overflow.
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return CryptShape::Malformed;
        }
        rounds = digits.parse::<u32>().ok();
        rest = after;
    }

    let Some((salt, checksum)) = rest.split_once('$') else {
        return CryptShape::Malformed;
    };
    if salt.len() > 16 || !is_hash64_text(salt) || !is_hash64_of_len(checksum, checksum_len) {
        return CryptShape::Malformed;
    }
    match rounds {
        Some(n) if n > SHA_CRYPT_MAX_ROUNDS => CryptShape::TooCostly(format!(
            "{id} with rounds={n} (above {SHA_CRYPT_MAX_ROUNDS})"
        )),
        _ => CryptShape::Valid,
    }
}

/// After `$2b$` (or `$2a$`, `$2y$`): a two-digit cost from 04 to 31, `$`, 53 characters.
fn bcrypt_shape(rest: &str) -> CryptShape {
    let Some((cost, salt_and_checksum)) = rest.split_once('$') else {
        return CryptShape::Malformed;
    };
    if cost.len() != 2 || !cost.bytes().all(|b| b.is_ascii_digit()) {
        return CryptShape::Malformed;
    }
    if !is_hash64_of_len(salt_and_checksum, 53) {
        return CryptShape::Malformed;
    }

    match cost.parse::<u32>() {
        Ok(n) if !(4..=31).contains(&n) => CryptShape::Malformed,
        Ok(n) if n > BCRYPT_MAX_COST => {
            CryptShape::TooCostly(format!("bcrypt with cost {n} (above {BCRYPT_MAX_COST})"))
        }
        Ok(_) => CryptShape::Valid,
        Err(_) => CryptShape::Malformed,
    }
}

/// A character of crypt's base-64 alphabet (`./0-9A-Za-z`; bcrypt orders it differently).
fn is_hash64(b: u8) -> bool {
    b == b'.' || b == b'/' || b.is_ascii_alphanumeric()
}

/// Whether `text` is made only of crypt base-64 characters.
fn is_hash64_text(text: &str) -> bool {
    text.bytes().all(is_hash64)
}

/// Whether `text` is exactly `len` crypt base-64 characters.
fn is_hash64_of_len(text: &str, len: usize) -> bool {
    text.len() == len && is_hash64_text(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    // /usr/sbin/slappasswd -h '{SSHA}' -s 'pw'
    const SSHA_PW: &str = "{SSHA}d44YKkrjsItuBupTOuFa+2UqJ7iF9UMD";

    // /usr/sbin/slappasswd -o module-load=pw-sha2 -h '{SSHA256}' -s 'pw'
    const SSHA256_PW: &str = "{SSHA256}z39Hj2AzKkMBFDeUJ6YcBECTEBv1lhgMgV2iC7ugTLJwGoIeCMs7Rg==";

    // /usr/sbin/slappasswd -o module-load=pw-sha2 -h '{SSHA512}' -s 'pw'
    const SSHA512_PW: &str = "{SSHA512}FbRo4vJyp38uhbkqt1tf0LmbF/K46PM6vtLm/PwCcZgbkUT+ZQXHV2kwAx\
                              /1y9/Zjon7jX1hBmxvGE+RuTW4UpVtprLWsUha";

    // /usr/sbin/slappasswd -o module-load=argon2 -h '{ARGON2}' -s 'pw' (argon2i, no NUL on
    // stdout)
    const ARGON2I_SLAPPASSWD_PW: &str = "{ARGON2}$argon2i$v=19$m=4096,t=3,p=1$NWEKLUSDNh5d4zZm77rEn\
                                         A$jyaFwKkiM7zj+RvjJBm+mQpGX6Vaj2F330+vO97CXiw";

    // Written by slapd 2.5.13 itself, two trailing NULs included: a throw-away slapd with
    // `olcModuleLoad: argon2` and `olcPasswordHash: {ARGON2}`, then
    // `ldappasswd -x -H ldap://127.0.0.1:PORT -D cn=admin,dc=example,dc=org -w secret -s pw
    //  uid=u1,dc=example,dc=org` and `ldapsearch ... -L` (the userPassword:: value, decoded).
    const ARGON2I_SLAPD_PW: &str = "{ARGON2}$argon2i$v=19$m=4096,t=3,p=1$lh/4lTqQVlhPzKIBZwvzmg$U\
                                    JaMIwilgfzqWPBzUiuf+fKLOHGjLDGy+snoQwB8le0\0\0";

    // echo -n pw | argon2 "$(openssl rand -hex 8)" -id -e   (Debian package argon2, the
    // reference implementation; the prefix added by hand)
    const ARGON2ID_PW: &str = "{ARGON2}$argon2id$v=19$m=4096,t=3,p=1$MWU2MTE3MGFmMzE2ZjFjNg$ONsW\
                               ueIkhhnvDL9uLT2wVFzr3ISx6z8s9bqy4h0pJHM";

    // echo -n pw | argon2 "$(openssl rand -hex 8)" -d -e
    const ARGON2D_PW: &str = "{ARGON2}$argon2d$v=19$m=4096,t=3,p=1$M2NlOWM2MzQxZWJhNDY0MQ$n/oAx/\
                              x1oCBuWqw5pKGHIzY2ECJNEk3VLnvbOIjJhEc";

    // python3 -c "import crypt; print(crypt.crypt('pw', crypt.mksalt(crypt.METHOD_SHA512)))"
    const CRYPT_SHA512_PW: &str = "{CRYPT}$6$X6tY9wPzj/y0bRgi$n.qZPgAz7XCjqCBKSrFC740ZD3uvjw/t3/\
                                   M9SLEReIouWykFmJ.dVXHSdikLk.mgXq6X1uKRzWx8RLWd1y9ho/";

    // python3 -c "import crypt; print(crypt.crypt('pw', crypt.mksalt(crypt.METHOD_SHA256)))"
    const CRYPT_SHA256_PW: &str =
        "{CRYPT}$5$blHc5wu2NYtqOr2g$GoBp4zUx0A3uURkWx27VgESjDkmr4tDS6cP2gO147m5";

    // python3 -c "import crypt; print(crypt.crypt('pw', crypt.mksalt(crypt.METHOD_MD5)))"
    const CRYPT_MD5_PW: &str = "{CRYPT}$1$gX7huURl$6Rbs7nJfnTZIwDxDFKRTS.";

    // python3 -c "import crypt; print(crypt.crypt('pw', crypt.mksalt(crypt.METHOD_BLOWFISH)))"
    const CRYPT_BCRYPT_2B_PW: &str =
        "{CRYPT}$2b$12$gCvCUlhFpN3sZqKagQgRl.D3EEavZQNi6.bzlFVzYw.GOgQ589PoG";

    // The same hash with the `$2y$` tag; libxcrypt agrees: python3 -c "import crypt;
    // print(crypt.crypt('pw', '$2y$12$gCvCUlhFpN3sZqKagQgRl.D3EEavZQNi6.bzlFVzYw.GOgQ589PoG'))"
    // prints it unchanged.
    const CRYPT_BCRYPT_2Y_PW: &str =
        "{CRYPT}$2y$12$gCvCUlhFpN3sZqKagQgRl.D3EEavZQNi6.bzlFVzYw.GOgQ589PoG";

    /// The three claims every known-answer value must satisfy.
    fn assert_known_answer(stored: &str) {
        assert_eq!(
            verify("pw", stored),
            Verification::Match,
            "right password: {stored:?}"
        );
        assert_eq!(
            verify("pW", stored),
            Verification::Mismatch,
            "wrong password: {stored:?}"
        );
        assert_eq!(
            verify("", stored),
            Verification::Mismatch,
            "empty password: {stored:?}"
        );
    }

    #[test]
    fn ssha_from_slappasswd_verifies() {
        assert_known_answer(SSHA_PW);
    }

    #[test]
    fn ssha256_from_slappasswd_verifies() {
        assert_known_answer(SSHA256_PW);
    }

    #[test]
    fn ssha512_from_slappasswd_verifies() {
        assert_known_answer(SSHA512_PW);
    }

    #[test]
    fn argon2i_from_slappasswd_verifies() {
        assert_known_answer(ARGON2I_SLAPPASSWD_PW);
    }

    #[test]
    fn argon2_written_by_slapd_with_trailing_nuls_verifies() {
        assert!(ARGON2I_SLAPD_PW.ends_with('\0'));
        assert_known_answer(ARGON2I_SLAPD_PW);
    }

    #[test]
    fn argon2id_from_reference_tool_verifies() {
        assert_known_answer(ARGON2ID_PW);
    }

    #[test]
    fn argon2d_from_reference_tool_verifies() {
        assert_known_answer(ARGON2D_PW);
    }

    #[test]
    fn sha512_crypt_from_python_verifies() {
        assert_known_answer(CRYPT_SHA512_PW);
    }

    #[test]
    fn sha256_crypt_from_python_verifies() {
        assert_known_answer(CRYPT_SHA256_PW);
    }

    #[test]
    fn md5_crypt_from_python_verifies() {
        assert_known_answer(CRYPT_MD5_PW);
    }

    #[test]
    fn bcrypt_2b_from_python_verifies() {
        assert_known_answer(CRYPT_BCRYPT_2B_PW);
    }

    #[test]
    fn bcrypt_with_2y_tag_verifies() {
        assert_known_answer(CRYPT_BCRYPT_2Y_PW);
    }

    #[test]
    fn scheme_prefix_is_case_insensitive() {
        let lower = SSHA_PW.replace("{SSHA}", "{ssha}");
        assert_eq!(verify("pw", &lower), Verification::Match);
        let mixed = CRYPT_MD5_PW.replace("{CRYPT}", "{Crypt}");
        assert_eq!(verify("pw", &mixed), Verification::Match);
    }

    #[test]
    fn hash_argon2_output_verifies_and_is_argon2id_with_default_parameters() {
        let stored = hash_argon2("correct horse");
        assert!(
            stored.starts_with("{ARGON2}$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert_eq!(verify("correct horse", &stored), Verification::Match);
        assert_eq!(verify("correct horse ", &stored), Verification::Mismatch);
    }

    #[test]
    fn two_argon2_hashes_of_one_password_differ() {
        assert_ne!(hash_argon2("pw"), hash_argon2("pw"));
    }

    #[test]
    fn cleartext_is_unsupported_even_when_it_equals_the_password() {
        let cleartext = Verification::Unsupported("cleartext".to_string());
        assert_eq!(verify("pw", "pw"), cleartext);
        assert_eq!(verify("{pw", "{pw"), cleartext);
        assert_eq!(verify("pw", ""), cleartext);
    }

    #[test]
    fn unknown_and_unsalted_schemes_are_unsupported_by_name() {
        // /usr/sbin/slappasswd -h '{MD5}' -s pw, then the scheme lowered by hand
        let md5 = verify("pw", "{md5}j+TBFFEoHAlKZXjm3b9e7Q==");
        assert_eq!(md5, Verification::Unsupported("{MD5}".to_string()));
        // /usr/sbin/slappasswd -h '{SHA}' -s pw
        let sha = verify("pw", "{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=");
        assert_eq!(sha, Verification::Unsupported("{SHA}".to_string()));
    }

    #[test]
    fn crypt_methods_without_an_implementation_are_unsupported() {
        // python3 -c "import crypt; print(crypt.crypt('pw', crypt.mksalt(crypt.METHOD_CRYPT)))"
        let des = verify("pw", "{CRYPT}4/SLSLxKxeYb.");
        assert_eq!(des, Verification::Unsupported("{CRYPT}des".to_string()));
        // python3 -c "import crypt; print(crypt.crypt('pw', '$y$j9T$ZLc5D4vN0ZgkzQnB8m3Yb1'))"
        let yescrypt =
            "{CRYPT}$y$j9T$ZLc5D4vN0ZgkzQnB8m3Yb1$I6dRAabpmm4hDq9avVUPatWc72ijKfIYQ6sz9CblgH1";
        assert_eq!(
            verify("pw", yescrypt),
            Verification::Unsupported("{CRYPT}$y$".to_string())
        );
    }

    #[test]
    fn empty_password_is_a_mismatch_before_any_comparison() {
        for stored in [
            "",
            "{SSHA}",
            "cleartext",
            "{MD5}x",
            CRYPT_SHA512_PW,
            ARGON2ID_PW,
        ] {
            assert_eq!(verify("", stored), Verification::Mismatch, "{stored:?}");
        }
    }

    #[test]
    fn salted_sha_without_salt_is_a_mismatch() {
        // The unsalted `/usr/sbin/slappasswd -h '{SHA}' -s pw`: 20 bytes, no salt after them.
        assert_eq!(
            verify("pw", "{SSHA}GpHWL3ymc5liWkNopqtdSjuqYHM="),
            Verification::Mismatch
        );
        assert_eq!(verify("pw", "{SSHA}not base64!"), Verification::Mismatch);
        assert_eq!(verify("pw", "{SSHA256}"), Verification::Mismatch);
    }

    #[test]
    fn costly_parameters_are_refused_before_any_work() {
        let argon2 = "{ARGON2}$argon2id$v=19$m=4194304,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";
        assert!(matches!(verify("pw", argon2), Verification::Unsupported(_)));
        let sha = "{CRYPT}$6$rounds=999999999$X6tY9wPzj/y0bRgi$n.qZPgAz7XCjqCBKSrFC740ZD3uvjw/t3/\
                   M9SLEReIouWykFmJ.dVXHSdikLk.mgXq6X1uKRzWx8RLWd1y9ho/";
        assert!(matches!(verify("pw", sha), Verification::Unsupported(_)));
        let bcrypt = CRYPT_BCRYPT_2B_PW.replace("$12$", "$31$");
        assert!(matches!(
            verify("pw", &bcrypt),
            Verification::Unsupported(_)
        ));
    }

    #[test]
    fn password_with_nul_does_not_match_a_crypt_hash_of_its_prefix() {
        assert_eq!(verify("pw\0extra", CRYPT_SHA512_PW), Verification::Mismatch);
        assert_eq!(
            verify("pw\0extra", CRYPT_BCRYPT_2B_PW),
            Verification::Mismatch
        );
    }

    #[test]
    fn malformed_stored_values_never_panic_and_never_match() {
        let mut values = vec![
            "{".to_string(),
            "{}".to_string(),
            "{CRYPT}".to_string(),
            "{CRYPT}$".to_string(),
            "{CRYPT}$$".to_string(),
            "{CRYPT}!".to_string(),
            "{CRYPT}*".to_string(),
            "{CRYPT}$6$".to_string(),
            "{CRYPT}$6$rounds=$salt$".to_string(),
            "{CRYPT}$6$rounds=-5$salt$x".to_string(),
            "{CRYPT}$1$\u{80}\u{80}$aaaaaaaaaaaaaaaaaaaaaa".to_string(),
            "{CRYPT}$1$\t$aaaaaaaaaaaaaaaaaaaaaa".to_string(),
            "{CRYPT}$6$\u{80}$x".to_string(),
            "{CRYPT}$2b$12$\u{80}".to_string(),
            "{CRYPT}$2b$1$gCvCUlhFpN3sZqKagQgRl.D3EEavZQNi6.bzlFVzYw.GOgQ589PoG".to_string(),
            "{CRYPT}$2b$03$gCvCUlhFpN3sZqKagQgRl.D3EEavZQNi6.bzlFVzYw.GOgQ589PoG".to_string(),
            "{ARGON2}".to_string(),
            "{ARGON2}$argon2id$".to_string(),
            "{ARGON2}$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA".to_string(),
            "{ARGON2}$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".to_string(),
            "{SSHA512}////".to_string(),
        ];

        // Every prefix of every well-formed value, cut at character boundaries.
        for known in [
            SSHA_PW,
            ARGON2ID_PW,
            CRYPT_SHA512_PW,
            CRYPT_MD5_PW,
            CRYPT_BCRYPT_2B_PW,
        ] {
            let cuts = known.char_indices().map(|(i, _)| i).skip(1);
            values.extend(cuts.map(|i| known[..i].to_string()));
        }
        for value in &values {
            assert_ne!(verify("pw", value), Verification::Match, "{value:?}");
        }
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
