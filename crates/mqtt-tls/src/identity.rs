//! Reading names out of certificates: [`PeerIdentity`] for the broker's
//! `use_identity_as_username` / `use_subject_as_username`, and the summary the
//! error messages and the checker use.

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::*;

/// The identity of a verified peer, read from its end-entity certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The first Common Name of the subject (Mosquitto's `use_identity_as_username`).
    pub common_name: Option<String>,
    /// The subject in RFC 2253 form, most specific part first, e.g.
    /// `CN=client,O=Org,C=GB` (Mosquitto's `use_subject_as_username`, which
    /// prints the subject with OpenSSL's `XN_FLAG_RFC2253`).
    pub subject: String,
    /// The subjectAltNames: DNS names, IP addresses and e-mail addresses as text.
    pub sans: Vec<String>,
}

impl PeerIdentity {
    /// Reads the identity from a DER certificate.
    ///
    /// Fails with a message naming the parse error when the bytes are not an
    /// X.509 certificate.
    pub fn from_certificate(cert: &CertificateDer<'_>) -> Result<Self, crate::TlsError> {
        let info = CertInfo::parse(cert.as_ref()).map_err(|detail| crate::TlsError::Config {
            detail: format!("peer certificate cannot be parsed as X.509: {detail}"),
        })?;
        Ok(PeerIdentity {
            common_name: info.common_name,
            subject: info.subject,
            sans: info.sans,
        })
    }

    /// The identity of the client on a broker-side TLS connection, if the
    /// client presented a certificate (it has been verified by then).
    pub fn from_server_connection(conn: &rustls::ServerConnection) -> Option<Self> {
        conn.peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| Self::from_certificate(cert).ok())
    }

    /// Same as [`PeerIdentity::from_server_connection`] for a tokio-rustls stream.
    pub fn from_tls_stream<IO>(stream: &tokio_rustls::server::TlsStream<IO>) -> Option<Self> {
        Self::from_server_connection(stream.get_ref().1)
    }
}

/// Everything the messages and checks need to know about one certificate.
#[derive(Debug, Clone)]
pub(crate) struct CertInfo {
    /// 1 for version 1, 3 for version 3.
    pub version: u32,
    pub subject: String,
    pub issuer: String,
    pub common_name: Option<String>,
    pub sans: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
    /// `None` when there is no extendedKeyUsage extension.
    pub eku: Option<Eku>,
    pub spki: Vec<u8>,
}

/// Extended key usages of interest.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Eku {
    pub server_auth: bool,
    pub client_auth: bool,
    pub any: bool,
}

impl CertInfo {
    pub(crate) fn parse(der: &[u8]) -> Result<CertInfo, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let sans = match cert.subject_alternative_name() {
            Ok(Some(ext)) => ext
                .value
                .general_names
                .iter()
                .filter_map(general_name_text)
                .collect(),
            _ => Vec::new(),
        };
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        let eku = match cert.extended_key_usage() {
            Ok(Some(ext)) => Some(Eku {
                server_auth: ext.value.server_auth,
                client_auth: ext.value.client_auth,
                any: ext.value.any,
            }),
            _ => None,
        };
        Ok(CertInfo {
            version: cert.version().0 + 1,
            subject: rfc2253(cert.subject()),
            issuer: rfc2253(cert.issuer()),
            common_name,
            sans,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            is_ca,
            eku,
            spki: cert.public_key().subject_public_key.data.to_vec(),
        })
    }

    /// The names a client can match: the SANs, or the CN when there are none
    /// (for messages only; rustls itself never reads the CN).
    pub(crate) fn names_for_messages(&self) -> Vec<String> {
        if !self.sans.is_empty() {
            self.sans.clone()
        } else {
            self.common_name
                .iter()
                .map(|cn| format!("CN={cn} (Common Name only)"))
                .collect()
        }
    }
}

fn general_name_text(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(dns) => Some(dns.to_string()),
        GeneralName::RFC822Name(mail) => Some(mail.to_string()),
        GeneralName::URI(uri) => Some(uri.to_string()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => {
                let octets: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
                Some(std::net::Ipv4Addr::from(octets).to_string())
            }
            16 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(bytes);
                Some(std::net::Ipv6Addr::from(octets).to_string())
            }
            _ => None,
        },
        _ => None,
    }
}

/// OpenSSL's short names for the attribute types it knows.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.46" => "dnQualifier",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        _ => return None,
    })
}

/// Formats a name like OpenSSL's `X509_NAME_print_ex(.., XN_FLAG_RFC2253)`:
/// RDNs in reverse order separated by `,`, multi-valued RDNs joined by `+`,
/// special characters and non-ASCII bytes escaped.
pub(crate) fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let value = match atv.as_str() {
                        Ok(text) => escape_rfc2253(text),
                        Err(_) => {
                            let raw = atv.attr_value().as_bytes();
                            let hex: String = raw.iter().map(|b| format!("{b:02X}")).collect();
                            format!("#{hex}")
                        }
                    };
                    match short_name(&oid) {
                        Some(sn) => format!("{sn}={value}"),
                        None => format!("{oid}={value}"),
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn escape_rfc2253(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let last = bytes.len().saturating_sub(1);
    for (i, ch) in text.char_indices() {
        match ch {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(ch);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\{:02X}", c as u32))
            }
            c if !c.is_ascii() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).as_bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Formats a Unix time as `2025-01-31 12:00:00 UTC`.
pub(crate) fn format_time(unix: i64) -> String {
    match ::time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{unix} (seconds since 1970)"),
    }
}

/// The current Unix time.
pub(crate) fn now_unix() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2253_escapes_special_characters() {
        assert_eq!(escape_rfc2253("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_rfc2253("#x "), "\\#x\\ ");
        assert_eq!(escape_rfc2253("é"), "\\C3\\A9");
    }

    #[test]
    fn format_time_prints_utc_date() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
    }
}
