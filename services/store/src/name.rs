//! Maildir file names: making unique ones, and reading size and flags back out of them.
//!
//! A name is `<unique>[:2,<flags>]`. The unique part follows the form Dovecot and Courier
//! write, `<seconds>.M<microseconds>P<pid>Q<sequence>R<random>.<host>,S=<size>`, so both accept
//! it and so that POP3 sizes and quota need no `stat`. The `:2,` info suffix carries the
//! flags, one letter each in ASCII order (`D`raft, `F`lagged, `P`assed, `R`eplied, `S`een,
//! `T`rashed), as the Maildir specification (cr.yp.to/proto/maildir.html) defines.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Separator of the info suffix.
pub const INFO_SEPARATOR: &str = ":2,";

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A fresh unique name for a message of `size` bytes (no info suffix).
pub fn unique(size: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded per process from the OS: enough to keep two hosts with the same
    // name, pid and clock apart. Uniqueness is still enforced by exclusive creation.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(sequence);
    hasher.write_u128(now.as_nanos());
    let random = hasher.finish();
    format!(
        "{}.M{}P{}Q{}R{:016x}.{},S={}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        sequence,
        random,
        host(),
        size
    )
}

/// The host part: `/` and `:` cannot appear in it (maildir.html), so they are written as
/// `\057` and `\072`, as qmail does.
pub(crate) fn host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let raw = if raw.is_empty() {
            "localhost".to_string()
        } else {
            raw
        };
        raw.replace('/', "\\057")
            .replace(':', "\\072")
            .replace(',', "\\054")
    })
}

/// The process id and host in a name made by [`unique`] (also Dovecot's `P<pid>` form), to
/// tell whether the process that made a `tmp/` file is still alive.
pub fn writer(file_name: &str) -> Option<(u32, &str)> {
    let mut parts = file_name.splitn(3, '.');
    let (_, middle, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let pid = middle.split_once('P')?.1;
    let pid: u32 = pid[..pid.find(|c: char| !c.is_ascii_digit()).unwrap_or(pid.len())]
        .parse()
        .ok()?;
    let host = rest.split([',', ':']).next()?;
    Some((pid, host))
}

/// Counts the size a message has once every line ends in CRLF, as POP3 and IMAP send it: a
/// bare LF or a bare CR each become two bytes, and an unterminated last line gets its CRLF.
/// Fed chunk by chunk, so it costs nothing extra while a message is copied.
#[derive(Debug, Clone, Default)]
pub struct CrlfSize {
    bytes: u64,
    extra: u64,
    after_cr: bool,
    last: Option<u8>,
}

impl CrlfSize {
    /// Adds a chunk.
    pub fn push(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        for &byte in chunk {
            match byte {
                b'\n' if !self.after_cr => self.extra += 1,
                b'\n' => {}
                _ if self.after_cr => self.extra += 1,
                _ => {}
            }
            self.after_cr = byte == b'\r';
        }
        if let Some(&last) = chunk.last() {
            self.last = Some(last);
        }
    }

    /// The CRLF size of everything pushed.
    pub fn total(&self) -> u64 {
        let open_line = matches!(self.last, Some(byte) if byte != b'\n' && byte != b'\r');
        self.bytes + self.extra + u64::from(self.after_cr) + if open_line { 2 } else { 0 }
    }
}

/// The parts of a message file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName<'a> {
    /// The unique part: the message's stable id within its mailbox.
    pub id: &'a str,
    /// `,S=<size>` when present.
    pub size: Option<u64>,
    /// `,W=<size>` when present: the size with every line ending CRLF (Dovecot writes it too).
    pub virtual_size: Option<u64>,
    /// The flag letters after `:2,` (empty when none or no suffix).
    pub flags: &'a str,
}

/// Splits a file name; `None` for names Maildir readers skip (dot files).
pub fn parse(file_name: &str) -> Option<ParsedName<'_>> {
    if file_name.starts_with('.') || file_name.is_empty() {
        return None;
    }
    let (id, flags) = match file_name.split_once(INFO_SEPARATOR) {
        Some((id, flags)) => (id, flags),
        // Some writers use ';' instead of ':' on filesystems without colons.
        None => match file_name.split_once(";2,") {
            Some((id, flags)) => (id, flags),
            None => (file_name, ""),
        },
    };
    let field = |prefix: &str| {
        id.split(',')
            .skip(1)
            .find_map(|field| field.strip_prefix(prefix))
            .and_then(|n| n.parse().ok())
    };
    Some(ParsedName {
        id,
        size: field("S="),
        virtual_size: field("W="),
        flags,
    })
}

/// Flag letters normalised: standard letters uppercase and keyword letters lowercase, each
/// once, in ASCII order (maildir.html: "Flags must be stored in ASCII order").
pub fn normalise_flags(flags: &str) -> String {
    let mut letters: Vec<char> = flags.chars().filter(|c| c.is_ascii_alphabetic()).collect();
    letters.sort_unstable();
    letters.dedup();
    letters.into_iter().collect()
}

/// The file name for `id` in `cur/` with `flags`.
pub fn with_flags(id: &str, flags: &str) -> String {
    format!("{id}{INFO_SEPARATOR}{}", normalise_flags(flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_carry_the_size() {
        let a = unique(4096);
        let b = unique(4096);
        assert_ne!(a, b);
        let parsed = parse(&a).unwrap();
        assert_eq!(parsed.size, Some(4096));
        assert_eq!(parsed.id, a);
        assert!(!a.contains('/') && !a.contains(':'));
    }

    #[test]
    fn flags_and_sizes_are_read_from_dovecot_style_names() {
        let parsed = parse("1700000000.M1P2.host,S=1234,W=1260:2,RS").unwrap();
        assert_eq!(parsed.id, "1700000000.M1P2.host,S=1234,W=1260");
        assert_eq!(parsed.size, Some(1234));
        assert_eq!(parsed.flags, "RS");
        let plain = parse("1700000000.12345.host").unwrap();
        assert_eq!((plain.size, plain.flags), (None, ""));
        assert_eq!(parse(".hidden"), None);
    }

    #[test]
    fn the_writer_of_a_name_is_its_pid_and_host() {
        let name = unique(10);
        assert_eq!(writer(&name), Some((std::process::id(), host())));
        assert_eq!(
            writer("1700000000.M12P345Q6.mx.example.test,S=5"),
            Some((345, "mx.example.test"))
        );
        assert_eq!(writer("garbage"), None);
    }

    #[test]
    fn the_crlf_size_counts_bare_line_ends_twice() {
        let mut size = CrlfSize::default();
        for chunk in [b"a\r".as_slice(), b"\nb\n", b"c\rd\r"] {
            size.push(chunk);
        }
        // a CRLF b LF c CR d CR: the LF and both bare CRs grow by one each.
        assert_eq!(size.total(), 9 + 3);
        let mut open = CrlfSize::default();
        open.push(b"x\r\nlast");
        assert_eq!(open.total(), 7 + 2, "the last line gets its CRLF");
        let parsed = parse("1.M1P1.h,S=10,W=13:2,S").unwrap();
        assert_eq!((parsed.size, parsed.virtual_size), (Some(10), Some(13)));
    }

    #[test]
    fn flags_are_normalised_into_ascii_order() {
        assert_eq!(normalise_flags("SRSa"), "RSa");
        assert_eq!(with_flags("x", "TSD"), "x:2,DST");
        assert_eq!(with_flags("x", ""), "x:2,");
    }
}
