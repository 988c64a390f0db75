//! The Raspberry Pi binaries, for real: `pi-subscriber`, `publisher` and
//! `laptop-broker` cross-built for aarch64 and armv7 with the `pi` profile,
//! run under `qemu-aarch64` / `qemu-arm` against the workspace broker (and
//! the native examples) on loopback with mutual TLS.
//!
//! This test never runs cargo (`cargo test` holds the build lock): the cross
//! binaries come from `.ci/cross-build`, under
//! `<target dir>/<triple>/pi/examples/`, and the native examples from
//! `<target dir>/debug/examples/` (built by `cargo test`). When any of them or
//! qemu is missing the tests print why and pass, or fail under
//! `MQTT_INTEROP=1`.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mqtt_broker_core::driver::{Listener, Server, ServerBuilder};
use mqtt_broker_core::BrokerConfig;
use mqtt_tls::gen::{write_set, CertificateAuthority};

/// qemu runs the binaries some ten times slower than native; TLS handshakes
/// under emulation take a second or more on a busy machine.
const EMULATED_TIMEOUT: Duration = Duration::from_secs(120);

/// A Raspberry Pi target: its triple, the qemu user emulator and the sysroot
/// holding its dynamic loader and libc.
struct Pi {
    triple: &'static str,
    qemu: &'static str,
    sysroot: &'static str,
}

const AARCH64: Pi = Pi {
    triple: "aarch64-unknown-linux-gnu",
    qemu: "qemu-aarch64",
    sysroot: "/usr/aarch64-linux-gnu",
};

const ARMV7: Pi = Pi {
    triple: "armv7-unknown-linux-gnueabihf",
    qemu: "qemu-arm",
    sysroot: "/usr/arm-linux-gnueabihf",
};

fn interop_required() -> bool {
    std::env::var("MQTT_INTEROP").is_ok_and(|v| v == "1")
}

/// The target directory: `CARGO_TARGET_DIR` (relative to the workspace root
/// when relative), or the one holding this test executable
/// (`<target>/debug/deps/pi_emulation-…`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.ancestors()
        .nth(3)
        .expect("the test executable lives in <target>/debug/deps")
        .to_path_buf()
}

fn cross_binary(pi: &Pi, name: &str) -> PathBuf {
    target_dir().join(pi.triple).join("pi/examples").join(name)
}

fn native_binary(name: &str) -> PathBuf {
    target_dir().join("debug/examples").join(name)
}

/// A program in `PATH`.
fn in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// `true` when every file and qemu for `pi` exist; otherwise prints what is
/// missing and returns `false` (the test is skipped), or panics under
/// `MQTT_INTEROP=1`.
fn available(pi: &Pi, files: &[PathBuf]) -> bool {
    let mut missing: Vec<String> = files
        .iter()
        .filter(|f| !f.is_file())
        .map(|f| f.display().to_string())
        .collect();
    if in_path(pi.qemu).is_none() {
        missing.push(format!("{} (package qemu-user)", pi.qemu));
    }
    if !Path::new(pi.sysroot).join("lib").is_dir() {
        missing.push(format!(
            "{} (package libc6-dev-{}-cross)",
            pi.sysroot,
            if pi.triple.starts_with("aarch64") {
                "arm64"
            } else {
                "armhf"
            }
        ));
    }
    if missing.is_empty() {
        return true;
    }
    let reason = format!(
        "missing {}: run .ci/cross-build first (and cargo build --examples for the native ones)",
        missing.join(", ")
    );
    if interop_required() {
        panic!("{reason}; MQTT_INTEROP=1 requires them");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

/// A child process killed (and reaped) when dropped, so a failing assertion
/// leaves nothing running.
struct Running {
    child: Child,
    what: String,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Self {
        let what = format!("{cmd:?}");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Self { child, what }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for a child")
    }

    /// Waits for the process to exit within `timeout` and returns its status,
    /// standard output and standard error.
    fn finish(mut self, timeout: Duration) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + timeout;
        while self.exited().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let (out, err) = self.output();
                panic!(
                    "{} did not finish within {timeout:?}; stdout {out:?}, stderr {err:?}",
                    self.what
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.child.wait().expect("wait for a child");
        let (out, err) = self.output();
        (status, out, err)
    }

    fn output(&mut self) -> (String, String) {
        use std::io::Read;
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = self.child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        (out, err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `done` every 20 ms until it holds or `timeout` passes.
fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ca.crt`, `server.crt`/`.key` for 127.0.0.1 and `client.crt`/`.key` for
/// the Pi, as `gen-certs --server-name 127.0.0.1 --client-name pi` writes them.
fn certificates() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ca = CertificateAuthority::generate().expect("CA");
    let server = ca
        .issue_server(&["127.0.0.1".into()])
        .expect("server certificate");
    let client = ca.issue_client("pi").expect("client certificate");
    write_set(dir.path(), &ca, &server, &[("pi".into(), client)]).expect("write certificates");
    dir
}

/// The workspace broker, natively and in-process, with one mutual-TLS
/// listener on a free loopback port (`require_certificate true`).
struct NativeBroker {
    server: Server,
    port: u16,
    // Dropped last: stops the broker's tasks.
    _runtime: tokio::runtime::Runtime,
}

impl NativeBroker {
    fn start(certs: &Path) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let options =
            mqtt_tls::ServerTlsOptions::new(certs.join("server.crt"), certs.join("server.key"))
                .cafile(certs.join("ca.crt"))
                .require_certificate(true);
        let listener = Listener::tls(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), options)
            .expect("TLS listener");
        let server = runtime
            .block_on(
                ServerBuilder::new(BrokerConfig::default())
                    .listener(listener)
                    .start(),
            )
            .expect("broker starts");
        let port = server.local_addrs()[0].port();
        Self {
            server,
            port,
            _runtime: runtime,
        }
    }
}

fn tls_args(certs: &Path, with_client_cert: bool) -> Vec<String> {
    let mut args = vec![
        "--cafile".to_string(),
        certs.join("ca.crt").display().to_string(),
    ];
    if with_client_cert {
        args.extend([
            "--cert".to_string(),
            certs.join("client.crt").display().to_string(),
            "--key".to_string(),
            certs.join("client.key").display().to_string(),
        ]);
    }
    args
}

/// The seed guide's subscriber command line.
fn subscriber_args(port: u16, certs: &Path, with_client_cert: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "ssltopic",
        "-v",
        "-C",
        "1",
        "-W",
        "30",
    ]
    .map(String::from)
    .to_vec();
    args.extend(tls_args(certs, with_client_cert));
    args
}

/// The seed guide's publisher command line.
fn publisher_args(port: u16, certs: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "ssltopic",
        "-m",
        "testing",
    ]
    .map(String::from)
    .to_vec();
    args.extend(tls_args(certs, true));
    args
}

fn emulated(pi: &Pi, binary: &Path) -> Command {
    let mut cmd = Command::new(pi.qemu);
    cmd.arg("-L").arg(pi.sysroot).arg(binary);
    cmd
}

fn emulated_subscriber_prints_what_the_emulated_publisher_sends(pi: &Pi) {
    let subscriber = cross_binary(pi, "pi-subscriber");
    let publisher = cross_binary(pi, "publisher");
    if !available(pi, &[subscriber.clone(), publisher.clone()]) {
        return;
    }
    let certs = certificates();
    let broker = NativeBroker::start(certs.path());
    let mut sub = Running::spawn(emulated(pi, &subscriber).args(subscriber_args(
        broker.port,
        certs.path(),
        true,
    )));
    // Publish only once the subscription is in place (no fixed sleep).
    wait_until(
        EMULATED_TIMEOUT,
        "the emulated subscriber's SUBSCRIBE",
        || {
            if let Some(status) = sub.exited() {
                let (out, err) = sub.output();
                panic!("the emulated subscriber exited early ({status}): stdout {out:?}, stderr {err:?}");
            }
            broker.server.stats().subscriptions >= 1
        },
    );
    let (status, out, err) =
        Running::spawn(emulated(pi, &publisher).args(publisher_args(broker.port, certs.path())))
            .finish(EMULATED_TIMEOUT);
    assert!(
        status.success(),
        "emulated publisher failed ({status}): stdout {out:?}, stderr {err:?}"
    );
    let (status, out, err) = sub.finish(EMULATED_TIMEOUT);
    assert!(
        status.success(),
        "emulated subscriber failed ({status}): stdout {out:?}, stderr {err:?}"
    );
    assert_eq!(out, "ssltopic testing\n", "stderr: {err:?}");
}

#[test]
fn aarch64_subscriber_prints_ssltopic_testing_from_the_aarch64_publisher() {
    emulated_subscriber_prints_what_the_emulated_publisher_sends(&AARCH64);
}

#[test]
fn armv7_subscriber_prints_ssltopic_testing_from_the_armv7_publisher() {
    emulated_subscriber_prints_what_the_emulated_publisher_sends(&ARMV7);
}

fn emulated_subscriber_without_a_client_certificate_says_what_native_says(pi: &Pi) {
    let subscriber = cross_binary(pi, "pi-subscriber");
    let native = native_binary("pi-subscriber");
    if !available(pi, &[subscriber.clone(), native.clone()]) {
        return;
    }
    let certs = certificates();
    let broker = NativeBroker::start(certs.path());
    let args = subscriber_args(broker.port, certs.path(), false);
    let (native_status, native_out, native_err) =
        Running::spawn(Command::new(&native).args(&args)).finish(EMULATED_TIMEOUT);
    let (status, out, err) =
        Running::spawn(emulated(pi, &subscriber).args(&args)).finish(EMULATED_TIMEOUT);
    assert!(
        !native_status.success(),
        "the broker requires a certificate, yet the native subscriber succeeded: {native_out:?} {native_err:?}"
    );
    // A plain-language refusal that points at the missing client certificate.
    assert!(
        native_err.contains("certificate"),
        "native error does not mention the certificate: {native_err:?}"
    );
    assert_eq!(out, native_out, "standard output differs from native");
    assert_eq!(err, native_err, "the error differs from the native one");
    assert_eq!(status.code(), native_status.code(), "exit code differs");
}

#[test]
fn aarch64_subscriber_without_client_certificate_prints_the_native_error() {
    emulated_subscriber_without_a_client_certificate_says_what_native_says(&AARCH64);
}

#[test]
fn armv7_subscriber_without_client_certificate_prints_the_native_error() {
    emulated_subscriber_without_a_client_certificate_says_what_native_says(&ARMV7);
}

/// Lines a child writes to stderr, read on a thread so the pipe never fills.
fn stderr_lines(child: &mut Running) -> mpsc::Receiver<String> {
    let stderr = child.child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a log line containing `needle`; every line read is kept in `log`.
fn wait_for_line(rx: &mpsc::Receiver<String>, log: &mut Vec<String>, needle: &str) {
    let deadline = Instant::now() + EMULATED_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                log.push(line);
                if found {
                    return;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("no log line with {needle:?} within {EMULATED_TIMEOUT:?}; log: {log:#?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the broker exited before logging {needle:?}; log: {log:#?}")
            }
        }
    }
}

#[test]
fn aarch64_laptop_broker_with_the_seed_ssl_conf_relays_native_publisher_to_native_subscriber() {
    let broker = cross_binary(&AARCH64, "laptop-broker");
    let subscriber = native_binary("pi-subscriber");
    let publisher = native_binary("publisher");
    if !available(
        &AARCH64,
        &[broker.clone(), subscriber.clone(), publisher.clone()],
    ) {
        return;
    }
    let certs = certificates();
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    // The seed guide's ssl.conf, on loopback: no allow_anonymous line.
    let conf = certs.path().join("ssl.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            certs.path().join("ca.crt").display(),
            certs.path().join("server.crt").display(),
            certs.path().join("server.key").display(),
        ),
    )
    .expect("write ssl.conf");
    let mut emulated_broker =
        Running::spawn(emulated(&AARCH64, &broker).arg("-c").arg(&conf).arg("-v"));
    let log_rx = stderr_lines(&mut emulated_broker);
    let mut log = Vec::new();
    wait_for_line(
        &log_rx,
        &mut log,
        &format!("Opening ipv4 listen socket on port {port}."),
    );
    let sub =
        Running::spawn(Command::new(&subscriber).args(subscriber_args(port, certs.path(), true)));
    // Publish only once the broker logged the subscription (no fixed sleep).
    wait_for_line(&log_rx, &mut log, "Received SUBSCRIBE from");
    let (status, out, err) =
        Running::spawn(Command::new(&publisher).args(publisher_args(port, certs.path())))
            .finish(EMULATED_TIMEOUT);
    assert!(
        status.success(),
        "native publisher failed ({status}): stdout {out:?}, stderr {err:?}; broker log: {log:#?}"
    );
    let (status, out, err) = sub.finish(EMULATED_TIMEOUT);
    log.extend(log_rx.try_iter());
    assert!(
        status.success(),
        "native subscriber failed ({status}): stdout {out:?}, stderr {err:?}; broker log: {log:#?}"
    );
    assert_eq!(out, "ssltopic testing\n", "broker log: {log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("Received PUBLISH from") && l.contains("'ssltopic'")),
        "the emulated broker did not log the PUBLISH: {log:#?}"
    );
}
