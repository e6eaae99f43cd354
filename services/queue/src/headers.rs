//! What the queue reads from a message's header section: the hop count and `Delivered-To`
//! fields for loop detection (RFC 5321 §6.3), and the `From` domain that DKIM signs for.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// At most this much of the header section is read.
const MAX_HEADERS: u64 = 256 * 1024;

/// Facts from one header section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderFacts {
    /// `Received:` fields: the hops so far.
    pub received: usize,
    /// `Delivered-To:` values, lowercased.
    pub delivered_to: Vec<String>,
    /// The domain of the first `From:` address, lowercased.
    pub from_domain: Option<String>,
}

/// Reads the header section of the message at `path`.
pub fn scan(path: &Path) -> std::io::Result<HeaderFacts> {
    let file = std::fs::File::open(path)?;
    let mut reader = BufReader::new(file.take(MAX_HEADERS));
    let mut facts = HeaderFacts::default();
    let mut line = Vec::new();
    let mut from: Option<String> = None;
    let mut in_from = false;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            break;
        }
        // A folded line continues the field before it.
        if text.starts_with([' ', '\t']) {
            if in_from && let Some(value) = from.as_mut() {
                value.push_str(text);
            }
            continue;
        }
        in_from = false;
        let Some((name, value)) = text.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "received" => facts.received += 1,
            "delivered-to" => facts.delivered_to.push(value.trim().to_ascii_lowercase()),
            "from" if from.is_none() => {
                from = Some(value.to_string());
                in_from = true;
            }
            _ => {}
        }
    }
    facts.from_domain = from.as_deref().and_then(address_domain);
    Ok(facts)
}

/// The domain of the address in a `From:` value: `Name <a@b>` or `a@b`.
fn address_domain(value: &str) -> Option<String> {
    let address = match (value.rfind('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value.trim(),
    };
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain
        .trim()
        .trim_end_matches(['>', ';', ','])
        .to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_delivered_to_and_the_from_domain_are_read_from_the_headers_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        std::fs::write(
            &path,
            b"Received: from a\r\n\tby b\r\nDelivered-To: Alias@Acme.test\r\nReceived: x\r\n\
              From: \"Alice\"\r\n <alice@ACME.test>\r\nSubject: s\r\n\r\nReceived: not a header\r\n",
        )
        .unwrap();
        let facts = scan(&path).unwrap();
        assert_eq!(facts.received, 2);
        assert_eq!(facts.delivered_to, vec!["alias@acme.test".to_string()]);
        assert_eq!(facts.from_domain.as_deref(), Some("acme.test"));
    }

    #[test]
    fn a_bare_from_address_has_its_domain_too() {
        assert_eq!(
            address_domain(" bob@example.org").as_deref(),
            Some("example.org")
        );
        assert_eq!(address_domain("undisclosed"), None);
    }
}
