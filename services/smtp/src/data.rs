//! Receiving a message: the DATA section (RFC 5321 §4.1.1.4) and BDAT chunks (RFC 3030),
//! streamed into the spool file through a bounded buffer.
//!
//! DATA ends only at `CRLF . CRLF`. A line that ends in a bare LF, or holds a bare CR, is
//! never taken for the end: `\n.\n`, `\r.\r`, `\r\n.\n` and `\n.\r\n` are all message
//! content. Under the default policy such a message is refused once its real end arrives
//! (RFC 5321 §2.3.8: CR and LF only as CRLF), which closes the "SMTP smuggling" family of
//! attacks, where a second server ends the message earlier than this one and runs what
//! follows as commands. The other policy normalises bare line ends to CRLF instead.
//!
//! A message over the size limit keeps being read to its end (so the session stays in step
//! with the client) but is not kept, and the answer is `552 5.3.4`.

use std::io;

use mailfold_net::stream::{Line, LineReader};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::spool::Spool;

/// Longest line taken in DATA. RFC 5321 §4.5.3.1.6 caps text lines at 1000 octets; longer ones
/// are common in the wild (generated HTML), so the cap here is looser, and it is a cap on
/// memory, not a rule about mail.
pub const MAX_DATA_LINE: usize = 64 * 1024;

/// What to do with a line that ends in a bare LF or holds a bare CR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareLineEndings {
    /// Refuse the message (the default).
    Reject,
    /// Store the line with CRLF.
    Normalise,
}

/// Why a complete message was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Larger than the limit.
    TooBig,
    /// A bare LF or CR, under [`BareLineEndings::Reject`].
    BareLineEnding,
    /// A line longer than [`MAX_DATA_LINE`].
    LineTooLong,
}

/// The outcome of reading a DATA section.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// The whole message is in the spool; its size in bytes.
    Complete(u64),
    /// The message was read to its end but not kept.
    Refused(Refusal),
    /// The connection closed before the end: nothing is delivered.
    Truncated,
}

/// Reads a DATA section into `spool`, up to and including the terminating `.` line.
pub async fn receive_data<R: AsyncRead + Unpin>(
    reader: &mut LineReader<R>,
    spool: &mut Spool,
    limit: u64,
    endings: BareLineEndings,
) -> io::Result<Received> {
    let mut refusal = None;
    // The DATA command's own CRLF precedes the first line.
    let mut after_crlf = true;
    loop {
        let line = match reader.read_line(MAX_DATA_LINE).await? {
            Line::Eof => return Ok(Received::Truncated),
            Line::TooLong => {
                refusal.get_or_insert(Refusal::LineTooLong);
                continue;
            }
            Line::Complete(line) => line,
        };
        let bare = reader.bare_lf() || line.contains(&b'\r');

        // RFC 5321 §4.1.1.4: the end is CRLF "." CRLF: a "." line ended by CRLF, after a line
        // that also ended in CRLF. Nothing else ends the message.
        if line == b"." && !bare && after_crlf {
            break;
        }
        after_crlf = !reader.bare_lf();
        if bare && endings == BareLineEndings::Reject {
            refusal.get_or_insert(Refusal::BareLineEnding);
        }
        if refusal.is_some() {
            continue;
        }

        // RFC 5321 §4.5.2: a leading dot was doubled by the client; take one away.
        let content = line.strip_prefix(b".").unwrap_or(&line);
        let length = spool.size() + content.len() as u64 + 2;
        if limit > 0 && length > limit {
            refusal = Some(Refusal::TooBig);
            continue;
        }
        write_line(spool, content).await?;
    }
    Ok(match refusal {
        Some(refusal) => Received::Refused(refusal),
        None => Received::Complete(spool.size()),
    })
}

/// Writes one line with CRLF; bare CRs inside a normalised line become CRLF too.
async fn write_line(spool: &mut Spool, content: &[u8]) -> io::Result<()> {
    if content.contains(&b'\r') {
        for (index, piece) in content.split(|&b| b == b'\r').enumerate() {
            if index > 0 {
                spool.write_all(b"\r\n").await?;
            }
            spool.write_all(piece).await?;
        }
    } else {
        spool.write_all(content).await?;
    }
    spool.write_all(b"\r\n").await
}

/// Reads one BDAT chunk of `size` bytes into `spool` (RFC 3030 §2: taken as it is, no dot
/// handling, no line rules). A message that grows past `limit` is read but not kept.
pub async fn receive_chunk<R: AsyncRead + Unpin>(
    reader: &mut LineReader<R>,
    spool: &mut Spool,
    size: u64,
    limit: u64,
    keep: bool,
) -> io::Result<Result<(), Refusal>> {
    let mut left = size;
    let mut buffer = vec![0u8; 64 * 1024];
    let too_big = limit > 0 && spool.size() + size > limit;
    while left > 0 {
        let want = buffer.len().min(left as usize);
        let read = reader.read(&mut buffer[..want]).await?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in BDAT",
            ));
        }
        if keep && !too_big {
            spool.write_all(&buffer[..read]).await?;
        }
        left -= read as u64;
    }
    Ok(if too_big {
        Err(Refusal::TooBig)
    } else {
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(
        input: &[u8],
        limit: u64,
        endings: BareLineEndings,
    ) -> (Received, Vec<u8>, Vec<u8>) {
        let folder = tempfile::tempdir().unwrap();
        let mut spool = Spool::create(folder.path()).await.unwrap();
        let mut reader = LineReader::new(input);
        let received = receive_data(&mut reader, &mut spool, limit, endings)
            .await
            .unwrap();
        spool.finish().await.unwrap();
        let stored = std::fs::read(spool.path()).unwrap();
        let (_, rest) = reader.into_inner();
        (received, stored, rest)
    }

    #[tokio::test]
    async fn the_message_ends_at_crlf_dot_crlf_and_dots_are_unstuffed() {
        let input = b"Subject: x\r\n\r\n..leading\r\nbody\r\n.\r\nQUIT\r\n";
        let (received, stored, rest) = run(input, 0, BareLineEndings::Reject).await;
        assert_eq!(stored, b"Subject: x\r\n\r\n.leading\r\nbody\r\n");
        assert_eq!(received, Received::Complete(stored.len() as u64));
        assert_eq!(
            rest, b"QUIT\r\n",
            "pipelined commands after the end are left"
        );
    }

    #[tokio::test]
    async fn smuggling_variants_are_content_and_refuse_the_message() {
        for smuggled in [&b"\n.\n"[..], b"\r.\r", b"\r\n.\n", b"\n.\r\n"] {
            let mut input = b"Subject: x\r\n\r\nhello".to_vec();
            input.extend_from_slice(smuggled);
            input.extend_from_slice(b"MAIL FROM:<evil@x.test>\r\n.\r\n");
            let (received, _, rest) = run(&input, 0, BareLineEndings::Reject).await;
            assert_eq!(
                received,
                Received::Refused(Refusal::BareLineEnding),
                "{smuggled:?}"
            );
            assert!(
                rest.is_empty(),
                "{smuggled:?}: nothing was left to run as a command"
            );
        }
    }

    #[tokio::test]
    async fn normalising_turns_bare_line_ends_into_crlf() {
        let (received, stored, _) = run(b"a\nb\rc\r\n.\r\n", 0, BareLineEndings::Normalise).await;
        assert_eq!(stored, b"a\r\nb\r\nc\r\n");
        assert_eq!(received, Received::Complete(9));
    }

    #[tokio::test]
    async fn an_oversized_message_is_read_to_its_end_and_not_kept() {
        let input = b"0123456789\r\n0123456789\r\n.\r\nNOOP\r\n";
        let (received, stored, rest) = run(input, 15, BareLineEndings::Reject).await;
        assert_eq!(received, Received::Refused(Refusal::TooBig));
        assert!(stored.len() <= 15);
        assert_eq!(rest, b"NOOP\r\n");
    }

    #[tokio::test]
    async fn a_connection_closed_mid_message_is_truncated() {
        let (received, _, _) = run(b"Subject: x\r\n\r\nno end", 0, BareLineEndings::Reject).await;
        assert_eq!(received, Received::Truncated);
    }

    #[tokio::test]
    async fn an_empty_message_is_just_the_dot() {
        let (received, stored, _) = run(b".\r\n", 0, BareLineEndings::Reject).await;
        assert_eq!((received, stored.len()), (Received::Complete(0), 0));
    }

    #[tokio::test]
    async fn bdat_chunks_are_taken_byte_for_byte() {
        let folder = tempfile::tempdir().unwrap();
        let mut spool = Spool::create(folder.path()).await.unwrap();
        let mut reader = LineReader::new(&b"line\n.\r\nMORE"[..]);
        let kept = receive_chunk(&mut reader, &mut spool, 8, 0, true)
            .await
            .unwrap();
        assert_eq!(kept, Ok(()));
        spool.finish().await.unwrap();
        assert_eq!(std::fs::read(spool.path()).unwrap(), b"line\n.\r\n");
        let (unread, buffered) = reader.into_inner();
        assert_eq!([buffered.as_slice(), unread].concat(), b"MORE");
    }
}
