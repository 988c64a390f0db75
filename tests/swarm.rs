//! `mqtt-swarm` against `laptop-broker`: a couple of hundred connections
//! from spread source addresses, all subscribed, one message fanned out to
//! every one of them; and the tool's refusal when the connections would
//! not fit the file limit. (How fast is measured by bench/connections.sh,
//! never asserted here.)

#![cfg(target_os = "linux")]

#[path = "support/examples.rs"]
mod examples;
#[path = "support/ports.rs"]
mod ports;

use examples::{example, stderr_lines, wait_for_line, Killed};
use std::process::{Command, Stdio};
use std::time::Duration;

const CONNECTIONS: u32 = 200;

/// The value of `"key":` in the tool's one-line JSON, up to the next `,` or `}`.
fn field<'a>(json: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\":");
    let start = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let rest = &json[start..];
    &rest[..rest.find([',', '}']).unwrap_or(rest.len())]
}

#[test]
fn every_subscriber_of_the_swarm_gets_the_fanned_out_message() {
    let port = ports::free_port();
    let mut child = Command::new(example("laptop-broker"))
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("laptop-broker starts");
    let lines = stderr_lines(&mut child);
    let broker = Killed(child);
    let mut seen = Vec::new();
    assert!(
        wait_for_line(
            &lines,
            &format!("Opening ipv4 listen socket on port {port}."),
            &mut seen,
            Duration::from_secs(20)
        ),
        "the broker did not start: {seen:?}"
    );
    let out = Command::new(example("mqtt-swarm"))
        .args([
            "-c",
            &CONNECTIONS.to_string(),
            "-p",
            &port.to_string(),
            "--broker-pid",
            &broker.0.id().to_string(),
            "--subscribe",
            "swarm/test",
            "--fan-out",
            "-q",
            "1",
            "--settle",
            "0",
            "--setup-timeout",
            "20",
            "--timeout",
            "20",
            "--json",
        ])
        .output()
        .expect("mqtt-swarm runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mqtt-swarm exits 0: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    let json = stdout.trim();
    assert_eq!(field(json, "connected"), CONNECTIONS.to_string(), "{json}");
    assert_eq!(field(json, "subacked"), CONNECTIONS.to_string(), "{json}");
    assert_eq!(field(json, "expected"), CONNECTIONS.to_string(), "{json}");
    assert_eq!(field(json, "received"), CONNECTIONS.to_string(), "{json}");
    assert_eq!(field(json, "missing"), "0", "{json}");
    assert_eq!(field(json, "duplicates"), "0", "{json}");
    assert_eq!(field(json, "publish_acked"), "true", "{json}");
    // The connections came from more than one source address, and the
    // broker's memory was sampled through /proc.
    assert!(field(json, "sources").parse::<u32>().unwrap() > 1, "{json}");
    assert!(json.contains("\"connected\":{\"rss\":"), "{json}");
    assert_eq!(field(json, "ok"), "true", "{json}");
    drop(broker);
}

#[test]
fn more_connections_than_the_file_limit_allows_stop_with_the_fix() {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("the file limit");
    let asked: u64 = 2_000_000;
    if hard >= asked + 64 {
        println!("skipped: the hard file limit ({hard}) allows {asked} connections");
        return;
    }
    // Nothing listens on the port: the tool must stop before dialling.
    let out = Command::new(example("mqtt-swarm"))
        .args(["-c", &asked.to_string(), "-p", "1"])
        .output()
        .expect("mqtt-swarm runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ulimit -n"),
        "says how to raise it: {stderr}"
    );
    assert!(stderr.contains("LimitNOFILE="), "{stderr}");
    assert!(stderr.contains("--fit-fd-limit"), "{stderr}");
}
