//! The one error type of this crate: [`TlsError`].
//!
//! Every message says what is wrong, names the file, the address dialled or the
//! certificate names involved, and says what to do about it.

use std::net::SocketAddr;
use std::path::PathBuf;

/// The command that re-issues a server certificate from an existing CA, kept
/// in one place so every message shows the same thing.
pub(crate) fn reissue_server_hint(name: &str) -> String {
    format!(
        "cargo run --example gen-certs -- --out DIR --ca-cert ca.crt --ca-key ca.key --server-name {name}"
    )
}

/// Same for a client certificate.
pub(crate) fn reissue_client_hint(name: &str) -> String {
    format!(
        "cargo run --example gen-certs -- --out DIR --ca-cert ca.crt --ca-key ca.key --client-name {name}"
    )
}

fn ownership(process_uid: &Option<u32>, owner_uid: &Option<u32>, mode: &Option<u32>) -> String {
    let who = match process_uid {
        Some(uid) => format!("this process runs as uid {uid}"),
        None => "this process's uid is unknown".to_string(),
    };
    let file = match (owner_uid, mode) {
        (Some(owner), Some(mode)) => {
            format!("the file is owned by uid {owner} with mode {mode:04o}")
        }
        _ => "the file's owner and mode could not be read".to_string(),
    };
    let fix = match process_uid {
        Some(uid) => format!(
            "make it readable by uid {uid} (for example `chown {uid}` the file and keep mode 0600), or run as its owner; Mosquitto drops root to user `mosquitto`, so its key files must belong to that user"
        ),
        None => "make it readable by the user this process runs as".to_string(),
    };
    format!("{who}; {file}; {fix}")
}

fn names_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "no name at all".to_string()
    } else {
        names.join(", ")
    }
}

/// The gen-certs command for a certificate covering `host` and the names it
/// already covers.
fn reissue_with(host: &str, presented: &[String]) -> String {
    let mut names = vec![host.to_string()];
    names.extend(
        presented
            .iter()
            .filter(|n| n.as_str() != host && !n.contains(' '))
            .cloned(),
    );
    reissue_server_hint(&names.join(" --server-name "))
}

fn first_or<'a>(names: &'a [String], fallback: &'a str) -> &'a str {
    names.first().map(String::as_str).unwrap_or(fallback)
}

/// Everything that can go wrong while loading TLS files, building configs,
/// generating certificates or running a handshake.
///
/// Each variant carries the detail a caller needs to act (file, address,
/// names), and its message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file named in the options does not exist.
    #[error("{what} {path} does not exist; check the path (it is resolved relative to the directory the program was started in)")]
    FileMissing {
        /// Which option named the file (`cafile`, `certfile`, `keyfile`, ...).
        what: &'static str,
        /// The path as given.
        path: PathBuf,
    },

    /// A file exists but cannot be read (permissions, a directory, ...).
    #[error("cannot read {what} {path}: {source}; {}", ownership(.process_uid, .owner_uid, .mode))]
    FileUnreadable {
        /// Which option named the file.
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// The uid this process runs as, if known.
        process_uid: Option<u32>,
        /// The uid owning the file, if its metadata could be read.
        owner_uid: Option<u32>,
        /// The file's permission bits, if its metadata could be read.
        mode: Option<u32>,
        /// The error from the operating system.
        source: std::io::Error,
    },

    /// A file that should hold certificates holds none.
    #[error("{what} {path} contains no certificate (expected a PEM block `-----BEGIN CERTIFICATE-----`){hint}")]
    NoCertificate {
        /// Which option named the file.
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// Extra advice, starting with "; " when present.
        hint: String,
    },

    /// A key file holds no private key.
    #[error("keyfile {path} contains no private key (expected `-----BEGIN PRIVATE KEY-----`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`){hint}")]
    NoPrivateKey {
        /// The path as given.
        path: PathBuf,
        /// Extra advice, starting with "; " when present.
        hint: String,
    },

    /// A key file holds a passphrase-protected key.
    #[error("keyfile {path} holds an encrypted private key (made with a passphrase, e.g. `openssl genrsa -aes256`); a broker cannot ask for the passphrase at start-up. Write an unencrypted copy, readable only by its owner: `openssl pkey -in {path} -out server-plain.key && chmod 600 server-plain.key`, then point keyfile at it")]
    EncryptedPrivateKey {
        /// The path as given.
        path: PathBuf,
    },

    /// A PEM file is damaged.
    #[error("{what} {path} is not valid PEM: {detail}; re-export the file, or re-create the set with `cargo run --example gen-certs -- --out DIR`")]
    BadPem {
        /// Which option named the file.
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },

    /// A certificate cannot be parsed as X.509.
    #[error("{what} {path}: certificate number {index} cannot be parsed as X.509 ({detail}); re-create it with `cargo run --example gen-certs -- --out DIR`")]
    BadCertificate {
        /// Which option named the file.
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// 1-based position of the certificate in the file.
        index: usize,
        /// What the parser said.
        detail: String,
    },

    /// The private key does not belong to the certificate.
    #[error("keyfile {keyfile} does not match certfile {certfile} (the key is not the one the certificate was issued for); use the key written together with this certificate, or issue a new pair from your CA: {}", reissue_server_hint("NAME"))]
    KeyMismatch {
        /// The certificate file.
        certfile: PathBuf,
        /// The key file.
        keyfile: PathBuf,
    },

    /// A certificate is X.509 version 1 (the mosquitto-tls recipe with OpenSSL 3).
    #[error("{what} {path} is a version 1 certificate ({subject}); its name is only in the Common Name, and version 1 certificates cannot carry the subjectAltName and key-usage extensions that rustls requires (Mosquitto's `openssl x509 -req` recipe writes these). Re-issue it from your existing CA, keeping ca.crt: {fix}")]
    Version1Certificate {
        /// Which option named the file.
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// The certificate's subject.
        subject: String,
        /// The gen-certs command that fixes it.
        fix: String,
    },

    /// A server certificate has its name only in the Common Name.
    #[error("{what} {path} has its name only in the Common Name ({subject}) and no subjectAltName; TLS clients no longer read the Common Name, so no client can verify this server. Re-issue it from your existing CA, keeping ca.crt: {}", reissue_server_hint(.common_name.as_deref().unwrap_or("NAME")))]
    NameOnlyInCommonName {
        /// Which option named the file.
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// The certificate's subject.
        subject: String,
        /// The Common Name, if any.
        common_name: Option<String>,
    },

    /// A CA file holds a certificate that is not a CA certificate.
    #[error("{what} {path} holds a certificate that is not a CA ({subject}: no `CA:TRUE` basic constraint); cafile must hold the CA that signed the certificates, not a server or client certificate. Use the ca.crt written by `cargo run --example gen-certs -- --out DIR`")]
    NotACa {
        /// Which option named the file.
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// The certificate's subject.
        subject: String,
    },

    /// Client certificate or key given without a trust source.
    #[error("a client certificate ({certfile}) was given, but nothing to verify the broker against; set `ClientTlsOptions::cafile` to ca.crt (the CA that signed the broker's certificate), or, for a public broker, set `ClientTlsOptions::use_webpki_roots` to trust the public CAs. Without a trust source the connection would not be TLS at all")]
    NoTrustSource {
        /// The client certificate that was given.
        certfile: PathBuf,
    },

    /// No trust source at all for a client.
    #[error("no trust source for the broker's certificate; set `ClientTlsOptions::cafile` to ca.crt (the CA that signed the broker's certificate) or `ClientTlsOptions::capath` to a directory of CA certificates, or, for a public broker, set `ClientTlsOptions::use_webpki_roots` to trust the public CAs")]
    NoTrustAnchors,

    /// `require_certificate` without a CA to verify clients against.
    #[error("require_certificate is on, but neither cafile nor capath is set; add `cafile ca.crt` (the CA that signed the client certificates)")]
    RequireCertificateWithoutCa,

    /// A certificate was given without its key, or the other way round.
    #[error(
        "{given} {path} was given without {missing}; give both (Mosquitto: certfile and keyfile)"
    )]
    Incomplete {
        /// The option that was given.
        given: &'static str,
        /// Its path.
        path: PathBuf,
        /// The option that is missing.
        missing: &'static str,
    },

    /// A CRL file could not be used.
    #[error("crlfile {path} cannot be used: {detail}; export the CRL from your CA as PEM (`openssl ca -gencrl -out crl.pem`)")]
    BadCrl {
        /// The path as given.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },

    /// The host to dial is not a valid DNS name or IP address.
    #[error("{host:?} is neither an IP address nor a valid DNS name, so no certificate can be checked against it; pass the broker's address with -h")]
    InvalidHost {
        /// What the user typed.
        host: String,
    },

    /// rustls refused the configuration for another reason.
    #[error("TLS configuration error: {detail}")]
    Config {
        /// What rustls said.
        detail: String,
    },

    /// The server certificate does not cover the name dialled.
    #[error("server certificate is for {}, but you connected to {host}; connect with host {} (the host of the client options) or re-issue the certificate with that name: {}", names_or_none(.presented), first_or(.presented, "NAME"), reissue_with(.host, .presented))]
    ServerNameMismatch {
        /// The host that was dialled.
        host: String,
        /// The names the certificate covers (subjectAltNames, or the CN when there are none).
        presented: Vec<String>,
    },

    /// The server's certificate has its name only in the Common Name.
    #[error("the broker at {host} presented a certificate whose name is only in the Common Name ({subject}) with no subjectAltName; rustls does not read the Common Name. Re-issue the broker's certificate from your existing CA, keeping ca.crt: {}", reissue_server_hint(.host))]
    ServerNameOnlyInCommonName {
        /// The host that was dialled.
        host: String,
        /// The certificate's subject.
        subject: String,
    },

    /// The server's certificate is X.509 version 1.
    #[error("the broker at {host} presented a version 1 certificate ({subject}), whose name is only in the Common Name; Mosquitto accepts these (OpenSSL 3 writes them with the mosquitto-tls recipe), rustls does not. Re-issue it from your existing CA, keeping ca.crt: {}", reissue_server_hint(.host))]
    ServerCertVersion1 {
        /// The host that was dialled.
        host: String,
        /// The certificate's subject.
        subject: String,
    },

    /// The server's certificate was not signed by a trusted CA.
    #[error("the broker at {host} presented a certificate for {subject} issued by {issuer}, which is not signed by {trust}; set `ClientTlsOptions::cafile` to the ca.crt that signed the broker's certificate, or re-issue the broker's certificate from that CA: {}", reissue_server_hint(.host))]
    ServerCertUnknownIssuer {
        /// The host that was dialled.
        host: String,
        /// The certificate's subject.
        subject: String,
        /// The certificate's issuer.
        issuer: String,
        /// Which trust source was used, e.g. "the CA in cafile ca.crt".
        trust: String,
    },

    /// A certificate is outside its validity period.
    #[error("{whose} ({subject}) {when}. {advice}")]
    CertificateNotValidNow {
        /// Whose certificate: "the certificate of the broker at 127.0.0.1", "the client certificate of client at 127.0.0.2:4711".
        whose: String,
        /// The certificate's subject.
        subject: String,
        /// "expired on ...; the time here is ..." or "is not valid before ...; the time here is ...".
        when: String,
        /// What to do.
        advice: String,
    },

    /// The peer's certificate failed verification for another reason.
    #[error("{whose} ({subject}) was rejected: {reason}")]
    CertificateRejected {
        /// Whose certificate.
        whose: String,
        /// The certificate's subject.
        subject: String,
        /// Why, with advice.
        reason: String,
    },

    /// Client side: the broker requires a client certificate and none was sent.
    #[error("the broker at {host} requires a client certificate, and none was sent; set `ClientTlsOptions::certfile` and `ClientTlsOptions::keyfile` to client.crt and client.key (issued by the CA in the broker's cafile; make one with {})", reissue_client_hint("NAME"))]
    ClientCertificateRequired {
        /// The host that was dialled.
        host: String,
    },

    /// Client side: the broker rejected the client certificate that was sent.
    #[error("the broker at {host} rejected our client certificate ({alert}); it is probably signed by a different CA than the broker's cafile, expired, or not a client certificate. Issue one from the broker's CA: {}", reissue_client_hint("NAME"))]
    ClientCertificateRejected {
        /// The host that was dialled.
        host: String,
        /// The TLS alert the broker sent.
        alert: String,
    },

    /// Client side: TLS was spoken to something that does not speak TLS.
    #[error("{host} did not answer in TLS ({detail}); it is probably a plain MQTT port (1883). Connect to the broker's TLS port (usually 8883), or connect without TLS")]
    ServerNotTls {
        /// The host (and port) dialled.
        host: String,
        /// What happened.
        detail: String,
    },

    /// Client side: the broker refused the handshake for a reason given by a TLS alert.
    #[error("the broker at {host} refused the TLS handshake with alert {alert}; {advice}")]
    ServerRefused {
        /// The host dialled.
        host: String,
        /// The alert received.
        alert: String,
        /// What to do.
        advice: String,
    },

    /// Broker side: a client sent no certificate although one is required.
    #[error("client at {peer} sent no certificate; require_certificate is on. Give the client a certificate and key (client.crt, client.key) issued by this broker's CA, or set `require_certificate false`")]
    NoClientCertificate {
        /// The client's address.
        peer: SocketAddr,
    },

    /// Broker side: a client's certificate was not signed by the broker's CA.
    #[error("client at {peer} presented a certificate for {subject} issued by {issuer}, which is not signed by the CA in this broker's cafile/capath; issue the client certificate from this broker's CA: {}", reissue_client_hint(.common_name.as_deref().unwrap_or("NAME")))]
    ClientCertUnknownIssuer {
        /// The client's address.
        peer: SocketAddr,
        /// The certificate's subject.
        subject: String,
        /// Its Common Name, if any.
        common_name: Option<String>,
        /// The certificate's issuer.
        issuer: String,
    },

    /// Broker side: plain MQTT arrived on a TLS listener.
    #[error("client at {peer} spoke plain MQTT (a CONNECT packet) to this TLS listener; the client must use TLS (trusting this broker's CA, ca.crt; usually on port 8883), or connect to a plain listener")]
    PlainMqttOnTlsPort {
        /// The client's address.
        peer: SocketAddr,
    },

    /// Broker side: the first byte was neither TLS nor MQTT.
    #[error("client at {peer} sent something that is neither TLS nor MQTT (first byte 0x{first_byte:02x}); check that the client connects to the right port")]
    NotTlsClient {
        /// The client's address.
        peer: SocketAddr,
        /// The first byte received.
        first_byte: u8,
    },

    /// Broker side: the client ended the handshake with an alert.
    #[error("client at {peer} aborted the TLS handshake with alert {alert}; {advice}")]
    ClientRefused {
        /// The client's address.
        peer: SocketAddr,
        /// The alert received.
        alert: String,
        /// What to do.
        advice: String,
    },

    /// The connection closed during the handshake.
    #[error("{who} closed the connection during the TLS handshake; {advice}")]
    ClosedDuringHandshake {
        /// "the broker at 127.0.0.1" or "client at 127.0.0.2:4711".
        who: String,
        /// What this usually means.
        advice: String,
    },

    /// A handshake failed for a reason not covered above.
    #[error("TLS handshake with {who} failed: {detail}")]
    Handshake {
        /// "the broker at 127.0.0.1" or "client at 127.0.0.2:4711".
        who: String,
        /// What rustls or the OS said.
        detail: String,
    },

    /// Certificate generation failed.
    #[error("certificate generation failed: {detail}")]
    Generate {
        /// What went wrong.
        detail: String,
    },

    /// A file could not be written.
    #[error("cannot write {path}: {source}; check that the directory exists and is writable by this user")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error from the operating system.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_stays_small_enough_to_embed_in_other_errors() {
        assert!(std::mem::size_of::<super::TlsError>() <= 104);
    }
}
