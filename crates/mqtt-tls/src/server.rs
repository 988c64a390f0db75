//! Broker-side configuration from Mosquitto's listener settings, and reload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::load::{self, Role};
use crate::verify::ExplainingClientVerifier;
use crate::{provider, TlsError, TlsVersion};

/// A TLS listener's settings, named as in `mosquitto.conf`.
///
/// ```no_run
/// use mqtt_tls::ServerTlsOptions;
/// let options = ServerTlsOptions::new("server.crt", "server.key")
///     .cafile("ca.crt")
///     .require_certificate(true);
/// let config = options.build()?;
/// # Ok::<(), mqtt_tls::TlsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerTlsOptions {
    /// `cafile`: CA certificates that client certificates are verified against.
    pub cafile: Option<PathBuf>,
    /// `capath`: a directory of CA certificates (every PEM file in it).
    pub capath: Option<PathBuf>,
    /// `certfile`: the server certificate followed by any intermediates.
    pub certfile: PathBuf,
    /// `keyfile`: the server's private key (PKCS#8, PKCS#1 RSA or SEC1 EC PEM).
    pub keyfile: PathBuf,
    /// `require_certificate`: clients must present a certificate signed by the CA.
    /// When off and a CA is given, a certificate is requested but optional
    /// (verified when sent).
    pub require_certificate: bool,
    /// `crlfile`: a PEM certificate revocation list checked for client certificates.
    pub crlfile: Option<PathBuf>,
    /// The lowest TLS version accepted (`tls_version` in Mosquitto).
    pub min_version: TlsVersion,
    /// Offer ALPN protocol `mqtt`.
    pub alpn_mqtt: bool,
}

impl Default for ServerTlsOptions {
    fn default() -> Self {
        ServerTlsOptions::new("server.crt", "server.key")
    }
}

impl ServerTlsOptions {
    /// Options with the given certificate and key, no CA, no client certificates,
    /// TLS 1.2 or later, ALPN `mqtt` offered.
    pub fn new(certfile: impl Into<PathBuf>, keyfile: impl Into<PathBuf>) -> Self {
        ServerTlsOptions {
            cafile: None,
            capath: None,
            certfile: certfile.into(),
            keyfile: keyfile.into(),
            require_certificate: false,
            crlfile: None,
            min_version: TlsVersion::Tls12,
            alpn_mqtt: true,
        }
    }

    /// `cafile`: CA certificates client certificates are verified against.
    pub fn cafile(mut self, path: impl Into<PathBuf>) -> Self {
        self.cafile = Some(path.into());
        self
    }

    /// `capath`: a directory of CA certificates.
    pub fn capath(mut self, path: impl Into<PathBuf>) -> Self {
        self.capath = Some(path.into());
        self
    }

    /// `require_certificate`: clients must present a certificate the CA
    /// signed.
    pub fn require_certificate(mut self, on: bool) -> Self {
        self.require_certificate = on;
        self
    }

    /// `crlfile`: certificates revoked by the CA.
    pub fn crlfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.crlfile = Some(path.into());
        self
    }

    /// `tls_version`: the lowest TLS version accepted.
    pub fn min_version(mut self, version: TlsVersion) -> Self {
        self.min_version = version;
        self
    }

    /// Whether ALPN `mqtt` is offered (default true).
    pub fn alpn_mqtt(mut self, on: bool) -> Self {
        self.alpn_mqtt = on;
        self
    }

    /// Reads the files and builds the rustls config (ring provider).
    pub fn build(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = provider();
        let chain = load::load_certs("certfile", &self.certfile)?;
        let leaf = chain.first().ok_or_else(|| TlsError::NoCertificate {
            what: "certfile",
            path: self.certfile.clone(),
            hint: String::new(),
        })?;
        let leaf_info = load::check_leaf_usable("certfile", &self.certfile, leaf, Role::Server)?;
        let key = load::load_key(&self.keyfile)?;
        if let Some(spki) = crate::gen::key_spki(&key) {
            if spki != leaf_info.spki {
                return Err(TlsError::KeyMismatch {
                    certfile: self.certfile.clone(),
                    keyfile: self.keyfile.clone(),
                });
            }
        }

        let has_ca = self.cafile.is_some() || self.capath.is_some();
        if self.require_certificate && !has_ca {
            return Err(TlsError::RequireCertificateWithoutCa);
        }
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.min_version.versions())
            .map_err(|e| TlsError::Config {
                detail: e.to_string(),
            })?;
        let builder = if has_ca {
            let roots = load::load_roots(self.cafile.as_deref(), self.capath.as_deref())?;
            let mut vb = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            );
            if let Some(crlfile) = &self.crlfile {
                vb = vb.with_crls(load::load_crls(crlfile)?);
            }
            if !self.require_certificate {
                vb = vb.allow_unauthenticated();
            }
            let inner = vb.build().map_err(|e| TlsError::Config {
                detail: format!("client certificate verifier: {e}"),
            })?;
            let trust = describe_trust(self.cafile.as_deref(), self.capath.as_deref());
            builder.with_client_cert_verifier(Arc::new(ExplainingClientVerifier { inner, trust }))
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| load::map_single_cert_error(e, &self.certfile, &self.keyfile))?;
        if self.alpn_mqtt {
            config.alpn_protocols = vec![b"mqtt".to_vec()];
        }
        Ok(Arc::new(config))
    }

    fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.certfile.clone(), self.keyfile.clone()];
        files.extend(self.cafile.iter().cloned());
        files.extend(self.capath.iter().cloned());
        files.extend(self.crlfile.iter().cloned());
        files
    }
}

pub(crate) fn describe_trust(cafile: Option<&Path>, capath: Option<&Path>) -> String {
    match (cafile, capath) {
        (Some(f), Some(d)) => format!("the CA in cafile {} or capath {}", f.display(), d.display()),
        (Some(f), None) => format!("the CA in cafile {}", f.display()),
        (None, Some(d)) => format!("a CA in capath {}", d.display()),
        (None, None) => "any trusted CA".to_string(),
    }
}

type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(files: &[PathBuf]) -> Stamp {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| m.modified().ok().map(|t| (t, m.len())))
        })
        .collect()
}

/// A server config that is rebuilt when its files change on disk.
///
/// [`ReloadableServerConfig::current`] hands out the current
/// `Arc<ServerConfig>`; connections accepted earlier keep the config they were
/// accepted with, so a reload never drops them. Call
/// [`ReloadableServerConfig::reload_if_changed`] before accepting (it only
/// compares modification times and sizes) or on a timer/signal.
#[derive(Debug)]
pub struct ReloadableServerConfig {
    options: ServerTlsOptions,
    state: Mutex<(Arc<rustls::ServerConfig>, Stamp)>,
}

impl ReloadableServerConfig {
    /// Builds the config once; fails as [`ServerTlsOptions::build`] does.
    pub fn new(options: ServerTlsOptions) -> Result<Self, TlsError> {
        let before = stamp(&options.watched_files());
        let config = options.build()?;
        Ok(ReloadableServerConfig {
            options,
            state: Mutex::new((config, before)),
        })
    }

    /// The options this config is built from.
    pub fn options(&self) -> &ServerTlsOptions {
        &self.options
    }

    /// The config to use for the next connection.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        match self.state.lock() {
            Ok(state) => state.0.clone(),
            Err(poisoned) => poisoned.into_inner().0.clone(),
        }
    }

    /// Rebuilds the config if any file changed since the last build.
    ///
    /// Returns `Ok(true)` when a new config is in use, `Ok(false)` when
    /// nothing changed. On error the previous config stays in use (a
    /// half-written certificate never takes a listener down); the error says
    /// what is wrong with the new files, and the next call tries again.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let files = self.options.watched_files();
        let now = stamp(&files);
        {
            let state = match self.state.lock() {
                Ok(s) => s,
                Err(poisoned) => poisoned.into_inner(),
            };
            if state.1 == now {
                return Ok(false);
            }
        }
        let config = self.options.build()?;
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        *state = (config, now);
        Ok(true)
    }
}
