//! The PROXY protocol: the header a load balancer puts in front of a relayed connection to tell
//! the server who the client really is.
//!
//! The reference is haproxy's "The PROXY protocol, versions 1 & 2" (cited below as
//! `PROXY §2.1` for the text form and `PROXY §2.2` for the binary form). Both forms are
//! accepted, as the specification recommends for version 2 receivers.
//!
//! The decoders ([`decode`], [`decode_v1`], [`decode_v2`]) do no I/O: they look at the bytes
//! received so far and say either how many more are needed at least, or what the header holds
//! and how long it was. [`read_proxy_header`] drives them over a stream, asking for exactly the
//! bytes still missing, so it never consumes a byte of the protocol that follows the header.
//!
//! A listener that expects the header must not guess: PROXY §2 forbids serving clients with and
//! without the header on one port, because anybody could then forge an address. TLVs are
//! skipped, unread (their CRC32C checksum is not verified), and UNIX or datagram addresses fall
//! back to "no address", which PROXY §2.2 allows.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12-byte signature that opens a version 2 header (PROXY §2.2).
const SIGNATURE_V2: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part of a version 2 header: signature, version and command, family, length.
const FIXED_V2: usize = 16;

/// The most bytes a version 2 header may announce after its fixed part.
///
/// PROXY §2 sizes the address part to fit 536 bytes; TLVs (TLS details, cloud endpoint ids)
/// make real headers longer, so the cap leaves room for them and still bounds memory.
pub const MAX_V2_LENGTH: usize = 4096;

/// The longest version 1 line, CRLF included (PROXY §2.1, the "worst case" line).
pub const MAX_V1_LENGTH: usize = 107;

/// The shortest version 1 line, `PROXY UNKNOWN\r\n` (PROXY §2.1).
const MIN_V1_LENGTH: usize = 15;

/// What the decoders make of the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// The header is incomplete: at least this many more bytes are needed, and reading exactly
    /// this many cannot go past the end of the header.
    NeedMore(usize),
    /// A complete header.
    Header {
        /// The client's address, `None` for LOCAL, UNKNOWN, UNSPEC, UNIX and datagram headers.
        source: Option<SocketAddr>,
        /// The address the client connected to, `None` in the same cases.
        destination: Option<SocketAddr>,
        /// How many bytes the header took; the connection's own protocol starts after them.
        length: usize,
    },
}

/// A header read from a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The protocol version the balancer spoke, 1 or 2.
    pub version: u8,
    /// The client's address, when the balancer relayed one.
    pub source: Option<SocketAddr>,
    /// The address the client connected to, when the balancer relayed one.
    pub destination: Option<SocketAddr>,
}

impl ProxyHeader {
    /// The address to treat as the client's: the relayed source, or else `peer`, the real end
    /// of the TCP connection (PROXY §2.2: LOCAL means "use the real connection endpoints").
    pub fn client(&self, peer: SocketAddr) -> SocketAddr {
        self.source.unwrap_or(peer)
    }
}

/// A header that could not be read or is not a valid PROXY protocol header.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The bytes start neither a version 1 nor a version 2 header.
    #[error("reading proxy header: no proxy protocol signature")]
    BadSignature,
    /// A version 2 signature with another version number.
    #[error("reading proxy header: unsupported version {0}")]
    UnknownVersion(u8),
    /// A version 2 command other than LOCAL or PROXY.
    #[error("reading proxy header: unknown command {0}")]
    UnknownCommand(u8),
    /// A version 2 address family or transport protocol outside the specification.
    #[error("reading proxy header: unknown address family and protocol {0:#04x}")]
    UnknownFamily(u8),
    /// A version 2 address block shorter than its family's addresses.
    #[error("reading proxy header: {length}-byte address block is too short for {family:#04x}")]
    AddressTooShort {
        /// The family and protocol byte.
        family: u8,
        /// The announced length.
        length: usize,
    },
    /// A header longer than the limit ([`MAX_V1_LENGTH`] or [`MAX_V2_LENGTH`]).
    #[error(
        "reading proxy header: header of at least {length} bytes is over the {limit}-byte limit"
    )]
    TooLong {
        /// The length seen or announced.
        length: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// A version 1 line that does not follow the grammar.
    #[error("reading proxy header: malformed version 1 line: {0}")]
    MalformedLine(&'static str),
    /// The connection ended inside the header.
    #[error("reading proxy header: connection closed after {0} bytes of the header")]
    Truncated(usize),
    /// The header did not arrive in time.
    #[error("reading proxy header: no complete header within {0:?}")]
    Timeout(Duration),
    /// Reading from the connection failed.
    #[error("reading proxy header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one PROXY header, version 1 or 2, from the start of `stream` within `timeout`.
///
/// Exactly the header's bytes are consumed: what follows stays in the stream for the
/// connection's own protocol.
pub async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<ProxyHeader, ProxyError> {
    // PROXY §2: "the receiver may apply a short timeout" before it gives up on the header.
    match tokio::time::timeout(timeout, read_header(stream)).await {
        Ok(result) => result,
        Err(_) => Err(ProxyError::Timeout(timeout)),
    }
}

/// The loop under [`read_proxy_header`], without the deadline.
async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<ProxyHeader, ProxyError> {
    let mut header = Vec::with_capacity(MAX_V1_LENGTH);
    loop {
        match decode(&header)? {
            Decoded::Header {
                source,
                destination,
                ..
            } => {
                // The first byte tells the versions apart: `\r` for 2, `P` for 1.
                let version = if header.first() == Some(&SIGNATURE_V2[0]) {
                    2
                } else {
                    1
                };
                return Ok(ProxyHeader {
                    version,
                    source,
                    destination,
                });
            }
            Decoded::NeedMore(missing) => fill(stream, &mut header, missing).await?,
        }
    }
}

/// Appends exactly `missing` bytes from `stream` to `header`.
async fn fill<S: AsyncRead + Unpin>(
    stream: &mut S,
    header: &mut Vec<u8>,
    missing: usize,
) -> Result<(), ProxyError> {
    let mut filled = header.len();
    header.resize(filled + missing, 0);
    while filled < header.len() {
        let read = stream.read(&mut header[filled..]).await?;
        if read == 0 {
            return Err(ProxyError::Truncated(filled));
        }
        filled += read;
    }
    Ok(())
}

/// Decodes a version 1 or version 2 header, whichever the first bytes announce.
///
/// `input` may hold bytes beyond the header; [`Decoded::Header`] says where it ended.
pub fn decode(input: &[u8]) -> Result<Decoded, ProxyError> {
    match input.first() {
        // No version can be ruled out yet, and the shortest header of either is 15 bytes long.
        None => Ok(Decoded::NeedMore(MIN_V1_LENGTH)),
        Some(&byte) if byte == SIGNATURE_V2[0] => decode_v2(input),
        Some(b'P') => decode_v1(input),
        Some(_) => Err(ProxyError::BadSignature),
    }
}

/// Decodes a version 2 (binary) header (PROXY §2.2).
///
/// `input` may hold bytes beyond the header; [`Decoded::Header`] says where it ended.
pub fn decode_v2(input: &[u8]) -> Result<Decoded, ProxyError> {
    // A wrong prefix is refused at once, without waiting for the rest of the fixed part.
    let prefix = input.len().min(SIGNATURE_V2.len());
    if input[..prefix] != SIGNATURE_V2[..prefix] {
        return Err(ProxyError::BadSignature);
    }
    if input.len() < FIXED_V2 {
        return Ok(Decoded::NeedMore(FIXED_V2 - input.len()));
    }

    // PROXY §2.2: the high nibble of byte 13 is the version, and only 2 is accepted.
    let version = input[12] >> 4;
    if version != 2 {
        return Err(ProxyError::UnknownVersion(version));
    }
    // PROXY §2.2: the low nibble is the command, 0 LOCAL or 1 PROXY; others drop the connection.
    let command = input[12] & 0x0f;
    if command > 1 {
        return Err(ProxyError::UnknownCommand(command));
    }

    // PROXY §2.2: bytes 15-16 are the length of the rest, in network order.
    let announced = usize::from(u16::from_be_bytes([input[14], input[15]]));
    if announced > MAX_V2_LENGTH {
        return Err(ProxyError::TooLong {
            length: FIXED_V2 + announced,
            limit: FIXED_V2 + MAX_V2_LENGTH,
        });
    }
    let length = FIXED_V2 + announced;
    if input.len() < length {
        return Ok(Decoded::NeedMore(length - input.len()));
    }

    // PROXY §2.2: LOCAL ignores the family and the address block, but still skips its length.
    let (source, destination) = if command == 0 {
        (None, None)
    } else {
        addresses_v2(input[13], &input[FIXED_V2..length])?
    };
    Ok(Decoded::Header {
        source,
        destination,
        length,
    })
}

/// The source and destination in a version 2 PROXY command's address block.
fn addresses_v2(
    family: u8,
    block: &[u8],
) -> Result<(Option<SocketAddr>, Option<SocketAddr>), ProxyError> {
    // PROXY §2.2: families past 3 (UNIX) and protocols past 2 (DGRAM) "must be rejected as
    // invalid by receivers".
    if family >> 4 > 3 || family & 0x0f > 2 {
        return Err(ProxyError::UnknownFamily(family));
    }
    // PROXY §2.2: the address length each family and protocol pair needs; a pair with an UNSPEC
    // half carries no address.
    let needed = match family {
        0x11 | 0x12 => 12,
        0x21 | 0x22 => 36,
        0x31 | 0x32 => 216,
        _ => 0,
    };
    if block.len() < needed {
        return Err(ProxyError::AddressTooShort {
            family,
            length: block.len(),
        });
    }

    // PROXY §2.2: TCP over IPv4 is 4+4 address bytes, then 2+2 port bytes; the rest are TLVs.
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    match family {
        0x11 => {
            let source = Ipv4Addr::from(octets::<4>(&block[0..4]));
            let destination = Ipv4Addr::from(octets::<4>(&block[4..8]));
            Ok((
                Some(SocketAddr::new(source.into(), port(8))),
                Some(SocketAddr::new(destination.into(), port(10))),
            ))
        }
        // PROXY §2.2: TCP over IPv6 is 16+16 address bytes, then 2+2 port bytes.
        0x21 => {
            let source = Ipv6Addr::from(octets::<16>(&block[0..16]));
            let destination = Ipv6Addr::from(octets::<16>(&block[16..32]));
            Ok((
                Some(SocketAddr::new(source.into(), port(32))),
                Some(SocketAddr::new(destination.into(), port(34))),
            ))
        }
        // PROXY §2.2: a receiver may fall back to UNSPEC for the pairs it does not use; a mail
        // server has no use for UNSPEC, UNIX or datagram addresses.
        _ => Ok((None, None)),
    }
}

/// A fixed-size copy of `bytes`, which the caller has sliced to exactly `N` bytes.
fn octets<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut array = [0; N];
    array.copy_from_slice(bytes);
    array
}

/// Decodes a version 1 (text) header (PROXY §2.1).
///
/// `input` may hold bytes beyond the header; [`Decoded::Header`] says where it ended.
pub fn decode_v1(input: &[u8]) -> Result<Decoded, ProxyError> {
    // PROXY §2.1: the line opens with "PROXY" and exactly one space.
    const OPENING: &[u8] = b"PROXY ";
    let prefix = input.len().min(OPENING.len());
    if input[..prefix] != OPENING[..prefix] {
        return Err(ProxyError::BadSignature);
    }

    // PROXY §2.1: the line ends at the first CRLF; a lone CR or LF is not an ending.
    let window = &input[..input.len().min(MAX_V1_LENGTH)];
    let Some(at) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        // PROXY §2.1: "if the CRLF sequence is not found in the first 107 characters, the
        // receiver should declare the line invalid".
        if window.len() == MAX_V1_LENGTH {
            return Err(ProxyError::TooLong {
                length: input.len(),
                limit: MAX_V1_LENGTH,
            });
        }
        // Both CR and LF are still to come, and the line is at least 15 bytes long.
        let missing = 2.max(MIN_V1_LENGTH.saturating_sub(input.len()));
        return Ok(Decoded::NeedMore(missing));
    };
    if window[at] == b'\n' {
        return Err(ProxyError::MalformedLine("line ended by a bare lf"));
    }
    if at + 2 > MAX_V1_LENGTH {
        return Err(ProxyError::TooLong {
            length: at + 2,
            limit: MAX_V1_LENGTH,
        });
    }
    match input.get(at + 1) {
        None => return Ok(Decoded::NeedMore(1)),
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::MalformedLine("cr not followed by lf")),
    }

    let (source, destination) = addresses_v1(&input[OPENING.len()..at])?;
    Ok(Decoded::Header {
        source,
        destination,
        length: at + 2,
    })
}

/// The addresses of a version 1 line, given the text between "PROXY " and the CRLF.
fn addresses_v1(text: &[u8]) -> Result<(Option<SocketAddr>, Option<SocketAddr>), ProxyError> {
    let text =
        std::str::from_utf8(text).map_err(|_| ProxyError::MalformedLine("line is not ascii"))?;
    let mut fields = text.split(' ');

    // PROXY §2.1: only TCP4 and TCP6 carry addresses; UNKNOWN means "use the real endpoints",
    // and the receiver "must ignore anything presented before the CRLF".
    let is_v4 = match fields.next() {
        Some("TCP4") => true,
        Some("TCP6") => false,
        Some("UNKNOWN") => return Ok((None, None)),
        _ => return Err(ProxyError::MalformedLine("unknown protocol")),
    };

    // PROXY §2.1: source address, destination address, source port, destination port, each
    // after exactly one space and nothing after the last.
    let (Some(source), Some(destination), Some(source_port), Some(destination_port), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(ProxyError::MalformedLine("wrong number of fields"));
    };
    let source = SocketAddr::new(address_v1(source, is_v4)?, port_v1(source_port)?);
    let destination = SocketAddr::new(address_v1(destination, is_v4)?, port_v1(destination_port)?);
    Ok((Some(source), Some(destination)))
}

/// One address of a version 1 line, in the family the protocol field announced.
fn address_v1(text: &str, is_v4: bool) -> Result<IpAddr, ProxyError> {
    // std's IPv4 parser refuses leading zeros, as PROXY §2.1 asks ("to avoid any possible
    // confusion with octal numbers").
    let address = if is_v4 {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    } else {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    };
    address.map_err(|_| ProxyError::MalformedLine("bad address for the protocol"))
}

/// One port of a version 1 line.
fn port_v1(text: &str) -> Result<u16, ProxyError> {
    // PROXY §2.1: decimal digits only, "heading zeroes are not permitted".
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (text.len() > 1 && text.starts_with('0')) {
        return Err(ProxyError::MalformedLine("bad port"));
    }
    text.parse()
        .map_err(|_| ProxyError::MalformedLine("port out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 2 header: version/command byte, family byte, then the block after the length.
    fn v2(version_command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut header = SIGNATURE_V2.to_vec();
        header.push(version_command);
        header.push(family);
        header.extend_from_slice(&(block.len() as u16).to_be_bytes());
        header.extend_from_slice(block);
        header
    }

    /// The address block of TCP over IPv4 192.168.0.1:56324 -> 192.168.0.11:443, the
    /// connection of the example in PROXY §2.1.
    fn tcp4_block() -> Vec<u8> {
        let mut block = vec![192, 168, 0, 1, 192, 168, 0, 11];
        block.extend_from_slice(&56324u16.to_be_bytes());
        block.extend_from_slice(&443u16.to_be_bytes());
        block
    }

    fn tcp6_block() -> Vec<u8> {
        let source: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let destination: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut block = source.octets().to_vec();
        block.extend_from_slice(&destination.octets());
        block.extend_from_slice(&[0xdb, 0xc4, 0x00, 0x6e]); // 56260 -> 110
        block
    }

    fn addr(text: &str) -> Option<SocketAddr> {
        Some(text.parse().unwrap())
    }

    /// A few valid headers of each kind, to truncate and mutate.
    fn valid_headers() -> Vec<Vec<u8>> {
        let mut with_tlvs = tcp4_block();
        // PP2_TYPE_AUTHORITY "mx.example", then a NOOP TLV with 3 bytes of padding.
        with_tlvs.extend_from_slice(&[0x02, 0x00, 0x0a]);
        with_tlvs.extend_from_slice(b"mx.example");
        with_tlvs.extend_from_slice(&[0x04, 0x00, 0x03, 0, 0, 0]);
        vec![
            v2(0x21, 0x11, &tcp4_block()),
            v2(0x21, 0x21, &tcp6_block()),
            v2(0x20, 0x00, &[]),
            v2(0x21, 0x31, &[0; 216]),
            v2(0x21, 0x11, &with_tlvs),
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::1 2001:db8::2 56260 110\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
        ]
    }

    #[test]
    fn a_v2_tcp4_header_from_the_spec_layout_gives_both_addresses() {
        let mut input = v2(0x21, 0x11, &tcp4_block());
        input.extend_from_slice(b"EHLO client\r\n");
        assert_eq!(
            decode_v2(&input).unwrap(),
            Decoded::Header {
                source: addr("192.168.0.1:56324"),
                destination: addr("192.168.0.11:443"),
                length: 28,
            }
        );
    }

    #[test]
    fn a_v2_tcp6_header_gives_both_addresses() {
        assert_eq!(
            decode(&v2(0x21, 0x21, &tcp6_block())).unwrap(),
            Decoded::Header {
                source: addr("[2001:db8::1]:56260"),
                destination: addr("[2001:db8::2]:110"),
                length: 52,
            }
        );
    }

    #[test]
    fn a_v2_local_header_has_no_addresses_and_still_skips_its_block() {
        // PROXY §2.2: receivers "must not assume zero is presented for LOCAL connections".
        let header = v2(0x20, 0x11, &tcp4_block());
        let decoded = decode_v2(&header).unwrap();
        assert_eq!(
            decoded,
            Decoded::Header {
                source: None,
                destination: None,
                length: 28
            }
        );
        // The family of a LOCAL header is ignored, even one no PROXY header may carry.
        assert!(decode_v2(&v2(0x20, 0x77, &[])).is_ok());
    }

    #[test]
    fn v2_unspec_unix_and_udp_headers_fall_back_to_no_addresses() {
        for (family, block) in [
            (0x00, vec![]),
            (0x10, vec![]),
            (0x02, vec![]),
            (0x31, vec![0; 216]),
            (0x32, vec![0; 216]),
            (0x12, tcp4_block()),
            (0x22, tcp6_block()),
        ] {
            let header = v2(0x21, family, &block);
            assert_eq!(
                decode_v2(&header).unwrap(),
                Decoded::Header {
                    source: None,
                    destination: None,
                    length: header.len()
                },
                "family {family:#04x}"
            );
        }
    }

    #[test]
    fn v2_tlvs_after_the_addresses_are_skipped() {
        let headers = valid_headers();
        let with_tlvs = &headers[4];
        assert_eq!(
            decode_v2(with_tlvs).unwrap(),
            Decoded::Header {
                source: addr("192.168.0.1:56324"),
                destination: addr("192.168.0.11:443"),
                length: with_tlvs.len(),
            }
        );
    }

    #[test]
    fn v2_asks_for_exactly_the_missing_bytes() {
        let header = v2(0x21, 0x11, &tcp4_block());
        assert_eq!(decode_v2(&header[..0]).unwrap(), Decoded::NeedMore(16));
        assert_eq!(decode_v2(&header[..5]).unwrap(), Decoded::NeedMore(11));
        assert_eq!(decode_v2(&header[..16]).unwrap(), Decoded::NeedMore(12));
        assert_eq!(decode_v2(&header[..27]).unwrap(), Decoded::NeedMore(1));
    }

    #[test]
    fn a_wrong_signature_is_refused_before_the_fixed_part_is_complete() {
        assert!(matches!(
            decode_v2(b"\r\n\r\nX"),
            Err(ProxyError::BadSignature)
        ));
        assert!(matches!(
            decode(b"EHLO client\r\n"),
            Err(ProxyError::BadSignature)
        ));
        assert!(matches!(
            decode(b"\x16\x03\x01"),
            Err(ProxyError::BadSignature)
        ));
        assert!(matches!(decode(b"PROXI"), Err(ProxyError::BadSignature)));
    }

    #[test]
    fn v2_versions_other_than_2_are_refused() {
        for version_command in [0x11, 0x31, 0xf1] {
            let result = decode_v2(&v2(version_command, 0x11, &tcp4_block()));
            assert!(
                matches!(result, Err(ProxyError::UnknownVersion(v)) if v == version_command >> 4)
            );
        }
    }

    #[test]
    fn v2_commands_other_than_local_and_proxy_are_refused() {
        let result = decode_v2(&v2(0x22, 0x11, &tcp4_block()));
        assert!(matches!(result, Err(ProxyError::UnknownCommand(2))));
        let result = decode_v2(&v2(0x2f, 0x11, &tcp4_block()));
        assert!(matches!(result, Err(ProxyError::UnknownCommand(15))));
    }

    #[test]
    fn v2_unknown_families_and_protocols_are_refused() {
        for family in [0x13, 0x41, 0x03, 0xf1] {
            let result = decode_v2(&v2(0x21, family, &tcp6_block()));
            assert!(matches!(result, Err(ProxyError::UnknownFamily(f)) if f == family));
        }
    }

    #[test]
    fn a_v2_address_block_shorter_than_its_family_is_refused() {
        let result = decode_v2(&v2(0x21, 0x21, &tcp4_block()));
        assert!(matches!(
            result,
            Err(ProxyError::AddressTooShort {
                family: 0x21,
                length: 12
            })
        ));
    }

    #[test]
    fn a_v2_length_over_the_cap_is_refused_from_the_fixed_part_alone() {
        let mut fixed = SIGNATURE_V2.to_vec();
        fixed.extend_from_slice(&[0x21, 0x11]);
        fixed.extend_from_slice(&((MAX_V2_LENGTH + 1) as u16).to_be_bytes());
        assert!(matches!(
            decode_v2(&fixed),
            Err(ProxyError::TooLong { limit, .. }) if limit == FIXED_V2 + MAX_V2_LENGTH
        ));
        // The cap itself is allowed.
        let header = v2(0x21, 0x11, &[0; MAX_V2_LENGTH]);
        assert!(decode_v2(&header).is_ok());
    }

    #[test]
    fn a_v1_tcp4_line_from_the_spec_example_gives_both_addresses() {
        let input = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            decode(input).unwrap(),
            Decoded::Header {
                source: addr("192.168.0.1:56324"),
                destination: addr("192.168.0.11:443"),
                length: 47,
            }
        );
    }

    #[test]
    fn v1_tcp6_and_unknown_lines_are_accepted() {
        let tcp6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 56260 110\r\n";
        assert_eq!(
            decode_v1(tcp6).unwrap(),
            Decoded::Header {
                source: addr("[2001:db8::1]:56260"),
                destination: addr("[2001:db8::2]:110"),
                length: tcp6.len(),
            }
        );
        // PROXY §2.1: after UNKNOWN, the receiver ignores the rest of the line.
        let unknown = b"PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n";
        assert_eq!(
            decode_v1(unknown).unwrap(),
            Decoded::Header {
                source: None,
                destination: None,
                length: unknown.len()
            }
        );
    }

    #[test]
    fn the_longest_v1_line_is_accepted_and_one_byte_more_is_refused() {
        let longest = format!(
            "PROXY UNKNOWN {0} {0} 65535 65535\r\n",
            ["ffff"; 8].join(":")
        );
        assert_eq!(longest.len(), MAX_V1_LENGTH);
        assert!(matches!(
            decode_v1(longest.as_bytes()),
            Ok(Decoded::Header { length: 107, .. })
        ));

        let over = format!(
            "PROXY UNKNOWN {0} {0} 65535 655355\r\n",
            ["ffff"; 8].join(":")
        );
        assert!(matches!(
            decode_v1(over.as_bytes()),
            Err(ProxyError::TooLong { limit: 107, .. })
        ));
        assert!(matches!(
            decode_v1(&over.as_bytes()[..107]),
            Err(ProxyError::TooLong { limit: 107, .. })
        ));
    }

    #[test]
    fn v1_lines_that_break_the_grammar_are_refused() {
        let bad: &[&[u8]] = &[
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rX",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 7\r\n",
            b"PROXY TCP4  192.168.0.1 192.168.0.11 56324 443\r\n",
            b"PROXY TCP4 192.168.0.01 192.168.0.11 56324 443\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 +5 443\r\n",
            b"PROXY TCP4 2001:db8::1 2001:db8::2 56260 110\r\n",
            b"PROXY TCP6 192.168.0.1 192.168.0.11 56324 443\r\n",
            b"PROXY UDP4 192.168.0.1 192.168.0.11 56324 443\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.\xff.11 56324 443\r\n",
        ];
        for line in bad {
            let result = decode(line);
            assert!(
                matches!(result, Err(ProxyError::MalformedLine(_))),
                "{:?} gave {result:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn v1_never_asks_for_more_than_the_shortest_possible_rest() {
        assert_eq!(decode(b"").unwrap(), Decoded::NeedMore(15));
        assert_eq!(decode(b"PRO").unwrap(), Decoded::NeedMore(12));
        assert_eq!(decode(b"PROXY UNKNOWN").unwrap(), Decoded::NeedMore(2));
        assert_eq!(decode(b"PROXY UNKNOWN\r").unwrap(), Decoded::NeedMore(1));
        assert_eq!(decode(b"PROXY TCP4 1.2.3.4").unwrap(), Decoded::NeedMore(2));
    }

    #[test]
    fn every_truncation_of_a_valid_header_asks_for_more_without_overshooting() {
        for header in valid_headers() {
            for cut in 0..header.len() {
                match decode(&header[..cut]) {
                    Ok(Decoded::NeedMore(missing)) => assert!(
                        cut + missing <= header.len(),
                        "cut {cut} of {} asked for {missing}",
                        header.len()
                    ),
                    other => panic!("cut {cut} of {header:?} gave {other:?}"),
                }
            }
            let whole = decode(&header);
            assert!(matches!(whole, Ok(Decoded::Header { length, .. }) if length == header.len()));
        }
    }

    /// A small deterministic generator (xorshift64), so failures replay.
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn byte(&mut self) -> u8 {
            self.next() as u8
        }
    }

    /// Decoding must end in a header inside the input, a request for more, or an error.
    fn decode_is_sane(input: &[u8]) {
        match decode(input) {
            Ok(Decoded::Header { length, .. }) => assert!(length <= input.len()),
            Ok(Decoded::NeedMore(missing)) => assert!(missing > 0),
            Err(_) => {}
        }
    }

    #[test]
    fn random_and_mutated_bytes_never_panic_the_decoders() {
        let mut noise = Noise(0x5eed_cafe_f00d_d00d);

        // Pure noise, with the first byte forced to each version's opening half the time.
        for round in 0..20_000 {
            let length = (noise.next() % 300) as usize;
            let mut input: Vec<u8> = (0..length).map(|_| noise.byte()).collect();
            if let Some(first) = input.first_mut() {
                match round % 4 {
                    0 => *first = b'\r',
                    1 => *first = b'P',
                    _ => {}
                }
            }
            decode_is_sane(&input);
            decode_is_sane(&[&SIGNATURE_V2[..], &input].concat());
            decode_is_sane(&[&b"PROXY "[..], &input].concat());
        }

        // Valid headers with a few bytes flipped, decoded whole and at every cut.
        for header in valid_headers() {
            for _ in 0..300 {
                let mut mutated = header.clone();
                for _ in 0..=(noise.next() % 3) {
                    let at = (noise.next() as usize) % mutated.len();
                    mutated[at] = noise.byte();
                }
                for cut in 0..=mutated.len() {
                    decode_is_sane(&mutated[..cut]);
                }
            }
        }
    }

    #[tokio::test]
    async fn reading_a_v2_header_leaves_the_following_bytes_in_the_stream() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let mut sent = v2(0x21, 0x11, &tcp4_block());
        sent.extend_from_slice(b"CAPA\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut client, &sent)
            .await
            .unwrap();
        drop(client);

        let header = read_proxy_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(header.version, 2);
        assert_eq!(header.source, addr("192.168.0.1:56324"));
        assert_eq!(
            header.client("10.0.0.1:1".parse().unwrap()),
            addr("192.168.0.1:56324").unwrap()
        );
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"CAPA\r\n");
    }

    #[tokio::test]
    async fn reading_the_shortest_v1_header_leaves_the_following_bytes_in_the_stream() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"PROXY UNKNOWN\r\nX")
            .await
            .unwrap();
        drop(client);

        let header = read_proxy_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            (header.version, header.source, header.destination),
            (1, None, None)
        );
        let peer: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert_eq!(header.client(peer), peer);
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"X");
    }

    #[tokio::test]
    async fn a_header_sent_one_byte_at_a_time_is_read_whole() {
        for header in valid_headers() {
            let (mut client, mut server) = tokio::io::duplex(1);
            let sent = [&header[..], b"NEXT"].concat();
            let writer = tokio::spawn(async move {
                tokio::io::AsyncWriteExt::write_all(&mut client, &sent)
                    .await
                    .unwrap();
            });
            read_proxy_header(&mut server, Duration::from_secs(5))
                .await
                .unwrap();
            let mut rest = [0; 4];
            server.read_exact(&mut rest).await.unwrap();
            assert_eq!(&rest, b"NEXT");
            writer.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_connection_closed_inside_the_header_is_truncated() {
        let header = v2(0x21, 0x11, &tcp4_block());
        let (mut client, mut server) = tokio::io::duplex(1024);
        tokio::io::AsyncWriteExt::write_all(&mut client, &header[..20])
            .await
            .unwrap();
        drop(client);
        let result = read_proxy_header(&mut server, Duration::from_secs(5)).await;
        assert!(
            matches!(result, Err(ProxyError::Truncated(20))),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_silent_connection_times_out() {
        let (_client, mut server) = tokio::io::duplex(1024);
        let result = read_proxy_header(&mut server, Duration::from_millis(50)).await;
        assert!(matches!(result, Err(ProxyError::Timeout(_))), "{result:?}");
    }

    #[tokio::test]
    async fn a_client_without_a_header_is_refused() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"USER alice@example.org\r\n")
            .await
            .unwrap();
        let result = read_proxy_header(&mut server, Duration::from_secs(5)).await;
        assert!(
            matches!(result, Err(ProxyError::BadSignature)),
            "{result:?}"
        );
    }
}
