//! Async handshakes over tokio that turn rustls errors, alerts, EOF and
//! non-TLS bytes into explained [`TlsError`]s.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::{AlertDescription, CertificateError};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::identity::{format_time, now_unix, CertInfo};
use crate::verify::presented_error;
use crate::TlsError;

/// What the client side knows about a connection, for explaining errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientContext {
    /// The host the user dialled (`-h`), as typed.
    pub host: String,
    /// Whether the config has a client certificate to send.
    pub has_client_cert: bool,
}

impl ClientContext {
    /// The context for dialling `host` with `config`.
    pub fn new(host: &str, config: &rustls::ClientConfig) -> Self {
        ClientContext {
            host: host.to_string(),
            has_client_cert: config.client_auth_cert_resolver.has_certs(),
        }
    }
}

/// Parses what the user dialled into the name the certificate must cover:
/// an IP address (also `[::1]`) or a DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let trimmed = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(trimmed.to_string()).map_err(|_| TlsError::InvalidHost {
        host: host.to_string(),
    })
}

/// Runs the client handshake on `tcp`, verifying the broker's certificate
/// against `host` (as typed after `-h`: an IP address or a DNS name).
///
/// With TLS 1.3 a broker that refuses the client's certificate (or its
/// absence) says so only after the handshake; pass errors from the first read
/// through [`explain_io_error`].
pub async fn connect(
    config: Arc<rustls::ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TlsError> {
    let name = server_name(host)?;
    let ctx = ClientContext::new(host, &config);
    let _ = tcp.set_nodelay(true);
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            explain_io_error(&e, &ctx).unwrap_or_else(|| TlsError::Handshake {
                who: format!("the broker at {host}"),
                detail: e.to_string(),
            })
        })
}

fn rustls_error(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

fn validity_error(whose: String, info: &CertInfo, expired: bool, advice: String) -> TlsError {
    let state = if expired {
        format!("expired on {}", format_time(info.not_after))
    } else {
        format!("is not valid before {}", format_time(info.not_before))
    };
    TlsError::CertificateNotValidNow {
        whose,
        subject: info.subject.clone(),
        when: format!("{state}; the time here is {}", format_time(now_unix())),
        advice,
    }
}

/// Explains an error from the client's handshake or from the first reads
/// after it (where a TLS 1.3 broker reports a missing or refused client
/// certificate). Returns `None` when the error has nothing to do with TLS.
pub fn explain_io_error(err: &io::Error, ctx: &ClientContext) -> Option<TlsError> {
    let host = ctx.host.clone();
    let Some(rerr) = rustls_error(err) else {
        return match err.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Some(TlsError::ServerNotTls {
                host,
                detail: format!("the connection ended during the handshake: {err}"),
            }),
            _ => None,
        };
    };
    if let Some(presented) = presented_error(rerr) {
        let Some(info) = &presented.info else {
            return Some(TlsError::CertificateRejected {
                whose: format!("the certificate of the broker at {host}"),
                subject: "unparseable certificate".to_string(),
                reason: format!(
                    "{}; re-issue it with {}",
                    presented.kind,
                    crate::error::reissue_server_hint(&host)
                ),
            });
        };
        if info.version < 3 {
            return Some(TlsError::ServerCertVersion1 {
                host,
                subject: info.subject.clone(),
            });
        }
        let whose = format!("the certificate of the broker at {host}");
        return Some(match &presented.kind {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                if info.sans.is_empty() {
                    TlsError::ServerNameOnlyInCommonName {
                        host,
                        subject: info.subject.clone(),
                    }
                } else {
                    TlsError::ServerNameMismatch {
                        host,
                        presented: info.names_for_messages(),
                    }
                }
            }
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                TlsError::ServerCertUnknownIssuer {
                    host,
                    subject: info.subject.clone(),
                    issuer: info.issuer.clone(),
                    trust: presented.trust.clone(),
                }
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => validity_error(
                whose,
                info,
                true,
                format!("Re-issue it from the same CA: {}", crate::error::reissue_server_hint(&host)),
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                validity_error(
                    whose,
                    info,
                    false,
                    "Check the clock of this machine and of the machine that issued it (a Raspberry Pi without a real-time clock starts in the past until NTP has run)".to_string(),
                )
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                TlsError::CertificateRejected {
                    whose,
                    subject: info.subject.clone(),
                    reason: format!(
                        "it is not a server certificate (its extendedKeyUsage lacks serverAuth); re-issue it with {}",
                        crate::error::reissue_server_hint(&host)
                    ),
                }
            }
            CertificateError::Revoked => TlsError::CertificateRejected {
                whose,
                subject: info.subject.clone(),
                reason: "it has been revoked by its CA; the broker needs a new certificate".to_string(),
            },
            other => TlsError::CertificateRejected {
                whose,
                subject: info.subject.clone(),
                reason: format!("{other}; check the broker's cafile, certfile and keyfile for {host} with the offline checker (`mqtt_tls::check`, the tls-check example)"),
            },
        });
    }
    Some(match rerr {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            presented,
            ..
        }) => TlsError::ServerNameMismatch {
            host,
            presented: presented.clone(),
        },
        rustls::Error::AlertReceived(alert) => explain_alert_from_broker(*alert, ctx),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            TlsError::ServerNotTls {
                host,
                detail: format!("its answer is not a TLS record: {rerr}"),
            }
        }
        other => TlsError::Handshake {
            who: format!("the broker at {host}"),
            detail: other.to_string(),
        },
    })
}

fn explain_alert_from_broker(alert: AlertDescription, ctx: &ClientContext) -> TlsError {
    let host = ctx.host.clone();
    match alert {
        AlertDescription::CertificateRequired => TlsError::ClientCertificateRequired { host },
        AlertDescription::HandshakeFailure if !ctx.has_client_cert => {
            TlsError::ClientCertificateRequired { host }
        }
        AlertDescription::BadCertificate
        | AlertDescription::UnknownCA
        | AlertDescription::CertificateUnknown
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateRevoked
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::AccessDenied
        | AlertDescription::DecryptError
            if ctx.has_client_cert =>
        {
            TlsError::ClientCertificateRejected {
                host,
                alert: format!("{alert:?}"),
            }
        }
        AlertDescription::ProtocolVersion => TlsError::ServerRefused {
            host,
            alert: format!("{alert:?}"),
            advice: "the broker and this client share no TLS version; allow TLS 1.2 on this side (min_version) or enable TLS 1.2/1.3 on the broker".to_string(),
        },
        AlertDescription::NoApplicationProtocol => TlsError::ServerRefused {
            host,
            alert: format!("{alert:?}"),
            advice: "the broker does not accept the ALPN protocol `mqtt`; turn ALPN off on this side".to_string(),
        },
        other => TlsError::ServerRefused {
            host,
            alert: format!("{other:?}"),
            advice: "check the broker's log, which says why".to_string(),
        },
    }
}

/// Runs the broker-side handshake on an accepted connection.
///
/// Before the handshake it peeks at the first byte so that plain MQTT (a
/// CONNECT starts with 0x10) on a TLS port gets its own message. Errors name
/// the client's address; `require_certificate` is only used to word them.
/// Wrap the call in a time-out and run it in the connection's own task, not
/// in the accept loop.
pub async fn accept(
    config: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    peer_addr: SocketAddr,
    require_certificate: bool,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, TlsError> {
    let _ = tcp.set_nodelay(true);
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) => {
            return Err(TlsError::ClosedDuringHandshake {
                who: format!("client at {peer_addr}"),
                advice: "it connected and closed without sending anything (a port check or a client that gave up)".to_string(),
            })
        }
        Ok(_) => match first[0] {
            0x16 => {}
            // CONNECT fixed header, [MQTT-2.2.1]: packet type 1, flags 0.
            0x10 => return Err(TlsError::PlainMqttOnTlsPort { peer: peer_addr }),
            other => {
                return Err(TlsError::NotTlsClient {
                    peer: peer_addr,
                    first_byte: other,
                })
            }
        },
        Err(e) => {
            return Err(TlsError::Handshake {
                who: format!("client at {peer_addr}"),
                detail: e.to_string(),
            })
        }
    }
    tokio_rustls::TlsAcceptor::from(config)
        .accept(tcp)
        .await
        .map_err(|e| explain_accept_error(&e, peer_addr, require_certificate))
}

/// Explains an error from the broker-side handshake.
pub fn explain_accept_error(
    err: &io::Error,
    peer: SocketAddr,
    require_certificate: bool,
) -> TlsError {
    let who = format!("client at {peer}");
    let Some(rerr) = rustls_error(err) else {
        return match err.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => TlsError::ClosedDuringHandshake {
                who,
                advice: "the client probably rejected this broker's certificate; its own error message says why".to_string(),
            },
            _ => TlsError::Handshake {
                who,
                detail: err.to_string(),
            },
        };
    };
    if let Some(presented) = presented_error(rerr) {
        let subject = presented
            .info
            .as_ref()
            .map(|i| i.subject.clone())
            .unwrap_or_else(|| "unparseable certificate".to_string());
        let cn = presented
            .info
            .as_ref()
            .and_then(|i| i.common_name.clone())
            .unwrap_or_else(|| "NAME".to_string());
        let whose = format!("the client certificate of {who}");
        let fix = crate::error::reissue_client_hint(&cn);
        if let Some(info) = presented.info.as_ref().filter(|i| i.version < 3) {
            return TlsError::CertificateRejected {
                whose,
                subject: info.subject.clone(),
                reason: format!("it is a version 1 certificate (OpenSSL's `x509 -req` recipe writes these), which rustls cannot use; re-issue it from the existing CA: {fix}"),
            };
        }
        return match (&presented.kind, &presented.info) {
            (CertificateError::UnknownIssuer | CertificateError::BadSignature, Some(info)) => {
                TlsError::ClientCertUnknownIssuer {
                    peer,
                    subject: info.subject.clone(),
                    common_name: info.common_name.clone(),
                    issuer: info.issuer.clone(),
                }
            }
            (CertificateError::Expired | CertificateError::ExpiredContext { .. }, Some(info)) => {
                validity_error(whose, info, true, format!("Issue a new one: {fix}"))
            }
            (
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
                Some(info),
            ) => validity_error(
                whose,
                info,
                false,
                "Check the clocks of this machine and of the machine that issued it".to_string(),
            ),
            (CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }, _) => {
                TlsError::CertificateRejected {
                    whose,
                    subject,
                    reason: format!("it is not a client certificate (its extendedKeyUsage lacks clientAuth); issue one with {fix}"),
                }
            }
            (CertificateError::Revoked, _) => TlsError::CertificateRejected {
                whose,
                subject,
                reason: "it is revoked in this broker's crlfile".to_string(),
            },
            (other, _) => TlsError::CertificateRejected {
                whose,
                subject,
                reason: format!("{other}; issue a new one with {fix}"),
            },
        };
    }
    match rerr {
        rustls::Error::NoCertificatesPresented => TlsError::NoClientCertificate { peer },
        rustls::Error::AlertReceived(alert) => {
            let advice = match alert {
                AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::DecryptError
                | AlertDescription::UnsupportedCertificate => "the client does not accept this broker's certificate: it does not trust the CA that signed certfile, or it dialled a name the certificate does not cover; check cafile, certfile and keyfile with the offline checker (`mqtt_tls::check`, the tls-check example) for the address the client dials".to_string(),
                AlertDescription::CertificateExpired => "this broker's certificate has expired; re-issue it with gen-certs from the same CA".to_string(),
                AlertDescription::ProtocolVersion => "the client and this broker share no TLS version".to_string(),
                _ => "the client's own error message says why".to_string(),
            };
            TlsError::ClientRefused {
                peer,
                alert: format!("{alert:?}"),
                advice,
            }
        }
        other => {
            let _ = require_certificate;
            TlsError::Handshake {
                who,
                detail: other.to_string(),
            }
        }
    }
}
