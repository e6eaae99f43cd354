//! A self-signed certificate for the quick start and for tests, made once and kept.
//!
//! A front-end offering STARTTLS or implicit TLS needs a certificate before it can start. When
//! the operator configures none, [`self_signed`] makes one (ECDSA P-256, the given names as
//! subject alternative names) in a folder and reuses it on every later start, so clients that
//! pinned it keep working. Production deployments configure a real certificate instead.
//!
//! The key is written with mode 0600 through a temporary file and a rename, so no reader ever
//! sees half a key or a key readable by others. A lock file (`selfsigned.lock`) keeps two
//! front-ends starting at once, in one process or several, from pairing one's key with the
//! other's certificate.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};

use crate::tls::TlsError;

/// The certificate's file name in the folder.
const CERTIFICATE_FILE: &str = "selfsigned.crt";
/// The private key's file name in the folder.
const KEY_FILE: &str = "selfsigned.key";
/// The lock taken while checking and writing the pair.
const LOCK_FILE: &str = "selfsigned.lock";

/// The paths of a self-signed certificate and its key in `folder`, made on first use.
///
/// If `folder/selfsigned.crt` and `folder/selfsigned.key` both exist they are returned as they
/// are (their names are not compared with `names`); otherwise a new pair is generated for
/// `names`, each a DNS name or an IP address (`"localhost"`, `"127.0.0.1"`), and written there.
/// The folder is created if missing. The result loads with [`crate::tls::server_config`].
pub fn self_signed(folder: &Path, names: &[&str]) -> Result<(PathBuf, PathBuf), TlsError> {
    let certificate = folder.join(CERTIFICATE_FILE);
    let key = folder.join(KEY_FILE);
    let error = |path: &Path, doing: &str, cause: &dyn std::fmt::Display| TlsError::File {
        path: path.to_path_buf(),
        reason: format!("{doing}: {cause}"),
    };

    std::fs::create_dir_all(folder).map_err(|e| error(folder, "creating the folder", &e))?;

    // Held until the end of the function; the lock goes with the file handle.
    let lock_path = folder.join(LOCK_FILE);
    let lock = File::create(&lock_path).map_err(|e| error(&lock_path, "opening the lock", &e))?;
    lock.lock()
        .map_err(|e| error(&lock_path, "taking the lock", &e))?;

    // Only a complete pair is reused: a crash between the two renames leaves a key alone.
    if certificate.is_file() && key.is_file() {
        return Ok((certificate, key));
    }

    let (certificate_pem, key_pem) =
        generate(names).map_err(|e| error(folder, "generating", &e))?;
    // The key goes first: a certificate on disk always has its key beside it.
    write_atomically(&key, key_pem.as_bytes(), 0o600)
        .map_err(|e| error(&key, "writing the key", &e))?;
    write_atomically(&certificate, certificate_pem.as_bytes(), 0o644)
        .map_err(|e| error(&certificate, "writing the certificate", &e))?;

    // The renames are durable only once the folder itself is synced.
    File::open(folder)
        .and_then(|directory| directory.sync_all())
        .map_err(|e| error(folder, "syncing the folder", &e))?;
    drop(lock);
    Ok((certificate, key))
}

/// A new certificate and key, PEM-encoded, for `names`.
fn generate(names: &[&str]) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;

    // rcgen makes each name that parses as an IP address an IP SAN, the others DNS SANs.
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let mut params = CertificateParams::new(names.clone())?;
    let common_name = names.first().map_or("mailfold", String::as_str);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];

    let certificate = params.self_signed(&key)?;
    Ok((certificate.pem(), key.serialize_pem()))
}

/// Writes `contents` to `path` through a synced temporary file beside it and a rename.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp-{}", std::process::id()));
    let temporary = PathBuf::from(temporary);

    // A leftover from a crashed run may have looser permissions: start from nothing.
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // The mode applies at creation, so the key is never readable by others, even briefly.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_pair_is_generated_with_a_private_key_and_loads_as_a_server_config() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("tls");
        let (certificate, key) = self_signed(&folder, &["localhost", "127.0.0.1"]).unwrap();

        assert_eq!(certificate, folder.join("selfsigned.crt"));
        assert_eq!(key, folder.join("selfsigned.key"));
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key mode {mode:o}");
        crate::tls::server_config(&certificate, &key).unwrap();
        crate::tls::client_config(&certificate).unwrap();

        // No temporary file is left behind.
        let mut names: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["selfsigned.crt", "selfsigned.key", "selfsigned.lock"]
        );
    }

    #[test]
    fn an_existing_pair_is_reused_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let (certificate, key) = self_signed(dir.path(), &["localhost"]).unwrap();
        let first = (
            std::fs::read(&certificate).unwrap(),
            std::fs::read(&key).unwrap(),
        );

        let again = self_signed(dir.path(), &["other.example"]).unwrap();
        assert_eq!(again, (certificate.clone(), key.clone()));
        let second = (
            std::fs::read(&certificate).unwrap(),
            std::fs::read(&key).unwrap(),
        );
        assert_eq!(first, second);
    }

    #[test]
    fn a_key_without_its_certificate_is_replaced_by_a_new_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (certificate, key) = self_signed(dir.path(), &["localhost"]).unwrap();
        let old_key = std::fs::read(&key).unwrap();
        std::fs::remove_file(&certificate).unwrap();

        self_signed(dir.path(), &["localhost"]).unwrap();
        assert_ne!(std::fs::read(&key).unwrap(), old_key);
        crate::tls::server_config(&certificate, &key).unwrap();
    }

    #[test]
    fn concurrent_first_starts_agree_on_one_matching_pair() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().to_path_buf();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let folder = folder.clone();
                std::thread::spawn(move || self_signed(&folder, &["localhost"]).unwrap())
            })
            .collect();
        for thread in threads {
            let (certificate, key) = thread.join().unwrap();
            crate::tls::server_config(&certificate, &key).unwrap();
        }
    }

    #[test]
    fn a_name_that_is_not_a_dns_name_is_an_error_naming_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let error = self_signed(dir.path(), &["bad\u{e9}name"])
            .unwrap_err()
            .to_string();
        assert!(error.contains(&dir.path().display().to_string()), "{error}");
        assert!(error.contains("generating"), "{error}");
        assert!(!dir.path().join("selfsigned.key").exists());
    }
}
