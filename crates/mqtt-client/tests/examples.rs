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

/// Runs `ours` (an example) and `theirs` (mosquitto_sub/mosquitto_pub)
/// with the same flags; returns (our output, theirs), timestamps masked.
fn both(ours: &str, theirs: &str, args: &[&str]) -> (Output, Output) {
    let a = run(example(ours).args(args), 20);
    let b = run(Command::new(theirs).args(args), 10);
    (a, b)
}

/// `"tst":"…"` and `%U`'s `1234.123456789` masked, for comparing runs.
fn masked(b: &[u8]) -> String {
    let s = text(b);
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("\"tst\":\"") {
        out.push_str(&rest[..i + 7]);
        rest = &rest[i + 7..];
        let end = rest.find('"').unwrap_or(rest.len());
        out.push_str("TST");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn same(name: &str, ours: &Output, theirs: &Output) {
    assert_eq!(
        masked(&ours.stdout),
        masked(&theirs.stdout),
        "{name}: stdout differs; our stderr: {}",
        text(&ours.stderr)
    );
    assert_eq!(
        ours.status.code(),
        theirs.status.code(),
        "{name}: exit code"
    );
}

#[test]
fn pi_subscriber_flags_match_mosquitto_sub() {
    if !tools() {
        return;
    }
    let Some(m) = Mosquitto::start("") else {
        return;
    };
    let port = m.port.to_string();
    let p = port.as_str();
    // Retained messages for every scenario; properties in identifier order,
    // the order this workspace's codec writes them (mosquitto keeps the
    // publisher's).
    for (topic, payload) in [("f/a", "he\"llo"), ("f/b", "{\"x\": [1, 2.5, true]}")] {
        let out = run(
            Command::new("mosquitto_pub").args([
                "-p",
                p,
                "-t",
                topic,
                "-m",
                payload,
                "-r",
                "-q",
                "1",
                "-V",
                "5",
                "-D",
                "publish",
                "content-type",
                "text/plain",
                "-D",
                "publish",
                "user-property",
                "k",
                "v",
            ]),
            10,
        );
        assert!(out.status.success());
    }
    let url = format!("mqtt://127.0.0.1:{p}/f/#");
    let scenarios: Vec<(&str, Vec<&str>)> = vec![
        // -F with every common parameter, widths, escapes; -d and -D.
        (
            "format+debug",
            vec![
                "-p",
                p,
                "-t",
                "f/#",
                "-C",
                "2",
                "-d",
                "-i",
                "fmt",
                "-q",
                "1",
                "-V",
                "5",
                "-D",
                "subscribe",
                "subscription-identifier",
                "7",
                "-F",
                "%t|%p|%q|%r|%m|%l|%x|%X|%P|%C|%S|%%|\\t|@@|%5l|%-5q|%05m|%.2t|%10.3t|%-4t|",
            ],
        ),
        (
            "json",
            vec![
                "-p", p, "-t", "f/#", "-C", "2", "-F", "%j", "-V", "5", "-q", "1",
            ],
        ),
        (
            "json raw",
            vec!["-p", p, "-t", "f/#", "-C", "2", "-F", "%J"],
        ),
        ("bad format", vec!["-p", p, "-t", "f/#", "-F", "%Z"]),
        // -L, -T, -v, -c with -I.
        ("url+filter", vec!["-L", &url, "-T", "f/a", "-C", "1", "-v"]),
        // -U and -E: subscribe, unsubscribe, exit once subscribed.
        (
            "exit after subscribe",
            vec![
                "-p", p, "-t", "f/#", "-t", "g", "-U", "f/#", "-E", "-d", "-i", "e", "-q", "1",
            ],
        ),
        // -R: only retained messages exist, so nothing until -W.
        (
            "no retained",
            vec!["-p", p, "-t", "f/#", "-R", "-W", "1", "-v"],
        ),
        (
            "-R with --retained-only",
            vec!["-p", p, "-t", "f/#", "-R", "--retained-only"],
        ),
        // Will, -x, --nodelay, -N: accepted, same output.
        (
            "will",
            vec![
                "-p",
                p,
                "-t",
                "f/a",
                "-C",
                "1",
                "-N",
                "-V",
                "5",
                "-x",
                "30",
                "--nodelay",
                "--will-topic",
                "w",
                "--will-payload",
                "bye",
                "--will-qos",
                "1",
                "--will-retain",
                "-D",
                "connect",
                "user-property",
                "a",
                "b",
            ],
        ),
    ];
    for (name, args) in &scenarios {
        let (ours, theirs) = both("pi-subscriber", "mosquitto_sub", args);
        same(name, &ours, &theirs);
    }
    // --retained-only stops at the first live message; its retained ones
    // are printed.
    for name in ["pi-subscriber", "mosquitto_sub"] {
        let mut c = if name == "mosquitto_sub" {
            Command::new(name)
        } else {
            example(name)
        };
        let child = c
            .args([
                "-p",
                p,
                "-t",
                "f/#",
                "--retained-only",
                "-v",
                "-d",
                "-i",
                "ro",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        run(
            Command::new("mosquitto_pub").args(["-p", p, "-t", "f/live", "-m", "x"]),
            10,
        );
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}");
        assert_eq!(
            text(&out.stdout),
            "Client ro sending CONNECT\nClient ro received CONNACK (0)\n\
             Client ro sending SUBSCRIBE (Mid: 1, Topic: f/#, QoS: 0, Options: 0x00)\n\
             Client ro received SUBACK\nSubscribed (mid: 1): 0\n\
             Client ro received PUBLISH (d0, q0, r1, m0, 'f/a', ... (6 bytes))\nf/a he\"llo\n\
             Client ro received PUBLISH (d0, q0, r1, m0, 'f/b', ... (21 bytes))\n\
             f/b {\"x\": [1, 2.5, true]}\n\
             Client ro received PUBLISH (d0, q0, r0, m0, 'f/live', ... (1 bytes))\n\
             Client ro sending DISCONNECT\n",
            "{name}"
        );
    }
    // --remove-retained -T f/a: clears f/b only, in both tools.
    for name in ["pi-subscriber", "mosquitto_sub"] {
        let (topic, payload) = ("f/b", "again");
        run(
            Command::new("mosquitto_pub").args(["-p", p, "-t", topic, "-m", payload, "-r"]),
            10,
        );
        let mut c = if name == "mosquitto_sub" {
            Command::new(name)
        } else {
            example(name)
        };
        // (-W, not -C: mosquitto_sub 2.0.11 with -C and --remove-retained
        // does not exit.)
        let out = run(
            c.args([
                "-p",
                p,
                "-t",
                "f/#",
                "--remove-retained",
                "-T",
                "f/a",
                "-W",
                "1",
                "-v",
            ]),
            20,
        );
        // The clearing message comes back too (empty, not retained).
        assert_eq!(text(&out.stdout), "f/b again\nf/b (null)\n", "{name}");
        assert_eq!(out.status.code(), Some(27), "{name}");
        let left = run(
            Command::new("mosquitto_sub").args(["-p", p, "-t", "f/#", "-W", "1", "-v"]),
            10,
        );
        assert_eq!(text(&left.stdout), "f/a he\"llo\n", "{name} left");
    }
}

#[test]
fn publisher_flags_match_mosquitto_pub() {
    if !tools() {
        return;
    }
    let Some(m) = Mosquitto::start("") else {
        return;
    };
    let port = m.port.to_string();
    let p = port.as_str();
    let url = format!("mqtt://127.0.0.1:{p}/u/t");
    let scenarios: Vec<(&str, Vec<&str>)> = vec![
        (
            "debug qos 2, properties, repeat",
            vec![
                "-p",
                p,
                "-t",
                "d/t",
                "-m",
                "hi",
                "-q",
                "2",
                "-d",
                "-i",
                "p2",
                "-V",
                "5",
                "-D",
                "publish",
                "content-type",
                "t",
                "-D",
                "publish",
                "message-expiry-interval",
                "60",
                "-D",
                "connect",
                "user-property",
                "a",
                "b",
                "--repeat",
                "2",
                "--repeat-delay",
                "0.05",
                "--nodelay",
            ],
        ),
        (
            "url, null message, will",
            vec![
                "-L",
                &url,
                "-n",
                "-d",
                "-i",
                "p0",
                "--repeat",
                "2",
                "--will-topic",
                "w",
                "--will-payload",
                "bye",
                "--will-qos",
                "1",
                "--will-retain",
            ],
        ),
        (
            "qos 1",
            vec![
                "-p", p, "-t", "d/1", "-m", "one", "-q", "1", "-d", "-i", "p1",
            ],
        ),
        ("bad url", vec!["-L", "http://127.0.0.1/x", "-m", "x"]),
        (
            "url without topic",
            vec!["-L", "mqtt://127.0.0.1", "-m", "x"],
        ),
        (
            "bad property",
            vec![
                "-p", p, "-t", "x", "-m", "x", "-V", "5", "-D", "publish", "bogus", "1",
            ],
        ),
    ];
    for (name, args) in &scenarios {
        let (ours, theirs) = both("publisher", "mosquitto_pub", args);
        same(name, &ours, &theirs);
    }
    // What our publisher sent with -D, as mosquitto_sub prints it.
    let sub = std::thread::spawn({
        let p = port.clone();
        move || {
            run(
                Command::new("mosquitto_sub").args([
                    "-p",
                    &p,
                    "-t",
                    "props",
                    "-C",
                    "1",
                    "-V",
                    "5",
                    "-F",
                    "%C|%E|%P|%p",
                ]),
                10,
            )
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let out = run(
        example("publisher").args([
            "-p",
            p,
            "-t",
            "props",
            "-m",
            "x",
            "-V",
            "5",
            "-D",
            "publish",
            "content-type",
            "ct",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
            "-D",
            "publish",
            "message-expiry-interval",
            "100",
        ]),
        20,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&sub.join().unwrap().stdout), "ct|100|k:v|x\n");
    // The will: our publisher's connection is cut by a second client with
    // the same id, so the broker publishes the will; as mosquitto_pub's.
    for name in ["publisher", "mosquitto_pub"] {
        let w = format!("will/{name}");
        let mut c = if name == "mosquitto_pub" {
            Command::new(name)
        } else {
            example(name)
        };
        let child = c
            .args([
                "-p",
                p,
                "-t",
                "x",
                "-l",
                "-i",
                "willer",
                "--will-topic",
                &w,
                "--will-payload",
                "gone",
                "--will-retain",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // Takes over the client id: the broker drops the first connection
        // without a DISCONNECT, so its will is published (and retained).
        run(
            Command::new("mosquitto_pub").args(["-p", p, "-t", "x", "-m", "x", "-i", "willer"]),
            10,
        );
        drop(child);
        let out = run(
            Command::new("mosquitto_sub").args(["-p", p, "-t", &w, "-C", "1", "-W", "5"]),
            10,
        );
        assert_eq!(text(&out.stdout), "gone\n", "{name}");
    }
}
