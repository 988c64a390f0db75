//! Interop with Mosquitto 2.0 and its command-line clients, configured as in
//! the seed guide: `listener`, `cafile`, `certfile`, `keyfile`,
//! `require_certificate true`, with certificates from our generator.
//!
//! Skips with a printed reason when the binaries are missing, unless
//! `MQTT_INTEROP=1`, which makes that a failure.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::*;
use mqtt_tls::{explain_io_error, ClientContext, TlsError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const SUB: &str = "mosquitto_sub";
const PUB: &str = "mosquitto_pub";

fn tools_available() -> bool {
    tool_available(MOSQUITTO) && tool_available(SUB) && tool_available(PUB)
}

/// A Mosquitto child process, killed on drop; its log is read line by line so
/// tests wait for events instead of sleeping.
struct Mosquitto {
    child: Child,
    port: u16,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Mosquitto {
    fn start(dir: &Path, cafile: &Path, certfile: &Path, keyfile: &Path) -> Mosquitto {
        let port = free_port();
        let mut conf = format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\nlog_dest stderr\nlog_type all\n",
            cafile.display(),
            certfile.display(),
            keyfile.display()
        );
        // Mosquitto drops root to user `mosquitto`, which cannot read the 0600
        // keys in our temporary directory; stay root for the test.
        if std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        {
            conf.push_str("user root\n");
        }
        let conf_path = dir.join("mosquitto.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mosquitto = Mosquitto {
            child,
            port,
            lines,
            log,
        };
        mosquitto.wait_for("running");
        mosquitto
    }

    /// Blocks until a log line contains `needle` (at most LIMIT).
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "mosquitto never logged {needle:?}; log:\n{}",
                    self.log.lock().unwrap().join("\n")
                ),
            }
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_args<'a>(set: &'a Set, port: &'a str, with_cert: bool) -> Vec<String> {
    let mut args = vec![
        "-h".to_string(),
        "127.0.0.1".to_string(),
        "-p".to_string(),
        port.to_string(),
        "--cafile".to_string(),
        set.path("ca.crt").display().to_string(),
    ];
    if with_cert {
        args.extend([
            "--cert".to_string(),
            set.path("client.crt").display().to_string(),
            "--key".to_string(),
            set.path("client.key").display().to_string(),
        ]);
    }
    args
}

fn start_with_set(set: &Set) -> Mosquitto {
    Mosquitto::start(
        set.dir.path(),
        &set.path("ca.crt"),
        &set.path("server.crt"),
        &set.path("server.key"),
    )
}

#[test]
fn mosquitto_sub_with_generated_certificates_receives_a_message() {
    if !tools_available() {
        return;
    }
    let set = Set::new(&["127.0.0.1", "localhost"]);
    let broker = start_with_set(&set);
    let port = broker.port.to_string();
    let sub = Command::new(SUB)
        .args(tls_args(&set, &port, true))
        .args(["-t", "sensors/temp", "-C", "1", "-W", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The subscriber's identity is its certificate's CN (use_identity_as_username).
    broker.wait_for("u'sensor-1'");
    broker.wait_for("Sending SUBACK");
    let publish = Command::new(PUB)
        .args(tls_args(&set, &port, true))
        .args(["-t", "sensors/temp", "-m", "21.5"])
        .output()
        .unwrap();
    assert!(
        publish.status.success(),
        "mosquitto_pub: {}",
        String::from_utf8_lossy(&publish.stderr)
    );
    let out = sub.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mosquitto_sub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "21.5");
}

#[test]
fn mosquitto_sub_without_a_client_certificate_is_refused() {
    if !tools_available() {
        return;
    }
    let set = Set::new(&["127.0.0.1"]);
    let broker = start_with_set(&set);
    let port = broker.port.to_string();
    let out = Command::new(SUB)
        .args(tls_args(&set, &port, false))
        .args(["-t", "t", "-C", "1", "-W", "10"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    broker.wait_for("peer did not return a certificate");
}

#[tokio::test]
async fn our_client_config_completes_a_handshake_and_connect_with_mosquitto() {
    if !tools_available() {
        return;
    }
    let set = Set::new(&["127.0.0.1"]);
    let broker = start_with_set(&set);
    let config = set.client_options(true).build().unwrap();
    let mut stream = dial(config, "127.0.0.1", broker.addr()).await.unwrap();
    within(stream.write_all(&connect_packet("rustls-1")))
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    within(stream.read_exact(&mut connack)).await.unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "CONNACK accepted");
    broker.wait_for("u'sensor-1'");
}

#[tokio::test]
async fn our_client_without_a_certificate_learns_that_mosquitto_requires_one() {
    if !tools_available() {
        return;
    }
    let set = Set::new(&["127.0.0.1"]);
    let broker = start_with_set(&set);
    let config = set.client_options(false).build().unwrap();
    let ctx = ClientContext::new("127.0.0.1", &config);
    let result = async {
        let mut stream = dial(config, "127.0.0.1", broker.addr()).await?;
        within(stream.write_all(&connect_packet("rustls-2")))
            .await
            .map_err(|e| explain_io_error(&e, &ctx).unwrap())?;
        let mut buf = [0u8; 4];
        within(stream.read(&mut buf))
            .await
            .map_err(|e| explain_io_error(&e, &ctx).unwrap())?;
        Ok::<_, TlsError>(buf)
    }
    .await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, TlsError::ClientCertificateRequired { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("set `ClientTlsOptions::certfile` and `ClientTlsOptions::keyfile`"),
        "{err}"
    );
}

#[tokio::test]
async fn mosquitto_with_recipe_certificates_is_explained_to_our_client() {
    if !tools_available() || !tool_available("openssl") {
        return;
    }
    let set = Set::new(&["127.0.0.1"]);
    let dir = set.dir.path();
    // The mosquitto-tls recipe's server certificate: version 1, CN=127.0.0.1,
    // signed by our CA (which the subscriber already trusts).
    run(dir, "openssl", &["genrsa", "-out", "v1.key", "2048"]);
    run(
        dir,
        "openssl",
        &[
            "req",
            "-new",
            "-out",
            "v1.csr",
            "-key",
            "v1.key",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    run(
        dir,
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "v1.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "v1.crt",
            "-days",
            "365",
        ],
    );
    let broker = Mosquitto::start(
        dir,
        &set.path("ca.crt"),
        &set.path("v1.crt"),
        &set.path("v1.key"),
    );

    // Mosquitto and mosquitto_sub accept it ...
    let port = broker.port.to_string();
    let out = Command::new(PUB)
        .args(tls_args(&set, &port, true))
        .args(["-t", "t", "-m", "x"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mosquitto_pub: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // ... rustls does not, and says why and what to run.
    let config = set.client_options(true).build().unwrap();
    let err = dial(config, "127.0.0.1", broker.addr()).await.unwrap_err();
    assert!(
        matches!(err, TlsError::ServerCertVersion1 { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("the broker at 127.0.0.1 presented a version 1 certificate (CN=127.0.0.1)"),
        "{msg}"
    );
    assert!(
        msg.contains("--ca-cert ca.crt --ca-key ca.key --server-name 127.0.0.1"),
        "{msg}"
    );
}
