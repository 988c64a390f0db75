//! A real Mosquitto broker per test: a child process with a temporary
//! config on a free loopback port, killed on drop.

#![allow(dead_code)]

pub mod cut_proxy;

use mqtt_client::{Client, ClientTlsOptions, ConnectionState, Messages, QoS};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// Whether a missing tool must fail the test instead of skipping it.
pub fn interop_required() -> bool {
    std::env::var("MQTT_INTEROP").is_ok_and(|v| v == "1")
}

/// `true` if `tool` exists; otherwise prints why the test is skipped, or
/// panics under `MQTT_INTEROP=1`.
pub fn require(tool: &str) -> bool {
    if Path::new(tool).exists() {
        return true;
    }
    if interop_required() {
        panic!("{tool} is missing and MQTT_INTEROP=1 requires it");
    }
    eprintln!("SKIPPED: {tool} is not installed");
    false
}

// The workspace's one `free_port` and `reserve_port` for tests (the
// crates are not published, so their tests may share a file).
#[path = "../../../../tests/support/ports.rs"]
mod ports;
#[allow(unused_imports)] // not every test binary needs them
pub use ports::{free_port, reserve_port};

/// A temporary directory readable (and writable, for persistence) by the
/// `mosquitto` user the broker drops to when started as root.
pub fn shared_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    set_mode(dir.path(), 0o777);
    dir
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn write_readable(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    set_mode(path, 0o644);
}

/// A running Mosquitto; killed when dropped.
pub struct Mosquitto {
    pub port: u16,
    pub dir: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts Mosquitto with `listener PORT 127.0.0.1`, anonymous access and
    /// `extra` config lines. `None` (with a printed reason) if it is not installed.
    pub fn start(extra: &str) -> Option<Self> {
        if !require(MOSQUITTO) {
            return None;
        }
        let dir = shared_tempdir();
        let port = free_port();
        let config = dir.path().join("mosquitto.conf");
        write_readable(
            &config,
            &format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest stderr\nlog_type error\nlog_type warning\n{extra}\n"
            ),
        );
        let mut m = Self {
            port,
            dir,
            config,
            child: None,
        };
        m.spawn();
        Some(m)
    }

    /// The temporary directory, e.g. for certificates and the persistence file.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        // Bounded poll until the port accepts connections. A probe whose
        // kernel-chosen source port equals the (still unbound) target port
        // connects to itself on Linux: that is not Mosquitto listening.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", self.port)) {
                if s.local_addr().ok() != s.peer_addr().ok() {
                    return;
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("mosquitto exited at start-up: {status}");
                }
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker with SIGTERM (so it writes its persistence file)
    /// and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the broker again with the same config and port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Awaits `f` for at most `secs` seconds.
/// TLS options for the certificate set `write_set` wrote in `dir`: its CA,
/// and the client certificate `client.crt` / `client.key` when `with_cert`.
pub fn client_tls(dir: &Path, with_cert: bool) -> ClientTlsOptions {
    let tls = ClientTlsOptions::new().cafile(dir.join("ca.crt"));
    if with_cert {
        tls.certfile(dir.join("client.crt"))
            .keyfile(dir.join("client.key"))
    } else {
        tls
    }
}

pub async fn within<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s: {what}"),
    }
}

/// Waits until the client is connected; returns Session Present.
pub async fn wait_connected(client: &Client, what: &str) -> bool {
    let mut state = client.state();
    within(20, what, async {
        loop {
            if let ConnectionState::Connected { session_present } = *state.borrow_and_update() {
                return session_present;
            }
            state.changed().await.unwrap();
        }
    })
    .await
}

/// Waits for the connection to be lost and made again; returns Session Present.
pub async fn wait_reconnected(client: &Client, what: &str) -> bool {
    let mut state = client.state();
    let mut lost = false;
    within(20, what, async {
        loop {
            match *state.borrow_and_update() {
                ConnectionState::Connected { session_present } if lost => return session_present,
                ConnectionState::Reconnecting { .. } => lost = true,
                _ => {}
            }
            state.changed().await.unwrap();
        }
    })
    .await
}

/// The client subscribes to "own" and receives what it publishes there:
/// it is connected and authorised.
pub async fn assert_own_messages_arrive(client: &Client, messages: &mut Messages) {
    within(5, "subscribe", client.subscribe("own", QoS::AtLeastOnce))
        .await
        .unwrap();
    within(
        5,
        "publish",
        client.publish("own", QoS::AtLeastOnce, false, "x"),
    )
    .await
    .unwrap();
    let m = within(10, "own message", messages.recv())
        .await
        .expect("messages ended before the own message");
    assert_eq!(&m.payload[..], b"x");
}
