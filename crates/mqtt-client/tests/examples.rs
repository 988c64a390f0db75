//! The `pi-subscriber` and `publisher` examples against Mosquitto and its
//! own `mosquitto_sub` / `mosquitto_pub`, in both directions, 3.1.1 and 5.0,
//! plain and mutual TLS.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{require, set_mode, shared_tempdir, Mosquitto};
use mqtt_tls::gen::{write_set, CertificateAuthority};

/// The target directory: `CARGO_TARGET_DIR`, or the one holding this test
/// executable (`<target>/debug/deps/examples-…`).
fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// Builds the two examples once (a no-op when they are up to date) and
/// returns the directory holding them.
fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = target_dir();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let status = Command::new(cargo)
            .args([
                "build",
                "--example",
                "pi-subscriber",
                "--example",
                "publisher",
            ])
            .current_dir(root)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("run cargo build for the examples");
        assert!(status.success(), "building the examples failed");
        target.join("debug/examples")
    })
}

/// Runs a command to completion within `secs` seconds (killed otherwise).
fn run(cmd: &mut Command, secs: u64) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} did not finish within {secs} s; stdout {:?}, stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn example(name: &str) -> Command {
    Command::new(examples_dir().join(name))
}

fn tools() -> bool {
    require("/usr/bin/mosquitto_sub") && require("/usr/bin/mosquitto_pub")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn pi_subscriber_prints_what_mosquitto_pub_sent() {
    if !tools() {
        return;
    }
    let Some(m) = Mosquitto::start("") else {
        return;
    };
    let port = m.port.to_string();
    for (i, v) in ["mqttv311", "mqttv5", "311", "5", "mqttv31", "31"]
        .into_iter()
        .enumerate()
    {
        let topic = format!("ssltopic{i}");
        // Retained, so the subscriber receives it whenever it subscribes.
        let out = run(
            Command::new("mosquitto_pub")
                .args(["-p", &port, "-t", &topic, "-m", "testing", "-r", "-q", "1"]),
            10,
        );
        assert!(out.status.success());
        let out = run(
            example("pi-subscriber").args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                &topic,
                "-v",
                "-C",
                "1",
                "-V",
                v,
                "-q",
                "1",
            ]),
            20,
        );
        assert_eq!(
            text(&out.stdout),
            format!("{topic} testing\n"),
            "stderr: {}",
            text(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0));
    }
}

#[test]
fn mosquitto_sub_prints_what_publisher_sent() {
    if !tools() {
        return;
    }
    let Some(m) = Mosquitto::start("") else {
        return;
    };
    let port = m.port.to_string();
    for (i, v) in ["mqttv311", "mqttv5", "mqttv31"].into_iter().enumerate() {
        let topic = format!("laptop/{i}");
        for qos in ["0", "1", "2"] {
            let out = run(
                example("publisher").args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-t",
                    &topic,
                    "-m",
                    "testing",
                    "-r",
                    "-q",
                    qos,
                    "-V",
                    v,
                ]),
                20,
            );
            assert!(out.status.success(), "stderr: {}", text(&out.stderr));
        }
        let out = run(
            Command::new("mosquitto_sub")
                .args(["-p", &port, "-t", &topic, "-v", "-C", "1", "-V", v]),
            10,
        );
        assert_eq!(text(&out.stdout), format!("{topic} testing\n"));
    }
}

#[test]
fn publisher_reads_lines_and_files_and_sends_empty_messages() {
    if !tools() {
        return;
    }
    let Some(m) = Mosquitto::start("") else {
        return;
    };
    let port = m.port.to_string();
    let file = m.path().join("payload.txt");
    std::fs::write(&file, "from a file").unwrap();
    let out = run(
        example("publisher")
            .args(["-p", &port, "-t", "f", "-r", "-f"])
            .arg(&file),
        20,
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let out = run(
        Command::new("mosquitto_sub").args(["-p", &port, "-t", "f", "-C", "1"]),
        10,
    );
    assert_eq!(text(&out.stdout), "from a file\n");
    // -n with -r clears the retained message, as with mosquitto_pub.
    let out = run(
        example("publisher").args(["-p", &port, "-t", "f", "-r", "-n"]),
        20,
    );
    assert!(out.status.success());
    let out = run(
        Command::new("mosquitto_sub").args(["-p", &port, "-t", "f", "-W", "1"]),
        10,
    );
    assert_eq!(text(&out.stdout), "", "retained message not cleared");
}

#[test]
fn exit_codes_match_mosquitto_sub_for_refusals_and_time_outs() {
    if !tools() {
        return;
    }
    let Some(m) = Mosquitto::start("allow_anonymous false") else {
        return;
    };
    let port = m.port.to_string();
    for v in ["mqttv311", "mqttv5"] {
        let ours = run(
            example("pi-subscriber").args(["-p", &port, "-t", "t", "-V", v]),
            20,
        );
        let theirs = run(
            Command::new("mosquitto_sub").args(["-p", &port, "-t", "t", "-V", v]),
            10,
        );
        assert_eq!(ours.status.code(), theirs.status.code(), "{v}");
        assert!(
            text(&ours.stderr).starts_with("Connection error: Connection Refused"),
            "{}",
            text(&ours.stderr)
        );
        let ours = run(
            example("publisher").args(["-p", &port, "-t", "t", "-m", "x", "-V", v]),
            20,
        );
        let theirs = run(
            Command::new("mosquitto_pub").args(["-p", &port, "-t", "t", "-m", "x", "-V", v]),
            10,
        );
        assert_eq!(ours.status.code(), theirs.status.code(), "{v}");
    }
    drop(m);
    let Some(open) = Mosquitto::start("") else {
        return;
    };
    let out = run(
        example("pi-subscriber").args(["-p", &open.port.to_string(), "-t", "t", "-W", "1"]),
        20,
    );
    assert_eq!(out.status.code(), Some(27));
    assert_eq!(text(&out.stderr), "Timed out\n");
}

fn certificates(dir: &Path) {
    let ca = CertificateAuthority::generate().unwrap();
    let server = ca.issue_server(&["127.0.0.1".to_string()]).unwrap();
    let client = ca.issue_client("pi").unwrap();
    let set = write_set(dir, &ca, &server, &[("pi".to_string(), client)]).unwrap();
    for f in &set.files {
        set_mode(f, 0o644);
    }
}

#[test]
fn examples_exchange_messages_over_mutual_tls_and_explain_a_missing_certificate() {
    if !tools() {
        return;
    }
    let certs = shared_tempdir();
    certificates(certs.path());
    let d = certs.path().display().to_string();
    let Some(m) = Mosquitto::start(&format!(
        "cafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\nrequire_certificate true\n"
    )) else {
        return;
    };
    let port = m.port.to_string();
    let tls = |c: &mut Command| {
        c.args([
            "--cafile",
            &format!("{d}/ca.crt"),
            "--cert",
            &format!("{d}/client.crt"),
            "--key",
            &format!("{d}/client.key"),
        ]);
    };
    for v in ["mqttv311", "mqttv5"] {
        let mut publish = example("publisher");
        publish.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "ssltopic",
            "-m",
            "testing",
            "-r",
            "-q",
            "1",
            "-V",
            v,
        ]);
        tls(&mut publish);
        let out = run(&mut publish, 20);
        assert!(out.status.success(), "stderr: {}", text(&out.stderr));
        let mut sub = example("pi-subscriber");
        sub.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "ssltopic",
            "-v",
            "-C",
            "1",
            "-V",
            v,
        ]);
        tls(&mut sub);
        let out = run(&mut sub, 20);
        assert_eq!(
            text(&out.stdout),
            "ssltopic testing\n",
            "stderr: {}",
            text(&out.stderr)
        );
        // mosquitto_sub with the same files sees what our publisher sent.
        let out = run(
            Command::new("mosquitto_sub").args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                "ssltopic",
                "-v",
                "-C",
                "1",
                "-V",
                v,
                "--cafile",
                &format!("{d}/ca.crt"),
                "--cert",
                &format!("{d}/client.crt"),
                "--key",
                &format!("{d}/client.key"),
            ]),
            10,
        );
        assert_eq!(text(&out.stdout), "ssltopic testing\n");
    }
    // Without a client certificate: mqtt-tls's explanation, exit code 1.
    let out = run(
        example("pi-subscriber").args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "ssltopic",
            "--cafile",
            &format!("{d}/ca.crt"),
        ]),
        20,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("requires a client certificate"), "{err}");
    assert!(!err.to_lowercase().contains("protocol error"), "{err}");
}

#[test]
fn a_certificate_without_a_trust_source_is_refused_instead_of_using_plain_tcp() {
    let certs = shared_tempdir();
    certificates(certs.path());
    let d = certs.path().display().to_string();
    for name in ["pi-subscriber", "publisher"] {
        let mut c = example(name);
        c.args([
            "-t",
            "t",
            "--cert",
            &format!("{d}/client.crt"),
            "--key",
            &format!("{d}/client.key"),
        ]);
        if name == "publisher" {
            c.args(["-m", "x"]);
        }
        let out = run(&mut c, 20);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("add --cafile"),
            "{}",
            text(&out.stderr)
        );
    }
}
