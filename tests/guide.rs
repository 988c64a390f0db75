//! End-to-end test of the guide (`docs/guide.md`): every step, on loopback,
//! with the workspace's example binaries and, where installed, Mosquitto's.
//!
//! # The commands the docs show are the commands this test runs
//!
//! The test writes nothing into the docs and keeps no copy of their commands.
//! It reads `docs/guide.md` and takes the snippets marked with an HTML comment
//! (invisible when the Markdown is rendered):
//!
//! ````text
//! <!-- guide-step: tls-sub -->           the next ```sh block is ONE command the test runs
//! <!-- guide-file: ssl.conf -->          the next ``` block is a file, written into the test's directory
//! <!-- guide-output: tls-sub -->         the next ```text block: lines that step's output must contain
//! ````
//!
//! Before running a command the test substitutes, and nothing else:
//! - `cargo run [--release] --example NAME --` → the example binary cargo
//!   built for this test run (`target/<profile>/examples/NAME`);
//! - port `1883` → a free loopback port, port `8883` → another one;
//! - `192.168.1.5` (the laptop's address in the guide) → `127.0.0.2`, a
//!   second loopback address, so "the Pi dials the laptop's address" and
//!   "a certificate for 192.168.1.5 while dialling 127.0.0.1" both happen
//!   on loopback;
//! - `mosquitto`, `mosquitto_sub`, `mosquitto_pub` → the installed tools.
//!
//! Every command runs in a fresh temporary directory (the reader's working
//! directory in the guide), so `certs/ca.crt` and `ssl.conf` are the files
//! the earlier steps wrote there. Output blocks are compared line by line
//! after normalising what varies from run to run (timestamps, ports, process
//! ids: every run of digits counts as one number; Mosquitto's `auto-…` ids).
//! The choreography (which step runs in the background, what to wait for,
//! which exit code and message to expect) lives here; the words live in the
//! doc. A step renamed or removed in the doc fails
//! `guide_marks_exactly_the_steps_this_test_runs`, and a changed command or
//! output fails the step that runs it.
//!
//! To see what every step printed (to refresh an output block), run
//! `GUIDE_SHOW_OUTPUT=1 cargo test -p mqtt-stack --test guide -- --nocapture --test-threads 1`.
//!
//! Mosquitto's tools are optional: without them the Mosquitto combinations
//! are skipped with a printed reason; with `MQTT_INTEROP=1` they fail.
//! The example binaries are the ones `cargo test -p mqtt-stack` (or
//! `--workspace`) builds; run `cargo build --examples` if they are missing.
#![forbid(unsafe_code)]

#[path = "support/examples.rs"]
mod examples;
use examples::example as example_binary;

#[path = "support/ports.rs"]
mod ports;
mod support;

use ports::free_port;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;
use support::{missing_lines, replace_token, shell_words, Doc, Proc};

/// Every step the guide marks, and the files it marks. The test runs each.
const STEPS: &[&str] = &[
    "plain-broker",
    "plain-broker-mosquitto",
    "plain-sub",
    "plain-sub-mosquitto",
    "plain-pub",
    "plain-pub-mosquitto",
    "remote-broker",
    "remote-broker-mosquitto",
    "remote-sub",
    "remote-sub-mosquitto",
    "remote-pub",
    "remote-pub-mosquitto",
    "certs",
    "certs-check",
    "tls-broker",
    "tls-broker-mosquitto",
    "tls-sub",
    "tls-sub-mosquitto",
    "tls-pub",
    "tls-pub-mosquitto",
    "mutual-broker",
    "mutual-broker-mosquitto",
    "mutual-sub",
    "mutual-sub-mosquitto",
    "mutual-pub",
    "mutual-pub-mosquitto",
    "full-broker",
    "full-broker-mosquitto",
    "full-sub",
    "full-pub",
    "fail-no-cert",
    "fail-no-cert-mosquitto",
    "fail-wrong-name",
    "fail-wrong-name-mosquitto",
];
const FILES: &[&str] = &[
    "remote.conf",
    "server-tls.conf",
    "mutual-tls.conf",
    "ssl.conf",
];

/// The steps `docs/existing-mosquitto-files.md` marks: the mosquitto-tls
/// openssl recipe, and re-issuing its certificates from the same CA.
const RECIPE_STEPS: &[&str] = &[
    "recipe-ca",
    "recipe-server-key",
    "recipe-server-csr",
    "recipe-server-crt",
    "recipe-check",
    "recipe-ca-plain",
    "recipe-reissue",
    "recipe-reissue-check",
];

/// Bounded waits: generous for a loaded 2-core CI machine, still far below a minute.
const START: Duration = Duration::from_secs(15);
const STEP: Duration = Duration::from_secs(15);

/// Stands in for the laptop's address 192.168.1.5 of the guide.
const LAPTOP: &str = "127.0.0.2";

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Whether Mosquitto's broker and clients are installed; skips (with a
/// printed reason) or, under `MQTT_INTEROP=1`, fails when they are not.
fn mosquitto_installed(test: &str) -> bool {
    let missing: Vec<&str> = ["mosquitto", "mosquitto_sub", "mosquitto_pub"]
        .into_iter()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!(
        "{test}: Mosquitto combinations skipped: {} not installed (apt-get install mosquitto mosquitto-clients)",
        missing.join(", ")
    );
    assert!(
        std::env::var("MQTT_INTEROP").as_deref() != Ok("1"),
        "MQTT_INTEROP=1: {reason}"
    );
    println!("{reason}");
    false
}

/// Mosquitto started as root drops to user `mosquitto` (and we must not edit
/// the guide's files to add `user root`), so it could not read the test's
/// 0700 temporary directory or the 0600 keys gen-certs writes.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn make_readable_by_everyone(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()))
    };
    mode(dir, 0o755);
    for entry in walk(dir) {
        mode(&entry, if entry.is_dir() { 0o755 } else { 0o644 });
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// One reader following the guide: a temporary directory, two free ports,
/// the guide's files written there.
struct Guide {
    doc: Doc,
    dir: tempfile::TempDir,
    plain_port: u16,
    tls_port: u16,
}

impl Guide {
    fn new() -> Guide {
        Guide::open("guide.md")
    }

    fn open(doc: &str) -> Guide {
        let doc = Doc::load(doc);
        let dir = tempfile::tempdir().expect("a temporary directory");
        // Two different ports: `free_port` never hands one out twice.
        let plain_port = free_port();
        let tls_port = free_port();
        let g = Guide {
            doc,
            dir,
            plain_port,
            tls_port,
        };
        for (name, content) in &g.doc.files {
            std::fs::write(g.dir.path().join(name), g.substitute(content))
                .unwrap_or_else(|e| panic!("writing {name}: {e}"));
        }
        g
    }

    fn substitute(&self, text: &str) -> String {
        let text = replace_token(text, "1883", &self.plain_port.to_string());
        let text = replace_token(&text, "8883", &self.tls_port.to_string());
        replace_token(&text, "192.168.1.5", LAPTOP)
    }

    /// The program and arguments of step `name`, after substitution.
    fn command(&self, name: &str) -> (PathBuf, Vec<String>) {
        assert!(
            STEPS.contains(&name) || RECIPE_STEPS.contains(&name),
            "step {name} is not in STEPS or RECIPE_STEPS"
        );
        let line = self.substitute(self.doc.step(name));
        let mut words = shell_words(&line).into_iter();
        let program = words.next().unwrap_or_default();
        let mut args: Vec<String> = words.collect();
        let program = match program.as_str() {
            "cargo" => {
                // cargo run [--release] --example NAME [-- ARGS...]
                let mut rest = args.iter();
                assert_eq!(rest.next().map(String::as_str), Some("run"), "{line}");
                let mut example = None;
                let mut consumed = 1;
                for a in rest.by_ref() {
                    consumed += 1;
                    match a.as_str() {
                        "--release" => {}
                        "--example" => {}
                        "--" => break,
                        name if example.is_none() => example = Some(name.to_string()),
                        other => panic!("step {name}: unexpected cargo argument {other:?}"),
                    }
                }
                args.drain(..consumed);
                example_binary(&example.unwrap_or_else(|| panic!("step {name}: no --example")))
            }
            "mosquitto" | "mosquitto_sub" | "mosquitto_pub" | "openssl" => {
                which(&program).unwrap_or_else(|| panic!("{program} is not installed"))
            }
            other => panic!(
                "step {name}: the docs run only cargo, openssl and Mosquitto's tools, not {other:?}"
            ),
        };
        (program, args)
    }

    /// Starts step `name` in the background.
    fn start(&self, name: &str) -> Proc {
        let (program, args) = self.command(name);
        if program.ends_with("mosquitto") && running_as_root() {
            make_readable_by_everyone(self.dir.path());
        }
        Proc::spawn(name, &program, &args, self.dir.path())
    }

    /// Starts a broker step and waits until it listens.
    fn start_broker(&self, name: &str) -> Proc {
        let mut p = self.start(name);
        if name.ends_with("-mosquitto") {
            // Mosquitto prints this once every listener is open.
            p.wait_for(" running", START);
        } else {
            // Printed after bind() and listen(): connections queue from here on.
            p.wait_for("Opening ipv4 listen socket on port", START);
        }
        p
    }

    /// Runs step `name` to its end.
    fn run(&self, name: &str) -> (ExitStatus, Proc) {
        let mut p = self.start(name);
        let status = p.wait_exit(STEP);
        (status, p)
    }

    /// Checks that `p`'s output holds the doc's output block for its step
    /// (waiting for lines a background process has yet to print).
    fn check_output(&self, p: &mut Proc) {
        let Some(expected) = self.doc.outputs.get(&p.name) else {
            return;
        };
        let expected = expected.clone();
        let name = p.name.clone();
        let doc = self.doc.path.display().to_string();
        p.wait_until(
            &format!("the output shown in {doc} for {name}"),
            STEP,
            |out| missing_lines(&expected, out).is_empty(),
        );
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Whose program plays a part.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Ours,
    Mosquitto,
}

fn step_name(level: &str, part: &str, who: Who) -> String {
    match who {
        Who::Ours => format!("{level}-{part}"),
        Who::Mosquitto => format!("{level}-{part}-mosquitto"),
    }
}

/// The combinations the guide uses: our broker with our clients, our broker
/// with Mosquitto's clients, Mosquitto's broker with our clients.
fn combinations(test: &str) -> Vec<(Who, Who)> {
    let mut c = vec![(Who::Ours, Who::Ours)];
    if mosquitto_installed(test) {
        c.push((Who::Ours, Who::Mosquitto));
        c.push((Who::Mosquitto, Who::Ours));
    }
    c
}

/// Broker, subscriber in the background, publisher: the subscriber prints
/// `ssltopic testing` and the broker logged the PUBLISH.
fn exchange(g: &Guide, level: &str, broker: Who, clients: Who) {
    let mut b = g.start_broker(&step_name(level, "broker", broker));
    let mut sub = g.start(&step_name(level, "sub", clients));
    b.wait_for("Sending SUBACK to", STEP);
    let (status, mut publisher) = g.run(&step_name(level, "pub", clients));
    assert!(
        status.success(),
        "{level} ({broker:?} broker, {clients:?} clients): publisher exited with {status}\n{}",
        publisher.output()
    );
    let deadline = std::time::Instant::now() + STEP;
    while !sub.stdout().lines().any(|l| l == "ssltopic testing") {
        assert!(
            std::time::Instant::now() < deadline,
            "{level} ({broker:?} broker, {clients:?} clients): the subscriber did not print `ssltopic testing`\nsubscriber:\n{}\nbroker:\n{}",
            sub.output(),
            b.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    b.wait_for("Received PUBLISH from", STEP);
    assert!(b.output().contains("'ssltopic'"), "{}", b.output());
    for p in [&mut b, &mut sub, &mut publisher] {
        g.check_output(p);
    }
}

fn run_level(level: &str, test: &str, g: &Guide) {
    for (broker, clients) in combinations(test) {
        exchange(g, level, broker, clients);
    }
}

/// Runs the guide's `gen-certs` step (and its offline check).
fn make_certs(g: &Guide) {
    let (status, mut p) = g.run("certs");
    assert!(status.success(), "gen-certs failed:\n{}", p.output());
    g.check_output(&mut p);
    assert!(g.path().join("certs/client.crt").is_file());
    let (status, mut p) = g.run("certs-check");
    assert!(status.success(), "tls-check failed:\n{}", p.output());
    g.check_output(&mut p);
}

#[test]
fn guide_marks_exactly_the_steps_this_test_runs() {
    let doc = Doc::load("guide.md");
    let marked: BTreeSet<&str> = doc.steps.keys().map(String::as_str).collect();
    let wanted: BTreeSet<&str> = STEPS.iter().copied().collect();
    assert_eq!(
        marked, wanted,
        "docs/guide.md marks other steps than tests/guide.rs runs"
    );
    let files: BTreeSet<&str> = doc.files.keys().map(String::as_str).collect();
    assert_eq!(files, FILES.iter().copied().collect());
    for name in doc.outputs.keys() {
        assert!(
            wanted.contains(name.as_str()),
            "output block for unknown step {name}"
        );
    }
    for (name, cmd) in &doc.steps {
        let mosquitto = name.ends_with("-mosquitto");
        assert_eq!(
            cmd.starts_with("mosquitto"),
            mosquitto,
            "step {name}: steps named *-mosquitto (and only they) run Mosquitto's tools: {cmd}"
        );
    }
}

#[test]
fn step1_one_machine_plain_tcp() {
    let g = Guide::new();
    run_level("plain", "step1", &g);
}

#[test]
fn step2_remote_subscriber_dials_the_laptops_address() {
    let g = Guide::new();
    run_level("remote", "step2", &g);
}

#[test]
fn step3_server_authentication_with_cafile_only() {
    let g = Guide::new();
    make_certs(&g);
    run_level("tls", "step3", &g);
}

#[test]
fn step4_client_authentication_with_require_certificate() {
    let g = Guide::new();
    make_certs(&g);
    run_level("mutual", "step4", &g);
}

#[test]
fn step5_full_system_and_the_two_failures() {
    let g = Guide::new();
    make_certs(&g);
    let mosquitto = mosquitto_installed("step5");

    // The seed's ssl.conf unchanged, the Pi on the laptop's address, the laptop publishing.
    let mut broker = g.start_broker("full-broker");
    let mut sub = g.start("full-sub");
    broker.wait_for("Sending SUBACK to", STEP);
    let (status, mut publisher) = g.run("full-pub");
    assert!(status.success(), "{}", publisher.output());
    sub.wait_for("ssltopic testing", STEP);
    assert!(sub.stdout().lines().any(|l| l == "ssltopic testing"));
    for p in [&mut sub, &mut publisher] {
        g.check_output(p);
    }

    // Failure 1: no client certificate under require_certificate true.
    let (status, mut p) = g.run("fail-no-cert");
    assert_eq!(status.code(), Some(1), "{}", p.output());
    let out = p.output();
    assert!(
        out.contains(&format!(
            "the broker at {LAPTOP} requires a client certificate, and none was sent; pass --cert client.crt --key client.key"
        )),
        "pi-subscriber without --cert must say a certificate is needed, got:\n{out}"
    );
    g.check_output(&mut p);
    broker.wait_for("sent no certificate; require_certificate is on", STEP);

    // Failure 2: a certificate for 192.168.1.5 (here 127.0.0.2), dialling 127.0.0.1.
    let (status, mut p) = g.run("fail-wrong-name");
    assert_eq!(status.code(), Some(1), "{}", p.output());
    let out = p.output();
    assert!(
        out.contains(&format!(
            "server certificate is for {LAPTOP}, but you connected to 127.0.0.1; connect with -h {LAPTOP} or re-issue the certificate with that name"
        )),
        "pi-subscriber dialling the wrong name must say which names are involved, got:\n{out}"
    );
    g.check_output(&mut p);

    if mosquitto {
        // Mosquitto's client meets the same two failures with less to go on;
        // its words vary with the handshake's timing, so only the exit code
        // is asserted (the guide lists what it may print).
        for name in ["fail-no-cert-mosquitto", "fail-wrong-name-mosquitto"] {
            let (status, p) = g.run(name);
            assert!(!status.success(), "{name}: {}", p.output());
        }
        g.check_output(&mut broker);
        drop(broker);

        // Mosquitto 2 with the same unchanged ssl.conf refuses even a client
        // with a valid certificate (no allow_anonymous, no
        // use_identity_as_username): our subscriber says so and exits 5.
        let mut mosq = g.start_broker("full-broker-mosquitto");
        let (status, p) = g.run("full-sub");
        assert_eq!(status.code(), Some(5), "{}", p.output());
        assert!(
            p.output()
                .contains("Connection Refused: Not authorized (0x87)"),
            "{}",
            p.output()
        );
        g.check_output(&mut mosq);
    } else {
        g.check_output(&mut broker);
    }
}

#[test]
fn demo_runs_the_guide_in_one_command() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut p = Proc::spawn("demo", &example_binary("demo"), &[], dir.path());
    let status = p.wait_exit(Duration::from_secs(45));
    assert!(
        status.success(),
        "demo exited with {status}:\n{}",
        p.output()
    );
    assert!(
        p.stdout().contains("ssltopic testing"),
        "demo did not print `ssltopic testing`:\n{}",
        p.output()
    );
}

#[test]
fn embedding_examples_exchange_a_message_and_exit() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, expect) in [
        ("embed-broker", "[pi-0001] ssltopic testing"),
        ("core-without-tokio", "[pi] ssltopic testing"),
    ] {
        let mut p = Proc::spawn(name, &example_binary(name), &[], dir.path());
        let status = p.wait_exit(STEP);
        assert!(
            status.success(),
            "{name} exited with {status}:\n{}",
            p.output()
        );
        assert!(
            p.stdout().lines().any(|l| l == expect),
            "{name} did not print {expect:?}:\n{}",
            p.output()
        );
    }
    let mut p = Proc::spawn(
        "embed-broker",
        &example_binary("embed-broker"),
        &[],
        dir.path(),
    );
    p.wait_exit(STEP);
    assert!(
        p.stdout().contains("[intruder] refused:"),
        "the custom Authenticator must refuse a wrong token:\n{}",
        p.output()
    );
}

#[test]
fn existing_recipe_certificates_are_reissued_from_the_same_ca() {
    let g = Guide::open("existing-mosquitto-files.md");
    let marked: BTreeSet<&str> = g.doc.steps.keys().map(String::as_str).collect();
    assert_eq!(marked, RECIPE_STEPS.iter().copied().collect());
    if which("openssl").is_none() {
        let reason = "existing-mosquitto-files: skipped: openssl is not installed";
        assert!(
            std::env::var("MQTT_INTEROP").as_deref() != Ok("1"),
            "MQTT_INTEROP=1: {reason}"
        );
        println!("{reason}");
        return;
    }
    for step in [
        "recipe-ca",
        "recipe-server-key",
        "recipe-server-csr",
        "recipe-server-crt",
    ] {
        let (status, p) = g.run(step);
        assert!(status.success(), "{step}: {}", p.output());
    }
    // tls-check refuses the version 1 certificate, saying why and what to run.
    let (status, mut p) = g.run("recipe-check");
    assert_eq!(status.code(), Some(1), "{}", p.output());
    let out = p.output();
    assert!(
        out.contains("version 1 certificate") && out.contains("--ca-cert ca.crt --ca-key ca.key"),
        "tls-check must explain the version 1 certificate and give the gen-certs command:\n{out}"
    );
    g.check_output(&mut p);
    let (status, p) = g.run("recipe-ca-plain");
    assert!(status.success(), "{}", p.output());
    let (status, mut p) = g.run("recipe-reissue");
    assert!(status.success(), "{}", p.output());
    g.check_output(&mut p);
    assert_eq!(
        std::fs::read(g.path().join("certs/ca.crt")).expect("certs/ca.crt"),
        std::fs::read(g.path().join("ca.crt")).expect("ca.crt"),
        "re-issuing must keep the CA certificate the Pi already has"
    );
    let (status, mut p) = g.run("recipe-reissue-check");
    assert!(status.success(), "{}", p.output());
    g.check_output(&mut p);
}
