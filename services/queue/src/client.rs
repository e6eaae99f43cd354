//! The SMTP client that hands queued mail to the next hop: greeting, EHLO, STARTTLS, AUTH,
//! then one transaction per message over the same connection.
//!
//! MAIL and the RCPTs go out in one write when the server offers PIPELINING (RFC 2920), with
//! DATA sent after their replies (the end of the group). The message file is streamed with
//! dot-stuffing (RFC 5321 §4.5.2) through a fixed buffer (invariant 3). Every wait has the
//! timeout RFC 5321 §4.5.3.2 gives it.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use mailfold_net::stream::{Line, LineReader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::envelope::Envelope;
use crate::reply::{Extensions, MAX_REPLY_LINE, Reply, ReplyReader};

/// Waits of the client, RFC 5321 §4.5.3.2 by default.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connecting (not in the RFC: a dead address should not hold a worker for long).
    pub connect: Duration,
    /// §4.5.3.2.1: the 220 greeting, 5 minutes.
    pub greeting: Duration,
    /// §4.5.3.2.2 and .3: MAIL and RCPT (and EHLO, STARTTLS, AUTH), 5 minutes.
    pub command: Duration,
    /// §4.5.3.2.4: the 354 reply to DATA, 2 minutes.
    pub data_start: Duration,
    /// §4.5.3.2.5: each write of the data, 3 minutes.
    pub data_block: Duration,
    /// §4.5.3.2.6: the reply after the final dot, 10 minutes.
    pub data_end: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(300),
            command: Duration::from_secs(300),
            data_start: Duration::from_secs(120),
            data_block: Duration::from_secs(180),
            data_end: Duration::from_secs(600),
        }
    }
}

/// When to use STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Use it when offered; deliver in plaintext when not (the default, as most MTAs do).
    Opportunistic,
    /// A server that does not offer it, or whose handshake fails, is a temporary failure.
    Require,
}

/// What the client needs besides the destination.
#[derive(Clone)]
pub struct ClientOptions {
    /// The name sent in EHLO.
    pub hostname: String,
    /// STARTTLS policy.
    pub tls: TlsPolicy,
    /// The TLS client configuration (certificate checking is decided there).
    pub tls_config: Arc<rustls::ClientConfig>,
    /// The waits.
    pub timeouts: Timeouts,
}

/// One host to try: its name (for TLS and logs), its addresses, its AUTH credentials.
#[derive(Debug, Clone)]
pub struct Hop {
    /// The host name (or address literal) as routing named it.
    pub name: String,
    /// Where to connect, in order.
    pub addresses: Vec<SocketAddr>,
    /// AUTH PLAIN credentials (a smarthost), used only over TLS.
    pub auth: Option<(String, String)>,
}

/// The outcome for one recipient of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the server.
    Sent(String),
    /// Try again later.
    Temporary(String),
    /// Refused for good.
    Permanent(String),
}

/// A failure that ends the connection; every recipient not yet answered is temporary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Broken(pub String);

/// An open session with a remote server, past EHLO (and STARTTLS, AUTH).
pub struct Connection {
    reader: LineReader<ClientStream>,
    extensions: Extensions,
    timeouts: Timeouts,
    /// The host it is connected to.
    pub host: String,
}

/// Either permanent (5xx from the server before any transaction) or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// The server refused the session for good (a 5xx greeting or EHLO).
    Permanent(String),
    /// Could not connect, a 4xx, a timeout, TLS required but not there.
    Temporary(String),
}

impl Connection {
    /// Connects to the first address of `hop` that answers and sets the session up.
    pub async fn open(hop: &Hop, options: &ClientOptions) -> Result<Connection, OpenError> {
        let mut last = format!("{}: no address to connect to", hop.name);
        for address in &hop.addresses {
            let connected =
                tokio::time::timeout(options.timeouts.connect, TcpStream::connect(address)).await;
            match connected {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Connection::start(stream, hop, options).await;
                }
                Ok(Err(e)) => last = format!("connecting to {address}: {e}"),
                Err(_) => last = format!("connecting to {address}: timed out"),
            }
        }
        Err(OpenError::Temporary(last))
    }

    async fn start(
        stream: TcpStream,
        hop: &Hop,
        options: &ClientOptions,
    ) -> Result<Connection, OpenError> {
        let temporary = |b: Broken| OpenError::Temporary(b.0);
        let mut connection = Connection {
            reader: LineReader::new(ClientStream::Plain(stream)),
            extensions: Extensions::default(),
            timeouts: options.timeouts,
            host: hop.name.clone(),
        };
        // RFC 5321 §3.1: the greeting; anything but 220 ends the attempt.
        let greeting = connection
            .read_reply(options.timeouts.greeting)
            .await
            .map_err(temporary)?;
        check_open(&greeting, "greeting")?;
        connection.ehlo(&options.hostname).await?;

        // RFC 3207: STARTTLS when offered (or required), then EHLO afresh.
        if connection.extensions.starttls {
            connection.start_tls(hop, options).await?;
            connection.ehlo(&options.hostname).await?;
        } else if options.tls == TlsPolicy::Require {
            return Err(OpenError::Temporary(format!(
                "{} does not offer STARTTLS, which the policy requires",
                hop.name
            )));
        }
        if let Some((user, password)) = &hop.auth {
            connection.auth(user, password).await?;
        }
        Ok(connection)
    }

    async fn ehlo(&mut self, hostname: &str) -> Result<(), OpenError> {
        let reply = self
            .command(&format!("EHLO {hostname}"), self.timeouts.command)
            .await
            .map_err(|b| OpenError::Temporary(b.0))?;
        check_open(&reply, "EHLO")?;
        self.extensions = Extensions::parse(&reply);
        Ok(())
    }

    async fn start_tls(&mut self, hop: &Hop, options: &ClientOptions) -> Result<(), OpenError> {
        let reply = self
            .command("STARTTLS", self.timeouts.command)
            .await
            .map_err(|b| OpenError::Temporary(b.0))?;
        if reply.code != 220 {
            return Err(OpenError::Temporary(format!(
                "STARTTLS refused: {}",
                reply.summary()
            )));
        }
        let placeholder = LineReader::new(ClientStream::Closed);
        let (stream, buffered) = std::mem::replace(&mut self.reader, placeholder).into_inner();
        // RFC 3207 §4.2: nothing may arrive between the 220 and the handshake.
        let ClientStream::Plain(tcp) = stream else {
            return Err(OpenError::Temporary("STARTTLS on a TLS connection".into()));
        };
        if !buffered.is_empty() {
            return Err(OpenError::Temporary(
                "data pipelined after STARTTLS's 220".into(),
            ));
        }
        let name = rustls_pki_types::ServerName::try_from(hop.name.clone())
            .map_err(|_| OpenError::Temporary(format!("{} is not a tls server name", hop.name)))?;
        let connector = tokio_rustls::TlsConnector::from(options.tls_config.clone());
        let handshake = tokio::time::timeout(self.timeouts.command, connector.connect(name, tcp));
        let tls = match handshake.await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return Err(OpenError::Temporary(format!("tls handshake: {e}"))),
            Err(_) => return Err(OpenError::Temporary("tls handshake: timed out".into())),
        };
        self.reader = LineReader::new(ClientStream::Tls(Box::new(tls)));
        Ok(())
    }

    /// RFC 4954 with PLAIN (RFC 4616), never over plaintext.
    async fn auth(&mut self, user: &str, password: &str) -> Result<(), OpenError> {
        use base64::Engine;
        if !self.is_tls() {
            return Err(OpenError::Temporary(format!(
                "{} offers no TLS, and credentials are not sent in clear",
                self.host
            )));
        }
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        let reply = self
            .command(&format!("AUTH PLAIN {token}"), self.timeouts.command)
            .await
            .map_err(|b| OpenError::Temporary(b.0))?;
        match reply.code {
            235 => Ok(()),
            code if code >= 500 => Err(OpenError::Permanent(format!("AUTH: {}", reply.summary()))),
            _ => Err(OpenError::Temporary(format!("AUTH: {}", reply.summary()))),
        }
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.reader.inner(), ClientStream::Tls(_))
    }

    /// What the server offers.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// One transaction: `envelope`'s sender, `recipients`, then the message (`envelope.prefix`
    /// and the file at `message`). One outcome per recipient, in order.
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        recipients: &[String],
        message: &Path,
    ) -> Result<Vec<Outcome>, Broken> {
        let size = envelope.size + envelope.prefix.len() as u64;
        let all = |outcome: Outcome| vec![outcome; recipients.len()];

        // What the server cannot take is refused before anything is sent.
        if envelope.smtputf8 && !self.extensions.smtputf8 {
            // RFC 6531 §3.2: no SMTPUTF8 at the next hop.
            return Ok(all(Outcome::Permanent(format!(
                "553 5.6.7 {} does not support SMTPUTF8 addresses",
                self.host
            ))));
        }
        if let Some(limit) = self.extensions.size
            && limit > 0
            && size > limit
        {
            // RFC 1870 §4: a declared limit the message is over.
            return Ok(all(Outcome::Permanent(format!(
                "552 5.3.4 message size {size} over the limit {limit} of {}",
                self.host
            ))));
        }

        let mut mail = format!("MAIL FROM:<{}>", envelope.sender);
        if self.extensions.size.is_some() {
            mail.push_str(&format!(" SIZE={size}")); // RFC 1870
        }
        if envelope.eight_bit && self.extensions.eight_bit_mime {
            mail.push_str(" BODY=8BITMIME"); // RFC 6152
        }
        if envelope.smtputf8 {
            mail.push_str(" SMTPUTF8"); // RFC 6531
        }
        let mut commands = vec![mail];
        commands.extend(recipients.iter().map(|r| format!("RCPT TO:<{r}>")));
        let replies = self.commands(&commands).await?;
        let (mail_reply, rcpt_replies) = replies
            .split_first()
            .ok_or_else(|| Broken("no reply".into()))?;
        if !mail_reply.is_positive() {
            let text = format!("MAIL: {}", mail_reply.summary());
            let outcome = if mail_reply.is_permanent() {
                Outcome::Permanent(text)
            } else {
                Outcome::Temporary(text)
            };
            self.reset().await?;
            return Ok(all(outcome));
        }
        let mut outcomes: Vec<Outcome> = rcpt_replies
            .iter()
            .map(|reply| match reply {
                r if r.is_positive() => Outcome::Sent(r.summary()),
                r if r.is_permanent() => Outcome::Permanent(format!("RCPT: {}", r.summary())),
                r => Outcome::Temporary(format!("RCPT: {}", r.summary())),
            })
            .collect();
        if !outcomes.iter().any(|o| matches!(o, Outcome::Sent(_))) {
            self.reset().await?;
            return Ok(outcomes);
        }

        let start = self.command("DATA", self.timeouts.data_start).await?;
        if start.code != 354 {
            let text = format!("DATA: {}", start.summary());
            for outcome in outcomes
                .iter_mut()
                .filter(|o| matches!(o, Outcome::Sent(_)))
            {
                *outcome = if start.is_permanent() {
                    Outcome::Permanent(text.clone())
                } else {
                    Outcome::Temporary(text.clone())
                };
            }
            self.reset().await?;
            return Ok(outcomes);
        }
        self.write_message(envelope.prefix.as_bytes(), message)
            .await?;
        let end = self.read_reply(self.timeouts.data_end).await?;
        for outcome in outcomes
            .iter_mut()
            .filter(|o| matches!(o, Outcome::Sent(_)))
        {
            *outcome = match &end {
                r if r.is_positive() => Outcome::Sent(r.summary()),
                r if r.is_permanent() => Outcome::Permanent(format!("data: {}", r.summary())),
                r => Outcome::Temporary(format!("data: {}", r.summary())),
            };
        }
        Ok(outcomes)
    }

    /// RSET, so the connection can take the next message.
    pub async fn reset(&mut self) -> Result<(), Broken> {
        let reply = self.command("RSET", self.timeouts.command).await?;
        if reply.is_positive() {
            Ok(())
        } else {
            Err(Broken(format!("RSET: {}", reply.summary())))
        }
    }

    /// QUIT, ignoring what comes back: the work is done.
    pub async fn quit(mut self) {
        let _ = self.command("QUIT", Duration::from_secs(10)).await;
        let _ = self.reader.inner_mut().shutdown().await;
    }

    /// Sends `commands`, in one write when the server pipelines, and reads one reply each.
    async fn commands(&mut self, commands: &[String]) -> Result<Vec<Reply>, Broken> {
        if !self.extensions.pipelining {
            let mut replies = Vec::new();
            for command in commands {
                replies.push(self.command(command, self.timeouts.command).await?);
            }
            return Ok(replies);
        }
        let batch: String = commands.iter().map(|c| format!("{c}\r\n")).collect();
        self.write(batch.as_bytes(), self.timeouts.command).await?;
        let mut replies = Vec::new();
        for _ in commands {
            replies.push(self.read_reply(self.timeouts.command).await?);
        }
        Ok(replies)
    }

    async fn command(&mut self, line: &str, wait: Duration) -> Result<Reply, Broken> {
        self.write(format!("{line}\r\n").as_bytes(), wait).await?;
        self.read_reply(wait).await
    }

    async fn write(&mut self, bytes: &[u8], wait: Duration) -> Result<(), Broken> {
        let stream = self.reader.inner_mut();
        let written = tokio::time::timeout(wait, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        });
        match written.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Broken(format!("writing to {}: {e}", self.host))),
            Err(_) => Err(Broken(format!("writing to {}: timed out", self.host))),
        }
    }

    async fn read_reply(&mut self, wait: Duration) -> Result<Reply, Broken> {
        let host = self.host.clone();
        let read = tokio::time::timeout(wait, async {
            let mut reader = ReplyReader::default();
            loop {
                let line = match self.reader.read_line(MAX_REPLY_LINE).await {
                    Ok(Line::Complete(line)) => line,
                    Ok(Line::Eof) => return Err(Broken(format!("{host} closed the connection"))),
                    Ok(Line::TooLong) => {
                        return Err(Broken(format!("{host}: reply line too long")));
                    }
                    Err(e) => return Err(Broken(format!("reading from {host}: {e}"))),
                };
                match reader.line(&line) {
                    Ok(Some(reply)) => return Ok(reply),
                    Ok(None) => {}
                    Err(e) => return Err(Broken(format!("{host}: {e}"))),
                }
            }
        });
        read.await
            .unwrap_or_else(|_| Err(Broken(format!("{} did not answer in time", self.host))))
    }

    /// The prefix, then the file with dot-stuffing and CRLF line ends kept, then `.`.
    async fn write_message(&mut self, prefix: &[u8], message: &Path) -> Result<(), Broken> {
        let mut file = tokio::fs::File::open(message)
            .await
            .map_err(|e| Broken(format!("opening the queued message: {e}")))?;
        let mut stuffer = DotStuffer::default();
        let mut out = Vec::with_capacity(BUFFER + BUFFER / 8);
        stuffer.push(prefix, &mut out);
        let mut buffer = vec![0u8; BUFFER];
        loop {
            let read = file
                .read(&mut buffer)
                .await
                .map_err(|e| Broken(format!("reading the queued message: {e}")))?;
            if read == 0 {
                break;
            }
            stuffer.push(&buffer[..read], &mut out);
            self.write(&out, self.timeouts.data_block).await?;
            out.clear();
        }
        stuffer.finish(&mut out);
        self.write(&out, self.timeouts.data_block).await
    }
}

/// Bytes read from the message file at a time.
const BUFFER: usize = 64 * 1024;

fn check_open(reply: &Reply, step: &str) -> Result<(), OpenError> {
    let expected = if step == "greeting" { 220 } else { 250 };
    match reply.code {
        code if code == expected => Ok(()),
        code if code >= 500 => Err(OpenError::Permanent(format!("{step}: {}", reply.summary()))),
        _ => Err(OpenError::Temporary(format!("{step}: {}", reply.summary()))),
    }
}

/// Dot-stuffing across buffer boundaries (RFC 5321 §4.5.2): a line that starts with `.` gets
/// another one in front.
#[derive(Debug)]
struct DotStuffer {
    at_line_start: bool,
    last_two: [u8; 2],
}

impl Default for DotStuffer {
    fn default() -> DotStuffer {
        DotStuffer {
            at_line_start: true,
            last_two: [b'\r', b'\n'],
        }
    }
}

impl DotStuffer {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for &byte in bytes {
            if self.at_line_start && byte == b'.' {
                out.push(b'.');
            }
            out.push(byte);
            self.at_line_start = byte == b'\n';
            self.last_two = [self.last_two[1], byte];
        }
    }

    /// The end of data: CRLF first unless the message ended with one, then `.` CRLF.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.last_two != [b'\r', b'\n'] {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// The connection: plain TCP, or TLS after STARTTLS.
enum ClientStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Only while the plain stream is being upgraded.
    Closed,
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            ClientStream::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            ClientStream::Closed => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ClientStream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            ClientStream::Closed => Poll::Ready(Ok(())),
        }
    }
}

/// A TLS client configuration: certificates checked against `ca_file` when given; otherwise
/// any certificate is taken, which is what opportunistic STARTTLS between MTAs means (RFC 3207
/// §4.1 leaves the decision to the client; without DANE or MTA-STS there is nothing to check
/// a certificate against).
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    if let Some(file) = ca_file {
        return mailfold_net::client_config(file).map_err(|e| e.to_string());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCertificate(provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Takes every certificate, but still checks that the handshake is signed by its key.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff(chunks: &[&[u8]]) -> Vec<u8> {
        let mut stuffer = DotStuffer::default();
        let mut out = Vec::new();
        for chunk in chunks {
            stuffer.push(chunk, &mut out);
        }
        stuffer.finish(&mut out);
        out
    }

    #[test]
    fn leading_dots_are_doubled_even_across_buffer_boundaries() {
        assert_eq!(
            stuff(&[b".a\r\nb\r\n", b".c\r\n"]),
            b"..a\r\nb\r\n..c\r\n.\r\n"
        );
        assert_eq!(stuff(&[b"x\r\n", b".", b"\r\n"]), b"x\r\n..\r\n.\r\n");
    }

    #[test]
    fn a_message_without_a_final_line_end_gets_one_before_the_dot() {
        assert_eq!(stuff(&[b"no end"]), b"no end\r\n.\r\n");
        assert_eq!(stuff(&[]), b".\r\n");
    }
}
