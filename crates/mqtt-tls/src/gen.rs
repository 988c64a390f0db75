//! Certificate generation: a CA, server certificates whose names are
//! subjectAltNames (IP addresses and DNS names), client certificates, and
//! re-issuing from an existing CA so the broker's devices keep their `ca.crt`.
//!
//! ```
//! use mqtt_tls::gen::CertificateAuthority;
//! let ca = CertificateAuthority::generate()?;
//! let server = ca.issue_server(&["192.168.1.5".to_string(), "laptop.local".to_string()])?;
//! let client = ca.issue_client("sensor-1")?;
//! assert!(server.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! # let _ = client;
//! # Ok::<(), mqtt_tls::TlsError>(())
//! ```

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::identity::CertInfo;
use crate::load;
use crate::TlsError;

/// The Common Name of generated CAs; server certificates never use it, so the
/// CA's subject and the server's subject always differ.
pub const CA_COMMON_NAME: &str = "mqtt-stack CA";

/// Validity of generated leaf certificates (825 days, what browsers accept).
pub const LEAF_VALIDITY: Duration = Duration::from_secs(825 * 24 * 3600);

/// Validity of generated CAs (10 years).
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How far in the past `notBefore` is set, for devices whose clocks lag.
const BACKDATE: Duration = Duration::from_secs(3600);

fn gen_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Generate {
        detail: e.to_string(),
    }
}

/// A certificate and its private key, PEM encoded.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl IssuedCertificate {
    /// Writes the certificate (mode 0644) and the key (mode 0600).
    pub fn write(&self, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
        write_file(cert_path, self.cert_pem.as_bytes(), 0o644)?;
        write_file(key_path, self.key_pem.as_bytes(), 0o600)
    }
}

/// Writes `contents` to `path` with `mode`, replacing any existing file.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let wrap = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    // Remove first so an existing file's looser mode is not kept.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(wrap(e)),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(wrap)?;
    file.write_all(contents).map_err(wrap)?;
    file.sync_all().map_err(wrap)
}

/// A certificate authority that issues server and client certificates.
pub struct CertificateAuthority {
    cert_pem: String,
    key: KeyPair,
    issuer: Issuer<'static, KeyPair>,
    generated: bool,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

fn validity(params: &mut CertificateParams, not_before: SystemTime, not_after: SystemTime) {
    params.not_before = ::time::OffsetDateTime::from(not_before);
    params.not_after = ::time::OffsetDateTime::from(not_after);
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // Most general first, so RFC 2253 prints `CN=mqtt-stack CA,O=mqtt-stack`.
    dn.push(DnType::OrganizationName, "mqtt-stack");
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = SystemTime::now();
    validity(&mut params, now - BACKDATE, now + CA_VALIDITY);
    params
}

impl CertificateAuthority {
    /// Generates a new CA (ECDSA P-256, subject `CN=mqtt-stack CA,O=mqtt-stack`, 10 years).
    pub fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(gen_err)?;
        let params = ca_params();
        let cert = params.self_signed(&key).map_err(gen_err)?;
        let issuer_key = KeyPair::from_pem(&key.serialize_pem()).map_err(gen_err)?;
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            key,
            issuer: Issuer::new(params, issuer_key),
            generated: true,
        })
    }

    /// Loads an existing CA, e.g. the `ca.crt`/`ca.key` made with the
    /// mosquitto-tls recipe (RSA or ECDSA; PKCS#8 or PKCS#1 keys). The key
    /// must not be encrypted.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let certs = load::load_certs("--ca-cert", cert)?;
        let ca_der = certs.first().ok_or_else(|| TlsError::NoCertificate {
            what: "--ca-cert",
            path: cert.to_path_buf(),
            hint: String::new(),
        })?;
        let info = CertInfo::parse(ca_der.as_ref()).map_err(|detail| TlsError::BadCertificate {
            what: "--ca-cert",
            path: cert.to_path_buf(),
            index: 1,
            detail,
        })?;
        if !info.is_ca && info.version >= 3 {
            return Err(TlsError::NotACa {
                what: "--ca-cert",
                path: cert.to_path_buf(),
                subject: info.subject,
            });
        }
        let key_der = load::load_key(key)?;
        let key_pair = key_pair_from_der(&key_der).ok_or_else(|| TlsError::Generate {
            detail: format!(
                "--ca-key {} is a kind of key this tool cannot sign with; convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in {} -out ca-pkcs8.key`",
                key.display(),
                key.display()
            ),
        })?;
        if key_pair.der_bytes() != info.spki {
            return Err(TlsError::KeyMismatch {
                certfile: cert.to_path_buf(),
                keyfile: key.to_path_buf(),
            });
        }
        let cert_pem = std::fs::read_to_string(cert).map_err(|_| TlsError::BadPem {
            what: "--ca-cert",
            path: cert.to_path_buf(),
            detail: "not UTF-8 text".to_string(),
        })?;
        let issuer_key = key_pair_from_der(&key_der).ok_or_else(|| gen_err("CA key"))?;
        let issuer = Issuer::from_ca_cert_der(ca_der, issuer_key).map_err(gen_err)?;
        Ok(CertificateAuthority {
            cert_pem,
            key: key_pair,
            issuer,
            generated: false,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Whether this CA was generated here (rather than loaded).
    pub fn is_generated(&self) -> bool {
        self.generated
    }

    /// Issues a server certificate for `names` (IP addresses and DNS names, all
    /// as subjectAltNames; the first is also the Common Name), valid for
    /// [`LEAF_VALIDITY`], extended key usage serverAuth.
    pub fn issue_server(&self, names: &[String]) -> Result<IssuedCertificate, TlsError> {
        let now = SystemTime::now();
        self.issue_server_valid(names, now - BACKDATE, now + LEAF_VALIDITY)
    }

    /// [`CertificateAuthority::issue_server`] with explicit validity dates.
    pub fn issue_server_valid(
        &self,
        names: &[String],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCertificate, TlsError> {
        let first = names.first().ok_or_else(|| TlsError::Generate {
            detail: "a server certificate needs at least one name (--server-name 192.168.1.5 --server-name laptop.local)".to_string(),
        })?;
        if first == CA_COMMON_NAME {
            return Err(TlsError::Generate {
                detail: format!("the server may not be named {CA_COMMON_NAME:?}: its subject must differ from the CA's"),
            });
        }
        let mut params =
            CertificateParams::new(names.to_vec()).map_err(|e| TlsError::Generate {
                detail: format!("{names:?} are not valid IP addresses or DNS names: {e}"),
            })?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, first.as_str());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, not_before, not_after);
        self.sign(params)
    }

    /// Issues a client certificate with Common Name `common_name` (the
    /// username under `use_identity_as_username`), extended key usage clientAuth.
    pub fn issue_client(&self, common_name: &str) -> Result<IssuedCertificate, TlsError> {
        let now = SystemTime::now();
        self.issue_client_valid(common_name, now - BACKDATE, now + LEAF_VALIDITY)
    }

    /// [`CertificateAuthority::issue_client`] with explicit validity dates.
    pub fn issue_client_valid(
        &self,
        common_name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCertificate, TlsError> {
        if common_name.is_empty() || common_name == CA_COMMON_NAME {
            return Err(TlsError::Generate {
                detail: format!("a client certificate needs a name other than {CA_COMMON_NAME:?}"),
            });
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, not_before, not_after);
        self.sign(params)
    }

    /// A certificate revocation list (PEM, for Mosquitto's `crlfile`) signed
    /// by this CA that revokes `revoked`, valid from an hour ago for 30 days.
    pub fn revocation_list(&self, revoked: &[&IssuedCertificate]) -> Result<String, TlsError> {
        use rcgen::{
            CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber,
        };
        let now = ::time::OffsetDateTime::from(SystemTime::now());
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for cert in revoked {
            let der = <rustls_pki_types::CertificateDer<'_> as rustls_pki_types::pem::PemObject>::from_pem_slice(
                cert.cert_pem.as_bytes(),
            )
            .map_err(gen_err)?;
            let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(gen_err)?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(parsed.raw_serial()),
                revocation_time: now - ::time::Duration::minutes(1),
                reason_code: None,
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: now - ::time::Duration::hours(1),
            next_update: now + ::time::Duration::days(30),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).map_err(gen_err)?;
        crl.pem().map_err(gen_err)
    }

    fn sign(&self, params: CertificateParams) -> Result<IssuedCertificate, TlsError> {
        let key = KeyPair::generate().map_err(gen_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_err)?;
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What [`write_set`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenSet {
    /// Every file written, in order.
    pub files: Vec<PathBuf>,
}

/// Writes `ca.crt`, `ca.key` (only for a generated CA), `server.crt`,
/// `server.key`, `client.crt`, `client.key` into `dir` (created if needed);
/// keys get mode 0600. Extra clients are written as `<name>.crt`/`<name>.key`.
pub fn write_set(
    dir: &Path,
    ca: &CertificateAuthority,
    server: &IssuedCertificate,
    clients: &[(String, IssuedCertificate)],
) -> Result<WrittenSet, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    let ca_crt = dir.join("ca.crt");
    write_file(&ca_crt, ca.cert_pem().as_bytes(), 0o644)?;
    files.push(ca_crt);
    if ca.is_generated() {
        let ca_key = dir.join("ca.key");
        write_file(&ca_key, ca.key_pem().as_bytes(), 0o600)?;
        files.push(ca_key);
    }
    let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
    server.write(&crt, &key)?;
    files.extend([crt, key]);
    for (i, (name, client)) in clients.iter().enumerate() {
        let stem = if i == 0 {
            "client".to_string()
        } else {
            sanitize(name)
        };
        let (crt, key) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        client.write(&crt, &key)?;
        files.extend([crt, key]);
    }
    Ok(WrittenSet { files })
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Wraps a PKCS#1 RSA key in PKCS#8 (rcgen signs only with PKCS#8 keys).
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    fn der_len(len: usize) -> Vec<u8> {
        if len < 0x80 {
            vec![len as u8]
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .iter()
                .copied()
                .skip_while(|b| *b == 0)
                .collect();
            let mut out = vec![0x80 | bytes.len() as u8];
            out.extend(bytes);
            out
        }
    }
    // version 0, AlgorithmIdentifier { rsaEncryption, NULL }
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend([
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ]);
    body.push(0x04);
    body.extend(der_len(pkcs1.len()));
    body.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    out.extend(der_len(body.len()));
    out.extend(body);
    out
}

/// Loads a private key for signing or comparing with a certificate.
pub(crate) fn key_pair_from_der(key: &PrivateKeyDer<'_>) -> Option<KeyPair> {
    match key {
        PrivateKeyDer::Pkcs8(_) => KeyPair::try_from(key).ok(),
        PrivateKeyDer::Pkcs1(pkcs1) => {
            let pkcs8 = pkcs1_to_pkcs8(pkcs1.secret_pkcs1_der());
            KeyPair::try_from(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8))).ok()
        }
        _ => None,
    }
}

/// The SubjectPublicKeyInfo of a private key, when it can be computed.
pub(crate) fn key_spki(key: &PrivateKeyDer<'_>) -> Option<Vec<u8>> {
    key_pair_from_der(key).map(|k| k.der_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_certificate_has_ip_and_dns_sans_and_a_subject_distinct_from_the_ca() {
        let ca = CertificateAuthority::generate().unwrap();
        let server = ca
            .issue_server(&["192.168.1.5".to_string(), "laptop.local".to_string()])
            .unwrap();
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(server.cert_pem.as_bytes());
        let info = CertInfo::parse(der.unwrap().as_ref()).unwrap();
        assert_eq!(info.sans, vec!["192.168.1.5", "laptop.local"]);
        assert_eq!(info.subject, "CN=192.168.1.5");
        assert_eq!(info.issuer, "CN=mqtt-stack CA,O=mqtt-stack");
        assert_eq!(info.version, 3);
        let eku = info.eku.unwrap();
        assert!(eku.server_auth && !eku.client_auth);
        assert!(info.not_after - info.not_before > 800 * 24 * 3600);
    }

    #[test]
    fn pkcs1_wrapping_matches_known_layout() {
        let wrapped = pkcs1_to_pkcs8(&[0x30, 0x00]);
        assert_eq!(wrapped[0], 0x30);
        assert_eq!(&wrapped[wrapped.len() - 4..], &[0x04, 0x02, 0x30, 0x00]);
    }
}
