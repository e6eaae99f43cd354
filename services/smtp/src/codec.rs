//! SMTP and LMTP commands and replies as values: parsing one command line, formatting a reply.
//! No I/O, so every rule here is tested, and fuzzed, on its own.
//!
//! A command is a case-insensitive verb, then arguments separated by single spaces, ending in
//! CRLF (RFC 5321 §2.4, §4.1.1). The session strips the CRLF and caps the line before it
//! reaches [`parse`] ([`MAX_MAIL_COMMAND_LINE`] is the cap that fits every legal command);
//! `parse` checks the per-verb cap again. Every path goes through the directory's
//! [`Address::parse`], which refuses the relay tricks (`%`, `!`, quoted local parts) and
//! enforces RFC 5321 lengths; source routes are caught before it is asked, for a clearer reply.
//!
//! Deliberately strict: paths need their angle brackets, parameters we do not offer are
//! refused (not ignored), a verb that takes no argument refuses one, and NUL, CR, LF or any
//! other control character anywhere in the line is an error. Two tolerances, both for
//! clients seen in the wild: one space after `FROM:`/`TO:`, and trailing spaces.
//!
//! Why not the `smtp-proto` crate (0.2.5, checked against its source and by running it): it is
//! a fast streaming parser, but lenient exactly where this one must not be. It drops source
//! routes silently, unquotes `<"a@b"@c.test>` into `a@b@c.test`, deletes a bare CR inside a
//! path, keeps NUL in a HELO name, ignores arguments after QUIT and DATA, accepts DSN,
//! FUTURERELEASE, MT-PRIORITY and other parameters we do not offer, returns `<>` and
//! `<postmaster>` as the same empty recipient, maps unknown SASL mechanisms to 0, and read
//! `SIZE=` with 23 nines as 999. It has no line cap of its own. Checking its output would mean
//! parsing every line twice.

use std::fmt;

use mailfold_directory::{Address, AddressError};

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets, CRLF included.
pub const MAX_COMMAND_LINE: usize = 512;

/// A MAIL line may be longer, by what the extensions it carries add: SIZE 26 octets (RFC 1870
/// §3), AUTH= 500 (RFC 4954 §3), and room for ` BODY=8BITMIME SMTPUTF8` (23, rounded to 32).
/// A session that reads lines up to this cap accepts every legal MAIL.
pub const MAX_MAIL_COMMAND_LINE: usize = MAX_COMMAND_LINE + 26 + 500 + 32;

/// RFC 1870 §3: `size-value ::= 1*20DIGIT`; RFC 3030 §2 gives BDAT no bound, so the same.
const MAX_SIZE_DIGITS: usize = 20;

/// RFC 4422 §3.1: a SASL mechanism name is 1 to 20 characters.
const MAX_MECHANISM: usize = 20;

/// RFC 5321 §4.5.3.1.2: a domain, as named in HELO, EHLO or LHLO, is at most 255 octets.
const MAX_HELLO_NAME: usize = 255;

/// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets, CRLF included.
const MAX_REPLY_LINE: usize = 512;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO name` (RFC 5321 §4.1.1.1): the client's name, as given.
    Ehlo(String),
    /// `HELO name` (RFC 5321 §4.1.1.1).
    Helo(String),
    /// `LHLO name` (RFC 2033 §4.1).
    Lhlo(String),
    /// `MAIL FROM:<path> [parameters]` (RFC 5321 §4.1.1.2).
    Mail {
        /// The sender, or the null path of a bounce.
        from: ReversePath,
        /// The ESMTP parameters.
        parameters: MailParameters,
    },
    /// `RCPT TO:<path> [parameters]` (RFC 5321 §4.1.1.3).
    Rcpt {
        /// The recipient, or the bare `<postmaster>`.
        to: ForwardPath,
        /// The ESMTP parameters (none are offered yet).
        parameters: RcptParameters,
    },
    /// `DATA` (RFC 5321 §4.1.1.4).
    Data,
    /// `BDAT size [LAST]` (RFC 3030 §2).
    Bdat {
        /// Octets in the chunk that follows the command.
        size: u64,
        /// Whether this is the last chunk of the message.
        last: bool,
    },
    /// `RSET` (RFC 5321 §4.1.1.5).
    Rset,
    /// `NOOP [string]` (RFC 5321 §4.1.1.9); the argument is ignored.
    Noop,
    /// `QUIT` (RFC 5321 §4.1.1.10).
    Quit,
    /// `VRFY string` (RFC 5321 §4.1.1.6): the argument, as given.
    Vrfy(String),
    /// `HELP [string]` (RFC 5321 §4.1.1.8); the argument is ignored.
    Help,
    /// `STARTTLS` (RFC 3207 §4).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954 §4).
    Auth {
        /// The SASL mechanism, uppercased.
        mechanism: String,
        /// The initial response as given: base64, or `=` for an empty one.
        initial: Option<String>,
    },
}

impl Command {
    /// The verb, for metrics and logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Lhlo(_) => "LHLO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy(_) => "VRFY",
            Command::Help => "HELP",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }
}

/// The sender of a transaction (RFC 5321 §4.1.1.2 `Reverse-path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`: no sender, as in a bounce (RFC 5321 §4.5.5).
    Null,
    /// A validated, normalised address.
    Address(Address),
}

impl ReversePath {
    /// The address, unless the path is null.
    pub fn address(&self) -> Option<&Address> {
        match self {
            ReversePath::Null => None,
            ReversePath::Address(address) => Some(address),
        }
    }
}

impl fmt::Display for ReversePath {
    /// The path as written on the wire: `<>` or `<user@example.test>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Address(address) => write!(f, "<{address}>"),
        }
    }
}

/// A recipient (RFC 5321 §4.1.1.3). `<postmaster>` has no domain, so it cannot be an
/// [`Address`]: it is a variant of its own, and the session decides which mailbox it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath {
    /// `<postmaster>`, in any case (RFC 5321 §4.5.1: it must be accepted without a domain).
    Postmaster,
    /// A validated, normalised address (`<postmaster@domain>` included).
    Address(Address),
}

impl ForwardPath {
    /// The address, unless the path is the bare postmaster.
    pub fn address(&self) -> Option<&Address> {
        match self {
            ForwardPath::Postmaster => None,
            ForwardPath::Address(address) => Some(address),
        }
    }
}

impl fmt::Display for ForwardPath {
    /// The path as written on the wire: `<postmaster>` or `<user@example.test>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("<postmaster>"),
            ForwardPath::Address(address) => write!(f, "<{address}>"),
        }
    }
}

/// The body type a client declares (RFC 6152 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body {
    /// `BODY=7BIT`, or no BODY parameter.
    #[default]
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// The ESMTP parameters of MAIL that Mailfold offers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailParameters {
    /// `SIZE=n` (RFC 1870 §3): the declared size; a value past `u64::MAX` saturates.
    pub size: Option<u64>,
    /// `BODY=` (RFC 6152 §2).
    pub body: Body,
    /// `SMTPUTF8` (RFC 6531 §3.4): the transaction may carry UTF-8 addresses and headers.
    pub smtputf8: bool,
    /// `AUTH=` (RFC 4954 §5): the claimed original submitter, still xtext-encoded, as given.
    pub auth: Option<String>,
}

/// The ESMTP parameters of RCPT. None are offered yet, so any parameter is refused; DSN's
/// NOTIFY and ORCPT (RFC 3461 §4) will land here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RcptParameters {}

/// Why a line is not a command. The text is safe to send to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Longer than RFC 5321 §4.5.3.1.4 allows.
    #[error("command line too long")]
    TooLong,
    /// NUL, CR, LF or another control character, or bytes that are not UTF-8.
    #[error("invalid characters in command")]
    InvalidCharacters,
    /// Not a verb this server knows.
    #[error("unknown command")]
    UnknownCommand,
    /// A verb RFC 5321 defines that this server does not offer (EXPN, TURN, SEND, ...).
    #[error("{0} is not implemented")]
    NotImplemented(&'static str),
    /// A known verb with arguments of the wrong shape; the text says what was expected.
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    /// The reverse path of MAIL is not an address Mailfold accepts.
    #[error("bad sender address: {0}")]
    BadSender(AddressError),
    /// The forward path of RCPT is not an address Mailfold accepts.
    #[error("bad recipient address: {0}")]
    BadAddress(AddressError),
    /// An ESMTP parameter this server does not offer (its keyword, uppercased).
    #[error("parameter {0} is not supported")]
    UnknownParameter(String),
    /// A parameter this server offers, with a value it cannot take.
    #[error("invalid parameter: {0}")]
    BadParameter(&'static str),
    /// A non-ASCII path without SMTPUTF8 in the transaction (RFC 6531 §3.2).
    #[error("non-ASCII address needs SMTPUTF8")]
    Utf8NotEnabled,
}

impl ParseError {
    /// The reply the session sends for this error.
    pub fn reply(&self) -> Reply {
        // RFC 3463 §3.6: X.5.2 a command that cannot be interpreted, X.5.1 one not supported,
        // X.5.4 arguments out of range or naming features not offered.
        let (code, status) = match self {
            ParseError::TooLong | ParseError::InvalidCharacters | ParseError::UnknownCommand => {
                (500, (5, 5, 2))
            }
            // RFC 5321 §4.2.4: 502 for a command recognised but not implemented.
            ParseError::NotImplemented(_) => (502, (5, 5, 1)),
            ParseError::Syntax(_) => (501, (5, 5, 2)),
            // RFC 3463 §3.2: X.1.7 bad sender syntax, X.1.3 bad destination syntax.
            ParseError::BadSender(_) => (501, (5, 1, 7)),
            ParseError::BadAddress(_) => (501, (5, 1, 3)),
            // RFC 5321 §4.1.1.11: 555 for parameters not recognised or not implemented.
            ParseError::UnknownParameter(_) => (555, (5, 5, 4)),
            ParseError::BadParameter(_) => (501, (5, 5, 4)),
            // RFC 6531 §3.5: 553, and X.6.7 "non-ASCII addresses not permitted".
            ParseError::Utf8NotEnabled => (553, (5, 6, 7)),
        };
        Reply::new(code, Some(status), &self.to_string())
    }
}

/// Parses one command line, without its CRLF.
///
/// `utf8_allowed` says whether the current transaction declared SMTPUTF8: without it a
/// non-ASCII path in RCPT (or argument to VRFY) is refused (RFC 6531 §3.2). A MAIL command
/// opens a new transaction, so for MAIL only its own SMTPUTF8 parameter counts.
pub fn parse(line: &[u8], utf8_allowed: bool) -> Result<Command, ParseError> {
    // Bound the work first: nothing longer than the longest legal line is looked at.
    if line.len() > MAX_MAIL_COMMAND_LINE - 2 {
        return Err(ParseError::TooLong);
    }
    let line = text(line)?;

    // RFC 5321 §4.1.1: the verb, then arguments after a single space. Trailing spaces are
    // dropped: some clients pad their lines.
    let line = line.trim_end_matches(' ');
    let (verb, rest) = match line.split_once(' ') {
        Some((verb, rest)) => (verb, Some(rest)),
        None => (line, None),
    };
    // RFC 5321 §2.4: verbs are case-insensitive.
    let verb = verb.to_ascii_uppercase();
    if verb != "MAIL" && line.len() > MAX_COMMAND_LINE - 2 {
        return Err(ParseError::TooLong);
    }

    match verb.as_str() {
        "EHLO" => hello_name(rest, "expected EHLO <domain>").map(Command::Ehlo),
        "HELO" => hello_name(rest, "expected HELO <domain>").map(Command::Helo),
        "LHLO" => hello_name(rest, "expected LHLO <domain>").map(Command::Lhlo),
        "MAIL" => mail(rest),
        "RCPT" => rcpt(rest, utf8_allowed),
        "DATA" => bare(rest, Command::Data, "DATA takes no arguments"),
        "BDAT" => bdat(rest),
        "RSET" => bare(rest, Command::Rset, "RSET takes no arguments"),
        "QUIT" => bare(rest, Command::Quit, "QUIT takes no arguments"),
        // RFC 3207 §4: "STARTTLS" with no parameters.
        "STARTTLS" => bare(rest, Command::StartTls, "STARTTLS takes no arguments"),
        // RFC 5321 §4.1.1.9 and §4.1.1.8: an optional string, which means nothing to us.
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" => vrfy(rest, utf8_allowed),
        "AUTH" => auth(rest),
        // RFC 5321 §4.5.1 does not require these; RFC 5321 Appendix F lists most as obsolete.
        "EXPN" => Err(ParseError::NotImplemented("EXPN")),
        "TURN" => Err(ParseError::NotImplemented("TURN")),
        "ETRN" => Err(ParseError::NotImplemented("ETRN")),
        "ATRN" => Err(ParseError::NotImplemented("ATRN")),
        "BURL" => Err(ParseError::NotImplemented("BURL")),
        "SEND" => Err(ParseError::NotImplemented("SEND")),
        "SOML" => Err(ParseError::NotImplemented("SOML")),
        "SAML" => Err(ParseError::NotImplemented("SAML")),
        _ => Err(ParseError::UnknownCommand),
    }
}

/// The line as text, refusing control characters and bytes that are not UTF-8.
fn text(line: &[u8]) -> Result<&str, ParseError> {
    let line = std::str::from_utf8(line).map_err(|_| ParseError::InvalidCharacters)?;
    // RFC 5321 §2.3.8: CR and LF only ever travel together, as the line's end. NUL, TAB, DEL
    // and the C1 controls have no place in a command either.
    if line.chars().any(char::is_control) {
        return Err(ParseError::InvalidCharacters);
    }
    Ok(line)
}

/// A verb that takes no arguments.
fn bare(rest: Option<&str>, command: Command, usage: &'static str) -> Result<Command, ParseError> {
    match rest {
        None => Ok(command),
        Some(_) => Err(ParseError::Syntax(usage)),
    }
}

/// The name in HELO, EHLO or LHLO: one token of printable ASCII, kept as given.
fn hello_name(rest: Option<&str>, usage: &'static str) -> Result<String, ParseError> {
    // RFC 5321 §4.1.1.1: `Domain / address-literal`, both ASCII. Whether the name is true is
    // a policy question (HELO checks), not a syntax one, so any printable token passes.
    let name = rest.ok_or(ParseError::Syntax(usage))?;
    let printable = name.bytes().all(|b| b.is_ascii_graphic());
    if name.is_empty() || !printable || name.len() > MAX_HELLO_NAME {
        return Err(ParseError::Syntax(usage));
    }
    Ok(name.to_string())
}

/// `MAIL FROM:<reverse-path> [SP mail-parameters]` (RFC 5321 §4.1.1.2).
fn mail(rest: Option<&str>) -> Result<Command, ParseError> {
    const USAGE: &str = "expected MAIL FROM:<address> [parameters]";
    let after = rest
        .and_then(|rest| strip_keyword(rest, "FROM:"))
        .ok_or(ParseError::Syntax(USAGE))?;
    let (path, parameters) = split_path(after)?;
    let parameters = mail_parameters(parameters)?;

    // RFC 6531 §3.2: UTF-8 in the envelope only once the client has said SMTPUTF8, and MAIL
    // says it on this very line (RFC 6531 §3.4).
    if !parameters.smtputf8 && !after.is_ascii() {
        return Err(ParseError::Utf8NotEnabled);
    }

    // RFC 5321 §4.1.1.2: `Reverse-path = Path / "<>"`.
    let from = if path.is_empty() {
        ReversePath::Null
    } else {
        refuse_source_route(path)?;
        ReversePath::Address(Address::parse(path).map_err(ParseError::BadSender)?)
    };
    Ok(Command::Mail { from, parameters })
}

/// `RCPT TO:<forward-path> [SP rcpt-parameters]` (RFC 5321 §4.1.1.3).
fn rcpt(rest: Option<&str>, utf8_allowed: bool) -> Result<Command, ParseError> {
    const USAGE: &str = "expected RCPT TO:<address>";
    let after = rest
        .and_then(|rest| strip_keyword(rest, "TO:"))
        .ok_or(ParseError::Syntax(USAGE))?;
    let (path, parameters) = split_path(after)?;

    // RFC 6531 §3.2: a UTF-8 recipient needs SMTPUTF8 in this transaction's MAIL.
    if !utf8_allowed && !after.is_ascii() {
        return Err(ParseError::Utf8NotEnabled);
    }

    // RFC 5321 §4.1.1.3: `"<Postmaster>" / Forward-path`, and §4.5.1: "postmaster" is
    // case-insensitive. The null path is no recipient.
    let to = if path.eq_ignore_ascii_case("postmaster") {
        ForwardPath::Postmaster
    } else if path.is_empty() {
        return Err(ParseError::BadAddress(AddressError::Empty));
    } else {
        refuse_source_route(path)?;
        ForwardPath::Address(Address::parse(path).map_err(ParseError::BadAddress)?)
    };

    // No RCPT parameter is offered yet: the first one, well-formed or not, is refused.
    if let Some(token) = parameters.split(' ').find(|token| !token.is_empty()) {
        let keyword = token.split_once('=').map_or(token, |(keyword, _)| keyword);
        if !is_keyword(keyword) {
            return Err(ParseError::Syntax("malformed parameter"));
        }
        return Err(ParseError::UnknownParameter(keyword.to_ascii_uppercase()));
    }
    Ok(Command::Rcpt {
        to,
        parameters: RcptParameters {},
    })
}

/// The text after `keyword` (matched case-insensitively, RFC 5321 §2.4), with at most one
/// space skipped: `MAIL FROM: <a@b>` is a common client quirk.
fn strip_keyword<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    let head = text.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let after = &text[keyword.len()..];
    Some(after.strip_prefix(' ').unwrap_or(after))
}

/// Splits `<path> parameters` into the text inside the brackets and the parameters.
fn split_path(text: &str) -> Result<(&str, &str), ParseError> {
    // RFC 5321 §4.1.2: `Path = "<" [ A-d-l ":" ] Mailbox ">"`. Strict: a bare address is
    // refused rather than guessed at.
    let inner = text.strip_prefix('<').ok_or(ParseError::Syntax(
        "the address must be in angle brackets, as in <user@example.com>",
    ))?;
    let (path, after) = inner
        .split_once('>')
        .ok_or(ParseError::Syntax("the address is missing its closing >"))?;

    // RFC 5321 §4.1.1.2: parameters follow the path after a space.
    match after.strip_prefix(' ') {
        Some(parameters) => Ok((path, parameters)),
        None if after.is_empty() => Ok((path, "")),
        None => Err(ParseError::Syntax("expected a space after the address")),
    }
}

/// RFC 5321 §4.1.1.3 lets a server decline source routes (`<@a,@b:user@c>`); Mailfold does,
/// with a reply that says why rather than a generic address error.
fn refuse_source_route(path: &str) -> Result<(), ParseError> {
    if path.starts_with('@') {
        return Err(ParseError::Syntax("source routes are not accepted"));
    }
    Ok(())
}

/// The parameters of MAIL: `esmtp-param *(SP esmtp-param)` (RFC 5321 §4.1.2).
fn mail_parameters(text: &str) -> Result<MailParameters, ParseError> {
    let mut parameters = MailParameters::default();
    let mut seen = Vec::new();
    for token in text.split(' ').filter(|token| !token.is_empty()) {
        // RFC 5321 §4.1.2: `esmtp-keyword ["=" esmtp-value]`, the value non-empty and free of
        // "=" (RFC 6531 §3.3 lets it hold UTF-8).
        let (keyword, value) = match token.split_once('=') {
            Some((keyword, value)) => (keyword, Some(value)),
            None => (token, None),
        };
        let malformed_value = value.is_some_and(|v| v.is_empty() || v.contains('='));
        if !is_keyword(keyword) || malformed_value {
            return Err(ParseError::Syntax("malformed parameter"));
        }
        // RFC 5321 §2.4: extension keywords are case-insensitive.
        let keyword = keyword.to_ascii_uppercase();
        if seen.contains(&keyword) {
            return Err(ParseError::Syntax("a parameter is given twice"));
        }

        match (keyword.as_str(), value) {
            ("SIZE", Some(value)) => parameters.size = Some(declared_size(value)?),
            ("SIZE", None) => return Err(ParseError::BadParameter("SIZE needs a value")),
            ("BODY", Some(value)) => parameters.body = body(value)?,
            ("BODY", None) => return Err(ParseError::BadParameter("BODY needs a value")),
            // RFC 6531 §3.4: SMTPUTF8 has no value.
            ("SMTPUTF8", None) => parameters.smtputf8 = true,
            ("SMTPUTF8", Some(_)) => {
                return Err(ParseError::BadParameter("SMTPUTF8 takes no value"));
            }
            ("AUTH", Some(value)) if is_xtext(value) => parameters.auth = Some(value.to_string()),
            ("AUTH", _) => return Err(ParseError::BadParameter("AUTH needs an xtext value")),
            _ => return Err(ParseError::UnknownParameter(keyword)),
        }
        seen.push(keyword);
    }
    Ok(parameters)
}

/// RFC 5321 §4.1.2: `esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")`.
fn is_keyword(text: &str) -> bool {
    let mut bytes = text.bytes();
    let first = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    first && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// RFC 1870 §3: `SIZE=1*20DIGIT`. Twenty digits can exceed `u64::MAX`; such a size is bigger
/// than any limit, so it saturates and the session refuses it as too big.
fn declared_size(value: &str) -> Result<u64, ParseError> {
    const ERROR: ParseError = ParseError::BadParameter("SIZE must be a decimal of 1 to 20 digits");
    if value.len() > MAX_SIZE_DIGITS || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ERROR);
    }
    let size = value.bytes().fold(0u64, |size, digit| {
        size.saturating_mul(10)
            .saturating_add(u64::from(digit - b'0'))
    });
    Ok(size)
}

/// RFC 6152 §2: `BODY=7BIT / 8BITMIME`, case-insensitive (RFC 5321 §2.4). BINARYMIME (RFC
/// 3030 §3) is not offered.
fn body(value: &str) -> Result<Body, ParseError> {
    match value.to_ascii_uppercase().as_str() {
        "7BIT" => Ok(Body::SevenBit),
        "8BITMIME" => Ok(Body::EightBitMime),
        _ => Err(ParseError::BadParameter("BODY must be 7BIT or 8BITMIME")),
    }
}

/// RFC 3461 §4: xtext is `!`..`~` except `+` and `=`, and `+` followed by two uppercase hex
/// digits. UTF-8 passes (RFC 6531 §3.3 extends `esmtp-value`): MAIL has already refused it
/// without SMTPUTF8.
fn is_xtext(value: &str) -> bool {
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        let valid = match c {
            '+' => (0..2).all(|_| {
                chars
                    .next()
                    .is_some_and(|h| matches!(h, '0'..='9' | 'A'..='F'))
            }),
            '!'..='~' => c != '=',
            c => !c.is_ascii(),
        };
        if !valid {
            return false;
        }
    }
    !value.is_empty()
}

/// `BDAT chunk-size [SP end-marker]` (RFC 3030 §2).
fn bdat(rest: Option<&str>) -> Result<Command, ParseError> {
    const USAGE: &str = "expected BDAT <size> [LAST]";
    let arguments: Vec<&str> = rest.map(|r| r.split(' ').collect()).unwrap_or_default();
    let (size, last) = match arguments.as_slice() {
        [size] => (*size, false),
        // RFC 3030 §2: `end-marker ::= "LAST"`, case-insensitive like every keyword.
        [size, marker] if marker.eq_ignore_ascii_case("LAST") => (*size, true),
        _ => return Err(ParseError::Syntax(USAGE)),
    };

    // The size says how many octets to read next, so unlike SIZE= it must be exact.
    let digits = !size.is_empty() && size.len() <= MAX_SIZE_DIGITS;
    if !digits || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Syntax(USAGE));
    }
    let size = size.parse().map_err(|_| ParseError::Syntax(USAGE))?;
    Ok(Command::Bdat { size, last })
}

/// `VRFY string` (RFC 5321 §4.1.1.6).
fn vrfy(rest: Option<&str>, utf8_allowed: bool) -> Result<Command, ParseError> {
    let argument = rest
        .filter(|argument| !argument.is_empty())
        .ok_or(ParseError::Syntax("expected VRFY <string>"))?;
    // RFC 6531 §3.2: no UTF-8 outside a transaction that declared SMTPUTF8.
    if !utf8_allowed && !argument.is_ascii() {
        return Err(ParseError::Utf8NotEnabled);
    }
    Ok(Command::Vrfy(argument.to_string()))
}

/// `AUTH mechanism [initial-response]` (RFC 4954 §4).
fn auth(rest: Option<&str>) -> Result<Command, ParseError> {
    const USAGE: &str = "expected AUTH <mechanism> [initial-response]";
    let arguments: Vec<&str> = rest.map(|r| r.split(' ').collect()).unwrap_or_default();
    let (mechanism, initial) = match arguments.as_slice() {
        [mechanism] => (*mechanism, None),
        [mechanism, initial] => (*mechanism, Some(*initial)),
        _ => return Err(ParseError::Syntax(USAGE)),
    };

    // RFC 4422 §3.1: 1 to 20 of upper-case letters, digits, "-" and "_"; clients also send
    // lower case, which means the same mechanism.
    let mechanism_chars = mechanism
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if mechanism.is_empty() || mechanism.len() > MAX_MECHANISM || !mechanism_chars {
        return Err(ParseError::Syntax(USAGE));
    }

    // RFC 4954 §4: the initial response is base64, or "=" for an empty one. Only the
    // alphabet is checked here; decoding is the SASL layer's job.
    let base64 = |text: &str| {
        let alphabet = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
        !text.is_empty() && text.bytes().all(alphabet)
    };
    if initial.is_some_and(|initial| !base64(initial)) {
        return Err(ParseError::Syntax(
            "the initial response must be base64 or =",
        ));
    }
    Ok(Command::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial: initial.map(str::to_string),
    })
}

/// A reply: the code, the enhanced status code (RFC 3463) and one or more lines of text.
///
/// The code is three digits, 2yz to 5yz (RFC 5321 §4.2.1); the status class, when there is
/// one, matches the code's first digit (RFC 3463 §2). Intermediate `3yz` replies, the
/// greeting and the EHLO/HELO replies carry no status (RFC 2034 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply code (RFC 5321 §4.2).
    pub code: u16,
    /// The enhanced status code `class.subject.detail` (RFC 3463 §2).
    pub status: Option<(u8, u16, u16)>,
    /// The text, one element per line.
    pub lines: Vec<String>,
}

impl Reply {
    /// A reply; a `\n` in `text` starts another line.
    pub fn new(code: u16, status: Option<(u8, u16, u16)>, text: &str) -> Reply {
        let lines = text
            .split('\n')
            .map(|line| line.trim_end_matches('\r').to_string())
            .collect();
        Reply {
            code,
            status,
            lines,
        }
    }

    /// A multi-line reply without a status, as EHLO's (RFC 5321 §4.1.1.1: the server's name,
    /// then one extension per line).
    pub fn multiline(code: u16, lines: Vec<String>) -> Reply {
        Reply {
            code,
            status: None,
            lines,
        }
    }

    /// `250` with a status.
    pub fn ok(status: (u8, u16, u16), text: &str) -> Reply {
        Reply::new(250, Some(status), text)
    }

    /// `250` without a status, as the reply to HELO (RFC 2034 §4).
    pub fn ok_plain(text: &str) -> Reply {
        Reply::new(250, None, text)
    }

    /// `220`, the greeting (RFC 5321 §4.3.1): its text starts with the server's name.
    pub fn ready(text: &str) -> Reply {
        Reply::new(220, None, text)
    }

    /// `221 2.0.0`, the answer to QUIT (RFC 5321 §4.1.1.10).
    pub fn closing(text: &str) -> Reply {
        Reply::new(221, Some((2, 0, 0)), text)
    }

    /// `354`, the go-ahead for the DATA section (RFC 5321 §4.1.1.4).
    pub fn start_data() -> Reply {
        Reply::new(354, None, "end data with <CR><LF>.<CR><LF>")
    }

    /// `334`, a SASL challenge, base64 or empty (RFC 4954 §4).
    pub fn challenge(base64: &str) -> Reply {
        Reply::new(334, None, base64)
    }

    /// `235 2.7.0`, a successful AUTH (RFC 4954 §6).
    pub fn authenticated() -> Reply {
        Reply::new(235, Some((2, 7, 0)), "authentication succeeded")
    }

    /// `503 5.5.1`, a command out of sequence (RFC 5321 §4.3.2, RFC 3463 §3.6).
    pub fn bad_sequence(text: &str) -> Reply {
        Reply::new(503, Some((5, 5, 1)), text)
    }

    /// `451 4.3.0`, a failure of the directory or the store: the client tries again later
    /// (invariant 2: never a bounce). The text names no cause (invariant 6).
    pub fn temporary_failure() -> Reply {
        Reply::new(451, Some((4, 3, 0)), "temporary failure, try again later")
    }

    /// `421 4.3.2`, the server is shutting down and closes the connection (RFC 5321 §3.8).
    pub fn shutting_down() -> Reply {
        Reply::new(421, Some((4, 3, 2)), "service shutting down")
    }

    /// The reply as sent: `250-first` ... `250 last`, each line ending in CRLF.
    pub fn to_wire(&self) -> String {
        let empty = [String::new()];
        let lines = if self.lines.is_empty() {
            &empty[..]
        } else {
            &self.lines[..]
        };

        let mut wire = String::new();
        for (index, text) in lines.iter().enumerate() {
            // RFC 5321 §4.2.1: a hyphen after the code on every line but the last.
            let separator = if index + 1 == lines.len() { ' ' } else { '-' };
            let mut line = format!("{:03}", self.code);
            // RFC 2034 §4: the status starts the text of every line.
            if let Some((class, subject, detail)) = self.status {
                line.push(separator);
                line.push_str(&format!("{class}.{subject}.{detail}"));
                if !text.is_empty() {
                    line.push(' ');
                }
            } else if !text.is_empty() || separator == '-' {
                line.push(separator);
            }
            push_text(&mut line, text);
            wire.push_str(&line);
            wire.push_str("\r\n");
        }
        wire
    }

    /// Whether the reply is a success: 2yz complete, 3yz intermediate (RFC 5321 §4.2.1).
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

/// Appends reply text: control characters become spaces, so no text, however it was built,
/// can end the line early and forge a reply; the line stays within RFC 5321 §4.5.3.1.5.
fn push_text(line: &mut String, text: &str) {
    for c in text.chars() {
        if line.len() + c.len_utf8() > MAX_REPLY_LINE - 2 {
            break;
        }
        line.push(if c.is_control() { ' ' } else { c });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> Address {
        Address::parse(text).unwrap()
    }

    fn mail_from(text: &str) -> Command {
        Command::Mail {
            from: ReversePath::Address(address(text)),
            parameters: MailParameters::default(),
        }
    }

    fn rcpt_to(text: &str) -> Command {
        Command::Rcpt {
            to: ForwardPath::Address(address(text)),
            parameters: RcptParameters {},
        }
    }

    fn ascii(line: &str) -> Result<Command, ParseError> {
        parse(line.as_bytes(), false)
    }

    #[test]
    fn rfc_5321_appendix_d1_client_lines_parse_to_the_expected_commands() {
        assert_eq!(ascii("EHLO bar.com"), Ok(Command::Ehlo("bar.com".into())));
        assert_eq!(
            ascii("MAIL FROM:<Smith@bar.com>"),
            Ok(mail_from("smith@bar.com"))
        );
        assert_eq!(
            ascii("RCPT TO:<Jones@foo.com>"),
            Ok(rcpt_to("jones@foo.com"))
        );
        assert_eq!(
            ascii("RCPT TO:<Green@foo.com>"),
            Ok(rcpt_to("green@foo.com"))
        );
        assert_eq!(
            ascii("RCPT TO:<Brown@foo.com>"),
            Ok(rcpt_to("brown@foo.com"))
        );
        assert_eq!(ascii("DATA"), Ok(Command::Data));
        assert_eq!(ascii("QUIT"), Ok(Command::Quit));
    }

    #[test]
    fn rfc_5321_appendix_d1_server_replies_format_byte_for_byte() {
        let greeting = Reply::ready("foo.com Simple Mail Transfer Service Ready");
        assert_eq!(
            greeting.to_wire(),
            "220 foo.com Simple Mail Transfer Service Ready\r\n"
        );

        let lines = ["foo.com greets bar.com", "8BITMIME", "SIZE", "DSN", "HELP"];
        let ehlo = Reply::multiline(250, lines.iter().map(|l| l.to_string()).collect());
        assert_eq!(
            ehlo.to_wire(),
            "250-foo.com greets bar.com\r\n250-8BITMIME\r\n250-SIZE\r\n250-DSN\r\n250 HELP\r\n"
        );
        assert_eq!(Reply::ok_plain("OK").to_wire(), "250 OK\r\n");
        let unknown = Reply::new(550, None, "No such user here");
        assert_eq!(unknown.to_wire(), "550 No such user here\r\n");
        let go_ahead = Reply::new(354, None, "Start mail input; end with <CRLF>.<CRLF>");
        assert_eq!(
            go_ahead.to_wire(),
            "354 Start mail input; end with <CRLF>.<CRLF>\r\n"
        );
        let closing = Reply::new(221, None, "foo.com Service closing transmission channel");
        assert_eq!(
            closing.to_wire(),
            "221 foo.com Service closing transmission channel\r\n"
        );
    }

    #[test]
    fn rfc_5321_appendix_d_other_scenarios_parse() {
        // D.2, D.3 and D.4: RSET, a relayed recipient in capitals, VRFY and SEND.
        assert_eq!(ascii("RSET"), Ok(Command::Rset));
        assert_eq!(ascii("HELO foo.com"), Ok(Command::Helo("foo.com".into())));
        assert_eq!(
            ascii("RCPT TO:<Jones@XYZ.COM>"),
            Ok(rcpt_to("jones@xyz.com"))
        );
        assert_eq!(ascii("VRFY Crispin"), Ok(Command::Vrfy("Crispin".into())));
        assert_eq!(
            ascii("SEND FROM:<EAK@bar.com>"),
            Err(ParseError::NotImplemented("SEND"))
        );
        assert_eq!(
            ascii("EXPN Example-People"),
            Err(ParseError::NotImplemented("EXPN"))
        );
    }

    #[test]
    fn rfc_2033_lhlo_and_rfc_3030_bdat_examples_parse() {
        assert_eq!(ascii("LHLO foo.edu"), Ok(Command::Lhlo("foo.edu".into())));
        assert_eq!(
            ascii("BDAT 86 LAST"),
            Ok(Command::Bdat {
                size: 86,
                last: true
            })
        );
        assert_eq!(
            ascii("BDAT 69"),
            Ok(Command::Bdat {
                size: 69,
                last: false
            })
        );
        assert_eq!(
            ascii("BDAT 0 LAST"),
            Ok(Command::Bdat {
                size: 0,
                last: true
            })
        );
    }

    #[test]
    fn verbs_keywords_and_parameters_are_case_insensitive() {
        assert_eq!(
            ascii("ehlo client.test"),
            Ok(Command::Ehlo("client.test".into()))
        );
        assert_eq!(ascii("mail from:<A@B.test>"), Ok(mail_from("a@b.test")));
        assert_eq!(ascii("RcPt To:<a@b.test>"), Ok(rcpt_to("a@b.test")));
        assert_eq!(ascii("StartTLS"), Ok(Command::StartTls));
        assert_eq!(
            ascii("bdat 5 last"),
            Ok(Command::Bdat {
                size: 5,
                last: true
            })
        );
        let Ok(Command::Mail { parameters, .. }) =
            ascii("MAIL FROM:<a@b.test> size=10 body=8bitmime smtputf8")
        else {
            panic!("lower-case parameters were refused");
        };
        assert_eq!(parameters.size, Some(10));
        assert_eq!(parameters.body, Body::EightBitMime);
        assert!(parameters.smtputf8);
    }

    #[test]
    fn one_space_after_the_colon_is_tolerated_but_no_more() {
        assert_eq!(ascii("MAIL FROM: <a@b.test>"), Ok(mail_from("a@b.test")));
        assert_eq!(ascii("RCPT TO: <a@b.test>"), Ok(rcpt_to("a@b.test")));
        assert!(matches!(
            ascii("MAIL FROM:  <a@b.test>"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            ascii("MAIL FROM :<a@b.test>"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            ascii("MAIL  FROM:<a@b.test>"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            ascii("MAIL TO:<a@b.test>"),
            Err(ParseError::Syntax(_))
        ));
    }

    #[test]
    fn trailing_spaces_are_dropped() {
        assert_eq!(ascii("QUIT  "), Ok(Command::Quit));
        assert_eq!(ascii("MAIL FROM:<a@b.test> "), Ok(mail_from("a@b.test")));
    }

    #[test]
    fn the_null_path_is_a_sender_but_never_a_recipient() {
        let null = ascii("MAIL FROM:<>");
        assert_eq!(
            null,
            Ok(Command::Mail {
                from: ReversePath::Null,
                parameters: MailParameters::default()
            })
        );
        assert_eq!(
            ascii("RCPT TO:<>"),
            Err(ParseError::BadAddress(AddressError::Empty))
        );
    }

    #[test]
    fn bare_postmaster_is_its_own_forward_path_in_any_case() {
        for line in [
            "RCPT TO:<postmaster>",
            "RCPT TO:<Postmaster>",
            "rcpt to:<POSTMASTER>",
        ] {
            let expected = Command::Rcpt {
                to: ForwardPath::Postmaster,
                parameters: RcptParameters {},
            };
            assert_eq!(ascii(line), Ok(expected), "{line}");
        }
        // With a domain it is an ordinary address; as a sender it needs one.
        assert_eq!(
            ascii("RCPT TO:<Postmaster@foo.test>"),
            Ok(rcpt_to("postmaster@foo.test"))
        );
        assert!(matches!(
            ascii("MAIL FROM:<postmaster>"),
            Err(ParseError::BadSender(_))
        ));
    }

    #[test]
    fn bare_addresses_are_refused_and_the_error_asks_for_brackets() {
        for line in [
            "MAIL FROM:a@b.test",
            "RCPT TO:a@b.test",
            "MAIL FROM: a@b.test",
        ] {
            let error = ascii(line).unwrap_err();
            assert!(matches!(error, ParseError::Syntax(_)), "{line}");
            assert!(
                error.to_string().contains("angle brackets"),
                "{line}: {error}"
            );
        }
        assert!(matches!(
            ascii("RCPT TO:<a@b.test"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            ascii("RCPT TO:<a@b.test>x"),
            Err(ParseError::Syntax(_))
        ));
    }

    #[test]
    fn relay_tricks_are_refused_as_sender_and_as_recipient() {
        for path in [
            "<a%b@c.test>",
            "<a!b@c.test>",
            "<\"a@b\"@c.test>",
            "<\"a b\"@c.test>",
        ] {
            let rcpt = ascii(&format!("RCPT TO:{path}"));
            assert!(
                matches!(rcpt, Err(ParseError::BadAddress(_))),
                "{path}: {rcpt:?}"
            );
            let mail = ascii(&format!("MAIL FROM:{path}"));
            assert!(
                matches!(mail, Err(ParseError::BadSender(_))),
                "{path}: {mail:?}"
            );
        }
        // A quoted ">" ends the path early, and what follows is no parameter.
        assert!(ascii("RCPT TO:<\"a>b\"@c.test>").is_err());
    }

    #[test]
    fn source_routes_are_refused_with_a_reply_that_says_so() {
        for line in [
            "RCPT TO:<@x:a@b.test>",
            "RCPT TO:<@a,@b:u@d.test>",
            "MAIL FROM:<@x.test:a@b.test>",
        ] {
            let error = ascii(line).unwrap_err();
            assert_eq!(
                error,
                ParseError::Syntax("source routes are not accepted"),
                "{line}"
            );
            assert!(error.reply().to_wire().contains("source routes"));
        }
    }

    #[test]
    fn mail_parameters_are_read_into_their_fields() {
        let line = "MAIL FROM:<ned@thor.innosoft.com> SIZE=500000 BODY=7BIT AUTH=e+3Dmc2@x.test";
        let Ok(Command::Mail { from, parameters }) = ascii(line) else {
            panic!("refused: {line}");
        };
        assert_eq!(
            from.address().map(Address::as_str),
            Some("ned@thor.innosoft.com")
        );
        let expected = MailParameters {
            size: Some(500_000),
            body: Body::SevenBit,
            smtputf8: false,
            auth: Some("e+3Dmc2@x.test".into()),
        };
        assert_eq!(parameters, expected);
        let Ok(Command::Mail { parameters, .. }) = ascii("MAIL FROM:<> AUTH=<>") else {
            panic!("AUTH=<> refused");
        };
        assert_eq!(parameters.auth.as_deref(), Some("<>"));
    }

    #[test]
    fn size_is_one_to_twenty_digits_and_saturates_past_u64() {
        let size = |line: &str| match ascii(line) {
            Ok(Command::Mail { parameters, .. }) => Ok(parameters.size),
            Err(error) => Err(error),
            Ok(other) => panic!("{other:?}"),
        };
        assert_eq!(size("MAIL FROM:<> SIZE=0"), Ok(Some(0)));
        assert_eq!(
            size("MAIL FROM:<> SIZE=18446744073709551615"),
            Ok(Some(u64::MAX))
        );
        assert_eq!(
            size("MAIL FROM:<> SIZE=99999999999999999999"),
            Ok(Some(u64::MAX))
        );
        for bad in [
            "SIZE=",
            "SIZE",
            "SIZE=-1",
            "SIZE=1k",
            "SIZE=999999999999999999999",
        ] {
            let result = size(&format!("MAIL FROM:<> {bad}"));
            assert!(
                matches!(
                    result,
                    Err(ParseError::BadParameter(_) | ParseError::Syntax(_))
                ),
                "{bad}: {result:?}"
            );
        }
    }

    #[test]
    fn body_takes_only_7bit_or_8bitmime() {
        for bad in ["BODY=BINARYMIME", "BODY=8BIT", "BODY"] {
            let result = ascii(&format!("MAIL FROM:<a@b.test> {bad}"));
            assert!(matches!(result, Err(ParseError::BadParameter(_))), "{bad}");
        }
    }

    #[test]
    fn unknown_parameters_are_refused_with_555_5_5_4() {
        let cases = [
            ("MAIL FROM:<a@b.test> RET=HDRS", "RET"),
            ("MAIL FROM:<a@b.test> SIZE=1 ENVID=x", "ENVID"),
            ("MAIL FROM:<a@b.test> REQUIRETLS", "REQUIRETLS"),
            ("RCPT TO:<a@b.test> NOTIFY=NEVER", "NOTIFY"),
            ("RCPT TO:<a@b.test> orcpt=rfc822;a@b.test", "ORCPT"),
        ];
        for (line, keyword) in cases {
            let error = ascii(line).unwrap_err();
            assert_eq!(
                error,
                ParseError::UnknownParameter(keyword.into()),
                "{line}"
            );
            let reply = error.reply();
            assert_eq!((reply.code, reply.status), (555, Some((5, 5, 4))));
        }
    }

    #[test]
    fn malformed_and_repeated_parameters_are_syntax_errors() {
        for params in [
            "=1",
            "-X=1",
            "SIZE=1=2",
            "<x>",
            "SIZE=1 SIZE=2",
            "smtputf8 SMTPUTF8",
        ] {
            let result = ascii(&format!("MAIL FROM:<a@b.test> {params}"));
            assert!(
                matches!(result, Err(ParseError::Syntax(_))),
                "{params}: {result:?}"
            );
        }
        assert!(matches!(
            ascii("RCPT TO:<a@b.test> =x"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            ascii("MAIL FROM:<a@b.test> SMTPUTF8=yes"),
            Err(ParseError::BadParameter(_))
        ));
        for auth in ["AUTH", "AUTH=a+2", "AUTH=a+zz", "AUTH=a+3d"] {
            let result = ascii(&format!("MAIL FROM:<a@b.test> {auth}"));
            assert!(
                matches!(result, Err(ParseError::BadParameter(_))),
                "{auth}: {result:?}"
            );
        }
    }

    #[test]
    fn smtputf8_on_the_mail_line_allows_a_utf8_sender() {
        let line = "MAIL FROM:<Jörg@bücher.test> SMTPUTF8";
        let Ok(Command::Mail { from, parameters }) = parse(line.as_bytes(), false) else {
            panic!("refused: {line}");
        };
        assert_eq!(from.to_string(), "<jörg@bücher.test>");
        assert!(parameters.smtputf8);
    }

    #[test]
    fn a_utf8_sender_without_smtputf8_is_refused_with_553_5_6_7() {
        // The flag of an earlier transaction does not carry over: MAIL declares its own.
        for utf8_allowed in [false, true] {
            let error = parse("MAIL FROM:<jörg@bücher.test>".as_bytes(), utf8_allowed);
            assert_eq!(error, Err(ParseError::Utf8NotEnabled));
        }
        let reply = ParseError::Utf8NotEnabled.reply();
        assert_eq!((reply.code, reply.status), (553, Some((5, 6, 7))));
    }

    #[test]
    fn a_utf8_recipient_needs_smtputf8_in_the_transaction() {
        let line = "RCPT TO:<jörg@bücher.test>".as_bytes();
        assert_eq!(parse(line, false), Err(ParseError::Utf8NotEnabled));
        assert_eq!(parse(line, true), Ok(rcpt_to("jörg@bücher.test")));
        assert_eq!(
            parse("VRFY jörg".as_bytes(), false),
            Err(ParseError::Utf8NotEnabled)
        );
        assert_eq!(
            parse("VRFY jörg".as_bytes(), true),
            Ok(Command::Vrfy("jörg".into()))
        );
    }

    #[test]
    fn bdat_takes_an_exact_size_and_an_optional_last() {
        let max = format!("BDAT {}", u64::MAX);
        assert_eq!(
            ascii(&max),
            Ok(Command::Bdat {
                size: u64::MAX,
                last: false
            })
        );
        for bad in [
            "BDAT",
            "BDAT x",
            "BDAT -1",
            "BDAT +1",
            "BDAT 1 FIRST",
            "BDAT 1 LAST more",
            "BDAT 18446744073709551616",
            "BDAT  1",
        ] {
            assert!(matches!(ascii(bad), Err(ParseError::Syntax(_))), "{bad}");
        }
    }

    #[test]
    fn auth_takes_a_mechanism_and_an_optional_initial_response() {
        // RFC 4954 §4 example, and RFC 4616's PLAIN.
        assert_eq!(
            ascii("AUTH PLAIN dGVzdAB0ZXN0ADEyMzQ="),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("dGVzdAB0ZXN0ADEyMzQ=".into())
            })
        );
        assert_eq!(
            ascii("auth login"),
            Ok(Command::Auth {
                mechanism: "LOGIN".into(),
                initial: None
            })
        );
        let empty = ascii("AUTH PLAIN =");
        assert!(matches!(empty, Ok(Command::Auth { initial: Some(i), .. }) if i == "="));
        for bad in [
            "AUTH",
            "AUTH PLAIN a b",
            "AUTH PL@IN",
            "AUTH ABCDEFGHIJKLMNOPQRSTU",
            "AUTH PLAIN not*base64",
        ] {
            assert!(matches!(ascii(bad), Err(ParseError::Syntax(_))), "{bad}");
        }
    }

    #[test]
    fn verbs_without_arguments_refuse_extra_ones() {
        for line in [
            "DATA x",
            "QUIT now",
            "RSET all",
            "STARTTLS please",
            "EHLO a b",
        ] {
            assert!(matches!(ascii(line), Err(ParseError::Syntax(_))), "{line}");
        }
        // NOOP and HELP take an optional string, which means nothing here.
        assert_eq!(ascii("NOOP anything at all"), Ok(Command::Noop));
        assert_eq!(ascii("HELP MAIL"), Ok(Command::Help));
    }

    #[test]
    fn hello_needs_one_printable_ascii_name() {
        assert_eq!(
            ascii("EHLO [192.0.2.1]"),
            Ok(Command::Ehlo("[192.0.2.1]".into()))
        );
        for bad in ["EHLO", "HELO ", "LHLO", "EHLO bücher.test"] {
            assert!(matches!(ascii(bad), Err(ParseError::Syntax(_))), "{bad}");
        }
        let long = format!("EHLO {}", "a".repeat(256));
        assert!(matches!(ascii(&long), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn nul_cr_lf_and_other_control_characters_are_refused() {
        for line in [
            &b"MAIL FROM:<a\0b@c.test>"[..],
            b"RCPT TO:<a@b.test>\rRSET",
            b"RCPT TO:<a@b.test>\nRSET",
            b"HELO a\0b",
            b"NOOP\t",
            b"NOOP \x7f",
            "NOOP \u{85}".as_bytes(),
            b"RCPT TO:<\xff@b.test>",
        ] {
            assert_eq!(
                parse(line, true),
                Err(ParseError::InvalidCharacters),
                "{line:?}"
            );
        }
    }

    #[test]
    fn lines_past_rfc_5321_limits_are_refused_and_mail_gets_its_extensions_allowance() {
        let long_noop = format!("NOOP {}", "x".repeat(MAX_COMMAND_LINE - 2 - 5));
        assert_eq!(ascii(&long_noop), Ok(Command::Noop));
        assert_eq!(ascii(&format!("{long_noop}x")), Err(ParseError::TooLong));

        // A MAIL with a 254-octet path and a long AUTH= fits; past the allowance it does not.
        let sender = format!("{}@{}.test", "a".repeat(64), "b".repeat(63));
        let auth = "c".repeat(480);
        let mail = format!("MAIL FROM:<{sender}> SIZE=1 BODY=8BITMIME SMTPUTF8 AUTH={auth}");
        assert!(mail.len() > MAX_COMMAND_LINE && mail.len() <= MAX_MAIL_COMMAND_LINE - 2);
        assert!(matches!(ascii(&mail), Ok(Command::Mail { .. })));
        let too_long = format!("{mail}{}", "c".repeat(MAX_MAIL_COMMAND_LINE));
        assert_eq!(ascii(&too_long), Err(ParseError::TooLong));
    }

    #[test]
    fn unknown_verbs_and_empty_lines_are_unknown_commands() {
        for line in ["", "XYZZY", "MAILFROM:<a@b.test>", "EHLÖ x", " QUIT"] {
            assert_eq!(ascii(line), Err(ParseError::UnknownCommand), "{line:?}");
        }
    }

    #[test]
    fn each_error_maps_to_its_reply_code_and_status() {
        let cases = [
            (ParseError::TooLong, 500, (5, 5, 2)),
            (ParseError::InvalidCharacters, 500, (5, 5, 2)),
            (ParseError::UnknownCommand, 500, (5, 5, 2)),
            (ParseError::NotImplemented("EXPN"), 502, (5, 5, 1)),
            (ParseError::Syntax("x"), 501, (5, 5, 2)),
            (ParseError::BadSender(AddressError::Empty), 501, (5, 1, 7)),
            (ParseError::BadAddress(AddressError::Empty), 501, (5, 1, 3)),
            (ParseError::UnknownParameter("X".into()), 555, (5, 5, 4)),
            (ParseError::BadParameter("x"), 501, (5, 5, 4)),
            (ParseError::Utf8NotEnabled, 553, (5, 6, 7)),
        ];
        for (error, code, status) in cases {
            let reply = error.reply();
            assert_eq!(
                (reply.code, reply.status),
                (code, Some(status)),
                "{error:?}"
            );
            assert!(!reply.is_positive());
        }
        let wire = ParseError::BadAddress(AddressError::InvalidLocalPart)
            .reply()
            .to_wire();
        assert_eq!(
            wire,
            "501 5.1.3 bad recipient address: invalid local part\r\n"
        );
    }

    #[test]
    fn multi_line_replies_carry_the_status_on_every_line() {
        let reply = Reply::new(550, Some((5, 7, 1)), "first\nsecond\r\nthird");
        assert_eq!(
            reply.to_wire(),
            "550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n"
        );
        assert_eq!(Reply::ok((2, 0, 0), "").to_wire(), "250 2.0.0\r\n");
        assert_eq!(Reply::multiline(250, vec![]).to_wire(), "250\r\n");
        assert_eq!(Reply::challenge("").to_wire(), "334\r\n");
        let gaps = Reply::multiline(250, vec![String::new(), "x".into()]);
        assert_eq!(gaps.to_wire(), "250-\r\n250 x\r\n");
    }

    #[test]
    fn reply_text_cannot_forge_lines_or_exceed_512_octets() {
        let forged = Reply::multiline(250, vec!["ok\r\n250 forged".into()]);
        assert_eq!(forged.to_wire(), "250 ok  250 forged\r\n");
        let long = Reply::ok((2, 0, 0), &"é".repeat(600)).to_wire();
        assert!(
            long.len() <= MAX_REPLY_LINE && long.ends_with("é\r\n"),
            "{}",
            long.len()
        );
    }

    #[test]
    fn helpers_build_the_replies_the_session_sends() {
        assert_eq!(Reply::closing("bye").to_wire(), "221 2.0.0 bye\r\n");
        assert_eq!(
            Reply::start_data().to_wire(),
            "354 end data with <CR><LF>.<CR><LF>\r\n"
        );
        assert_eq!(
            Reply::authenticated().to_wire(),
            "235 2.7.0 authentication succeeded\r\n"
        );
        assert_eq!(
            Reply::bad_sequence("send MAIL first").to_wire(),
            "503 5.5.1 send MAIL first\r\n"
        );
        assert_eq!(
            Reply::temporary_failure().to_wire(),
            "451 4.3.0 temporary failure, try again later\r\n"
        );
        assert_eq!(Reply::shutting_down().code, 421);
    }

    #[test]
    fn only_2yz_and_3yz_replies_are_positive() {
        for (code, positive) in [
            (220, true),
            (250, true),
            (334, true),
            (354, true),
            (421, false),
        ] {
            assert_eq!(Reply::new(code, None, "").is_positive(), positive, "{code}");
        }
        assert!(!Reply::new(550, None, "").is_positive());
    }

    #[test]
    fn verbs_name_their_commands() {
        assert_eq!(ascii("MAIL FROM:<>").unwrap().verb(), "MAIL");
        assert_eq!(ascii("STARTTLS").unwrap().verb(), "STARTTLS");
        assert_eq!(ascii("BDAT 1").unwrap().verb(), "BDAT");
    }

    /// A xorshift generator: deterministic, so a failure repeats.
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    /// Every piece of client text a command carries.
    fn texts(command: &Command) -> Vec<String> {
        match command {
            Command::Ehlo(name) | Command::Helo(name) | Command::Lhlo(name) => vec![name.clone()],
            Command::Vrfy(argument) => vec![argument.clone()],
            Command::Mail { from, parameters } => {
                let auth = parameters.auth.clone().unwrap_or_default();
                vec![from.to_string(), auth]
            }
            Command::Rcpt { to, .. } => vec![to.to_string()],
            Command::Auth { mechanism, initial } => {
                vec![mechanism.clone(), initial.clone().unwrap_or_default()]
            }
            _ => Vec::new(),
        }
    }

    #[test]
    fn twenty_thousand_noisy_lines_never_panic_and_every_error_makes_one_reply_line() {
        // Random bytes, verbs followed by SMTP pieces, and valid lines with a few bytes
        // changed, so the path and parameter code is reached as well as the verb match.
        let verbs = [
            "MAIL FROM:",
            "RCPT TO:",
            "BDAT ",
            "AUTH ",
            "EHLO ",
            "VRFY ",
            "DATA",
        ];
        let pieces = [
            "<",
            ">",
            "<>",
            "@",
            "a",
            "b.test",
            " ",
            "SIZE=",
            "9",
            "BODY=",
            "8BITMIME",
            "SMTPUTF8",
            "AUTH=",
            "+2B",
            "+",
            "=",
            "\"",
            "%",
            "!",
            ",",
            ":",
            "ö",
            "\r",
            "\n",
            "\0",
            "LAST",
            "PLAIN",
            "postmaster",
            ".",
            "-",
        ];
        let valid = [
            "MAIL FROM:<a.b+c@example.test> SIZE=100 BODY=8BITMIME SMTPUTF8 AUTH=a+2Bb@c.test",
            "RCPT TO:<Postmaster>",
            "RCPT TO:<jörg@bücher.test>",
            "BDAT 1000 LAST",
            "AUTH PLAIN dGVzdAB0ZXN0ADEyMzQ=",
            "EHLO [192.0.2.1]",
        ];
        let mut noise = Noise(0x2545_f491_4f6c_dd1d);
        let mut accepted = 0;
        for round in 0..20_000 {
            let line: Vec<u8> = match round % 3 {
                0 => {
                    let len = (noise.next() % 80) as usize;
                    (0..len).map(|_| noise.next() as u8).collect()
                }
                1 => {
                    let count = noise.next() % 10;
                    let tail: String = (0..count).map(|_| noise.pick(&pieces)).collect();
                    format!("{}{tail}", noise.pick(&verbs)).into_bytes()
                }
                _ => {
                    let mut line = noise.pick(&valid).as_bytes().to_vec();
                    // Mostly bytes that mean something in a command, sometimes any byte.
                    let interesting = b"<>@%!\":,=+.- aZ09";
                    for _ in 0..=noise.next() % 3 {
                        let at = (noise.next() % line.len() as u64) as usize;
                        let pick = noise.next() as usize;
                        line[at] = match pick % 4 {
                            0 => pick as u8,
                            _ => interesting[pick % interesting.len()],
                        };
                    }
                    line
                }
            };
            let utf8_allowed = noise.next().is_multiple_of(2);

            match parse(&line, utf8_allowed) {
                Ok(command) => {
                    // Whatever was accepted holds no control character to smuggle into a log,
                    // a header or a reply.
                    accepted += 1;
                    for text in texts(&command) {
                        assert!(!text.chars().any(char::is_control), "{line:?}: {text:?}");
                    }
                }
                Err(error) => {
                    let wire = error.reply().to_wire();
                    assert_eq!(wire.matches("\r\n").count(), 1, "{line:?}: {wire:?}");
                    assert!(wire.len() <= MAX_REPLY_LINE);
                }
            }
        }
        assert!(
            accepted > 500,
            "the generator reached too few valid commands: {accepted}"
        );
    }
}
