//! DKIM signing (RFC 6376) of mail leaving the platform, with one key per sending domain
//! (RSA-2048 with SHA-256, or Ed25519 per RFC 8463), through `mail-auth`.
//!
//! Keys are PEM files: named one by one in the configuration, or found in a key folder as
//! `<domain>.key`. The message is read in chunks and fed to the streaming signer, so a large
//! message is never held in memory (invariant 3); the `DKIM-Signature` header goes into the
//! envelope's prefix, sent before the message file.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};

use crate::error::{QueueError, Result};

/// The header fields signed when present (RFC 6376 §5.4.1 lists From as required and these
/// as recommended).
const SIGNED_HEADERS: [&str; 12] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// Key algorithms `mailfold dkim generate` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RSA 2048 bits, `rsa-sha256`.
    Rsa,
    /// Ed25519, `ed25519-sha256` (RFC 8463).
    Ed25519,
}

/// Where keys come from.
#[derive(Debug, Clone, Default)]
pub struct DkimConfig {
    /// The selector (`s=`), the same for every domain.
    pub selector: String,
    /// Keys named one by one: domain to PEM file.
    pub keys: BTreeMap<String, PathBuf>,
    /// A folder of `<domain>.key` files, for domains not named in `keys`.
    pub key_folder: Option<PathBuf>,
}

/// The signing side: finds a domain's key and signs.
pub struct DkimSigning {
    config: DkimConfig,
}

impl DkimSigning {
    /// Signing with `config`; keys are read when used, so a key added to the folder needs
    /// no restart.
    pub fn new(config: DkimConfig) -> DkimSigning {
        DkimSigning { config }
    }

    /// The key file of `domain`, when it has one.
    pub fn key_file(&self, domain: &str) -> Option<PathBuf> {
        let domain = domain.to_ascii_lowercase();
        if let Some(file) = self.config.keys.get(&domain) {
            return Some(file.clone());
        }
        // The domain comes from a message header: only a plain host name may name a file.
        let plain = !domain.is_empty()
            && !domain.starts_with('.')
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        let file = self
            .config
            .key_folder
            .as_ref()?
            .join(format!("{domain}.key"));
        (plain && file.is_file()).then_some(file)
    }

    /// The `DKIM-Signature` header (with CRLF) for the message at `message` as `domain`, or
    /// `None` when the domain has no key.
    pub fn sign(&self, domain: &str, message: &Path) -> Option<Result<String>> {
        let file = self.key_file(domain)?;
        Some(self.sign_with(&file, domain, message))
    }

    fn sign_with(&self, key_file: &Path, domain: &str, message: &Path) -> Result<String> {
        let key = load_key(key_file)?;
        let signer = DkimSigner::from_key(key)
            .domain(domain.to_ascii_lowercase())
            .selector(self.config.selector.clone())
            .headers(SIGNED_HEADERS)
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        let mut stream = signer.sign_streaming();
        let mut file =
            std::fs::File::open(message).map_err(|e| QueueError::io("opening", message, e))?;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = file
                .read(&mut buffer)
                .map_err(|e| QueueError::io("reading", message, e))?;
            if read == 0 {
                break;
            }
            stream.write(&buffer[..read]);
        }
        let signature = stream.finish().map_err(|e| QueueError::Key {
            file: key_file.to_path_buf(),
            message: format!("signing: {e}"),
        })?;
        Ok(signature.to_header())
    }
}

/// Reads a PEM key: PKCS#8 Ed25519 or RSA, or PKCS#1 RSA.
pub fn load_key(path: &Path) -> Result<DkimKey> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let bad = |message: String| QueueError::Key {
        file: path.to_path_buf(),
        message,
    };
    let der = PrivateKeyDer::from_pem_file(path).map_err(|e| bad(e.to_string()))?;
    if let PrivateKeyDer::Pkcs8(pkcs8) = &der
        && let Ok(key) = Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der())
    {
        return Ok(DkimKey::from(key));
    }
    RsaKey::<Sha256>::from_key_der(der)
        .map(DkimKey::from)
        .map_err(|e| bad(format!("neither ed25519 nor rsa: {e}")))
}

/// A new key for `algorithm`: the PEM file text and the DNS TXT record value.
pub fn generate(algorithm: Algorithm) -> std::result::Result<(String, String), String> {
    use mail_auth::dkim::generate::DkimKeyPair;
    let engine = base64::engine::general_purpose::STANDARD;
    match algorithm {
        Algorithm::Rsa => {
            let pair = DkimKeyPair::generate_rsa(2048).map_err(|e| e.to_string())?;
            let pem = pem("RSA PRIVATE KEY", pair.private_key());
            // RFC 6376 §3.6.1: p= holds the key as a SubjectPublicKeyInfo.
            let record = format!(
                "v=DKIM1; k=rsa; p={}",
                engine.encode(rsa_spki(pair.public_key()))
            );
            Ok((pem, record))
        }
        Algorithm::Ed25519 => {
            let pair = DkimKeyPair::generate_ed25519().map_err(|e| e.to_string())?;
            let pem = pem("PRIVATE KEY", pair.private_key());
            // RFC 8463 §4.2: p= is the raw 32-byte public key.
            let record = format!("v=DKIM1; k=ed25519; p={}", engine.encode(pair.public_key()));
            Ok((pem, record))
        }
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo (RFC 5280 §4.1.2.7) with the
/// rsaEncryption algorithm (RFC 8017 A.1).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0x00];
    bit_string.extend_from_slice(pkcs1);
    let mut inner = ALGORITHM.to_vec();
    inner.extend(der(0x03, &bit_string));
    der(0x30, &inner)
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = content.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes: Vec<u8> = length
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ed25519_key_signs_a_message_read_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let (pem, record) = generate(Algorithm::Ed25519).unwrap();
        assert!(record.starts_with("v=DKIM1; k=ed25519; p="));
        std::fs::write(dir.path().join("acme.test.key"), pem).unwrap();
        let message = dir.path().join("m");
        std::fs::write(&message, b"From: a@acme.test\r\nSubject: s\r\n\r\nbody\r\n").unwrap();
        let signing = DkimSigning::new(DkimConfig {
            selector: "mf".into(),
            keys: BTreeMap::new(),
            key_folder: Some(dir.path().to_path_buf()),
        });
        let header = signing.sign("ACME.test", &message).unwrap().unwrap();
        assert!(header.starts_with("DKIM-Signature: "), "{header}");
        assert!(
            header.contains("d=acme.test") && header.contains("s=mf"),
            "{header}"
        );
        assert!(header.ends_with("\r\n"));
        assert!(signing.sign("other.test", &message).is_none());
        assert!(signing.key_file("../acme.test").is_none());
    }

    #[test]
    fn a_length_over_127_bytes_takes_the_long_der_form() {
        assert_eq!(&der(0x30, &[0u8; 200])[..3], &[0x30, 0x81, 200]);
        assert_eq!(&der(0x30, &[0u8; 300])[..4], &[0x30, 0x82, 0x01, 0x2c]);
    }
}
