//! A client connection that may switch to TLS, and a line reader with a hard length cap.
//!
//! [`MaybeTls`] is what a session reads and writes: plain TCP until STARTTLS or STLS, then TLS
//! (or TLS from the start on the implicit-TLS ports). [`LineReader`] cuts the client's bytes into
//! command lines without ever holding more than about one line: an over-long line is read to its
//! end and thrown away, so the session can answer an error and go on.
//!
//! Before a TLS upgrade the session takes the connection back with [`LineReader::into_inner`],
//! which also hands over the bytes the client sent after the upgrade command. Those must be
//! dropped, not replayed inside TLS: they came in clear text and may have been injected by an
//! attacker on the path (RFC 3207 §4.2, RFC 2595 §4).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A client connection, in clear text or under TLS.
#[derive(Debug)]
pub enum MaybeTls {
    /// Clear text, before any upgrade.
    Plain(TcpStream),
    /// TLS, after an upgrade or on an implicit-TLS port. Boxed: the TLS state is large.
    Tls(Box<TlsStream<TcpStream>>),
    /// A unix socket on this machine (LMTP from a local MTA); never upgraded.
    Unix(tokio::net::UnixStream),
}

impl MaybeTls {
    /// Runs the server side of a TLS handshake on a clear-text connection.
    ///
    /// A connection already under TLS is an error: a second STARTTLS is a client mistake the
    /// session answers, not a reason to nest TLS.
    pub async fn upgrade(self, acceptor: &TlsAcceptor) -> io::Result<MaybeTls> {
        match self {
            MaybeTls::Plain(tcp) => {
                let tls = acceptor.accept(tcp).await?;
                Ok(MaybeTls::Tls(Box::new(tls)))
            }
            MaybeTls::Tls(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "upgrading to tls: the connection is under tls already",
            )),
            MaybeTls::Unix(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "upgrading to tls: a unix socket is not upgraded",
            )),
        }
    }

    /// Whether the connection is under TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// The TCP connection underneath, for its addresses and socket options; none for a unix
    /// socket.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            MaybeTls::Plain(tcp) => Some(tcp),
            MaybeTls::Tls(tls) => Some(tls.get_ref().0),
            MaybeTls::Unix(_) => None,
        }
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            MaybeTls::Unix(unix) => Pin::new(unix).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            MaybeTls::Unix(unix) => Pin::new(unix).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            MaybeTls::Unix(unix) => Pin::new(unix).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            MaybeTls::Unix(unix) => Pin::new(unix).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
            MaybeTls::Unix(unix) => Pin::new(unix).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(tcp) => tcp.is_write_vectored(),
            MaybeTls::Tls(tls) => tls.is_write_vectored(),
            MaybeTls::Unix(unix) => unix.is_write_vectored(),
        }
    }
}

/// One result of [`LineReader::read_line`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its CRLF or bare LF ending.
    Complete(Vec<u8>),
    /// A line longer than the cap; it was read to its end and dropped.
    TooLong,
    /// The client closed the connection (an unterminated last line is not returned).
    Eof,
}

/// How much is read from the connection at a time.
const READ_CHUNK: usize = 4096;

/// Reads lines from a stream, holding at most about one capped line in memory.
///
/// `read_line` is cancel safe: if its future is dropped (a timeout in `select!`), the bytes
/// read so far stay buffered and the next call goes on from them. The reader also implements
/// [`AsyncRead`], handing out buffered bytes first, for byte counts that follow a line (IMAP
/// literals, BDAT chunks). Replies are written through [`inner_mut`](LineReader::inner_mut).
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    /// Bytes read from `inner`; those before `consumed` were handed out already.
    buffer: Vec<u8>,
    consumed: usize,
    /// How many of the unconsumed bytes are known to hold no LF, so they are not searched again.
    scanned: usize,
    /// Inside an over-long line whose start was dropped: skip up to the next LF.
    discarding: bool,
    /// Whether the line last returned ended with a bare LF rather than CRLF.
    bare_lf: bool,
}

impl<R> LineReader<R> {
    /// A reader over `inner`, with nothing buffered yet.
    pub fn new(inner: R) -> LineReader<R> {
        LineReader {
            inner,
            buffer: Vec::new(),
            consumed: 0,
            scanned: 0,
            discarding: false,
            bare_lf: false,
        }
    }

    /// The bytes read from the stream but not handed out yet: whatever the client pipelined
    /// after the last line returned.
    pub fn buffered(&self) -> &[u8] {
        &self.buffer[self.consumed..]
    }

    /// Whether the line last returned ended with a bare LF rather than CRLF.
    ///
    /// SMTP must not take `.` ended by a bare LF as the end of DATA (RFC 5321 §4.1.1.4, the
    /// "SMTP smuggling" ambiguity); other protocols may ignore it.
    pub fn bare_lf(&self) -> bool {
        self.bare_lf
    }

    /// The stream, to look at it (`is_tls`, addresses).
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// The stream, for writing replies.
    pub fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The stream back, with the bytes read from it but not handed out yet.
    ///
    /// For STARTTLS and STLS the leftovers must be discarded (RFC 3207 §4.2, RFC 2595 §4): a
    /// session may answer them with an error, but must never run them as commands under TLS.
    pub fn into_inner(mut self) -> (R, Vec<u8>) {
        self.buffer.drain(..self.consumed);
        (self.inner, self.buffer)
    }
}

impl LineReader<MaybeTls> {
    /// STARTTLS and STLS: the handshake on this connection, with a new reader over the TLS
    /// stream. Bytes the client sent after the upgrade command are dropped, never read as
    /// commands under TLS (RFC 3207 §4.2, RFC 2595 §3.1); `command` names it in the log.
    pub async fn start_tls(
        self,
        acceptor: &TlsAcceptor,
        timeout: std::time::Duration,
        command: &str,
    ) -> io::Result<LineReader<MaybeTls>> {
        let (stream, leftovers) = self.into_inner();
        if !leftovers.is_empty() {
            tracing::warn!(
                bytes = leftovers.len(),
                "discarding data pipelined after {command}"
            );
        }
        let upgraded = tokio::time::timeout(timeout, stream.upgrade(acceptor))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "tls handshake timed out"))??;
        Ok(LineReader::new(upgraded))
    }
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// The next line of at most `max` bytes, its ending not counted.
    ///
    /// A line ends at LF, and a CR just before it is dropped too. A longer line is read to its
    /// end and answered with [`Line::TooLong`]; buffering never grows past `max` plus one read.
    pub async fn read_line(&mut self, max: usize) -> io::Result<Line> {
        loop {
            if let Some(line) = self.take_line(max) {
                return Ok(line);
            }

            // With no LF in sight, more than `max` bytes plus a CR awaiting its LF is too long
            // already: drop what is held and skip to the end of the line.
            if self.discarding || self.buffered().len() > max.saturating_add(1) {
                self.discarding = true;
                self.buffer.clear();
                self.consumed = 0;
                self.scanned = 0;
            }

            // Handed-out bytes go before reading more, so the buffer stays about one line long.
            if self.consumed > 0 {
                self.buffer.drain(..self.consumed);
                self.consumed = 0;
            }
            self.buffer.reserve(READ_CHUNK);
            // `read_buf` only grows the buffer by what it read, so cancelling here loses nothing.
            if self.inner.read_buf(&mut self.buffer).await? == 0 {
                return Ok(Line::Eof);
            }
        }
    }

    /// The next buffered line, if a whole one is buffered.
    fn take_line(&mut self, max: usize) -> Option<Line> {
        let pending = &self.buffer[self.consumed..];
        let Some(end) = pending[self.scanned..].iter().position(|&b| b == b'\n') else {
            self.scanned = pending.len();
            return None;
        };
        let end = self.scanned + end;

        let bare_lf = end == 0 || pending[end - 1] != b'\r';
        let content = if bare_lf {
            &pending[..end]
        } else {
            &pending[..end - 1]
        };
        let line = if self.discarding || content.len() > max {
            Line::TooLong
        } else {
            Line::Complete(content.to_vec())
        };

        self.consumed += end + 1;
        self.scanned = 0;
        self.discarding = false;
        self.bare_lf = bare_lf;
        Some(line)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for LineReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let reader = self.get_mut();

        // Buffered bytes were sent before anything still in the stream, so they come first.
        let pending = &reader.buffer[reader.consumed..];
        if pending.is_empty() {
            return Pin::new(&mut reader.inner).poll_read(cx, buf);
        }
        let taken = pending.len().min(buf.remaining());
        buf.put_slice(&pending[..taken]);
        reader.consumed += taken;
        reader.scanned = reader.scanned.saturating_sub(taken);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncWriteExt, DuplexStream, duplex};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::pki_types::ServerName;

    /// A reader over one end of a pipe, and the other end to write into.
    fn pipe() -> (DuplexStream, LineReader<DuplexStream>) {
        let (client, server) = duplex(64 * 1024);
        (client, LineReader::new(server))
    }

    fn complete(text: &str) -> Line {
        Line::Complete(text.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn crlf_and_bare_lf_both_end_a_line_and_are_stripped() {
        let (mut client, mut reader) = pipe();
        client
            .write_all(b"USER alice\r\nPASS x\nQUIT\r\n")
            .await
            .unwrap();

        assert_eq!(reader.read_line(100).await.unwrap(), complete("USER alice"));
        assert!(!reader.bare_lf());
        assert_eq!(reader.read_line(100).await.unwrap(), complete("PASS x"));
        assert!(reader.bare_lf());
        assert_eq!(reader.read_line(100).await.unwrap(), complete("QUIT"));
        assert!(!reader.bare_lf());
    }

    #[tokio::test]
    async fn a_cr_inside_a_line_is_kept_and_empty_lines_are_lines() {
        let (mut client, mut reader) = pipe();
        client.write_all(b"a\rb\r\n\r\n\n").await.unwrap();
        assert_eq!(reader.read_line(100).await.unwrap(), complete("a\rb"));
        assert_eq!(reader.read_line(100).await.unwrap(), complete(""));
        assert_eq!(reader.read_line(100).await.unwrap(), complete(""));
        assert!(reader.bare_lf());
    }

    #[tokio::test]
    async fn a_line_sent_in_pieces_is_returned_whole() {
        let (client, server) = duplex(1);
        let mut reader = LineReader::new(server);
        let writer = tokio::spawn(async move {
            let mut client = client;
            client
                .write_all(b"CAPA with some words\r\nNOOP\r\n")
                .await
                .unwrap();
        });
        assert_eq!(
            reader.read_line(100).await.unwrap(),
            complete("CAPA with some words")
        );
        assert_eq!(reader.read_line(100).await.unwrap(), complete("NOOP"));
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_line_of_exactly_max_bytes_is_accepted_and_one_more_is_too_long() {
        let (mut client, mut reader) = pipe();
        client
            .write_all(b"12345\r\n123456\r\n12345\n")
            .await
            .unwrap();
        assert_eq!(reader.read_line(5).await.unwrap(), complete("12345"));
        assert_eq!(reader.read_line(5).await.unwrap(), Line::TooLong);
        assert_eq!(reader.read_line(5).await.unwrap(), complete("12345"));
    }

    #[tokio::test]
    async fn an_over_long_line_is_skipped_to_its_end_and_the_next_line_is_read() {
        let (client, server) = duplex(1024);
        let mut reader = LineReader::new(server);
        // Far longer than the cap and than the pipe, so it arrives over many reads.
        let writer = tokio::spawn(async move {
            let mut client = client;
            client.write_all(&vec![b'x'; 1_000_000]).await.unwrap();
            client.write_all(b"\r\nNOOP\r\n").await.unwrap();
        });

        assert_eq!(reader.read_line(512).await.unwrap(), Line::TooLong);
        // The buffer never held much more than one capped line plus one read.
        assert!(
            reader.buffer.capacity() < 4 * (512 + READ_CHUNK),
            "{}",
            reader.buffer.capacity()
        );
        assert_eq!(reader.read_line(512).await.unwrap(), complete("NOOP"));
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn the_end_of_the_stream_is_eof_and_an_unterminated_tail_is_not_a_line() {
        let (mut client, mut reader) = pipe();
        client.write_all(b"QUIT\r\nhalf a li").await.unwrap();
        drop(client);
        assert_eq!(reader.read_line(100).await.unwrap(), complete("QUIT"));
        assert_eq!(reader.read_line(100).await.unwrap(), Line::Eof);
        assert_eq!(reader.read_line(100).await.unwrap(), Line::Eof);
    }

    #[tokio::test]
    async fn the_stream_ending_inside_an_over_long_line_is_eof() {
        let (mut client, mut reader) = pipe();
        client.write_all(&[b'x'; 300]).await.unwrap();
        drop(client);
        assert_eq!(reader.read_line(10).await.unwrap(), Line::Eof);
    }

    #[tokio::test]
    async fn pipelined_bytes_after_a_line_come_back_with_the_stream() {
        let (mut client, mut reader) = pipe();
        client
            .write_all(b"STLS\r\nUSER injected\r\nPASS x")
            .await
            .unwrap();
        assert_eq!(reader.read_line(100).await.unwrap(), complete("STLS"));
        assert_eq!(reader.buffered(), b"USER injected\r\nPASS x");

        let (mut stream, leftovers) = reader.into_inner();
        assert_eq!(leftovers, b"USER injected\r\nPASS x");
        // Nothing was read past what the reader hands back.
        client.write_all(b"after").await.unwrap();
        let mut after = [0; 5];
        stream.read_exact(&mut after).await.unwrap();
        assert_eq!(&after, b"after");
    }

    #[tokio::test]
    async fn nothing_is_buffered_after_a_lone_command() {
        let (mut client, mut reader) = pipe();
        client.write_all(b"STARTTLS\r\n").await.unwrap();
        assert_eq!(reader.read_line(100).await.unwrap(), complete("STARTTLS"));
        assert!(reader.buffered().is_empty());
        assert!(reader.into_inner().1.is_empty());
    }

    #[tokio::test]
    async fn raw_reads_hand_out_buffered_bytes_before_the_stream() {
        let (mut client, mut reader) = pipe();
        client.write_all(b"A001 APPEND x {5}\r\nhel").await.unwrap();
        assert_eq!(
            reader.read_line(100).await.unwrap(),
            complete("A001 APPEND x {5}")
        );
        client.write_all(b"lo\r\nA002 NOOP\r\n").await.unwrap();

        let mut literal = [0; 5];
        reader.read_exact(&mut literal).await.unwrap();
        assert_eq!(&literal, b"hello");
        assert_eq!(reader.read_line(100).await.unwrap(), complete(""));
        assert_eq!(reader.read_line(100).await.unwrap(), complete("A002 NOOP"));
    }

    #[tokio::test]
    async fn a_read_cancelled_mid_line_loses_no_bytes() {
        let (mut client, mut reader) = pipe();
        client.write_all(b"USER al").await.unwrap();
        let timed_out =
            tokio::time::timeout(Duration::from_millis(50), reader.read_line(100)).await;
        assert!(timed_out.is_err());

        client.write_all(b"ice\r\n").await.unwrap();
        assert_eq!(reader.read_line(100).await.unwrap(), complete("USER alice"));
    }

    #[tokio::test]
    async fn a_read_cancelled_inside_an_over_long_line_still_skips_all_of_it() {
        let (mut client, mut reader) = pipe();
        client.write_all(&[b'x'; 100]).await.unwrap();
        let timed_out = tokio::time::timeout(Duration::from_millis(50), reader.read_line(10)).await;
        assert!(timed_out.is_err());

        client.write_all(b"xxxx\r\nNOOP\r\n").await.unwrap();
        assert_eq!(reader.read_line(10).await.unwrap(), Line::TooLong);
        assert_eq!(reader.read_line(10).await.unwrap(), complete("NOOP"));
    }

    /// A TLS acceptor and a connector that trusts it, from a fresh self-signed pair.
    fn tls_pair(dir: &std::path::Path) -> (TlsAcceptor, TlsConnector) {
        let (certificate, key) =
            crate::certificate::self_signed(dir, &["localhost", "127.0.0.1"]).unwrap();
        let server = crate::tls::server_config(&certificate, &key).unwrap();
        let client = crate::tls::client_config(&certificate).unwrap();
        (TlsAcceptor::from(server), TlsConnector::from(client))
    }

    #[tokio::test]
    async fn stls_drops_pipelined_clear_text_and_the_session_goes_on_under_tls() {
        let dir = tempfile::tempdir().unwrap();
        let (acceptor, connector) = tls_pair(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();

        // The client pipelines a command after STLS, as an injecting attacker would.
        let client = tokio::spawn(async move {
            let mut tcp = TcpStream::connect(address).await.unwrap();
            tcp.write_all(b"STLS\r\nUSER injected\r\n").await.unwrap();
            let mut reply = [0; 5];
            tcp.read_exact(&mut reply).await.unwrap();
            assert_eq!(&reply, b"+OK\r\n");

            let name = ServerName::try_from("127.0.0.1").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            tls.write_all(b"CAPA\r\n").await.unwrap();
            let mut reply = Vec::new();
            tls.read_to_end(&mut reply).await.unwrap();
            reply
        });

        let (tcp, _) = listener.accept().await.unwrap();
        let mut reader = LineReader::new(MaybeTls::Plain(tcp));
        assert!(!reader.inner().is_tls());
        assert_eq!(reader.read_line(255).await.unwrap(), complete("STLS"));
        let (mut stream, leftovers) = reader.into_inner();
        assert_eq!(leftovers, b"USER injected\r\n");

        stream.write_all(b"+OK\r\n").await.unwrap();
        let stream = stream.upgrade(&acceptor).await.unwrap();
        assert!(stream.is_tls());
        assert!(
            stream
                .tcp()
                .unwrap()
                .peer_addr()
                .unwrap()
                .ip()
                .is_loopback()
        );

        // Under TLS the first command is the client's CAPA, not the injected USER.
        let mut reader = LineReader::new(stream);
        assert_eq!(reader.read_line(255).await.unwrap(), complete("CAPA"));
        reader.inner_mut().write_all(b"+OK tls\r\n").await.unwrap();
        reader.inner_mut().shutdown().await.unwrap();
        assert_eq!(client.await.unwrap(), b"+OK tls\r\n");

        let (stream, _) = reader.into_inner();
        let again = stream.upgrade(&acceptor).await.unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn the_self_signed_certificate_is_valid_for_its_names_only() {
        let dir = tempfile::tempdir().unwrap();
        let (acceptor, connector) = tls_pair(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();

        for (name, valid) in [
            ("localhost", true),
            ("127.0.0.1", true),
            ("mx.example", false),
        ] {
            let connector = connector.clone();
            let client = tokio::spawn(async move {
                let tcp = TcpStream::connect(address).await.unwrap();
                let name = ServerName::try_from(name).unwrap();
                connector.connect(name, tcp).await.is_ok()
            });
            let (tcp, _) = listener.accept().await.unwrap();
            let server = MaybeTls::Plain(tcp).upgrade(&acceptor).await;
            assert_eq!(client.await.unwrap(), valid, "{name}");
            assert_eq!(server.is_ok(), valid, "{name}");
        }
    }
}
