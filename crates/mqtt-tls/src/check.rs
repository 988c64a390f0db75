//! Offline checks of a certificate set, before anyone starts a broker: chain,
//! key match, names covered, key usages, validity, version. Used by the
//! `tls-check` example.
//!
//! ```
//! use mqtt_tls::check::{check, CheckOptions, Severity};
//! use mqtt_tls::gen::{write_set, CertificateAuthority};
//! # fn main() -> Result<(), mqtt_tls::TlsError> {
//! let dir = std::env::temp_dir().join(format!("mqtt-tls-check-doc-{}", std::process::id()));
//! let ca = CertificateAuthority::generate()?;
//! let server = ca.issue_server(&["192.168.1.5".to_string()])?;
//! write_set(&dir, &ca, &server, &[])?;
//! let findings = check(&CheckOptions {
//!     cafile: Some(dir.join("ca.crt")),
//!     certfile: Some(dir.join("server.crt")),
//!     keyfile: Some(dir.join("server.key")),
//!     names: vec!["127.0.0.1".to_string()],
//! });
//! // 127.0.0.1 is not in the certificate: that is an error, named.
//! assert!(findings.iter().any(|f| f.severity == Severity::Error
//!     && f.message.contains("server certificate is for 192.168.1.5, but you connected to 127.0.0.1")));
//! # let _ = std::fs::remove_dir_all(&dir);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::identity::{format_time, now_unix, CertInfo};
use crate::load::{self, Role};
use crate::verify::ExplainingServerVerifier;
use crate::{provider, ClientContext};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Checked and fine.
    Ok,
    /// Works, but deserves attention (e.g. expires soon).
    Warning,
    /// Will make handshakes fail.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One result of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// What was checked and what was found, with the fix for problems.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>7}: {}", self.severity.to_string(), self.message)
    }
}

/// The files to check (the same as a broker's or a client's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// The CA certificate(s).
    pub cafile: Option<PathBuf>,
    /// The certificate (server or client) and its chain.
    pub certfile: Option<PathBuf>,
    /// Its private key.
    pub keyfile: Option<PathBuf>,
    /// Addresses clients will dial (`-h`); each must be covered by the certificate.
    pub names: Vec<String>,
}

/// Whether any finding is an error.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

const SOON: i64 = 30 * 24 * 3600;

/// Runs every check that the given files allow and returns the findings, in order.
pub fn check(options: &CheckOptions) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut push = |severity, message: String| out.push(Finding { severity, message });
    let now = now_unix();

    // The CA.
    let mut ca_info: Option<CertInfo> = None;
    let mut roots = None;
    if let Some(cafile) = &options.cafile {
        match load::load_roots(Some(cafile), None) {
            Ok(r) => {
                roots = Some(r);
                if let Some(info) = load::load_certs("cafile", cafile)
                    .ok()
                    .and_then(|c| c.first().and_then(|c| CertInfo::parse(c.as_ref()).ok()))
                {
                    push(
                        Severity::Ok,
                        format!(
                            "cafile {}: CA {}, valid until {}",
                            cafile.display(),
                            info.subject,
                            format_time(info.not_after)
                        ),
                    );
                    validity(
                        &mut push,
                        &format!("cafile {}", cafile.display()),
                        &info,
                        now,
                        "re-create the CA with gen-certs (every device then needs the new ca.crt)",
                    );
                    ca_info = Some(info);
                }
            }
            Err(e) => push(Severity::Error, e.to_string()),
        }
    } else {
        push(
            Severity::Warning,
            "no cafile given: the chain cannot be checked; give the cafile (ca.crt)".to_string(),
        );
    }

    // The certificate.
    let Some(certfile) = &options.certfile else {
        if options.keyfile.is_some() {
            push(
                Severity::Error,
                "a key was given without its certificate; give the certfile".to_string(),
            );
        }
        return out;
    };
    let chain = match load::load_certs("certfile", certfile) {
        Ok(chain) => chain,
        Err(e) => {
            push(Severity::Error, e.to_string());
            return out;
        }
    };
    let Some(leaf) = chain.first() else {
        return out;
    };
    let info = match CertInfo::parse(leaf.as_ref()) {
        Ok(info) => info,
        Err(e) => {
            push(
                Severity::Error,
                format!("certfile {}: cannot parse: {e}", certfile.display()),
            );
            return out;
        }
    };
    let is_server = !options.names.is_empty()
        || info.eku.map(|e| e.server_auth || e.any).unwrap_or(true) && !info.sans.is_empty();
    let role = if is_server {
        Role::Server
    } else {
        Role::Client
    };
    let what = format!("certfile {}", certfile.display());
    push(
        Severity::Ok,
        format!(
            "{what}: {} certificate {}, issued by {}, names: {}",
            if is_server { "server" } else { "client" },
            info.subject,
            info.issuer,
            if info.sans.is_empty() {
                "none (Common Name only)".to_string()
            } else {
                info.sans.join(", ")
            }
        ),
    );

    // Version and names.
    match load::check_leaf_usable("certfile", certfile, leaf, role) {
        Ok(_) => push(
            Severity::Ok,
            format!("{what}: version 3 with the extensions rustls needs"),
        ),
        Err(e) => push(Severity::Error, e.to_string()),
    }

    // Distinct subjects.
    if let Some(ca) = &ca_info {
        if ca.subject == info.subject && !info.is_ca {
            push(
                Severity::Error,
                format!("{what} has the same subject as the CA ({}); verifiers then mistake it for the CA and handshakes fail with obscure errors. Re-issue it with a distinct name: cargo run --example gen-certs -- --out DIR --ca-cert ca.crt --ca-key ca.key --server-name NAME", info.subject),
            );
        }
    }

    // Key usages.
    match (info.eku, role) {
        (None, _) => push(Severity::Warning, format!("{what} has no extendedKeyUsage; most verifiers accept that, but certificates from gen-certs carry serverAuth/clientAuth")),
        (Some(eku), Role::Server) if !(eku.server_auth || eku.any) => push(
            Severity::Error,
            format!("{what} lacks extendedKeyUsage serverAuth, so clients refuse it as a server certificate; re-issue it with gen-certs --server-name"),
        ),
        (Some(eku), Role::Client) if !(eku.client_auth || eku.any) => push(
            Severity::Error,
            format!("{what} lacks extendedKeyUsage clientAuth, so brokers refuse it as a client certificate; re-issue it with gen-certs --client-name"),
        ),
        (Some(_), Role::Server) => push(Severity::Ok, format!("{what}: extendedKeyUsage serverAuth")),
        (Some(_), Role::Client) => push(Severity::Ok, format!("{what}: extendedKeyUsage clientAuth")),
    }

    // Validity.
    validity(
        &mut push,
        &what,
        &info,
        now,
        "re-issue it from the same CA with gen-certs --ca-cert ca.crt --ca-key ca.key",
    );

    // Key.
    if let Some(keyfile) = &options.keyfile {
        match load::load_key(keyfile) {
            Ok(key) => match crate::gen::key_spki(&key) {
                Some(spki) if spki == info.spki => push(Severity::Ok, format!("keyfile {} matches the certificate", keyfile.display())),
                Some(_) => push(
                    Severity::Error,
                    crate::TlsError::KeyMismatch { certfile: certfile.clone(), keyfile: keyfile.clone() }.to_string(),
                ),
                None => push(Severity::Warning, format!("keyfile {}: cannot tell whether it matches the certificate (unusual key format)", keyfile.display())),
            },
            Err(e) => push(Severity::Error, e.to_string()),
        }
    }

    // Chain and names, with the same verifier a client uses.
    let Some(roots) = roots else { return out };
    let roots = Arc::new(roots);
    let ut = UnixTime::now();
    match role {
        Role::Server => {
            let names: Vec<String> = if options.names.is_empty() {
                info.sans.clone()
            } else {
                options.names.clone()
            };
            let Ok(inner) =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
                    .build()
            else {
                return out;
            };
            let verifier = ExplainingServerVerifier {
                inner,
                insecure: false,
                trust: format!(
                    "the CA in cafile {}",
                    options
                        .cafile
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                ),
            };
            for name in names {
                let Ok(server_name) = crate::server_name(&name) else {
                    push(
                        Severity::Error,
                        format!("{name:?} is neither an IP address nor a DNS name"),
                    );
                    continue;
                };
                match verifier.verify_server_cert(leaf, &chain[1..], &server_name, &[], ut) {
                    Ok(_) => push(Severity::Ok, format!("a client dialling {name} accepts this certificate (chain, name, usage, dates)")),
                    Err(e) => {
                        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, e);
                        let ctx = ClientContext { host: name.clone(), has_client_cert: false };
                        let message = match crate::explain_io_error(&io, &ctx) {
                            Some(explained) => explained.to_string(),
                            None => io.to_string(),
                        };
                        push(Severity::Error, format!("dialling {name}: {message}"));
                    }
                }
            }
        }
        Role::Client => {
            let Ok(verifier) =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                    .build()
            else {
                return out;
            };
            let chain_only: Vec<CertificateDer<'_>> = chain[1..].to_vec();
            match verifier.verify_client_cert(leaf, &chain_only, ut) {
                Ok(_) => push(Severity::Ok, "a broker with this cafile accepts this client certificate (chain, usage, dates)".to_string()),
                Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature)) => push(
                    Severity::Error,
                    format!("{what} ({}, issued by {}) is not signed by the CA in cafile; issue it from that CA: cargo run --example gen-certs -- --out DIR --ca-cert ca.crt --ca-key ca.key --client-name {}", info.subject, info.issuer, info.common_name.as_deref().unwrap_or("NAME")),
                ),
                Err(e) => push(Severity::Error, format!("{what}: a broker would refuse it: {e}")),
            }
        }
    }
    out
}

fn validity(
    push: &mut impl FnMut(Severity, String),
    what: &str,
    info: &CertInfo,
    now: i64,
    fix: &str,
) {
    if now < info.not_before {
        push(
            Severity::Error,
            format!(
                "{what} is not valid before {} (now {}); check the clocks",
                format_time(info.not_before),
                format_time(now)
            ),
        );
    } else if now > info.not_after {
        push(
            Severity::Error,
            format!("{what} expired on {}; {fix}", format_time(info.not_after)),
        );
    } else if info.not_after - now < SOON {
        push(
            Severity::Warning,
            format!("{what} expires on {}; {fix}", format_time(info.not_after)),
        );
    } else {
        push(
            Severity::Ok,
            format!(
                "{what}: valid from {} to {}",
                format_time(info.not_before),
                format_time(info.not_after)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::{write_set, CertificateAuthority};

    fn set(dir: &std::path::Path) -> CertificateAuthority {
        let ca = CertificateAuthority::generate().unwrap();
        let server = ca.issue_server(&["127.0.0.2".to_string()]).unwrap();
        let client = ca.issue_client("sensor-1").unwrap();
        write_set(dir, &ca, &server, &[("sensor-1".to_string(), client)]).unwrap();
        ca
    }

    #[test]
    fn good_server_set_has_no_errors() {
        let dir = tempfile::tempdir().unwrap();
        set(dir.path());
        let findings = check(&CheckOptions {
            cafile: Some(dir.path().join("ca.crt")),
            certfile: Some(dir.path().join("server.crt")),
            keyfile: Some(dir.path().join("server.key")),
            names: vec!["127.0.0.2".to_string()],
        });
        assert!(!has_errors(&findings), "{findings:#?}");
        assert!(findings
            .iter()
            .any(|f| f.message.contains("a client dialling 127.0.0.2 accepts")));
    }

    #[test]
    fn wrong_name_wrong_key_and_foreign_ca_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        set(dir.path());
        set(other.path());
        let findings = check(&CheckOptions {
            cafile: Some(other.path().join("ca.crt")),
            certfile: Some(dir.path().join("server.crt")),
            keyfile: Some(dir.path().join("client.key")),
            names: vec!["127.0.0.1".to_string()],
        });
        let errors: Vec<_> = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .collect();
        assert!(
            errors
                .iter()
                .any(|f| f.message.contains("does not match certfile")),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|f| f.message.contains("is not signed by the CA in cafile")),
            "{errors:#?}"
        );

        let findings = check(&CheckOptions {
            cafile: Some(dir.path().join("ca.crt")),
            certfile: Some(dir.path().join("server.crt")),
            keyfile: None,
            names: vec!["127.0.0.1".to_string()],
        });
        assert!(
            findings.iter().any(|f| f.severity == Severity::Error
                && f.message.contains(
                    "server certificate is for 127.0.0.2, but you connected to 127.0.0.1"
                )),
            "{findings:#?}"
        );
    }

    #[test]
    fn client_certificate_is_checked_as_a_client() {
        let dir = tempfile::tempdir().unwrap();
        set(dir.path());
        let findings = check(&CheckOptions {
            cafile: Some(dir.path().join("ca.crt")),
            certfile: Some(dir.path().join("client.crt")),
            keyfile: Some(dir.path().join("client.key")),
            names: vec![],
        });
        assert!(!has_errors(&findings), "{findings:#?}");
        assert!(findings
            .iter()
            .any(|f| f.message.contains("accepts this client certificate")));
    }

    #[test]
    fn expired_certificate_is_an_error_with_its_date() {
        let dir = tempfile::tempdir().unwrap();
        let ca = set(dir.path());
        let day = std::time::Duration::from_secs(86400);
        let now = std::time::SystemTime::now();
        let old = ca
            .issue_server_valid(&["127.0.0.2".to_string()], now - day * 10, now - day)
            .unwrap();
        old.write(&dir.path().join("old.crt"), &dir.path().join("old.key"))
            .unwrap();
        let findings = check(&CheckOptions {
            cafile: Some(dir.path().join("ca.crt")),
            certfile: Some(dir.path().join("old.crt")),
            keyfile: Some(dir.path().join("old.key")),
            names: vec!["127.0.0.2".to_string()],
        });
        assert!(
            findings
                .iter()
                .any(|f| f.severity == Severity::Error && f.message.contains("expired on")),
            "{findings:#?}"
        );
    }
}
