//! POP3 commands and responses as values: parsing a command line, formatting a reply. No I/O,
//! so every rule here is tested, and fuzzable, on its own.
//!
//! RFC 1939 §3: a command is a case-insensitive keyword of three or four characters, then
//! arguments separated by single spaces, ending in CRLF. A message number is a decimal
//! starting at 1. RFC 2449 §4 caps a command line at 255 octets; the session enforces a cap
//! before a line reaches [`parse`].

use std::fmt;

/// Most characters of an argument (RFC 2449 §4: 40, widened for long logins).
pub const MAX_ARGUMENT: usize = 255;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER name` (RFC 1939 §7).
    User(String),
    /// `PASS secret` (RFC 1939 §7); the secret may contain spaces.
    Pass(String),
    /// `AUTH [mechanism [initial-response]]` (RFC 5034 §4).
    Auth {
        /// The SASL mechanism, uppercased; `None` to list mechanisms.
        mechanism: Option<String>,
        /// An initial response (base64, or `=` for an empty one).
        initial: Option<String>,
    },
    /// `APOP name digest` (RFC 1939 §7): recognised in order to refuse it clearly.
    Apop,
    /// `STLS` (RFC 2595 §4).
    Stls,
    /// `CAPA` (RFC 2449 §5).
    Capa,
    /// `STAT` (RFC 1939 §5).
    Stat,
    /// `LIST [msg]`.
    List(Option<usize>),
    /// `RETR msg`.
    Retr(usize),
    /// `DELE msg`.
    Dele(usize),
    /// `NOOP`.
    Noop,
    /// `RSET`.
    Rset,
    /// `QUIT`.
    Quit,
    /// `TOP msg n` (RFC 1939 §7).
    Top(usize, usize),
    /// `UIDL [msg]` (RFC 1939 §7).
    Uidl(Option<usize>),
}

impl Command {
    /// The keyword, for metrics and logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Auth { .. } => "AUTH",
            Command::Apop => "APOP",
            Command::Stls => "STLS",
            Command::Capa => "CAPA",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
            Command::Top(..) => "TOP",
            Command::Uidl(_) => "UIDL",
        }
    }
}

/// Why a line is not a command. The text is safe to send to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a POP3 keyword.
    #[error("unknown command")]
    Unknown,
    /// A keyword with the wrong arguments.
    #[error("syntax error in arguments")]
    Arguments,
    /// Bytes that are not UTF-8 text, or control characters.
    #[error("invalid characters in command")]
    Characters,
}

/// Parses one command line (without its CRLF).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line = std::str::from_utf8(line).map_err(|_| ParseError::Characters)?;
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ParseError::Characters);
    }
    let (keyword, rest) = match line.split_once(' ') {
        Some((keyword, rest)) => (keyword, Some(rest)),
        None => (line, None),
    };
    let arguments: Vec<&str> = rest.map(|r| r.split(' ').collect()).unwrap_or_default();
    if arguments.iter().any(|a| a.len() > MAX_ARGUMENT) {
        return Err(ParseError::Arguments);
    }

    let none = |command: Command| {
        if rest.is_none() {
            Ok(command)
        } else {
            Err(ParseError::Arguments)
        }
    };
    match keyword.to_ascii_uppercase().as_str() {
        "USER" => match arguments.as_slice() {
            [name] if !name.is_empty() => Ok(Command::User(name.to_string())),
            _ => Err(ParseError::Arguments),
        },
        // RFC 1939 §7 lets the password contain spaces: everything after "PASS ". An empty
        // one is a login attempt like any other, refused by the directory with the same
        // reply as a wrong password.
        "PASS" => Ok(Command::Pass(rest.unwrap_or_default().to_string())),
        "AUTH" => match arguments.as_slice() {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial: None,
            }),
            [mechanism] => Ok(Command::Auth {
                mechanism: Some(mechanism.to_ascii_uppercase()),
                initial: None,
            }),
            [mechanism, initial] => Ok(Command::Auth {
                mechanism: Some(mechanism.to_ascii_uppercase()),
                initial: Some(initial.to_string()),
            }),
            _ => Err(ParseError::Arguments),
        },
        "APOP" => Ok(Command::Apop),
        "STLS" => none(Command::Stls),
        "CAPA" => none(Command::Capa),
        "STAT" => none(Command::Stat),
        "NOOP" => none(Command::Noop),
        "RSET" => none(Command::Rset),
        "QUIT" => none(Command::Quit),
        "LIST" => optional_number(&arguments).map(Command::List),
        "UIDL" => optional_number(&arguments).map(Command::Uidl),
        "RETR" => one_number(&arguments).map(Command::Retr),
        "DELE" => one_number(&arguments).map(Command::Dele),
        "TOP" => match arguments.as_slice() {
            [message, lines] => Ok(Command::Top(message_number(message)?, count(lines)?)),
            _ => Err(ParseError::Arguments),
        },
        _ => Err(ParseError::Unknown),
    }
}

fn optional_number(arguments: &[&str]) -> Result<Option<usize>, ParseError> {
    match arguments {
        [] => Ok(None),
        [number] => message_number(number).map(Some),
        _ => Err(ParseError::Arguments),
    }
}

fn one_number(arguments: &[&str]) -> Result<usize, ParseError> {
    match arguments {
        [number] => message_number(number),
        _ => Err(ParseError::Arguments),
    }
}

/// RFC 1939 §3: message numbers start at 1. Digits only: no sign, no spaces.
fn message_number(text: &str) -> Result<usize, ParseError> {
    match count(text)? {
        0 => Err(ParseError::Arguments),
        n => Ok(n),
    }
}

fn count(text: &str) -> Result<usize, ParseError> {
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Arguments);
    }
    text.parse().map_err(|_| ParseError::Arguments)
}

/// A response code of RFC 2449 §8 and RFC 3206, in brackets after `-ERR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `[AUTH]`: the credentials were refused (RFC 3206 §4).
    Auth,
    /// `[IN-USE]`: another session has the maildrop (RFC 2449 §8.1.1).
    InUse,
    /// `[SYS/TEMP]`: a temporary failure on the server (RFC 3206 §4).
    SysTemp,
    /// `[SYS/PERM]`: a permanent failure on the server.
    SysPerm,
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Code::Auth => "[AUTH]",
            Code::InUse => "[IN-USE]",
            Code::SysTemp => "[SYS/TEMP]",
            Code::SysPerm => "[SYS/PERM]",
        })
    }
}

/// `+OK text\r\n`.
pub fn ok(text: &str) -> String {
    if text.is_empty() {
        "+OK\r\n".to_string()
    } else {
        format!("+OK {text}\r\n")
    }
}

/// `-ERR [code] text\r\n`.
pub fn err(code: Option<Code>, text: &str) -> String {
    match code {
        Some(code) => format!("-ERR {code} {text}\r\n"),
        None => format!("-ERR {text}\r\n"),
    }
}

/// The UIDL of a message: its Maildir id when that is a valid POP3 unique id (RFC 1939 §7: 1
/// to 70 characters 0x21–0x7E), else a digest of it, which is just as stable.
pub fn unique_id(maildir_id: &str) -> String {
    let printable = maildir_id.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if printable && (1..=70).contains(&maildir_id.len()) {
        return maildir_id.to_string();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(maildir_id.as_bytes());
    digest.iter().take(20).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_case_insensitive_and_arguments_parsed() {
        assert_eq!(
            parse(b"user alice@acme.test"),
            Ok(Command::User("alice@acme.test".into()))
        );
        assert_eq!(
            parse(b"PASS two words"),
            Ok(Command::Pass("two words".into()))
        );
        assert_eq!(parse(b"list"), Ok(Command::List(None)));
        assert_eq!(parse(b"LIST 3"), Ok(Command::List(Some(3))));
        assert_eq!(parse(b"TOP 1 0"), Ok(Command::Top(1, 0)));
        assert_eq!(parse(b"uidl"), Ok(Command::Uidl(None)));
        assert_eq!(
            parse(b"AUTH plain AGFAYgBj"),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some("AGFAYgBj".into())
            })
        );
    }

    #[test]
    fn message_numbers_start_at_one_and_are_plain_digits() {
        for line in [
            "RETR 0",
            "RETR -1",
            "RETR +1",
            "RETR 1a",
            "RETR",
            "RETR 1 2",
            "DELE 9999999999",
        ] {
            assert_eq!(parse(line.as_bytes()), Err(ParseError::Arguments), "{line}");
        }
    }

    #[test]
    fn unknown_commands_control_bytes_and_stray_arguments_are_errors() {
        assert_eq!(parse(b"HELO x"), Err(ParseError::Unknown));
        assert_eq!(parse(b""), Err(ParseError::Unknown));
        assert_eq!(parse(b"QUIT now"), Err(ParseError::Arguments));
        assert_eq!(parse(b"USER a\0b"), Err(ParseError::Characters));
        assert_eq!(parse(&[0xff, 0xfe]), Err(ParseError::Characters));
        assert_eq!(parse(b"PASS"), Ok(Command::Pass(String::new())));
    }

    #[test]
    fn replies_have_codes_in_brackets() {
        assert_eq!(
            err(Some(Code::InUse), "mailbox in use"),
            "-ERR [IN-USE] mailbox in use\r\n"
        );
        assert_eq!(ok(""), "+OK\r\n");
    }

    #[test]
    fn unique_ids_are_short_printable_and_stable() {
        assert_eq!(
            unique_id("1700000000.M1P2.host,S=5"),
            "1700000000.M1P2.host,S=5"
        );
        let long = format!("{}.host,S=5", "1".repeat(80));
        let id = unique_id(&long);
        assert_eq!(id.len(), 40);
        assert_eq!(id, unique_id(&long));
        assert_ne!(id, unique_id(&format!("{long}6")));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser() {
        let mut seed = 0x2545_f491_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (seed >> (i % 8 * 8)) as u8).collect();
            let _ = parse(&bytes);
        }
    }
}
