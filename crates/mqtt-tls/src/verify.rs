//! Certificate verifiers that wrap rustls's WebPKI verifiers and attach what
//! the presented certificate says (names, issuer, dates, version) to their
//! errors, so the handshake helpers can explain them.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::identity::CertInfo;

/// A certificate error together with what the certificate says. Travels
/// inside `rustls::CertificateError::Other`.
#[derive(Debug, Clone)]
pub(crate) struct PresentedCertError {
    /// What rustls/webpki found wrong.
    pub kind: CertificateError,
    /// The presented end-entity certificate, when it could be parsed.
    pub info: Option<CertInfo>,
    /// The trust source, e.g. "the CA in cafile ca.crt".
    pub trust: String,
}

impl fmt::Display for PresentedCertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.info {
            Some(info) => write!(
                f,
                "{} (certificate {}, issued by {})",
                self.kind, info.subject, info.issuer
            ),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for PresentedCertError {}

fn explained(
    kind: CertificateError,
    end_entity: &CertificateDer<'_>,
    trust: &str,
) -> rustls::Error {
    let info = CertInfo::parse(end_entity.as_ref()).ok();
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        PresentedCertError {
            kind,
            info,
            trust: trust.to_string(),
        },
    ))))
}

/// Finds our explanation inside a rustls error.
pub(crate) fn presented_error(err: &rustls::Error) -> Option<&PresentedCertError> {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<PresentedCertError>()
        }
        _ => None,
    }
}

/// Verifies the broker's certificate; in insecure mode, checks the chain but
/// not the name (what `mosquitto_sub --insecure` does).
#[derive(Debug)]
pub(crate) struct ExplainingServerVerifier {
    pub inner: Arc<rustls::client::WebPkiServerVerifier>,
    pub insecure: bool,
    pub trust: String,
}

impl ServerCertVerifier for ExplainingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(ok) => Ok(ok),
            // The chain is checked before the name, so a name error means the
            // chain was good.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.insecure => Ok(ServerCertVerified::assertion()),
            Err(rustls::Error::InvalidCertificate(kind)) => {
                Err(explained(kind, end_entity, &self.trust))
            }
            Err(other) => Err(other),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Verifies client certificates against the broker's CA.
#[derive(Debug)]
pub(crate) struct ExplainingClientVerifier {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub trust: String,
}

impl ClientCertVerifier for ExplainingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(ok) => Ok(ok),
            Err(rustls::Error::InvalidCertificate(kind)) => {
                Err(explained(kind, end_entity, &self.trust))
            }
            Err(other) => Err(other),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
