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
            "-D without -V is MQTT 5.0",
            vec![
                "-p",
                p,
                "-t",
                "d/t",
                "-m",
                "hi",
                "-q",
                "1",
                "-d",
                "-i",
                "p5",
                "-D",
                "publish",
                "content-type",
                "t",
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

/// Like [`run`], also returning the child's process id (the `-I` client id
/// ends with it).
fn run_pid(cmd: &mut Command, secs: u64) -> (u32, Output) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} did not finish within {secs} s; stdout {:?}, stderr {:?}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (pid, child.wait_with_output().unwrap())
}

/// Our example or Mosquitto's tool, by name.
fn tool(name: &str) -> Command {
    if name.starts_with("mosquitto") {
        Command::new(name)
    } else {
        example(name)
    }
}

/// The pairs compared: (ours, Mosquitto's, the flags that make each
/// connect, do one thing and exit).
const PAIRS: [(&str, &str, &[&str]); 2] = [
    ("pi-subscriber", "mosquitto_sub", &["-t", "t", "-E"]),
    ("publisher", "mosquitto_pub", &["-t", "t", "-m", "x"]),
];

/// Waits (bounded) until `port` accepts TCP connections: Mosquitto's
/// second listener, which `Mosquitto::start` does not wait for.
fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            if s.local_addr().ok() != s.peer_addr().ok() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Certificates from our private CA (`ca.crt`; `server.crt` names
/// 127.0.0.1) and Mosquitto with a plain listener and a TLS one
/// (`tls_extra` adds lines to the TLS listener). `None` if Mosquitto or
/// its tools are missing (the reason printed).
fn tls_mosquitto(tls_extra: &str) -> Option<(Mosquitto, tempfile::TempDir, u16)> {
    if !tools() {
        return None;
    }
    let certs = shared_tempdir();
    certificates(certs.path());
    let d = certs.path().display();
    let tls_port = common::free_port();
    let m = Mosquitto::start(&format!(
        "listener {tls_port} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n{tls_extra}\n"
    ))?;
    wait_listening(tls_port);
    Some((m, certs, tls_port))
}

/// How a handshake through a [`TlsFront`] ended: the version agreed on,
/// or why it failed (e.g. the client's alert).
type Handshake = Result<rustls::ProtocolVersion, rustls::Error>;

/// A TLS front for a plain broker port: terminates TLS with the given
/// versions, forwards the MQTT bytes, and records how each handshake ended.
struct TlsFront {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Handshake>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TlsFront {
    fn start(
        certs: &Path,
        versions: &[&'static rustls::SupportedProtocolVersion],
        upstream: u16,
    ) -> TlsFront {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let chain = CertificateDer::pem_file_iter(certs.join("server.crt"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(certs.join("server.key")).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(mqtt_tls::provider())
                .with_protocol_versions(versions)
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        common::reserve_port(port);
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let (config, s, st) = (config.clone(), s.clone(), st.clone());
                        std::thread::spawn(move || forward(config, tcp, upstream, &s, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TlsFront { port, seen, stop }
    }

    /// The handshakes recorded since the last call.
    fn take(&self) -> Vec<Handshake> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    /// Runs `cmd` and returns its output and the one handshake it made
    /// (recorded once the client closed its side; waited for, bounded).
    fn run(&self, cmd: &mut Command) -> (Output, Handshake) {
        self.take();
        let out = run(cmd, 20);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = self.take();
        while seen.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            seen = self.take();
        }
        assert_eq!(seen.len(), 1, "{cmd:?}: one connection, got {seen:?}");
        (out, seen.remove(0))
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One connection through a [`TlsFront`]: handshake, then bytes both ways
/// until either side closes (at most 30 s).
fn forward(
    config: std::sync::Arc<rustls::ServerConfig>,
    mut tcp: std::net::TcpStream,
    upstream: u16,
    seen: &std::sync::Mutex<Vec<Handshake>>,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::io::{ErrorKind, Read, Write};
    let mut conn = rustls::ServerConnection::new(config).unwrap();
    let mut up = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
    tcp.set_nonblocking(true).unwrap();
    up.set_nonblocking(true).unwrap();
    let write_all = |s: &mut std::net::TcpStream, mut b: &[u8]| -> bool {
        while !b.is_empty() {
            match s.write(b) {
                Ok(0) => return false,
                Ok(n) => b = &b[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(_) => return false,
            }
        }
        true
    };
    let mut recorded = false;
    let mut buf = [0u8; 16384];
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut busy = false;
        match conn.read_tls(&mut tcp) {
            Ok(0) => break,
            Ok(_) => {
                busy = true;
                if let Err(e) = conn.process_new_packets() {
                    if !recorded {
                        recorded = true;
                        seen.lock().unwrap().push(Err(e));
                    }
                    // Send our alert, if any, then give up.
                    let _ = conn.write_tls(&mut tcp);
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        if !recorded && !conn.is_handshaking() {
            recorded = true;
            let version = conn
                .protocol_version()
                .expect("a version after the handshake");
            seen.lock().unwrap().push(Ok(version));
        }
        loop {
            match conn.reader().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    busy = true;
                    if !write_all(&mut up, &buf[..n]) {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        match up.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                busy = true;
                if conn.writer().write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        while conn.wants_write() {
            match conn.write_tls(&mut tcp) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(_) => return,
            }
        }
        if !busy {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    if !recorded {
        let closed = rustls::Error::General("closed during the handshake".into());
        seen.lock().unwrap().push(Err(closed));
    }
}

#[test]
fn tls_version_matches_mosquitto_sub_and_pub() {
    use rustls::ProtocolVersion::{TLSv1_2, TLSv1_3};
    // Mosquitto's own TLS listener, TLS 1.3 only (`tls_version tlsv1.3`).
    let Some((m, certs, tls_port)) = tls_mosquitto("tls_version tlsv1.3") else {
        return;
    };
    let ca = certs.path().join("ca.crt").display().to_string();
    // Fronts for the plain listener that record what each handshake
    // agreed on: one speaking TLS 1.2 and 1.3, one TLS 1.2 only.
    let dual = TlsFront::start(
        certs.path(),
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        m.port,
    );
    let only12 = TlsFront::start(certs.path(), &[&rustls::version::TLS12], m.port);
    let connect = |name: &str, flags: &[&str], port: u16, version: &str| {
        let out = run(
            tool(name)
                .args(flags)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--cafile", &ca])
                .args(["--tls-version", version]),
            20,
        );
        (out.status.success(), out)
    };
    for (ours, theirs, flags) in PAIRS {
        // Against Mosquitto's TLS 1.3 listener both versions connect:
        // --tls-version is the lowest version accepted.
        for version in ["tlsv1.2", "tlsv1.3"] {
            for name in [ours, theirs] {
                let (ok, out) = connect(name, flags, tls_port, version);
                assert!(ok, "{name} {version}: {}", text(&out.stderr));
            }
        }
        // Through the fronts: the version each handshake agreed on.
        for (front, version, expected) in [
            (&dual, "tlsv1.2", Some(TLSv1_3)),
            (&dual, "tlsv1.3", Some(TLSv1_3)),
            (&only12, "tlsv1.2", Some(TLSv1_2)),
            // A TLS 1.2 broker and --tls-version tlsv1.3: no connection.
            (&only12, "tlsv1.3", None),
        ] {
            let mut results = Vec::new();
            for name in [ours, theirs] {
                let (out, handshake) = front.run(
                    tool(name)
                        .args(flags)
                        .args(["-h", "127.0.0.1", "-p", &front.port.to_string()])
                        .args(["--cafile", &ca, "--tls-version", version]),
                );
                assert_eq!(
                    handshake.as_ref().ok(),
                    expected.as_ref(),
                    "{name} {version}: {handshake:?}"
                );
                let ok = out.status.success();
                assert_eq!(
                    ok,
                    expected.is_some(),
                    "{name} {version}: {}",
                    text(&out.stderr)
                );
                assert_eq!(text(&out.stdout), "", "{name} {version}");
                results.push(ok);
            }
            assert_eq!(results[0], results[1], "{ours} and {theirs}, {version}");
        }
    }
    // A message across Mosquitto's TLS listener: our publisher with
    // tlsv1.3, read by both subscribers with tlsv1.2.
    let out = run(
        example("publisher").args([
            "-h",
            "127.0.0.1",
            "-p",
            &tls_port.to_string(),
            "--cafile",
            &ca,
            "--tls-version",
            "tlsv1.3",
            "-t",
            "tv",
            "-m",
            "over 1.3",
            "-r",
        ]),
        20,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let flags = [
        "-h",
        "127.0.0.1",
        "-p",
        &tls_port.to_string(),
        "--cafile",
        &ca,
        "--tls-version",
        "tlsv1.2",
        "-t",
        "tv",
        "-C",
        "1",
        "-v",
    ];
    let (ours, theirs) = both("pi-subscriber", "mosquitto_sub", &flags);
    assert_eq!(text(&theirs.stdout), "tv over 1.3\n");
    same("tls-version", &ours, &theirs);
}

#[test]
fn id_prefix_matches_mosquitto_sub_and_pub() {
    if !tools() {
        return;
    }
    // The broker lets in only client ids starting with "pi-".
    let Some(m) = Mosquitto::start("clientid_prefixes pi-") else {
        return;
    };
    let port = m.port.to_string();
    for (ours, theirs, flags) in PAIRS {
        for version in ["mqttv311", "mqttv5"] {
            for (prefix, refused) in [("pi-", false), ("other-", true)] {
                let mut outputs = Vec::new();
                for name in [ours, theirs] {
                    let (pid, out) = run_pid(
                        tool(name).args(flags).args([
                            "-h",
                            "127.0.0.1",
                            "-p",
                            &port,
                            "-V",
                            version,
                            "-d",
                            "-I",
                            prefix,
                        ]),
                        20,
                    );
                    // -d names the client: the prefix followed by the
                    // process id, nothing else.
                    let id = format!("{prefix}{pid}");
                    let stdout = text(&out.stdout);
                    assert!(
                        stdout.starts_with(&format!("Client {id} sending CONNECT\n")),
                        "{name} {version} {prefix}: {stdout}"
                    );
                    let code = match (refused, version) {
                        (false, _) => 0,
                        (true, "mqttv5") => 135,
                        (true, _) => 5,
                    };
                    assert_eq!(
                        out.status.code(),
                        Some(code),
                        "{name} {version} {prefix}: {}",
                        text(&out.stderr)
                    );
                    let mut stdout = stdout.replace(&id, "ID");
                    // mosquitto_sub answers a refusing CONNACK with a
                    // DISCONNECT; the broker has closed the connection by
                    // then ([MQTT-3.2.2-5]) and our client sends nothing,
                    // so -d has no line for it.
                    if refused && name == "mosquitto_sub" {
                        stdout = stdout.replace("Client ID sending DISCONNECT\n", "");
                    }
                    outputs.push((stdout, out.status.code()));
                }
                assert_eq!(
                    outputs[0], outputs[1],
                    "{ours} and {theirs}, {version} {prefix}"
                );
            }
        }
    }
    // -I gives a new id every run, so a session that outlives the
    // connection (-c; 5.0: an infinite expiry) is refused as with -i absent.
    for (args, message) in [
        (
            vec!["-c", "-I", "pi-"],
            "Error: You must provide a client id if you are using the -c option.",
        ),
        (
            vec!["-c", "-I", "pi-", "-V", "5"],
            "Error: You must provide a client id if you are using an infinite session expiry interval.",
        ),
        (
            vec!["-I", "pi-", "-V", "5", "-x", "-1"],
            "Error: You must provide a client id if you are using an infinite session expiry interval.",
        ),
    ] {
        let mut all = vec!["-p", &port, "-t", "t", "-E"];
        all.extend(&args);
        let (ours, theirs) = both("pi-subscriber", "mosquitto_sub", &all);
        for out in [&ours, &theirs] {
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            assert_eq!(text(&out.stderr).lines().next(), Some(message), "{args:?}");
        }
    }
    // A 5.0 session with a finite expiry needs no fixed id.
    let (ours, theirs) = both(
        "pi-subscriber",
        "mosquitto_sub",
        &[
            "-p", &port, "-t", "t", "-E", "-c", "-I", "pi-", "-V", "5", "-x", "60",
        ],
    );
    same("-c -I -x 60", &ours, &theirs);
    assert_eq!(ours.status.code(), Some(0), "{}", text(&ours.stderr));
}

#[test]
fn mqtts_urls_match_mosquitto_sub_and_pub() {
    let Some((m, certs, tls_port)) = tls_mosquitto("") else {
        return;
    };
    let ca = certs.path().join("ca.crt").display().to_string();
    let tp = tls_port.to_string();
    // mqtts:// with the port in the URL: TLS, verified with --cafile.
    for (name, topic, payload) in [
        ("publisher", "u/a", "ours"),
        ("mosquitto_pub", "u/b", "theirs"),
    ] {
        let url = format!("mqtts://127.0.0.1:{tp}/{topic}");
        let out = run(
            tool(name).args(["-L", &url, "--cafile", &ca, "-m", payload, "-r", "-q", "1"]),
            20,
        );
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
    }
    let url = format!("mqtts://127.0.0.1:{tp}/u/#");
    let (ours, theirs) = both(
        "pi-subscriber",
        "mosquitto_sub",
        &["-L", &url, "--cafile", &ca, "-C", "2", "-v"],
    );
    assert_eq!(text(&theirs.stdout), "u/a ours\nu/b theirs\n");
    same("mqtts://", &ours, &theirs);
    // Without a port mqtts:// means 8883; a later -p picks the test's
    // port, and the connection is still TLS.
    let (ours, theirs) = both(
        "pi-subscriber",
        "mosquitto_sub",
        &[
            "-L",
            "mqtts://127.0.0.1/u/#",
            "-p",
            &tp,
            "--cafile",
            &ca,
            "-C",
            "2",
            "-v",
        ],
    );
    same("mqtts:// -p", &ours, &theirs);
    assert_eq!(text(&ours.stdout), "u/a ours\nu/b theirs\n");
    // Without --cafile mqtts:// trusts the public CAs only: our private CA's
    // certificate is refused by both tools. Directly, and through a front
    // (same certificate) that shows each client ended the handshake with
    // an alert: it spoke TLS and refused the certificate.
    let front = TlsFront::start(
        certs.path(),
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        m.port,
    );
    for (ours, theirs, flags) in PAIRS {
        let flags: Vec<&str> = flags
            .iter()
            .filter(|f| **f != "-t" && **f != "t")
            .copied()
            .collect();
        for name in [ours, theirs] {
            let url = format!("mqtts://127.0.0.1:{tp}/t");
            let out = run(tool(name).args(["-L", &url]).args(&flags), 20);
            assert!(!out.status.success(), "{name} connected without --cafile");
            assert_eq!(text(&out.stdout), "", "{name}");
            let url = format!("mqtts://127.0.0.1:{}/t", front.port);
            let (out, handshake) = front.run(tool(name).args(["-L", &url]).args(&flags));
            assert!(
                matches!(handshake, Err(rustls::Error::AlertReceived(_))),
                "{name}: {handshake:?}"
            );
            assert!(!out.status.success(), "{name} connected without --cafile");
        }
    }
}

#[test]
fn tls_use_os_certs_refuses_a_private_ca_in_both_tools() {
    let Some((m, certs, tls_port)) = tls_mosquitto("") else {
        return;
    };
    let ca = certs.path().join("ca.crt").display().to_string();
    let tp = tls_port.to_string();
    let target = ["-h", "127.0.0.1", "-p", tp.as_str()];
    let front = TlsFront::start(
        certs.path(),
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        m.port,
    );
    for (ours, theirs, _) in PAIRS {
        for name in [ours, theirs] {
            let retained = format!("os/{name}");
            let flags: Vec<&str> = if name.ends_with("pub") || name == "publisher" {
                vec!["-t", &retained, "-m", "x", "-r"]
            } else {
                vec!["-t", &retained, "-E"]
            };
            // The OS store (mosquitto) and the built-in public roots (ours)
            // hold no private CA: the broker's certificate is refused,
            // nothing is published and nothing printed.
            let out = run(
                tool(name)
                    .args(target)
                    .args(&flags)
                    .arg("--tls-use-os-certs"),
                20,
            );
            assert!(
                !out.status.success(),
                "{name} connected with --tls-use-os-certs"
            );
            assert_eq!(text(&out.stdout), "", "{name}");
            let check = run(
                Command::new("mosquitto_sub")
                    .args(target)
                    .args(["--cafile", &ca, "-t", &retained, "-W", "1"]),
                10,
            );
            assert_eq!(
                text(&check.stdout),
                "",
                "{name} published without verifying"
            );
            // Through a front with the same certificate: the client spoke
            // TLS and ended the handshake with an alert (it refused the
            // certificate; it did not fall back to plain TCP).
            let fp = front.port.to_string();
            let (out, handshake) = front.run(
                tool(name)
                    .args(["-h", "127.0.0.1", "-p", &fp])
                    .args(&flags)
                    .arg("--tls-use-os-certs"),
            );
            assert!(
                matches!(handshake, Err(rustls::Error::AlertReceived(_))),
                "{name}: {handshake:?}"
            );
            assert!(!out.status.success(), "{name}");
            // With our CA added (--cafile), the same command connects.
            let out = run(
                tool(name)
                    .args(target)
                    .args(&flags)
                    .args(["--tls-use-os-certs", "--cafile", &ca]),
                20,
            );
            assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        }
    }
}

#[test]
fn url_and_the_flags_it_sets_take_the_last_one_given_as_mosquitto() {
    if !tools() || !require("/usr/bin/mosquitto_passwd") {
        return;
    }
    let dir = shared_tempdir();
    let pw = dir.path().join("passwords");
    let out = run(
        Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&pw)
            .args(["user", "pass"]),
        10,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    set_mode(&pw, 0o644);
    let Some(m) = Mosquitto::start(&format!(
        "allow_anonymous false\npassword_file {}",
        pw.display()
    )) else {
        return;
    };
    let p = m.port.to_string();
    let url = |auth: &str, port: &str| format!("mqtt://{auth}127.0.0.1:{port}/t");
    // mosquitto reads its flags in order: -L sets host, port and (when the
    // URL has them) user name and password, and a later -h, -p, -u or -P
    // sets them again. Mosquitto listens on 127.0.0.1 only, port 1 is
    // closed, and only user/pass is let in: each line connects only if the
    // right value won.
    let good = url("user:pass@", &p);
    let cases: Vec<Vec<String>> = vec![
        vec!["-p".into(), "1".into(), "-L".into(), good.clone()],
        vec!["-L".into(), url("user:pass@", "1"), "-p".into(), p.clone()],
        vec!["-h".into(), "127.0.0.2".into(), "-L".into(), good.clone()],
        vec![
            "-L".into(),
            format!("mqtt://user:pass@127.0.0.2:{p}/t"),
            "-h".into(),
            "127.0.0.1".into(),
        ],
        vec![
            "-u".into(),
            "wrong".into(),
            "-P".into(),
            "x".into(),
            "-L".into(),
            good.clone(),
        ],
        vec![
            "-L".into(),
            url("wrong:x@", &p),
            "-u".into(),
            "user".into(),
            "-P".into(),
            "pass".into(),
        ],
        // A URL without credentials leaves -u and -P alone.
        vec![
            "-u".into(),
            "user".into(),
            "-L".into(),
            url("", &p),
            "-P".into(),
            "pass".into(),
        ],
        vec!["-L".into(), url("user@", &p), "-P".into(), "pass".into()],
    ];
    for (ours, theirs, flags) in PAIRS {
        let flags: Vec<&str> = flags
            .iter()
            .filter(|f| **f != "-t" && **f != "t")
            .copied()
            .collect();
        for case in &cases {
            for name in [ours, theirs] {
                let out = run(tool(name).args(case).args(&flags), 20);
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{name} {case:?}: {}",
                    text(&out.stderr)
                );
            }
        }
        // And the refusal when the wrong password comes first and the URL
        // has none: both refused (5).
        let case = ["-P", "wrong", "-L", &url("user@", &p)];
        for name in [ours, theirs] {
            let out = run(tool(name).args(case).args(&flags), 20);
            assert_eq!(out.status.code(), Some(5), "{name} {case:?}");
        }
    }
}
