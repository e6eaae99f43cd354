//! Turning a stored message into a POP3 multi-line response, chunk by chunk.
//!
//! RFC 1939 §3: every line ends in CRLF, a line that starts with `.` gets one more `.` in
//! front, and the response ends with a line holding a single `.`. Stored messages may end
//! lines in bare LF (or, rarely, bare CR); both become CRLF here, so a client always sees a
//! well-formed response whatever wrote the file. For TOP (RFC 1939 §7) the header, the blank
//! line and the first `n` body lines are sent, and the rest is not read at all.
//!
//! [`Stuffer`] does no I/O: the session feeds it file chunks and writes what it returns, so
//! a message of any size costs one buffer of memory.

/// Dot-stuffing and line-ending state across chunks.
#[derive(Debug, Clone)]
pub struct Stuffer {
    /// Bytes of the current line so far, line ending excluded.
    line_length: usize,
    /// A CR was the last byte seen; whether it starts CRLF depends on the next byte.
    pending_cr: bool,
    /// Still in the header section (before the first empty line).
    in_header: bool,
    /// For TOP: body lines still to send; `None` sends everything.
    body_lines_left: Option<usize>,
    /// TOP has sent all it should; further input is ignored.
    done: bool,
}

impl Stuffer {
    /// For RETR: the whole message.
    pub fn whole() -> Stuffer {
        Stuffer::new(None)
    }

    /// For TOP: the header and `lines` lines of the body.
    pub fn top(lines: usize) -> Stuffer {
        Stuffer::new(Some(lines))
    }

    fn new(body_lines_left: Option<usize>) -> Stuffer {
        Stuffer {
            line_length: 0,
            pending_cr: false,
            in_header: true,
            body_lines_left,
            done: false,
        }
    }

    /// Whether the response is complete (TOP reached its line count): stop reading.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Appends the wire form of `input` to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 32 + 4);
        for &byte in input {
            if self.done {
                return;
            }
            if self.pending_cr {
                self.pending_cr = false;
                self.end_line(out);
                if byte == b'\n' {
                    continue;
                }
                if self.done {
                    return;
                }
            }
            match byte {
                b'\r' => self.pending_cr = true,
                b'\n' => self.end_line(out),
                byte => {
                    // RFC 1939 §3: byte-stuff a leading termination octet.
                    if self.line_length == 0 && byte == b'.' {
                        out.push(b'.');
                    }
                    out.push(byte);
                    self.line_length += 1;
                }
            }
        }
    }

    /// Ends the response: the last line is terminated if it was not, then `.` CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.done {
            if self.pending_cr {
                self.pending_cr = false;
                self.end_line(out);
            }
            if self.line_length > 0 && !self.done {
                self.end_line(out);
            }
        }
        out.extend_from_slice(b".\r\n");
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n");
        let was_empty = self.line_length == 0;
        self.line_length = 0;
        if self.in_header {
            if was_empty {
                self.in_header = false;
                self.done = self.body_lines_left == Some(0);
            }
            return;
        }
        if let Some(left) = self.body_lines_left.as_mut() {
            *left = left.saturating_sub(1);
            self.done = *left == 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut stuffer: Stuffer, input: &[u8], chunk: usize) -> String {
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            stuffer.push(piece, &mut out);
        }
        stuffer.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_starting_with_a_dot_are_stuffed_and_the_end_is_marked() {
        let input = b"Subject: x\r\n\r\n.hidden\r\n..two\r\nend.\r\n";
        let expected = "Subject: x\r\n\r\n..hidden\r\n...two\r\nend.\r\n.\r\n";
        for chunk in [1, 2, 3, 7, 100] {
            assert_eq!(
                run(Stuffer::whole(), input, chunk),
                expected,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn bare_lf_and_bare_cr_become_crlf_and_a_missing_final_newline_is_added() {
        let input = b"A: 1\nB: 2\r\rbody\n.dot\nlast";
        let expected = "A: 1\r\nB: 2\r\n\r\nbody\r\n..dot\r\nlast\r\n.\r\n";
        for chunk in [1, 2, 5, 64] {
            assert_eq!(
                run(Stuffer::whole(), input, chunk),
                expected,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn top_sends_the_header_and_n_body_lines() {
        let input = b"From: a\r\nTo: b\r\n\r\none\r\n.two\r\nthree\r\n";
        assert_eq!(
            run(Stuffer::top(0), input, 3),
            "From: a\r\nTo: b\r\n\r\n.\r\n"
        );
        assert_eq!(
            run(Stuffer::top(2), input, 3),
            "From: a\r\nTo: b\r\n\r\none\r\n..two\r\n.\r\n"
        );
        assert_eq!(
            run(Stuffer::top(99), input, 3),
            "From: a\r\nTo: b\r\n\r\none\r\n..two\r\nthree\r\n.\r\n"
        );
    }

    #[test]
    fn top_stops_consuming_once_done() {
        let mut stuffer = Stuffer::top(1);
        let mut out = Vec::new();
        stuffer.push(b"H: v\n\nfirst\nsecond\n", &mut out);
        assert!(stuffer.is_done());
        stuffer.push(b"more\n", &mut out);
        stuffer.finish(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "H: v\r\n\r\nfirst\r\n.\r\n"
        );
    }

    #[test]
    fn an_empty_message_is_just_the_terminator() {
        assert_eq!(run(Stuffer::whole(), b"", 1), ".\r\n");
    }
}
