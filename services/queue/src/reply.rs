//! Replies of a remote SMTP server and what its EHLO offers, as values; no I/O.

/// Longest reply line taken from a remote server. RFC 5321 §4.5.3.1.5 caps reply lines at
/// 512 octets; the cap here is looser, as a bound on memory.
pub const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one reply (an EHLO answer has a dozen).
pub const MAX_REPLY_LINES: usize = 100;

/// One complete reply: its code and its text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line, without the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// A 2xx reply.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// A 5xx reply: the recipient or message is refused for good.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The enhanced status code (RFC 3463) at the start of the first line, when there is one.
    pub fn status(&self) -> Option<String> {
        let first = self.lines.first()?;
        let word = first.split_whitespace().next()?;
        let parts: Vec<&str> = word.split('.').collect();
        let numeric =
            parts.len() == 3 && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()));
        (numeric && matches!(parts[0], "2" | "4" | "5")).then(|| word.to_string())
    }

    /// The reply as one line for logs and DSNs: `550 5.1.1 no such user`.
    pub fn summary(&self) -> String {
        let text = self.lines.join(" ");
        // Only printable text goes into logs and reports.
        let text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(500)
            .collect();
        format!("{} {}", self.code, text.trim())
    }
}

/// A line that is not `NNN-text` or `NNN text`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply line from the remote server")]
pub struct MalformedReply;

/// Builds a reply from lines as they arrive (RFC 5321 §4.2.1: `code-` continues, `code `
/// or a bare code ends it).
#[derive(Debug, Default)]
pub struct ReplyReader {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyReader {
    /// Takes one line (without CRLF); `Some` when it completes the reply.
    pub fn line(&mut self, line: &[u8]) -> Result<Option<Reply>, MalformedReply> {
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(MalformedReply);
        }
        let code: u16 = std::str::from_utf8(&line[..3])
            .ok()
            .and_then(|c| c.parse().ok())
            .ok_or(MalformedReply)?;
        if !(200..600).contains(&code) || self.code.is_some_and(|c| c != code) {
            return Err(MalformedReply);
        }
        let (last, text) = match line.get(3) {
            None => (true, &b""[..]),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(_) => return Err(MalformedReply),
        };
        self.code = Some(code);
        self.lines.push(String::from_utf8_lossy(text).into_owned());
        if self.lines.len() > MAX_REPLY_LINES {
            return Err(MalformedReply);
        }
        if !last {
            return Ok(None);
        }
        let reply = Reply {
            code,
            lines: std::mem::take(&mut self.lines),
        };
        self.code = None;
        Ok(Some(reply))
    }
}

/// What a server's EHLO reply offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// RFC 3207.
    pub starttls: bool,
    /// RFC 2920.
    pub pipelining: bool,
    /// RFC 1870: the limit, 0 when none is given.
    pub size: Option<u64>,
    /// RFC 6152.
    pub eight_bit_mime: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// RFC 4954: the mechanisms offered.
    pub auth: Vec<String>,
}

impl Extensions {
    /// Reads the keyword lines of an EHLO reply (the first line is the greeting name).
    pub fn parse(reply: &Reply) -> Extensions {
        let mut extensions = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "STARTTLS" => extensions.starttls = true,
                "PIPELINING" => extensions.pipelining = true,
                "8BITMIME" => extensions.eight_bit_mime = true,
                "SMTPUTF8" => extensions.smtputf8 = true,
                "SIZE" => {
                    extensions.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0))
                }
                "AUTH" => extensions
                    .auth
                    .extend(words.map(|w| w.to_ascii_uppercase())),
                _ => {}
            }
        }
        extensions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &[&str]) -> Result<Vec<Reply>, MalformedReply> {
        let mut reader = ReplyReader::default();
        let mut replies = Vec::new();
        for line in lines {
            if let Some(reply) = reader.line(line.as_bytes())? {
                replies.push(reply);
            }
        }
        Ok(replies)
    }

    #[test]
    fn a_multiline_ehlo_reply_lists_its_extensions() {
        let replies = read(&[
            "250-mx.example.org hello",
            "250-PIPELINING",
            "250-SIZE 10240000",
            "250-8BITMIME",
            "250-AUTH PLAIN login",
            "250-starttls",
            "250 SMTPUTF8",
        ])
        .unwrap();
        assert_eq!(replies.len(), 1);
        let extensions = Extensions::parse(&replies[0]);
        assert_eq!(
            extensions,
            Extensions {
                starttls: true,
                pipelining: true,
                size: Some(10_240_000),
                eight_bit_mime: true,
                smtputf8: true,
                auth: vec!["PLAIN".into(), "LOGIN".into()],
            }
        );
    }

    #[test]
    fn the_enhanced_status_and_a_summary_come_from_the_first_line() {
        let reply = read(&["550-5.1.1 no such user", "550 5.1.1 really"])
            .unwrap()
            .remove(0);
        assert!(reply.is_permanent());
        assert_eq!(reply.status().as_deref(), Some("5.1.1"));
        assert_eq!(reply.summary(), "550 5.1.1 no such user 5.1.1 really");
        let plain = read(&["451 try later"]).unwrap().remove(0);
        assert_eq!(plain.status(), None);
        assert!(!plain.is_permanent() && !plain.is_positive());
    }

    #[test]
    fn malformed_and_mixed_code_lines_are_refused() {
        for bad in [
            &["25"][..],
            &["abc hello"],
            &["250-a", "251 b"],
            &["250xhello"],
            &["999 x"],
        ] {
            assert_eq!(read(bad), Err(MalformedReply), "{bad:?}");
        }
        assert_eq!(read(&["220"]).unwrap()[0].code, 220);
    }
}
