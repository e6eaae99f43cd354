//! The LDIF text format (RFC 2849) of the `ldif` backend's file: content records only.
//!
//! [`parse`] reads what slapcat, `ldapsearch -L` and a person with an editor write: an optional
//! `version: 1`, comments, folded lines, LF or CRLF, plain and base64 values. It refuses what
//! the backend cannot honour rather than guessing: change records (`changetype:`) and URL
//! values (`attr:< file:///...`, which would make loading the file read other files).
//! [`write()`] produces a canonical file that [`parse`] reads back to the same entries.
//!
//! Nothing here does I/O: the backend reads and atomically replaces the file.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::entry::Entry;

/// Longest physical line [`write()`] produces, in bytes, before folding.
const FOLD_WIDTH: usize = 76;

/// An LDIF document that could not be read: the line where the problem starts, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parsing ldif line {line}: {message}")]
pub struct LdifError {
    /// The 1-based physical line; for a folded line, the line it starts on.
    pub line: usize,
    /// What is wrong, lowercase.
    pub message: String,
}

impl LdifError {
    fn new(line: usize, message: impl Into<String>) -> LdifError {
        LdifError {
            line,
            message: message.into(),
        }
    }
}

/// Reads an LDIF document of content records into entries, in file order.
///
/// Values of one attribute are grouped in first-seen order under the first spelling of its
/// name; values that are base64 and not UTF-8 go to [`Entry::binary`]. Never panics.
pub fn parse(text: &str) -> Result<Vec<Entry>, LdifError> {
    // A byte-order mark from a Windows editor is not part of the first line.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = unfold(text)?;
    let mut records = split_records(&lines);

    // RFC 2849 §"Formal Syntax": ldif-content = version-spec 1*(1*SEP ldif-attrval-record);
    // slapcat writes no version line, so it is optional here.
    if let Some(first) = records.first_mut()
        && let Some(&(number, text)) = first.first()
    {
        let (name, value) = parse_line(number, text)?;
        if name.eq_ignore_ascii_case("version") {
            if value != b"1" {
                let shown = String::from_utf8_lossy(&value);
                return Err(LdifError::new(
                    number,
                    format!("unsupported ldif version {shown:?}"),
                ));
            }
            first.remove(0);
        }
    }

    records
        .iter()
        .filter(|record| !record.is_empty())
        .map(|record| parse_record(record))
        .collect()
}

/// Writes `entries` as an LDIF document, entries separated by a blank line.
///
/// No `version: 1` line is written, although RFC 2849's grammar starts with one: slapadd (OpenLDAP 2.5)
/// refuses files that have it, and a file this backend wrote should load into a real server
/// as it is.
///
/// An entry lists its `dn`, its attributes in stored order, then its binary attributes. A value
/// is written plain only when it is an RFC 2849 SAFE-STRING, otherwise as base64; lines longer
/// than 76 bytes are folded. `parse(&write(entries))` gives back `entries` for every `entries`
/// that [`parse`] can produce: a non-empty DN, attribute names as LDIF spells them, no attribute
/// without values, and binary values that are not UTF-8.
pub fn write<'e>(entries: impl IntoIterator<Item = &'e Entry>) -> String {
    let mut out = String::new();
    for (index, entry) in entries.into_iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        write_line(&mut out, "dn", entry.dn.as_bytes());
        for attribute in &entry.attributes {
            for value in &attribute.values {
                write_line(&mut out, &attribute.name, value.as_bytes());
            }
        }
        for (name, values) in &entry.binary {
            for value in values {
                write_line(&mut out, name, value);
            }
        }
    }
    out
}

/// A logical line after unfolding: its text with the line number it starts on, or the blank
/// line that ends a record.
enum Line {
    Text(usize, String),
    Blank,
}

/// Splits `text` into physical lines, joins folded ones and drops comments.
fn unfold(text: &str) -> Result<Vec<Line>, LdifError> {
    let mut lines = Vec::new();
    // The logical line being built: its first line number, its text, whether it is a comment.
    let mut current: Option<(usize, String, bool)> = None;

    for (index, raw) in text.split('\n').enumerate() {
        let number = index + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);

        // RFC 2849 §"Notes on LDIF Syntax" note 2: a line that begins with a single space
        // continues the previous (non-empty) line, comments included.
        if let Some(continued) = raw.strip_prefix(' ') {
            match current.as_mut() {
                Some((_, text, _)) => text.push_str(continued),
                None => {
                    let message = "continuation line (leading space) has no line to continue";
                    return Err(LdifError::new(number, message));
                }
            }
            continue;
        }

        finish_line(current.take(), &mut lines);
        if raw.is_empty() {
            lines.push(Line::Blank);
        } else {
            current = Some((number, raw.to_string(), raw.starts_with('#')));
        }
    }
    finish_line(current, &mut lines);
    Ok(lines)
}

/// Appends a finished logical line to `lines`, unless it is a comment.
fn finish_line(line: Option<(usize, String, bool)>, lines: &mut Vec<Line>) {
    // RFC 2849 §"Formal Syntax": a comment line begins with "#" and is ignored.
    if let Some((number, text, false)) = line {
        lines.push(Line::Text(number, text));
    }
}

/// Groups logical lines into records: the runs of text lines between blank lines.
fn split_records(lines: &[Line]) -> Vec<Vec<(usize, &str)>> {
    let mut records = vec![Vec::new()];
    for line in lines {
        match line {
            Line::Text(number, text) => {
                if let Some(record) = records.last_mut() {
                    record.push((*number, text.as_str()));
                }
            }
            // RFC 2849 §"Formal Syntax": records are separated by one or more SEP.
            Line::Blank => records.push(Vec::new()),
        }
    }
    records
}

/// Parses one record, whose first line must be its `dn`.
fn parse_record(lines: &[(usize, &str)]) -> Result<Entry, LdifError> {
    let Some((&(number, first), rest)) = lines.split_first() else {
        return Err(LdifError::new(0, "empty record"));
    };
    let (name, value) = parse_line(number, first)?;
    if !name.eq_ignore_ascii_case("dn") {
        let message = format!("expected \"dn:\" to start an entry, found attribute {name:?}");
        return Err(LdifError::new(number, message));
    }
    let Ok(dn) = String::from_utf8(value) else {
        return Err(LdifError::new(number, "dn is not valid utf-8"));
    };
    if dn.is_empty() {
        return Err(LdifError::new(number, "empty dn"));
    }

    let mut entry = Entry::new(dn);
    for &(number, text) in rest {
        let (name, value) = parse_line(number, text)?;
        if name.eq_ignore_ascii_case("dn") {
            let message = "second dn in one entry (is the blank line between entries missing?)";
            return Err(LdifError::new(number, message));
        }
        if name.eq_ignore_ascii_case("changetype") {
            let message = "change records (changetype) are not supported, only content records";
            return Err(LdifError::new(number, message));
        }

        // Binary values are kept apart so that the file is rewritten unchanged.
        match String::from_utf8(value) {
            Ok(text) => entry.push(&name, text),
            Err(not_utf8) => push_binary(&mut entry, &name, not_utf8.into_bytes()),
        }
    }
    Ok(entry)
}

/// Appends a binary `value` to the binary attribute `name` (case-insensitive), as
/// [`Entry::push`] does for text.
fn push_binary(entry: &mut Entry, name: &str, value: Vec<u8>) {
    match entry
        .binary
        .iter_mut()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
    {
        Some((_, values)) => values.push(value),
        None => entry.binary.push((name.to_string(), vec![value])),
    }
}

/// Parses `name: value`, `name:: base64` or `name:< url` into the name and the value's bytes.
fn parse_line(number: usize, text: &str) -> Result<(String, Vec<u8>), LdifError> {
    let Some((name, rest)) = text.split_once(':') else {
        return Err(LdifError::new(
            number,
            "missing ':' after the attribute name",
        ));
    };
    if !is_attribute_description(name) {
        return Err(LdifError::new(
            number,
            format!("invalid attribute name {name:?}"),
        ));
    }

    // RFC 2849 §"Formal Syntax": value-spec = ":" (FILL 0*1(SAFE-STRING) /
    // ":" FILL (BASE64-STRING) / "<" FILL url), FILL being spaces.
    let value = if let Some(encoded) = rest.strip_prefix(':') {
        let encoded = encoded.trim_matches(' ');
        match BASE64.decode(encoded) {
            Ok(bytes) => bytes,
            Err(cause) => {
                let message = format!("decoding the base64 value of {name:?}: {cause}");
                return Err(LdifError::new(number, message));
            }
        }
    } else if rest.starts_with('<') {
        let message = format!("url values (\"{name}:<\") are not supported, write the value");
        return Err(LdifError::new(number, message));
    } else {
        rest.trim_start_matches(' ').as_bytes().to_vec()
    };
    Ok((name.to_string(), value))
}

/// Whether `name` is an AttributeDescription: a type, then options after `;`.
fn is_attribute_description(name: &str) -> bool {
    // RFC 2849 §"Formal Syntax": AttributeType = ldap-oid / (ALPHA *(attr-type-chars)),
    // options = option *(";" option), option = 1*opt-char, attr-type-chars = ALPHA/DIGIT/"-".
    let mut parts = name.split(';');
    let attribute_type = parts.next().unwrap_or_default();
    let is_type_char = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
    let is_descriptor = attribute_type
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && attribute_type.bytes().all(is_type_char);
    let is_oid = attribute_type
        .split('.')
        .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()));

    (is_descriptor || is_oid)
        && parts.all(|option| !option.is_empty() && option.bytes().all(is_type_char))
}

/// Appends `name: value` or `name:: base64`, folded.
fn write_line(out: &mut String, name: &str, value: &[u8]) {
    let line = match std::str::from_utf8(value) {
        Ok("") => format!("{name}:"),
        Ok(text) if is_safe_string(value) => format!("{name}: {text}"),
        _ => format!("{name}:: {}", BASE64.encode(value)),
    };
    fold(out, &line);
}

/// Whether `value` may be written plain: an RFC 2849 SAFE-STRING with no trailing space.
fn is_safe_string(value: &[u8]) -> bool {
    // RFC 2849 §"Formal Syntax": SAFE-CHAR = %x01-09 / %x0B-0C / %x0E-7F.
    let is_safe_char = |b: &u8| matches!(b, 0x01..=0x09 | 0x0B..=0x0C | 0x0E..=0x7F);
    // RFC 2849 §"Formal Syntax": SAFE-INIT-CHAR is a SAFE-CHAR but not space, ':' or '<'.
    let safe_init = value
        .first()
        .is_none_or(|b| is_safe_char(b) && !b" :<".contains(b));
    // RFC 2849 §"Notes on LDIF Syntax" note 8: a value ending in a space SHOULD be base64.
    let no_trailing_space = value.last() != Some(&b' ');
    safe_init && no_trailing_space && value.iter().all(is_safe_char)
}

/// Appends `line` to `out`, folded so no physical line exceeds [`FOLD_WIDTH`] bytes.
fn fold(out: &mut String, line: &str) {
    // RFC 2849 §"Notes on LDIF Syntax" note 2: a continuation starts with one space, which
    // counts towards its width.
    let mut rest = line;
    let mut width = FOLD_WIDTH;
    while rest.len() > width {
        // A character is at most 4 bytes, so a boundary lies within 3 bytes before `width`.
        let mut cut = width;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\n ");
        rest = &rest[cut..];
        width = FOLD_WIDTH - 1;
    }
    out.push_str(rest);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Attribute;

    /// What a real tool writes: a throw-away slapd 2.5 with one user whose password was set by
    /// `ldappasswd` under `olcPasswordHash: {ARGON2}`, dumped with
    /// `LDAPCONF=/dev/null ldapsearch -x -H ldap://127.0.0.1:PORT -D cn=admin,dc=example,dc=org
    ///  -w secret -b dc=example,dc=org -L`. It has a version line, comments, base64 UTF-8,
    /// a value with a leading space, and a folded base64 value ending in two NUL bytes.
    const LDAPSEARCH_OUTPUT: &str = "version: 1

#
# LDAPv3
# base <dc=example,dc=org> with scope subtree
# filter: (objectclass=*)
# requesting: ALL
#

# example.org
dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
dc: example
o: Example

# u1, example.org
dn: uid=u1,dc=example,dc=org
objectClass: inetOrgPerson
uid: u1
cn:: SsO2cmcgTcO8bGxlcg==
sn:: TcO8bGxlcg==
description:: IGxlYWRpbmcgc3BhY2U=
userPassword:: e0FSR09OMn0kYXJnb24yaSR2PTE5JG09NDA5Nix0PTMscD0xJGxoLzRsVHFRVmx
 oUHpLSUJad3Z6bWckVUphTUl3aWxnZnpxV1BCelVpdWYrZktMT0hHakxER3krc25vUXdCOGxlMAAA

# search result

# numResponses: 3
# numEntries: 2
";

    fn error_of(text: &str) -> LdifError {
        match parse(text) {
            Ok(entries) => panic!("expected an error for {text:?}, got {entries:?}"),
            Err(error) => error,
        }
    }

    #[test]
    fn ldapsearch_output_is_read_with_comments_folding_and_base64() {
        let entries = parse(LDAPSEARCH_OUTPUT).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].dn, "dc=example,dc=org");
        assert_eq!(
            entries[0].values("objectclass"),
            ["dcObject", "organization"]
        );

        let user = &entries[1];
        assert_eq!(user.dn, "uid=u1,dc=example,dc=org");
        assert_eq!(user.first("cn"), Some("Jörg Müller"));
        assert_eq!(user.first("description"), Some(" leading space"));
        let password = user.first("userPassword").unwrap();
        assert!(password.starts_with("{ARGON2}$argon2i$v=19$m=4096,t=3,p=1$lh/4lTqQ"));
        assert!(password.ends_with("+snoQwB8le0\0\0"), "{password:?}");
        assert!(user.binary.is_empty());
    }

    #[test]
    fn ldapsearch_output_survives_a_rewrite() {
        let entries = parse(LDAPSEARCH_OUTPUT).unwrap();
        assert_eq!(parse(&write(&entries)).unwrap(), entries);
    }

    #[test]
    fn crlf_line_ends_read_like_lf() {
        let crlf = LDAPSEARCH_OUTPUT.replace('\n', "\r\n");
        assert_eq!(parse(&crlf).unwrap(), parse(LDAPSEARCH_OUTPUT).unwrap());
    }

    #[test]
    fn folded_lines_are_joined_before_parsing() {
        let text = "dn: uid=a,\n dc=example\ndescription: one\n  two\n";
        let entries = parse(text).unwrap();
        assert_eq!(entries[0].dn, "uid=a,dc=example");
        assert_eq!(entries[0].first("description"), Some("one two"));
    }

    #[test]
    fn folded_comments_are_skipped_whole() {
        let text = "# a comment\n that goes on\ndn: dc=x\n# inside\n o: still a comment\ndc: x\n";
        let entries = parse(text).unwrap();
        assert_eq!(entries, [entry("dc=x", &[("dc", &["x"])])]);
    }

    #[test]
    fn version_line_is_optional_and_needs_no_blank_line_after_it() {
        let without = parse("dn: dc=x\ndc: x\n").unwrap();
        assert_eq!(parse("version: 1\ndn: dc=x\ndc: x\n").unwrap(), without);
        assert_eq!(parse("version: 1\n\n\ndn: dc=x\ndc: x\n").unwrap(), without);
        assert_eq!(error_of("version: 2\n\ndn: dc=x\n").line, 1);
    }

    #[test]
    fn empty_documents_hold_no_entries() {
        assert_eq!(parse("").unwrap(), []);
        assert_eq!(parse("version: 1\n").unwrap(), []);
        assert_eq!(parse("\n\n# only a comment\n\n").unwrap(), []);
    }

    #[test]
    fn several_blank_lines_separate_entries() {
        let entries = parse("\n\ndn: dc=a\n\n\n\ndn: dc=b\n\n").unwrap();
        assert_eq!(entries, [Entry::new("dc=a"), Entry::new("dc=b")]);
    }

    #[test]
    fn values_are_grouped_case_insensitively_under_the_first_spelling() {
        let text = "dn: dc=x\nobjectClass: top\nmail: a@x\nOBJECTCLASS: domain\ncn;lang-de: Haus\n\
                    cn: house\nmail: b@x\n";
        let entries = parse(text).unwrap();
        let expected = entry(
            "dc=x",
            &[
                ("objectClass", &["top", "domain"]),
                ("mail", &["a@x", "b@x"]),
                ("cn;lang-de", &["Haus"]),
                ("cn", &["house"]),
            ],
        );
        assert_eq!(entries, [expected]);
    }

    #[test]
    fn base64_dn_and_empty_values_are_read() {
        // "dc=ü" in base64
        let entries = parse("dn:: ZGM9w7w=\ndescription:\nseeAlso: \n").unwrap();
        assert_eq!(
            entries,
            [entry("dc=ü", &[("description", &[""]), ("seeAlso", &[""])])]
        );
    }

    #[test]
    fn non_utf8_base64_values_go_to_binary() {
        let text = "dn: uid=a\njpegPhoto:: /9j/4A==\ncn: a\nJPEGphoto:: AP8=\n";
        let entries = parse(text).unwrap();
        assert_eq!(
            entries[0].attributes,
            [Attribute {
                name: "cn".into(),
                values: vec!["a".into()]
            }]
        );
        let photos = vec![vec![0xFF, 0xD8, 0xFF, 0xE0], vec![0x00, 0xFF]];
        assert_eq!(entries[0].binary, [("jpegPhoto".to_string(), photos)]);
        assert_eq!(parse(&write(&entries)).unwrap(), entries);
    }

    #[test]
    fn url_values_are_refused_without_reading_anything() {
        let error = error_of("dn: uid=a\njpegPhoto:< file:///etc/passwd\n");
        assert_eq!(error.line, 2);
        assert!(error.message.contains("url values"), "{error}");
    }

    #[test]
    fn change_records_are_refused() {
        let error = error_of("dn: uid=a\nchangetype: delete\n");
        assert_eq!(error.line, 2);
        assert!(error.message.contains("changetype"), "{error}");
    }

    #[test]
    fn attribute_before_dn_is_an_error_naming_its_line() {
        let error = error_of("version: 1\n\ncn: orphan\ndn: uid=a\n");
        assert_eq!(error.line, 3);
        assert!(error.message.contains("expected \"dn:\""), "{error}");
    }

    #[test]
    fn empty_dn_is_an_error() {
        assert_eq!(error_of("dn:\ncn: a\n").line, 1);
        assert_eq!(error_of("dc: x\n\ndn:   \n").line, 1);
        assert_eq!(error_of("dn: dc=a\n\ndn::\n").line, 3);
    }

    #[test]
    fn missing_colon_is_an_error_naming_its_line() {
        let error = error_of("dn: uid=a\ncn a\n");
        assert_eq!(error.line, 2);
        assert_eq!(
            error.to_string(),
            "parsing ldif line 2: missing ':' after the attribute name"
        );
    }

    #[test]
    fn bad_base64_is_an_error_naming_the_line_where_the_value_starts() {
        let error = error_of("dn: uid=a\n\ndn: uid=b\ncn:: AAA\n A$\n");
        assert_eq!(error.line, 4);
        assert!(error.message.contains("base64"), "{error}");
    }

    #[test]
    fn second_dn_in_one_record_is_an_error() {
        let error = error_of("dn: uid=a\ncn: a\ndn: uid=b\n");
        assert_eq!(error.line, 3);
        assert!(error.message.contains("second dn"), "{error}");
    }

    #[test]
    fn invalid_names_and_stray_continuations_are_errors() {
        assert_eq!(error_of("dn: uid=a\nc n: x\n").line, 2);
        assert_eq!(error_of("dn: uid=a\ncn;: x\n").line, 2);
        assert_eq!(error_of("dn: uid=a\n: x\n").line, 2);
        assert_eq!(error_of(" dn: uid=a\n").line, 1);
        assert_eq!(error_of("dn: uid=a\n\n continued\n").line, 3);
        assert!(parse("dn: uid=a\n2.5.4.3: by oid\n").is_ok());
    }

    #[test]
    fn write_has_no_version_line_and_separates_entries_with_a_blank_line() {
        let entries = [entry("dc=a", &[("dc", &["a"])]), Entry::new("dc=b")];
        assert_eq!(write(&entries), "dn: dc=a\ndc: a\n\ndn: dc=b\n");
        assert_eq!(write(&[]), "");
    }

    #[test]
    fn unsafe_values_are_written_as_base64() {
        let cases: [(&str, &str); 9] = [
            ("plain value", "cn: plain value"),
            ("has: colon inside", "cn: has: colon inside"),
            ("", "cn:"),
            (" leading", "cn:: IGxlYWRpbmc="),
            ("trailing ", "cn:: dHJhaWxpbmcg"),
            (":colon", "cn:: OmNvbG9u"),
            ("<angle", "cn:: PGFuZ2xl"),
            ("Jörg", "cn:: SsO2cmc="),
            ("a\nb", "cn:: YQpi"),
        ];
        for (value, line) in cases {
            let written = write(&[entry("dc=x", &[("cn", &[value])])]);
            assert_eq!(written, format!("dn: dc=x\n{line}\n"), "{value:?}");
        }
    }

    #[test]
    fn long_lines_are_folded_at_76_bytes() {
        let long = "x".repeat(300);
        let written = write(&[entry("dc=x", &[("description", &[long.as_str()])])]);
        let lines: Vec<&str> = written.lines().collect();
        assert!(lines.iter().all(|line| line.len() <= 76), "{written}");
        assert_eq!(lines[3].len(), 76);
        assert!(lines[4].starts_with(' ') && lines[4].len() == 76);
    }

    #[test]
    fn awkward_values_survive_a_round_trip() {
        let long = "Lorem ipsum dolor sit amet, ".repeat(20);
        let long_unicode = "Grüße aus Köln — ".repeat(10);
        let values: [&str; 14] = [
            "plain",
            "Jörg Müller",
            "日本語のテキスト",
            " leading space",
            "trailing space ",
            "  ",
            "nul\0byte",
            "\0",
            ":colon first",
            "<angle first",
            "line\nbreak\r\nand cr\r",
            &long,
            &long_unicode,
            "",
        ];
        let mut subject = Entry::new(" dn with leading space, and ü");
        for value in values {
            subject.push("description", value);
        }
        subject.push("cn;lang-de", "x");
        subject
            .binary
            .push(("jpegPhoto".into(), vec![vec![0xFF; 200], vec![0xC3]]));

        let other = entry("dc=example,dc=org", &[("dc", &["example"])]);
        let entries = vec![subject, other];
        assert_eq!(parse(&write(&entries)).unwrap(), entries);
    }

    #[test]
    fn every_prefix_of_a_document_parses_or_fails_without_panicking() {
        let document = write(&parse(LDAPSEARCH_OUTPUT).unwrap()) + "dn:: w7w=\ncn: ü\n";
        for (cut, _) in document.char_indices() {
            if let Ok(entries) = parse(&document[..cut]) {
                assert_eq!(parse(&write(&entries)).unwrap(), entries, "prefix {cut}");
            }
        }
    }

    #[test]
    fn garbage_parses_or_fails_without_panicking() {
        // A fixed xorshift stream over the characters LDIF gives meaning to; half the samples
        // start like an entry so that some of them parse and go round again.
        let alphabet: Vec<char> = "dn:cb <#\n\r\n -=;.1Aé\0/+".chars().collect();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut parsed = 0;
        for sample in 0..4000 {
            let mut text = if sample % 2 == 0 {
                String::from("dn: x\n")
            } else {
                String::new()
            };
            for _ in 0..(state % 120) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            if let Ok(entries) = parse(&text) {
                assert_eq!(parse(&write(&entries)).unwrap(), entries, "{text:?}");
                parsed += 1;
            }
        }
        assert!(parsed > 50, "only {parsed} samples parsed");
    }

    /// An entry with text attributes.
    fn entry(dn: &str, attributes: &[(&str, &[&str])]) -> Entry {
        let mut entry = Entry::new(dn);
        for (name, values) in attributes {
            for value in *values {
                entry.push(name, *value);
            }
        }
        entry
    }
}
