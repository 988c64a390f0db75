//! Certificates that warn before they expire: the broker logs each
//! certificate it serves or trusts that expires within 30 days (at start,
//! on reload and at every check), with its subject, file, days left and the
//! `gen-certs` command that re-issues it; a client certificate presented to
//! it once per day; and `$SYS/broker/tls/listener/<port>/certificate/days_left`.
#![cfg(feature = "tokio")]

mod driver_support;

use driver_support::*;
use mqtt_broker_core::config::Config;
use mqtt_broker_core::driver::{Server, ServerBuilder};
use mqtt_broker_core::mqtt_codec::{ProtocolVersion, QoS};
use mqtt_tls::gen::CertificateAuthority;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const HOUR: Duration = Duration::from_secs(3600);

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86400)
}

/// A CA (ca.crt, ca.key), a server certificate for 127.0.0.1 and
/// localhost valid for `server_days` more days (and an hour), and client
/// certificates `soon.crt` (CN=pi, 10 days), `far.crt` (CN=far, 400 days).
struct Set {
    dir: tempfile::TempDir,
    ca: CertificateAuthority,
}

impl Set {
    fn new(server_days: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = CertificateAuthority::generate().expect("CA");
        let now = SystemTime::now();
        let server = ca
            .issue_server_valid(
                &["127.0.0.1".to_string(), "localhost".to_string()],
                now - HOUR,
                now + days(server_days) + HOUR,
            )
            .expect("server certificate");
        mqtt_tls::gen::write_set(dir.path(), &ca, &server, &[]).expect("written");
        let set = Set { dir, ca };
        set.client("soon", "pi", now + days(10) + HOUR);
        set.client("far", "far", now + days(400) + HOUR);
        set
    }

    fn client(&self, stem: &str, name: &str, not_after: SystemTime) {
        let c = self
            .ca
            .issue_client_valid(name, SystemTime::now() - HOUR, not_after)
            .expect("client certificate");
        c.write(
            &self.path(&format!("{stem}.crt")),
            &self.path(&format!("{stem}.key")),
        )
        .expect("written");
    }

    /// Replaces the server certificate with one valid over these dates.
    fn replace_server(&self, not_before: SystemTime, not_after: SystemTime) {
        let new = self
            .ca
            .issue_server_valid(
                &["127.0.0.1".to_string(), "localhost".to_string()],
                not_before,
                not_after,
            )
            .expect("server certificate");
        new.write(&self.path("server.crt"), &self.path("server.key"))
            .expect("written");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self, port: u16) -> Config {
        let text = format!(
            "sys_interval 1\nallow_anonymous true\nlistener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate false\n",
            self.path("ca.crt").display(),
            self.path("server.crt").display(),
            self.path("server.key").display(),
        );
        Config::parse_str(&text, "mosquitto.conf")
            .expect("config")
            .0
    }

    fn client_options(&self, stem: &str) -> mqtt_tls::ClientTlsOptions {
        mqtt_tls::ClientTlsOptions::new()
            .cafile(self.path("ca.crt"))
            .certfile(self.path(&format!("{stem}.crt")))
            .keyfile(self.path(&format!("{stem}.key")))
    }
}

async fn start(set: &Set, every: Option<Duration>) -> (Server, SocketAddr, u16) {
    let port = free_port();
    let mut builder = ServerBuilder::from_config(&set.config(port)).expect("server builder");
    if let Some(every) = every {
        builder = builder.certificate_expiry_check_interval(every);
    }
    let server = builder.start().await.expect("server starts");
    let addr = server.local_addrs()[0];
    (server, addr, port)
}

/// Connects with the client certificate `stem` and completes CONNECT.
async fn connect_with(addr: SocketAddr, set: &Set, stem: &str, id: &str) {
    let stream = tls(addr, "127.0.0.1", &set.client_options(stem))
        .await
        .expect("TLS handshake");
    let (c, ack) = RawClient::connect(stream, ProtocolVersion::V3_1_1, id, |_| {}).await;
    assert!(!ack.reason_code.is_error(), "{ack:?}");
    c.disconnect().await;
}

/// Waits (bounded) for the retained days-left value of the listener on
/// `port` to be `want`, and returns the last retained value read.
async fn days_left_on_sys(addr: SocketAddr, set: &Set, port: u16, want: &str) -> String {
    let topic = format!("$SYS/broker/tls/listener/{port}/certificate/days_left");
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let stream = tls(addr, "127.0.0.1", &set.client_options("far"))
            .await
            .expect("TLS handshake");
        let (mut c, _) = RawClient::connect(stream, ProtocolVersion::V3_1_1, "dash", |_| {}).await;
        c.subscribe(&topic, QoS::AtMostOnce).await;
        if let Ok(Some(mqtt_broker_core::mqtt_codec::Packet::Publish(p))) =
            c.recv_within(Duration::from_millis(1500)).await
        {
            assert_eq!(p.topic.as_str(), topic);
            // A value published while subscribing arrives live (retain
            // off); the next subscriber gets it as the retained message.
            if p.retain {
                last = String::from_utf8_lossy(&p.payload).into_owned();
                if last == want {
                    return last;
                }
            }
        }
        c.disconnect().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test(flavor = "current_thread")]
async fn at_start_the_broker_warns_about_a_server_certificate_that_expires_in_10_days() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let set = Set::new(10);
    let (server, addr, port) = start(&set, None).await;
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("certfile: server certificate"))
        .unwrap_or_else(|| panic!("no warning about the server certificate in:\n{text}"));
    assert_eq!(
        line,
        format!(
            "Warning: listener on port {port}: certfile: server certificate CN=127.0.0.1 in {} expires in 10 days (on {}); re-issue it from the same CA (CN=mqtt-stack CA,O=mqtt-stack): cargo run --example gen-certs -- --out DIR --ca-cert {} --ca-key {} --server-name 127.0.0.1 --server-name localhost",
            display(&set.path("server.crt")),
            mqtt_tls::expiry::certificates_in(&set.path("server.crt")).unwrap()[0].not_after_text(),
            display(&set.path("ca.crt")),
            display(&set.path("ca.key")),
        )
    );
    // The CA has ten years left: no warning about the cafile.
    assert!(!text.contains("cafile:"), "{text}");
    assert_eq!(server.with_broker(|b| b.tls_days_left(port)), Some(10));
    assert_eq!(days_left_on_sys(addr, &set, port, "10").await, "10");
    server.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_certificate_with_400_days_left_is_not_warned_about_but_its_days_are_in_sys() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let set = Set::new(400);
    let (server, addr, port) = start(&set, None).await;
    assert_eq!(days_left_on_sys(addr, &set, port, "400").await, "400");
    connect_with(addr, &set, "far", "far").await;
    assert!(!logs.text().contains("Warning"), "{}", logs.text());
    server.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_certificate_that_expires_soon_is_warned_about_once() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let set = Set::new(400);
    let (server, addr, port) = start(&set, None).await;
    connect_with(addr, &set, "soon", "pi-1").await;
    connect_with(addr, &set, "soon", "pi-2").await;
    connect_with(addr, &set, "far", "far").await;
    assert!(
        logs.wait_for("Client far disconnected").await,
        "{}",
        logs.text()
    );
    let text = logs.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(": client certificate"))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    let w = warnings[0];
    assert!(
        w.starts_with("Warning: client 127.0.0.1:")
            && w.contains(&format!(
                " on port {port}: client certificate CN=pi expires in 10 days (on "
            )),
        "{w}"
    );
    assert!(
        w.ends_with("cargo run --example gen-certs -- --out DIR --ca-cert ca.crt --ca-key ca.key --client-name pi"),
        "{w}"
    );
    assert!(!text.contains("CN=far"), "{text}");
    server.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_reload_and_the_periodic_check_warn_again_and_an_expired_certificate_is_named() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let set = Set::new(400);
    let (server, addr, port) = start(&set, Some(Duration::from_millis(300))).await;
    assert!(!logs.text().contains("Warning"), "{}", logs.text());
    assert_eq!(days_left_on_sys(addr, &set, port, "400").await, "400");

    // Replaced with one that expired three days ago, then reloaded.
    let now = SystemTime::now();
    set.replace_server(now - days(33), now - days(3) - HOUR);
    let report = server.reload(&set.config(port)).expect("reloaded");
    assert_eq!(report.tls_reloaded, 1);
    let needle = format!(
        "Warning: listener on port {port}: certfile: server certificate CN=127.0.0.1 in {} expired 3 days ago (on ",
        display(&set.path("server.crt"))
    );
    assert_eq!(logs.text().matches(&needle).count(), 1, "{}", logs.text());
    assert_eq!(server.with_broker(|b| b.tls_days_left(port)), Some(-4));

    // The periodic check (every 300 ms here, every day by default) says it again.
    let deadline = tokio::time::Instant::now() + WAIT;
    while logs.text().matches(&needle).count() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(logs.text().matches(&needle).count() >= 3, "{}", logs.text());

    server.shutdown().await;
    // Stopped with the server: no more checks.
    let after = logs.text().matches(&needle).count();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(logs.text().matches(&needle).count(), after);
}

#[tokio::test(flavor = "current_thread")]
async fn a_renewed_certificate_picked_up_by_reload_tls_is_no_longer_warned_about() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let set = Set::new(10);
    let (server, addr, port) = start(&set, None).await;
    let needle = "certfile: server certificate CN=127.0.0.1";
    assert_eq!(logs.text().matches(needle).count(), 1, "{}", logs.text());
    assert_eq!(days_left_on_sys(addr, &set, port, "10").await, "10");

    let now = SystemTime::now();
    set.replace_server(now - HOUR, now + days(400) + HOUR);
    assert_eq!(server.reload_tls().expect("reloaded"), 1);
    assert_eq!(server.with_broker(|b| b.tls_days_left(port)), Some(400));
    assert_eq!(days_left_on_sys(addr, &set, port, "400").await, "400");
    assert_eq!(logs.text().matches(needle).count(), 1, "{}", logs.text());
    server.shutdown().await;
}
