//! Client-side configuration: trust from a CA file, a CA directory, the public
//! CAs, or both; an optional client certificate; an explicitly named insecure
//! mode.

use std::path::PathBuf;
use std::sync::Arc;

use crate::load::{self, Role};
use crate::server::describe_trust;
use crate::verify::ExplainingServerVerifier;
use crate::{provider, TlsError, TlsVersion};

/// A client's TLS settings, named after `mosquitto_sub`'s flags. Build
/// them with [`ClientTlsOptions::new`] and the setters (the fields are
/// public to read and assign; the struct may grow, so it cannot be written
/// as a literal outside this crate):
///
/// ```no_run
/// use mqtt_tls::ClientTlsOptions;
/// let options = ClientTlsOptions::new()
///     .cafile("ca.crt")
///     .certfile("client.crt")
///     .keyfile("client.key");
/// let config = options.build()?;
/// # Ok::<(), mqtt_tls::TlsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientTlsOptions {
    /// `--cafile`: CA certificates the broker's certificate is verified against.
    pub cafile: Option<PathBuf>,
    /// `--capath`: a directory of CA certificates.
    pub capath: Option<PathBuf>,
    /// Also trust the public CAs (webpki-roots), for public brokers.
    pub use_webpki_roots: bool,
    /// `--cert`: the client certificate (and chain).
    pub certfile: Option<PathBuf>,
    /// `--key`: the client's private key.
    pub keyfile: Option<PathBuf>,
    /// `--insecure`: verify the chain, but not that the certificate names the
    /// host dialled.
    pub insecure: bool,
    /// The lowest TLS version offered.
    pub min_version: TlsVersion,
    /// Offer ALPN protocol `mqtt`.
    pub alpn_mqtt: bool,
}

impl Default for ClientTlsOptions {
    /// No trust source (set one), no client certificate, TLS 1.2 or later, no ALPN.
    fn default() -> Self {
        ClientTlsOptions {
            cafile: None,
            capath: None,
            use_webpki_roots: false,
            certfile: None,
            keyfile: None,
            insecure: false,
            min_version: TlsVersion::Tls12,
            alpn_mqtt: false,
        }
    }
}

impl ClientTlsOptions {
    /// The defaults: no trust source (set one), no client certificate, TLS
    /// 1.2 or later, no ALPN.
    pub fn new() -> Self {
        Self::default()
    }

    /// CA certificates the broker's certificate is verified against.
    pub fn cafile(mut self, path: impl Into<PathBuf>) -> Self {
        self.cafile = Some(path.into());
        self
    }

    /// A directory of CA certificates.
    pub fn capath(mut self, path: impl Into<PathBuf>) -> Self {
        self.capath = Some(path.into());
        self
    }

    /// Also trust the public CAs (webpki-roots), for public brokers.
    pub fn use_webpki_roots(mut self, on: bool) -> Self {
        self.use_webpki_roots = on;
        self
    }

    /// The client certificate (and chain); goes with [`Self::keyfile`].
    pub fn certfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.certfile = Some(path.into());
        self
    }

    /// The client's private key; goes with [`Self::certfile`].
    pub fn keyfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.keyfile = Some(path.into());
        self
    }

    /// Verify the chain, but not that the certificate names the host dialled.
    pub fn insecure(mut self, on: bool) -> Self {
        self.insecure = on;
        self
    }

    /// The lowest TLS version offered.
    pub fn min_version(mut self, version: TlsVersion) -> Self {
        self.min_version = version;
        self
    }

    /// Offer ALPN protocol `mqtt`.
    pub fn alpn_mqtt(mut self, on: bool) -> Self {
        self.alpn_mqtt = on;
        self
    }

    /// Reads the files and builds the rustls config (ring provider).
    pub fn build(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let provider = provider();
        let has_trust = self.cafile.is_some() || self.capath.is_some() || self.use_webpki_roots;
        if !has_trust {
            return Err(match (&self.certfile, &self.keyfile) {
                (Some(certfile), _) => TlsError::NoTrustSource {
                    certfile: certfile.clone(),
                },
                (None, Some(keyfile)) => TlsError::NoTrustSource {
                    certfile: keyfile.clone(),
                },
                (None, None) => TlsError::NoTrustAnchors,
            });
        }
        let client_auth = match (&self.certfile, &self.keyfile) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(c), None) => {
                return Err(TlsError::Incomplete {
                    given: "`ClientTlsOptions::certfile`",
                    path: c.clone(),
                    missing: "`ClientTlsOptions::keyfile`",
                })
            }
            (None, Some(k)) => {
                return Err(TlsError::Incomplete {
                    given: "`ClientTlsOptions::keyfile`",
                    path: k.clone(),
                    missing: "`ClientTlsOptions::certfile`",
                })
            }
        };

        let mut roots = load::load_roots(self.cafile.as_deref(), self.capath.as_deref())?;
        if self.use_webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Config {
            detail: format!("server certificate verifier: {e}"),
        })?;
        let mut trust = describe_trust(self.cafile.as_deref(), self.capath.as_deref());
        if self.use_webpki_roots {
            trust = if self.cafile.is_some() || self.capath.is_some() {
                format!("{trust} or a public CA (webpki roots)")
            } else {
                "any public CA (webpki roots)".to_string()
            };
        }
        let verifier = Arc::new(ExplainingServerVerifier {
            inner,
            insecure: self.insecure,
            trust,
        });

        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(self.min_version.versions())
            .map_err(|e| TlsError::Config {
                detail: e.to_string(),
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match client_auth {
            Some((certfile, keyfile)) => {
                let chain = load::load_certs("`ClientTlsOptions::certfile`", certfile)?;
                let leaf = chain.first().ok_or_else(|| TlsError::NoCertificate {
                    what: "`ClientTlsOptions::certfile`",
                    path: certfile.clone(),
                    hint: String::new(),
                })?;
                let info = load::check_leaf_usable(
                    "`ClientTlsOptions::certfile`",
                    certfile,
                    leaf,
                    Role::Client,
                )?;
                let key = load::load_key(keyfile)?;
                if let Some(spki) = crate::gen::key_spki(&key) {
                    if spki != info.spki {
                        return Err(TlsError::KeyMismatch {
                            certfile: certfile.clone(),
                            keyfile: keyfile.clone(),
                        });
                    }
                }
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| load::map_single_cert_error(e, certfile, keyfile))?
            }
            None => builder.with_no_client_auth(),
        };
        if self.alpn_mqtt {
            config.alpn_protocols = vec![b"mqtt".to_vec()];
        }
        Ok(Arc::new(config))
    }
}
