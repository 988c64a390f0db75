//! When certificates expire: the dates of every certificate in a file (or a
//! `capath` directory, or one presented by a peer), the days left, and a
//! warning that names the certificate, its file and the `gen-certs`
//! command that re-issues it from the same CA.
//!
//! The broker logs these warnings at start, on reload and once a day for
//! what it serves and trusts; `pi-subscriber` for its own certificate and
//! CA; `tls-check` prints the days left of each file it checks.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use mqtt_tls::expiry::{certificates_in, WARN_WITHIN_DAYS};
//! use mqtt_tls::gen::CertificateAuthority;
//! # fn main() -> Result<(), mqtt_tls::TlsError> {
//! let dir = std::env::temp_dir().join(format!("mqtt-tls-expiry-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let ca = CertificateAuthority::generate()?;
//! let now = SystemTime::now();
//! let server = ca.issue_server_valid(
//!     &["192.168.1.5".to_string()],
//!     now - Duration::from_secs(3600),
//!     now + Duration::from_secs(10 * 86400 + 3600),
//! )?;
//! server.write(&dir.join("server.crt"), &dir.join("server.key"))?;
//! let found = certificates_in(&dir.join("server.crt"))?;
//! assert_eq!(found[0].days_left(now), 10);
//! assert!(found[0].expires_within(now, WARN_WITHIN_DAYS));
//! let warning = found[0].warning(now, Some(&dir.join("ca.crt")));
//! assert!(warning.contains("--server-name 192.168.1.5"));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::identity::{format_time, CertInfo};
use crate::load;
use crate::TlsError;

/// Certificates that expire within this many days (or have expired) are
/// warned about.
pub const WARN_WITHIN_DAYS: i64 = 30;

/// Seconds in a day.
const DAY: i64 = 24 * 3600;

/// What a certificate is for, which decides the command that re-issues it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateKind {
    /// A CA (basicConstraints CA:TRUE).
    Authority,
    /// A server certificate (extendedKeyUsage serverAuth, or names and no
    /// extendedKeyUsage).
    Server,
    /// A client certificate (the rest).
    Client,
}

/// One certificate's subject, names and end of validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateExpiry {
    /// The file it was read from (`None` for a certificate a peer presented).
    pub path: Option<PathBuf>,
    /// Its position in the file, from 1 (a certfile holds the server's
    /// certificate first, then intermediates).
    pub index: usize,
    /// The subject, RFC 2253 (`CN=192.168.1.5`).
    pub subject: String,
    /// The issuer, RFC 2253.
    pub issuer: String,
    /// The subject's first Common Name.
    pub common_name: Option<String>,
    /// The subjectAltNames (IP addresses and DNS names as text).
    pub sans: Vec<String>,
    /// What it is for.
    pub kind: CertificateKind,
    /// The end of its validity (`notAfter`), in seconds since 1970 (UTC).
    pub not_after: i64,
}

impl CertificateExpiry {
    /// Reads one DER certificate; `path` and `index` say where it came from.
    pub fn from_der(der: &[u8], path: Option<&Path>, index: usize) -> Result<Self, TlsError> {
        let info = CertInfo::parse(der).map_err(|detail| match path {
            Some(p) => TlsError::BadCertificate {
                what: "certificate",
                path: p.to_path_buf(),
                index,
                detail,
            },
            None => TlsError::Config {
                detail: format!("peer certificate cannot be parsed as X.509: {detail}"),
            },
        })?;
        let kind = if info.is_ca {
            CertificateKind::Authority
        } else {
            match info.eku {
                Some(e) if e.server_auth => CertificateKind::Server,
                Some(_) => CertificateKind::Client,
                None if !info.sans.is_empty() => CertificateKind::Server,
                None => CertificateKind::Client,
            }
        };
        Ok(CertificateExpiry {
            path: path.map(Path::to_path_buf),
            index,
            subject: info.subject,
            issuer: info.issuer,
            common_name: info.common_name,
            sans: info.sans,
            kind,
            not_after: info.not_after,
        })
    }

    /// Whole days from `now` to the end of its validity, rounded down:
    /// 0 on its last day, negative once it expired (-1 on the day after).
    pub fn days_left(&self, now: SystemTime) -> i64 {
        self.not_after.saturating_sub(unix(now)).div_euclid(DAY)
    }

    /// Whether it has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        unix(now) > self.not_after
    }

    /// Whether it expires within `days` days of `now`, or has expired.
    pub fn expires_within(&self, now: SystemTime, days: i64) -> bool {
        self.days_left(now) < days
    }

    /// The end of its validity as `2027-01-31 12:00:00 UTC`.
    pub fn not_after_text(&self) -> String {
        format_time(self.not_after)
    }

    /// The `gen-certs` command that issues a replacement from the CA in
    /// `ca_cert` (its key is taken to be `ca.key` next to it, when that
    /// file exists, else `ca.key`): the same names for a server
    /// certificate, the same Common Name for a client certificate. A CA
    /// cannot be re-issued from itself: its command makes a new CA, and
    /// every device then needs the new `ca.crt`.
    pub fn reissue_command(&self, ca_cert: Option<&Path>) -> String {
        let mut cmd = String::from("cargo run --example gen-certs -- --out DIR");
        if self.kind != CertificateKind::Authority {
            let ca = ca_cert.map_or_else(|| "ca.crt".to_string(), |p| p.display().to_string());
            let key = ca_cert
                .and_then(Path::parent)
                .map(|dir| dir.join("ca.key"))
                .filter(|k| k.is_file())
                .map_or_else(|| "ca.key".to_string(), |k| k.display().to_string());
            let _ = write!(cmd, " --ca-cert {} --ca-key {}", quote(&ca), quote(&key));
        }
        match self.kind {
            CertificateKind::Server | CertificateKind::Authority if !self.sans.is_empty() => {
                for name in &self.sans {
                    let _ = write!(cmd, " --server-name {}", quote(name));
                }
            }
            CertificateKind::Server | CertificateKind::Authority => {
                let name = self.common_name.as_deref().unwrap_or("NAME");
                let _ = write!(cmd, " --server-name {}", quote(name));
            }
            CertificateKind::Client => {
                let name = self.common_name.as_deref().unwrap_or("NAME");
                let _ = write!(cmd, " --client-name {}", quote(name));
            }
        }
        cmd
    }

    /// How long it has left at `now`, in words: `expires in 10 days (on
    /// 2027-01-31 12:00:00 UTC)`, `expires today (...)`, `expired 3 days
    /// ago (on ...)`.
    pub fn days_left_text(&self, now: SystemTime) -> String {
        let days = self.days_left(now);
        let on = self.not_after_text();
        if self.is_expired(now) {
            match unix(now).saturating_sub(self.not_after).div_euclid(DAY) {
                0 => format!("expired less than a day ago (on {on})"),
                1 => format!("expired 1 day ago (on {on})"),
                d => format!("expired {d} days ago (on {on})"),
            }
        } else {
            match days {
                0 => format!("expires today (on {on})"),
                1 => format!("expires in 1 day (on {on})"),
                d => format!("expires in {d} days (on {on})"),
            }
        }
    }

    /// The warning for it: subject, file, days left and the command that
    /// re-issues it (see [`CertificateExpiry::reissue_command`]), e.g.
    ///
    /// ```text
    /// certificate CN=192.168.1.5 in /etc/laptop-broker/server.crt expires in 10 days (on 2027-01-31 12:00:00 UTC); re-issue it from the same CA: cargo run --example gen-certs -- --out DIR --ca-cert /etc/laptop-broker/ca.crt --ca-key ca.key --server-name 192.168.1.5
    /// ```
    pub fn warning(&self, now: SystemTime, ca_cert: Option<&Path>) -> String {
        let place = match &self.path {
            Some(p) if self.index > 1 => format!(" (number {} in {})", self.index, p.display()),
            Some(p) => format!(" in {}", p.display()),
            None => String::new(),
        };
        let what = match self.kind {
            CertificateKind::Authority => "CA certificate",
            CertificateKind::Server => "server certificate",
            CertificateKind::Client => "client certificate",
        };
        let fix = match self.kind {
            CertificateKind::Authority => format!(
                "make a new CA and copy its ca.crt to every broker and client: {}",
                self.reissue_command(ca_cert)
            ),
            _ => format!(
                "re-issue it from the same CA ({}): {}",
                self.issuer,
                self.reissue_command(ca_cert)
            ),
        };
        format!(
            "{what} {}{place} {}; {fix}",
            self.subject,
            self.days_left_text(now)
        )
    }
}

/// Quotes a command-line argument for a POSIX shell when it needs it.
fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Every certificate in a PEM file (or one DER certificate), in order.
///
/// Fails as loading a `certfile` does when the file is missing, unreadable
/// or holds no certificate.
pub fn certificates_in(path: &Path) -> Result<Vec<CertificateExpiry>, TlsError> {
    load::load_certs("certificate", path)?
        .iter()
        .enumerate()
        .map(|(i, der)| CertificateExpiry::from_der(der.as_ref(), Some(path), i + 1))
        .collect()
}

/// Every certificate in the files of a `capath` directory (those that hold
/// PEM certificates; others are skipped, as OpenSSL does).
pub fn certificates_in_dir(dir: &Path) -> Result<Vec<CertificateExpiry>, TlsError> {
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TlsError::FileMissing {
            what: "capath",
            path: dir.to_path_buf(),
        },
        _ => TlsError::FileUnreadable {
            what: "capath",
            path: dir.to_path_buf(),
            process_uid: load::current_uid(),
            owner_uid: None,
            mode: None,
            source: e,
        },
    })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        if !path.is_file() {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&bytes).flatten();
        for (i, der) in certs.enumerate() {
            out.push(CertificateExpiry::from_der(
                der.as_ref(),
                Some(&path),
                i + 1,
            )?);
        }
    }
    Ok(out)
}

/// What a certificate is to the program that uses it, for the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A `certfile`: the certificate it presents (and its chain).
    Certfile,
    /// A `cafile`: CA certificates it trusts.
    Cafile,
    /// A file in a `capath` directory.
    Capath,
}

impl Role {
    /// The option's name, as in `mosquitto.conf`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Certfile => "certfile",
            Role::Cafile => "cafile",
            Role::Capath => "capath",
        }
    }
}

/// One certificate a program serves or trusts, with the option it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredCertificate {
    /// `certfile`, `cafile` or `capath`.
    pub role: Role,
    /// The certificate.
    pub certificate: CertificateExpiry,
}

/// The certificates behind a set of TLS files: `certfile` (every
/// certificate in it), `cafile` and every PEM file in `capath`. A file
/// that cannot be read is returned as its error, next to the others.
pub fn configured(
    certfile: Option<&Path>,
    cafile: Option<&Path>,
    capath: Option<&Path>,
) -> (Vec<ConfiguredCertificate>, Vec<TlsError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut add = |role, found: Result<Vec<CertificateExpiry>, TlsError>| match found {
        Ok(certs) => out.extend(
            certs
                .into_iter()
                .map(|certificate| ConfiguredCertificate { role, certificate }),
        ),
        Err(e) => errors.push(e),
    };
    if let Some(f) = certfile {
        add(Role::Certfile, certificates_in(f));
    }
    if let Some(f) = cafile {
        add(Role::Cafile, certificates_in(f));
    }
    if let Some(d) = capath {
        add(Role::Capath, certificates_in_dir(d));
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::CertificateAuthority;
    use std::time::Duration;

    const HOUR: Duration = Duration::from_secs(3600);

    fn days(n: u64) -> Duration {
        Duration::from_secs(n * 86400)
    }

    #[test]
    fn days_left_counts_whole_days_and_goes_negative_after_expiry() {
        let ca = CertificateAuthority::generate().unwrap();
        let now = SystemTime::now();
        let dir = tempfile::tempdir().unwrap();
        let soon = ca
            .issue_server_valid(
                &["127.0.0.1".to_string(), "laptop.local".to_string()],
                now - HOUR,
                now + days(10) + HOUR,
            )
            .unwrap();
        soon.write(&dir.path().join("s.crt"), &dir.path().join("s.key"))
            .unwrap();
        let expired = ca
            .issue_client_valid("pi", now - days(20), now - days(3) - HOUR)
            .unwrap();
        expired
            .write(&dir.path().join("c.crt"), &dir.path().join("c.key"))
            .unwrap();
        let far = ca
            .issue_client_valid("sensor 2", now - HOUR, now + days(400) + HOUR)
            .unwrap();
        far.write(&dir.path().join("f.crt"), &dir.path().join("f.key"))
            .unwrap();

        let s = &certificates_in(&dir.path().join("s.crt")).unwrap()[0];
        assert_eq!(s.kind, CertificateKind::Server);
        assert_eq!(s.subject, "CN=127.0.0.1");
        assert_eq!(s.sans, ["127.0.0.1", "laptop.local"]);
        assert_eq!(s.days_left(now), 10);
        assert!(s.expires_within(now, WARN_WITHIN_DAYS) && !s.is_expired(now));
        let w = s.warning(now, Some(&dir.path().join("ca.crt")));
        assert!(w.starts_with("server certificate CN=127.0.0.1 in "), "{w}");
        assert!(w.contains("s.crt expires in 10 days (on "), "{w}");
        assert!(
            w.ends_with("--ca-key ca.key --server-name 127.0.0.1 --server-name laptop.local"),
            "{w}"
        );
        assert!(w.contains(" --ca-cert "), "{w}");

        let c = &certificates_in(&dir.path().join("c.crt")).unwrap()[0];
        assert_eq!(c.kind, CertificateKind::Client);
        assert_eq!(c.days_left(now), -4);
        assert!(c.is_expired(now) && c.expires_within(now, WARN_WITHIN_DAYS));
        let w = c.warning(now, None);
        assert!(w.contains("client certificate CN=pi in "), "{w}");
        assert!(w.contains("expired 3 days ago"), "{w}");
        assert!(
            w.ends_with("--ca-cert ca.crt --ca-key ca.key --client-name pi"),
            "{w}"
        );

        let f = &certificates_in(&dir.path().join("f.crt")).unwrap()[0];
        assert_eq!(f.days_left(now), 400);
        assert!(!f.expires_within(now, WARN_WITHIN_DAYS));
        assert!(f
            .reissue_command(None)
            .ends_with("--client-name 'sensor 2'"));
    }

    #[test]
    fn a_ca_file_and_a_capath_are_read_and_a_ca_gets_a_new_ca_command() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate().unwrap();
        let ca_path = dir.path().join("ca.crt");
        std::fs::write(&ca_path, ca.cert_pem()).unwrap();
        std::fs::write(dir.path().join("README"), "not a certificate").unwrap();
        let (found, errors) = configured(None, Some(&ca_path), Some(dir.path()));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].role, Role::Cafile);
        assert_eq!(found[1].role, Role::Capath);
        let ca = &found[0].certificate;
        assert_eq!(ca.kind, CertificateKind::Authority);
        // Ten years: no warning now, one nine and a half years from now.
        let now = SystemTime::now();
        assert!(!ca.expires_within(now, WARN_WITHIN_DAYS));
        let later = now + days(10 * 365 - 5);
        assert!(ca.expires_within(later, WARN_WITHIN_DAYS));
        let w = ca.warning(later, Some(&ca_path));
        assert!(w.contains("make a new CA"), "{w}");
        assert!(!w.contains("--ca-cert"), "{w}");
    }

    #[test]
    fn missing_files_are_errors_next_to_what_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let (found, errors) = configured(
            Some(&dir.path().join("nope.crt")),
            None,
            Some(&dir.path().join("nodir")),
        );
        assert!(found.is_empty());
        assert_eq!(errors.len(), 2);
        assert!(errors[0].to_string().contains("nope.crt"));
    }

    #[test]
    fn the_ca_key_next_to_the_ca_is_named_in_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate().unwrap();
        let server = ca.issue_server(&["10.0.0.1".to_string()]).unwrap();
        crate::gen::write_set(dir.path(), &ca, &server, &[]).unwrap();
        let s = &certificates_in(&dir.path().join("server.crt")).unwrap()[0];
        let cmd = s.reissue_command(Some(&dir.path().join("ca.crt")));
        assert!(
            cmd.contains(&format!("--ca-key {}", dir.path().join("ca.key").display())),
            "{cmd}"
        );
    }
}
