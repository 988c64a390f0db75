//! Certificates that warn before they expire, through the programs of the
//! seed's setup: `laptop-broker` logs its server certificate and the
//! client certificate the Pi presents, `pi-subscriber` warns about its own
//! certificate, and `tls-check` prints the days left of each file.

#[path = "support/examples.rs"]
mod examples;
use examples::{example, stderr_lines as lines, Killed};

#[path = "support/ports.rs"]
mod ports;

use mqtt_tls::gen::{write_set, CertificateAuthority};
use ports::free_port;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

const WAIT: Duration = Duration::from_secs(20);
const HOUR: Duration = Duration::from_secs(3600);

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86400)
}

/// ca.crt and ca.key, server.crt for 127.0.0.1 and localhost and
/// client.crt (CN=pi), both valid for 10 more days (and an hour),
/// far.crt (a server certificate, 400 days) and old.crt (expired 5 days ago).
fn certificates() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = CertificateAuthority::generate().expect("CA");
    let now = SystemTime::now();
    let names = ["127.0.0.1".to_string(), "localhost".to_string()];
    let in_10_days = now + days(10) + HOUR;
    let server = ca
        .issue_server_valid(&names, now - HOUR, in_10_days)
        .expect("server certificate");
    let client = ca
        .issue_client_valid("pi", now - HOUR, in_10_days)
        .expect("client certificate");
    write_set(dir.path(), &ca, &server, &[("pi".to_string(), client)]).expect("written");
    let far = ca
        .issue_server_valid(&names, now - HOUR, now + days(400) + HOUR)
        .expect("server certificate");
    far.write(&dir.path().join("far.crt"), &dir.path().join("far.key"))
        .expect("written");
    let old = ca
        .issue_server_valid(&names, now - days(60), now - days(5) - HOUR)
        .expect("server certificate");
    old.write(&dir.path().join("old.crt"), &dir.path().join("old.key"))
        .expect("written");
    dir
}

fn wait_for(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> bool {
    seen.iter().any(|l| l.contains(needle)) || examples::wait_for_line(rx, needle, seen, WAIT)
}

/// Runs `cmd` to its end, killing it after [`WAIT`].
fn run_bounded(cmd: &mut Command) -> Output {
    let mut child = Killed(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts"),
    );
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{cmd:?} did not finish within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    if let Some(mut s) = child.0.stdout.take() {
        let _ = s.read_to_end(&mut stdout);
    }
    if let Some(mut s) = child.0.stderr.take() {
        let _ = s.read_to_end(&mut stderr);
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn the_broker_and_the_pi_warn_about_certificates_that_expire_in_10_days() {
    let certs = certificates();
    let path = |name: &str| certs.path().join(name);
    let port = free_port();
    let conf = path("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            shown(&path("ca.crt")),
            shown(&path("server.crt")),
            shown(&path("server.key")),
        ),
    )
    .expect("config written");
    let mut broker = Killed(
        Command::new(example("laptop-broker"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("laptop-broker starts"),
    );
    let rx = lines(&mut broker.0);
    let mut seen = Vec::new();
    let server_warning = format!(
        "Warning: listener on port {port}: certfile: server certificate CN=127.0.0.1 in {} expires in 10 days (on ",
        shown(&path("server.crt"))
    );
    assert!(wait_for(&rx, &server_warning, &mut seen), "{seen:#?}");
    let line = seen.iter().find(|l| l.contains(&server_warning)).unwrap();
    assert!(
        line.ends_with(&format!(
            "cargo run --example gen-certs -- --out DIR --ca-cert {} --ca-key {} --server-name 127.0.0.1 --server-name localhost",
            shown(&path("ca.crt")),
            shown(&path("ca.key"))
        )),
        "{line}"
    );
    let open = format!("Opening ipv4 listen socket on port {port}.");
    assert!(wait_for(&rx, &open, &mut seen), "{seen:#?}");

    // The Pi: warns about its own certificate, then subscribes.
    let out = run_bounded(
        Command::new(example("pi-subscriber"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                "ssltopic",
                "-E",
            ])
            .arg("--cafile")
            .arg(path("ca.crt"))
            .arg("--cert")
            .arg(path("client.crt"))
            .arg("--key")
            .arg(path("client.key")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    let warning = err
        .lines()
        .find(|l| l.starts_with("Warning: --cert: "))
        .unwrap_or_else(|| panic!("no warning in {err:?}"));
    assert!(
        warning.starts_with(&format!(
            "Warning: --cert: client certificate CN=pi in {} expires in 10 days (on ",
            shown(&path("client.crt"))
        )),
        "{warning}"
    );
    assert!(
        warning.ends_with(&format!(
            "--ca-cert {} --ca-key {} --client-name pi",
            shown(&path("ca.crt")),
            shown(&path("ca.key"))
        )),
        "{warning}"
    );
    // The CA has ten years left.
    assert!(!err.contains("--cafile:"), "{err}");

    // The broker saw the Pi's certificate.
    let presented = format!("on port {port}: client certificate CN=pi expires in 10 days");
    assert!(wait_for(&rx, &presented, &mut seen), "{seen:#?}");
}

#[test]
fn tls_check_prints_the_days_left_of_each_file() {
    let certs = certificates();
    let path = |name: &str| certs.path().join(name);
    let check = |cert: &str| {
        let out = run_bounded(
            Command::new(example("tls-check"))
                .arg("--cafile")
                .arg(path("ca.crt"))
                .arg("--cert")
                .arg(path(&format!("{cert}.crt")))
                .arg("--key")
                .arg(path(&format!("{cert}.key")))
                .args(["--name", "127.0.0.1"]),
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    let (ok, text) = check("server");
    assert!(ok, "warnings only: {text}");
    let soon = text
        .lines()
        .find(|l| {
            l.contains(&format!(
                "certfile {} expires on",
                shown(&path("server.crt"))
            ))
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(soon.trim_start().starts_with("warning: "), "{soon}");
    assert!(soon.contains("(days left: 10)"), "{soon}");
    assert!(
        soon.contains("--server-name 127.0.0.1 --server-name localhost"),
        "{soon}"
    );
    // The CA from gen-certs: ten years, thousands of days.
    let ca = text
        .lines()
        .find(|l| l.contains(&format!("cafile {}: valid from", shown(&path("ca.crt")))))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(ca.contains("(days left: 36"), "{ca}");

    let (ok, text) = check("far");
    assert!(ok, "{text}");
    assert!(text.contains("(days left: 400)"), "{text}");

    let (ok, text) = check("old");
    assert!(!ok, "an expired certificate is an error: {text}");
    assert!(text.contains("(5 days ago; days left: -6)"), "{text}");
}
