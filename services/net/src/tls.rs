//! TLS configuration from PEM files.
//!
//! Mailfold links one rustls crypto provider, ring, and installs it as the process default
//! before anything builds a configuration: with two providers compiled in, rustls cannot pick
//! one and its default builders fail. Client configurations trust only the CA file they are
//! given; there is no silent fallback to an empty or system store, so a missing CA is an error
//! at start-up, not a handshake failure at the first login.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A TLS file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read or held no usable PEM item.
    #[error("reading {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the combination (key does not match certificate, ...).
    #[error("building tls configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Installs ring as the process-wide rustls provider. Calling it twice is harmless.
pub fn install_crypto_provider() {
    // An error only means a provider is installed already, which is the state we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A server configuration from a PEM certificate chain and a PEM private key.
pub fn server_config(certificate: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    install_crypto_provider();
    let chain = certificates(certificate)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// A client configuration that trusts exactly the certificates in `ca_file`.
pub fn client_config(ca_file: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    install_crypto_provider();
    let mut roots = RootCertStore::empty();
    for certificate in certificates(ca_file)? {
        roots.add(certificate)?;
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file; none at all is an error.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::File {
        path: path.to_path_buf(),
        reason,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certificates.is_empty() {
        return Err(error("no certificate found".to_string()));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A self-signed certificate and key made by the openssl command.
    fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success());
        (cert, key)
    }

    #[test]
    fn a_matching_certificate_and_key_make_a_server_config() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path());
        server_config(&cert, &key).unwrap();
        client_config(&cert).unwrap();
    }

    #[test]
    fn a_key_from_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = self_signed(dir.path());
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let (_, other_key) = self_signed(&other);
        assert!(server_config(&cert, &other_key).is_err());
    }

    #[test]
    fn a_file_without_certificates_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        let error = client_config(&empty).unwrap_err().to_string();
        assert!(error.contains("empty.pem"), "{error}");
        assert!(client_config(&dir.path().join("missing.pem")).is_err());
    }
}
