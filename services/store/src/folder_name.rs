//! Folder names: the UTF-8 names IMAP clients see, and the Maildir++ directories that hold them.
//!
//! A folder below INBOX lives in the mailbox root as a directory named `.` followed by the
//! folder's full name in modified UTF-7 (RFC 3501 §5.1.3), levels joined by `.`:
//!
//! | name shown to clients | directory |
//! | --- | --- |
//! | `Sent` | `.Sent` |
//! | `Archive.2024` | `.Archive.2024` |
//! | `Entwürfe` | `.Entw&APw-rfe` |
//! | `A&B` | `.A&-B` |
//! | `台北.日本語` | `.&U,BTFw-.&ZeVnLIqe-` |
//!
//! This is the layout Courier-IMAP uses and Dovecot's `LAYOUT=maildir++` default (checked
//! against `doveadm mailbox create` of Dovecot 2.3.19, which made exactly the directories
//! above), so a tree moves between the three without renaming anything.
//!
//! # The hierarchy separator is `.`
//!
//! Mailfold shows clients `.` as the hierarchy separator, as Courier and Dovecot do over
//! Maildir++ (Dovecot's default separator for Maildir is `.`). The directory form has no
//! other way to write a level, so a `.` inside one level cannot exist: `Archive.2024` is always
//! the folder `2024` inside `Archive`. Offering `/` to clients instead would need an escape
//! for `.` on disk (Dovecot's listescape plugin writes `\2e`), which Courier would show as a
//! different name; Mailfold does not do that. The parent of a nested folder need not have a
//! directory of its own: Dovecot creates only `.Archive.2024` for `Archive.2024`.
//!
//! # Refused names
//!
//! [`FolderName::parse`] refuses, each with its own [`FolderNameError`]: the empty name;
//! `INBOX` itself in any case (RFC 3501 §5.1: it is the root, not a folder); a name that starts
//! with `.` (its directory would start with `..`, which Maildir++ forbids) or has an empty level
//! (`a..b`, `a.`); any `/`, NUL or other control character; a leading `~` (Dovecot refuses it
//! too, as it may be read as a home directory); a name over 1000 bytes; and a name whose
//! directory would be over 255 bytes, the longest file name Linux file systems and NFS accept.
//! Levels `.` and `..` cannot be formed at all: with `.` as the separator they are empty levels.
//! A first level `INBOX` in any case is written `INBOX`, as Dovecot writes it (`inbox.Sub`
//! becomes `INBOX.Sub`, directory `.INBOX.Sub`).
//!
//! Names are compared and stored as given: no Unicode normalisation is applied, so `é` as one
//! code point and as `e` plus a combining accent are two folders, as in Dovecot and Courier.

use thiserror::Error;

/// The longest full folder name accepted, in UTF-8 bytes.
pub const MAX_NAME_BYTES: usize = 1000;

/// The longest directory name accepted, in bytes (`NAME_MAX` on Linux file systems and NFS).
pub const MAX_DIRECTORY_BYTES: usize = 255;

/// The hierarchy separator, in names and in directories alike.
pub const SEPARATOR: char = '.';

/// The reserved name of the mailbox root (RFC 3501 §5.1).
const INBOX: &str = "INBOX";

/// The modified BASE64 alphabet: BASE64 with `,` in place of `/` (RFC 3501 §5.1.3).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Why a folder name is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FolderNameError {
    /// The name is empty.
    #[error("folder name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_BYTES`].
    #[error("folder name is {length} bytes long, the limit is {MAX_NAME_BYTES}")]
    TooLong {
        /// The name's length in bytes.
        length: usize,
    },
    /// The name is INBOX itself, which is the mailbox root and not a folder below it.
    #[error("folder name is INBOX, which is not a folder")]
    Inbox,
    /// The name contains a NUL character.
    #[error("folder name contains a NUL character")]
    Nul,
    /// The name contains `/`, which would make a path below the mailbox root.
    #[error("folder name contains '/'")]
    Slash,
    /// The name contains a control character other than NUL.
    #[error("folder name contains the control character U+{:04X}", u32::from(*character))]
    ControlCharacter {
        /// The offending character.
        character: char,
    },
    /// The name starts with the hierarchy separator.
    #[error("folder name starts with the hierarchy separator '.'")]
    LeadingSeparator,
    /// The name starts with `~`.
    #[error("folder name starts with '~'")]
    LeadingTilde,
    /// A level of the name is empty (`a..b` or a trailing `.`).
    #[error("folder name has an empty level between separators")]
    EmptyLevel,
    /// The directory for the name would be longer than [`MAX_DIRECTORY_BYTES`].
    #[error("folder directory would be {length} bytes long, the limit is {MAX_DIRECTORY_BYTES}")]
    DirectoryTooLong {
        /// The directory name's length in bytes.
        length: usize,
    },
}

/// A validated folder below INBOX: its name as IMAP shows it (UTF-8, levels joined by `.`)
/// and the Maildir++ directory that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FolderName {
    /// The full name in UTF-8, such as `Archive.2024`.
    display: String,
    /// The directory in the mailbox root, such as `.Archive.2024`.
    directory: String,
}

impl FolderName {
    /// Validates a client's UTF-8 folder name such as `Sent`, `Archive.2024` or `Entwürfe`.
    pub fn parse(name: &str) -> Result<FolderName, FolderNameError> {
        // Length first, so the checks below never walk a huge input.
        if name.is_empty() {
            return Err(FolderNameError::Empty);
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(FolderNameError::TooLong { length: name.len() });
        }
        check_characters(name)?;

        // The shape of the levels.
        if name.starts_with(SEPARATOR) {
            return Err(FolderNameError::LeadingSeparator);
        }
        if name.starts_with('~') {
            return Err(FolderNameError::LeadingTilde);
        }
        if name.split(SEPARATOR).any(str::is_empty) {
            return Err(FolderNameError::EmptyLevel);
        }

        // RFC 3501 §5.1: INBOX is case-insensitive; as a first level it is written upper case.
        let (first, rest) = match name.split_once(SEPARATOR) {
            Some((first, rest)) => (first, Some(rest)),
            None => (name, None),
        };
        let display = match (first.eq_ignore_ascii_case(INBOX), rest) {
            (true, None) => return Err(FolderNameError::Inbox),
            (true, Some(rest)) => format!("{INBOX}{SEPARATOR}{rest}"),
            (false, _) => name.to_string(),
        };

        let directory = directory_of(&display);
        if directory.len() > MAX_DIRECTORY_BYTES {
            return Err(FolderNameError::DirectoryTooLong {
                length: directory.len(),
            });
        }
        Ok(FolderName { display, directory })
    }

    /// Reads an entry of the mailbox root such as `.Sent` or `.Entw&APw-rfe`. `None` when the
    /// entry is not a Maildir++ folder Mailfold can address: no leading `.`, `.` or `..`, a name
    /// starting with `..`, modified UTF-7 that does not decode or is not in its one canonical
    /// form, or a decoded name that [`FolderName::parse`] refuses or would write differently.
    /// Whether the entry is a directory is for the caller to check.
    pub fn from_directory(directory: &str) -> Option<FolderName> {
        // Maildir++: folders start with one period, never two (README.maildirquota).
        let encoded = directory.strip_prefix(SEPARATOR)?;
        if encoded.is_empty() || encoded.starts_with(SEPARATOR) {
            return None;
        }

        // Requiring the round trip keeps the mapping one-to-one: two directories can never
        // show as the same folder name.
        let display = decode_modified_utf7(encoded)?;
        let folder = FolderName::parse(&display).ok()?;
        (folder.directory == directory).then_some(folder)
    }

    /// The full name as IMAP shows it, such as `Archive.2024`.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The directory in the mailbox root, such as `.Archive.2024` (non-ASCII in modified UTF-7).
    pub fn directory(&self) -> &str {
        &self.directory
    }

    /// The folder one level up: `Archive` for `Archive.2024`. `None` for a top-level folder
    /// and for the children of `INBOX`, whose parent is the root itself.
    pub fn parent(&self) -> Option<FolderName> {
        let (parent, _) = self.display.rsplit_once(SEPARATOR)?;
        if parent == INBOX {
            return None;
        }
        // A prefix of a valid name at a separator is valid: its levels and characters are a
        // subset, and its directory is a prefix of this one's.
        Some(FolderName {
            display: parent.to_string(),
            directory: directory_of(parent),
        })
    }
}

/// Refuses NUL, `/` and control characters.
fn check_characters(name: &str) -> Result<(), FolderNameError> {
    for character in name.chars() {
        match character {
            '\0' => return Err(FolderNameError::Nul),
            '/' => return Err(FolderNameError::Slash),
            // C0, DEL and C1: no client can type them, and they confuse logs and listings.
            c if c.is_control() => return Err(FolderNameError::ControlCharacter { character: c }),
            _ => {}
        }
    }
    Ok(())
}

/// The Maildir++ directory for a full folder name.
fn directory_of(display: &str) -> String {
    format!("{SEPARATOR}{}", encode_modified_utf7(display))
}

/// Encodes UTF-8 text in IMAP's modified UTF-7 (RFC 3501 §5.1.3).
pub fn encode_modified_utf7(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    let mut pending: Vec<u16> = Vec::new();
    for character in text.chars() {
        // RFC 3501 §5.1.3: printable US-ASCII (0x20-0x7e) represents itself, "&" as "&-".
        if (' '..='~').contains(&character) {
            flush_base64(&mut pending, &mut encoded);
            if character == '&' {
                encoded.push_str("&-");
            } else {
                encoded.push(character);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(character.encode_utf16(&mut units));
        }
    }
    flush_base64(&mut pending, &mut encoded);
    encoded
}

/// Writes pending UTF-16 units as one `&...-` run of modified BASE64.
fn flush_base64(pending: &mut Vec<u16>, encoded: &mut String) {
    if pending.is_empty() {
        return;
    }
    encoded.push('&');
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    for unit in pending.drain(..) {
        bits = (bits << 16) | u32::from(unit);
        bit_count += 16;
        while bit_count >= 6 {
            bit_count -= 6;
            encoded.push(char::from(ALPHABET[((bits >> bit_count) & 0x3f) as usize]));
        }
        // Keep only the bits not yet written, so the accumulator never overflows.
        bits &= (1 << bit_count) - 1;
    }
    // RFC 3501 §5.1.3 (via RFC 2152): the last character is padded with zero bits, no "=".
    if bit_count > 0 {
        encoded.push(char::from(
            ALPHABET[((bits << (6 - bit_count)) & 0x3f) as usize],
        ));
    }
    // RFC 3501 §5.1.3: every name ends in US-ASCII, so every run is closed with "-".
    encoded.push('-');
}

/// Decodes IMAP's modified UTF-7 (RFC 3501 §5.1.3). `None` unless the input is in the one
/// canonical form the encoder writes: no raw bytes outside 0x20-0x7e, no printable ASCII
/// encoded in BASE64, no two runs side by side, no unclosed run, no non-zero padding bits and
/// no unpaired UTF-16 surrogates.
pub fn decode_modified_utf7(encoded: &str) -> Option<String> {
    let mut decoded = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(character) = rest.chars().next() {
        if character == '&' {
            let (run, after) = rest[1..].split_once('-')?;
            if run.is_empty() {
                decoded.push('&');
            } else {
                decode_base64_run(run, &mut decoded)?;
            }
            rest = after;
        } else if (' '..='~').contains(&character) {
            decoded.push(character);
            rest = &rest[1..];
        } else {
            return None;
        }
    }

    // RFC 3501 §5.1.3 forbids alternate forms; re-encoding catches every one of them at once.
    (encode_modified_utf7(&decoded) == encoded).then_some(decoded)
}

/// Decodes the BASE64 between `&` and `-` into UTF-16 and appends the characters.
fn decode_base64_run(run: &str, decoded: &mut String) -> Option<()> {
    let mut units = Vec::with_capacity(run.len() * 6 / 16);
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    for byte in run.bytes() {
        let value = ALPHABET.iter().position(|&letter| letter == byte)?;
        bits = (bits << 6) | value as u32;
        bit_count += 6;
        if bit_count >= 16 {
            bit_count -= 16;
            units.push(((bits >> bit_count) & 0xffff) as u16);
            bits &= (1 << bit_count) - 1;
        }
    }

    // Leftover bits are padding: fewer than one BASE64 character's worth, all zero.
    if bit_count >= 6 || bits != 0 {
        return None;
    }
    for character in char::decode_utf16(units) {
        decoded.push(character.ok()?);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(name: &str, directory: &str) {
        let parsed = FolderName::parse(name).unwrap();
        assert_eq!(parsed.display(), name);
        assert_eq!(parsed.directory(), directory);
        let listed = FolderName::from_directory(parsed.directory()).unwrap();
        assert_eq!(listed, parsed);
    }

    #[test]
    fn rfc_3501_example_decodes_and_encodes() {
        // RFC 3501 §5.1.3, the mixed English, Japanese and Chinese example.
        let encoded = "~peter/mail/&ZeVnLIqe-/&U,BTFw-";
        let decoded = "~peter/mail/日本語/台北";
        assert_eq!(decode_modified_utf7(encoded).as_deref(), Some(decoded));
        assert_eq!(encode_modified_utf7(decoded), encoded);

        let encoded = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        assert_eq!(
            decode_modified_utf7(encoded).as_deref(),
            Some("~peter/mail/台北/日本語")
        );
        assert_eq!(encode_modified_utf7("~peter/mail/台北/日本語"), encoded);
    }

    #[test]
    fn ampersand_is_written_as_ampersand_dash() {
        assert_eq!(encode_modified_utf7("A&B"), "A&-B");
        assert_eq!(encode_modified_utf7("&"), "&-");
        assert_eq!(decode_modified_utf7("&-&-").as_deref(), Some("&&"));
    }

    #[test]
    fn characters_outside_the_bmp_use_surrogate_pairs() {
        // U+1F4E7 E-MAIL SYMBOL is D83D DCE7 in UTF-16.
        assert_eq!(encode_modified_utf7("📧"), "&2D3c5w-");
        assert_eq!(decode_modified_utf7("&2D3c5w-").as_deref(), Some("📧"));
    }

    #[test]
    fn non_canonical_and_broken_utf7_is_refused() {
        for bad in [
            "&AGE-",      // "a" encoded, though it represents itself
            "&AOQ-&AOQ-", // two runs side by side instead of one
            "&AOQ",       // run never closed
            "&AOR-",      // non-zero padding bits
            "&AOQA-",     // a leftover BASE64 character
            "&2D0-",      // unpaired high surrogate
            "&A*Q-",      // not in the alphabet
            "Entwürfe",   // raw 8-bit text
            "tab\there",  // raw control character
        ] {
            assert_eq!(decode_modified_utf7(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ascii_names_round_trip() {
        round_trip("Sent", ".Sent");
        round_trip("Junk E-Mail", ".Junk E-Mail");
        round_trip("a~b", ".a~b");
    }

    #[test]
    fn utf8_names_round_trip_as_dovecot_writes_them() {
        // Directories as doveadm mailbox create (Dovecot 2.3.19, LAYOUT=maildir++) made them.
        round_trip("Entwürfe", ".Entw&APw-rfe");
        round_trip("台北.日本語", ".&U,BTFw-.&ZeVnLIqe-");
        round_trip("Ünï.Çödé", ".&ANw-n&AO8-.&AMcA9g-d&AOk-");
    }

    #[test]
    fn ampersand_names_round_trip() {
        round_trip("A&B", ".A&-B");
        round_trip("&", ".&-");
    }

    #[test]
    fn nested_names_round_trip_and_know_their_parent() {
        round_trip("Archive.2024.Q1", ".Archive.2024.Q1");
        let folder = FolderName::parse("Archive.2024.Q1").unwrap();
        let parent = folder.parent().unwrap();
        assert_eq!(
            (parent.display(), parent.directory()),
            ("Archive.2024", ".Archive.2024")
        );
        let grandparent = parent.parent().unwrap();
        assert_eq!(grandparent, FolderName::parse("Archive").unwrap());
        assert_eq!(grandparent.parent(), None);

        let folder = FolderName::parse("台北.日本語").unwrap();
        assert_eq!(folder.parent().unwrap().directory(), ".&U,BTFw-");
    }

    #[test]
    fn inbox_as_first_level_is_written_upper_case_and_has_no_folder_parent() {
        let folder = FolderName::parse("inbox.Sub").unwrap();
        assert_eq!(
            (folder.display(), folder.directory()),
            ("INBOX.Sub", ".INBOX.Sub")
        );
        assert_eq!(folder.parent(), None);
        assert_eq!(FolderName::from_directory(".INBOX.Sub"), Some(folder));
        // A lower-case directory would not come back to itself, so it is not addressable.
        assert_eq!(FolderName::from_directory(".inbox.Sub"), None);
        // INBOX further down is an ordinary level.
        round_trip("x.inbox", ".x.inbox");
    }

    #[test]
    fn every_refusal_has_its_own_error() {
        let long_name = "a".repeat(MAX_NAME_BYTES + 1);
        let cases: Vec<(&str, FolderNameError)> = vec![
            ("", FolderNameError::Empty),
            (
                &long_name,
                FolderNameError::TooLong {
                    length: MAX_NAME_BYTES + 1,
                },
            ),
            ("INBOX", FolderNameError::Inbox),
            ("inbox", FolderNameError::Inbox),
            ("InBoX", FolderNameError::Inbox),
            ("a\0b", FolderNameError::Nul),
            ("a/b", FolderNameError::Slash),
            ("../etc", FolderNameError::Slash),
            (
                "a\tb",
                FolderNameError::ControlCharacter { character: '\t' },
            ),
            (
                "a\u{7f}",
                FolderNameError::ControlCharacter {
                    character: '\u{7f}',
                },
            ),
            (
                "a\u{85}",
                FolderNameError::ControlCharacter {
                    character: '\u{85}',
                },
            ),
            (".Sent", FolderNameError::LeadingSeparator),
            (".", FolderNameError::LeadingSeparator),
            ("..", FolderNameError::LeadingSeparator),
            ("~peter", FolderNameError::LeadingTilde),
            ("a..b", FolderNameError::EmptyLevel),
            ("a.", FolderNameError::EmptyLevel),
            ("a...b", FolderNameError::EmptyLevel),
        ];
        for (name, error) in cases {
            assert_eq!(FolderName::parse(name), Err(error), "{name:?}");
        }
    }

    #[test]
    fn directory_over_255_bytes_is_refused() {
        // 254 ASCII bytes plus the leading "." make 255: the longest accepted.
        let longest = "a".repeat(MAX_DIRECTORY_BYTES - 1);
        assert_eq!(
            FolderName::parse(&longest).unwrap().directory().len(),
            MAX_DIRECTORY_BYTES
        );
        let too_long = "a".repeat(MAX_DIRECTORY_BYTES);
        assert_eq!(
            FolderName::parse(&too_long),
            Err(FolderNameError::DirectoryTooLong {
                length: MAX_DIRECTORY_BYTES + 1
            })
        );
        // 60 CJK characters are 180 bytes of UTF-8 but 1 + 162 bytes of modified UTF-7 ...
        let cjk = "日".repeat(60);
        assert_eq!(FolderName::parse(&cjk).unwrap().directory().len(), 163);
        // ... and 100 of them grow past the limit on disk while staying under 1000 bytes.
        let cjk = "日".repeat(100);
        assert!(matches!(
            FolderName::parse(&cjk),
            Err(FolderNameError::DirectoryTooLong { .. })
        ));
    }

    #[test]
    fn from_directory_ignores_what_is_not_a_folder() {
        for entry in [
            "tmp",
            "cur",
            "new",
            ".",
            "..",
            "maildirfolder",
            "maildirsize",
            "dovecot-uidlist",
            "courierimapkeywords",
            "Sent",
            "..Sent",
            ".Sent.",
            ".a..b",
            ".INBOX",
            ".Entwürfe",
            ".Entw&APw",
            ".&AGE-",
            ".~peter",
            ".a\tb",
        ] {
            assert_eq!(FolderName::from_directory(entry), None, "{entry:?}");
        }
        assert_eq!(
            FolderName::from_directory(".Trash").unwrap().display(),
            "Trash"
        );
    }

    #[test]
    fn error_messages_are_lowercase_without_a_period() {
        let messages = [
            FolderNameError::Inbox.to_string(),
            FolderNameError::ControlCharacter { character: '\u{1}' }.to_string(),
            FolderNameError::DirectoryTooLong { length: 300 }.to_string(),
        ];
        for message in messages {
            assert!(message.starts_with(char::is_lowercase) && !message.ends_with('.'));
        }
        assert_eq!(
            FolderNameError::ControlCharacter { character: '\u{1}' }.to_string(),
            "folder name contains the control character U+0001"
        );
    }
}
