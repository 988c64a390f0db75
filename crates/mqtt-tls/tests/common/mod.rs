//! Helpers shared by the integration tests: certificate sets in temporary
//! directories, loopback listeners, time-outs.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mqtt_tls::gen::{write_set, CertificateAuthority, IssuedCertificate};
use mqtt_tls::{ClientTlsOptions, ServerTlsOptions, TlsError};
use tokio::net::{TcpListener, TcpStream};

/// Every await in the tests is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(10);

pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("operation did not finish within the time limit")
}

/// A generated set: ca.crt, ca.key, server.crt/key (for `server_names`),
/// client.crt/key (CN `sensor-1`).
pub struct Set {
    pub dir: tempfile::TempDir,
    pub ca: CertificateAuthority,
}

impl Set {
    pub fn new(server_names: &[&str]) -> Set {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate().unwrap();
        let names: Vec<String> = server_names.iter().map(|s| s.to_string()).collect();
        let server = ca.issue_server(&names).unwrap();
        let client = ca.issue_client("sensor-1").unwrap();
        write_set(
            dir.path(),
            &ca,
            &server,
            &[("sensor-1".to_string(), client)],
        )
        .unwrap();
        Set { dir, ca }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Writes another issued certificate into the set's directory.
    pub fn write(&self, stem: &str, issued: &IssuedCertificate) -> (PathBuf, PathBuf) {
        let crt = self.path(&format!("{stem}.crt"));
        let key = self.path(&format!("{stem}.key"));
        issued.write(&crt, &key).unwrap();
        (crt, key)
    }

    pub fn server_options(&self, require_certificate: bool) -> ServerTlsOptions {
        ServerTlsOptions {
            cafile: Some(self.path("ca.crt")),
            require_certificate,
            ..ServerTlsOptions::new(self.path("server.crt"), self.path("server.key"))
        }
    }

    pub fn client_options(&self, with_cert: bool) -> ClientTlsOptions {
        let tls = ClientTlsOptions::new().cafile(self.path("ca.crt"));
        if with_cert {
            tls.certfile(self.path("client.crt"))
                .keyfile(self.path("client.key"))
        } else {
            tls
        }
    }
}

pub fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

pub fn from_now(secs: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(secs)
}

pub type ServerResult = Result<tokio_rustls::server::TlsStream<TcpStream>, TlsError>;

/// Binds `ip:0`, accepts one connection and runs `mqtt_tls::accept` on it.
/// Returns the address and a handle yielding the accept result.
pub async fn serve_once(
    ip: &str,
    config: Arc<rustls::ServerConfig>,
    require_certificate: bool,
) -> (SocketAddr, tokio::task::JoinHandle<ServerResult>) {
    let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let (tcp, peer) = listener.accept().await.unwrap();
        within(mqtt_tls::accept(config, tcp, peer, require_certificate)).await
    });
    (addr, handle)
}

/// Dials `addr` and runs `mqtt_tls::connect` for `host`.
pub async fn dial(
    config: Arc<rustls::ClientConfig>,
    host: &str,
    addr: SocketAddr,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TlsError> {
    let tcp = within(TcpStream::connect(addr)).await.unwrap();
    within(mqtt_tls::connect(config, host, tcp)).await
}

/// An MQTT 3.1.1 CONNECT with clean session and client id `id`.
pub fn connect_packet(id: &str) -> Vec<u8> {
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c];
    body.extend((id.len() as u16).to_be_bytes());
    body.extend(id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

/// Whether a command-line tool exists; when it does not, tests skip with a
/// reason unless `MQTT_INTEROP=1`, in which case they fail.
pub fn tool_available(path: &str) -> bool {
    let found = std::process::Command::new(path)
        .arg("-h")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("MQTT_INTEROP").as_deref() == Ok("1") {
            panic!("{path} is not installed, and MQTT_INTEROP=1 requires it");
        }
        eprintln!("skipping: {path} is not installed (set MQTT_INTEROP=1 to make this a failure)");
    }
    found
}

/// Runs a command and panics with its output when it fails.
pub fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// The workspace's one `free_port` for tests (the crates are not published,
// so their tests may share a file).
#[path = "../../../../tests/support/ports.rs"]
mod ports;
#[allow(unused_imports)] // not every test binary needs them
pub use ports::free_port;
