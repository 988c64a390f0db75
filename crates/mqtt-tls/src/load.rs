//! Loading PEM files with errors that name the file and say what to do.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::error::{reissue_client_hint, reissue_server_hint};
use crate::identity::CertInfo;
use crate::TlsError;

/// The effective uid of this process, read from `/proc/self/status`.
pub(crate) fn current_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Reads a whole file, turning OS errors into [`TlsError::FileMissing`] or
/// [`TlsError::FileUnreadable`].
pub(crate) fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(TlsError::FileMissing {
            what,
            path: path.to_path_buf(),
        }),
        Err(source) => {
            let meta = std::fs::metadata(path).ok();
            Err(TlsError::FileUnreadable {
                what,
                path: path.to_path_buf(),
                process_uid: current_uid(),
                owner_uid: meta.as_ref().map(|m| m.uid()),
                mode: meta.as_ref().map(|m| m.mode() & 0o7777),
                source,
            })
        }
    }
}

fn swapped_hint(bytes: &[u8], looking_for_cert: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    if looking_for_cert && text.contains("PRIVATE KEY-----") {
        "; it holds a private key: are certfile and keyfile swapped?".to_string()
    } else if !looking_for_cert && text.contains("BEGIN CERTIFICATE") {
        "; it holds a certificate: are certfile and keyfile swapped?".to_string()
    } else if looking_for_cert && text.contains("BEGIN CERTIFICATE REQUEST") {
        "; it holds a certificate signing request (.csr), not the signed certificate (.crt)"
            .to_string()
    } else if bytes.is_empty() {
        "; the file is empty".to_string()
    } else {
        String::new()
    }
}

/// Loads every certificate in a PEM file (or a single DER certificate).
pub(crate) fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(what, path)?;
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        match item {
            Ok(cert) => certs.push(cert),
            Err(e) => {
                return Err(TlsError::BadPem {
                    what,
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })
            }
        }
    }
    if certs.is_empty() {
        // A DER file is accepted as well.
        if CertInfo::parse(&bytes).is_ok() {
            certs.push(CertificateDer::from(bytes));
        } else {
            return Err(TlsError::NoCertificate {
                what,
                path: path.to_path_buf(),
                hint: swapped_hint(&bytes, true),
            });
        }
    }
    for (i, cert) in certs.iter().enumerate() {
        if let Err(detail) = CertInfo::parse(cert.as_ref()) {
            return Err(TlsError::BadCertificate {
                what,
                path: path.to_path_buf(),
                index: i + 1,
                detail,
            });
        }
    }
    Ok(certs)
}

/// Loads the private key from a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file("keyfile", path)?;
    let text = String::from_utf8_lossy(&bytes);
    if text.contains("BEGIN ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(TlsError::EncryptedPrivateKey {
            path: path.to_path_buf(),
        });
    }
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => match PrivateKeyDer::try_from(bytes.clone()) {
            // A DER key file.
            Ok(key) if !bytes.is_empty() && bytes[0] == 0x30 => Ok(key),
            _ => Err(TlsError::NoPrivateKey {
                path: path.to_path_buf(),
                hint: swapped_hint(&bytes, false),
            }),
        },
        Err(e) => Err(TlsError::BadPem {
            what: "keyfile",
            path: path.to_path_buf(),
            detail: e.to_string(),
        }),
    }
}

/// Loads the CRLs in a PEM file.
pub(crate) fn load_crls(
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read_file("crlfile", path)?;
    let mut crls = Vec::new();
    for item in CertificateRevocationListDer::pem_slice_iter(&bytes) {
        match item {
            Ok(crl) => crls.push(crl),
            Err(e) => {
                return Err(TlsError::BadCrl {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })
            }
        }
    }
    if crls.is_empty() {
        return Err(TlsError::BadCrl {
            path: path.to_path_buf(),
            detail: "it contains no `-----BEGIN X509 CRL-----` block".to_string(),
        });
    }
    Ok(crls)
}

/// Loads trust anchors from a CA file and/or a CA directory (Mosquitto's
/// `capath`: every file in it that holds PEM certificates).
pub(crate) fn load_roots(
    cafile: Option<&Path>,
    capath: Option<&Path>,
) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(cafile) = cafile {
        for cert in load_certs("cafile", cafile)? {
            add_root(&mut roots, "cafile", cafile, cert)?;
        }
    }
    if let Some(capath) = capath {
        let entries = match std::fs::read_dir(capath) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TlsError::FileMissing {
                    what: "capath",
                    path: capath.to_path_buf(),
                })
            }
            Err(source) => {
                let meta = std::fs::metadata(capath).ok();
                return Err(TlsError::FileUnreadable {
                    what: "capath",
                    path: capath.to_path_buf(),
                    process_uid: current_uid(),
                    owner_uid: meta.as_ref().map(|m| m.uid()),
                    mode: meta.as_ref().map(|m| m.mode() & 0o7777),
                    source,
                });
            }
        };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        let mut found = 0usize;
        for path in paths {
            if !path.is_file() {
                continue;
            }
            // Files that hold no certificate (README, keys) are skipped, as OpenSSL does.
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            for cert in CertificateDer::pem_slice_iter(&bytes).flatten() {
                add_root(&mut roots, "capath", &path, cert)?;
                found += 1;
            }
        }
        if found == 0 {
            return Err(TlsError::NoCertificate {
                what: "capath",
                path: capath.to_path_buf(),
                hint: "; no file in this directory holds a PEM certificate".to_string(),
            });
        }
    }
    Ok(roots)
}

fn add_root(
    roots: &mut rustls::RootCertStore,
    what: &'static str,
    path: &Path,
    cert: CertificateDer<'static>,
) -> Result<(), TlsError> {
    let info = CertInfo::parse(cert.as_ref()).map_err(|detail| TlsError::BadCertificate {
        what,
        path: path.to_path_buf(),
        index: 1,
        detail,
    })?;
    if !info.is_ca && info.version >= 3 {
        return Err(TlsError::NotACa {
            what,
            path: path.to_path_buf(),
            subject: info.subject,
        });
    }
    roots.add(cert).map_err(|e| TlsError::BadCertificate {
        what,
        path: path.to_path_buf(),
        index: 1,
        detail: e.to_string(),
    })
}

/// What a certificate is for, to pick the checks and the fix in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Server,
    Client,
}

/// Refuses certificates rustls cannot use, with the explanation, before rustls
/// gives its terse error.
pub(crate) fn check_leaf_usable(
    what: &'static str,
    path: &Path,
    leaf: &CertificateDer<'_>,
    role: Role,
) -> Result<CertInfo, TlsError> {
    let info = CertInfo::parse(leaf.as_ref()).map_err(|detail| TlsError::BadCertificate {
        what,
        path: path.to_path_buf(),
        index: 1,
        detail,
    })?;
    let name = info
        .common_name
        .clone()
        .unwrap_or_else(|| "NAME".to_string());
    if info.version < 3 {
        let fix = match role {
            Role::Server => reissue_server_hint(&name),
            Role::Client => reissue_client_hint(&name),
        };
        return Err(TlsError::Version1Certificate {
            what,
            path: path.to_path_buf(),
            subject: info.subject,
            fix,
        });
    }
    if role == Role::Server && info.sans.is_empty() {
        return Err(TlsError::NameOnlyInCommonName {
            what,
            path: path.to_path_buf(),
            subject: info.subject,
            common_name: info.common_name,
        });
    }
    Ok(info)
}

/// Maps rustls's "key does not match" to the explained error.
pub(crate) fn map_single_cert_error(e: rustls::Error, certfile: &Path, keyfile: &Path) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            certfile: certfile.to_path_buf(),
            keyfile: keyfile.to_path_buf(),
        },
        rustls::Error::General(ref detail) if detail.contains("key") => TlsError::Config {
            detail: format!(
                "keyfile {} cannot be used: {detail}; use an RSA, ECDSA (P-256/P-384) or Ed25519 key",
                keyfile.display()
            ),
        },
        other => TlsError::Config {
            detail: format!(
                "certfile {} with keyfile {}: {other}",
                certfile.display(),
                keyfile.display()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_uid_is_read_from_proc() {
        assert!(current_uid().is_some());
    }
}
