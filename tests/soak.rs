//! The short soak: about 20 s of `mqtt-soak`'s whole mix (persistent
//! subscribers, QoS 0/1/2 publishers, churners, droppers, half-open holders,
//! garbage, non-readers, stalled and failed mutual-TLS handshakes) against
//! the built `laptop-broker`, with a plain and a mutual-TLS listener, a short
//! `write_timeout` and the metrics listener. Asserts what the soak checks:
//! no acknowledged QoS 1/2 message lost, no QoS 2 message twice, no
//! well-behaved client cut off, and the broker's open descriptors and live
//! tasks back where they started once every client is gone (the tool waits
//! for them, bounded); and that the hostile clients were all ended by the
//! broker. No timing is asserted. The long version and its results:
//! docs/benchmarks.md, "Soak (`mqtt-soak`)".

#[path = "support/examples.rs"]
mod examples;
#[path = "support/ports.rs"]
mod ports;

use examples::{example, stderr_lines, wait_for_line, Killed};
use ports::free_port;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The value of `"key":N` inside the object `"object":{...}` of the
/// soak's one-line JSON report (`null` is `None`).
fn field(json: &str, object: &str, key: &str) -> Option<i64> {
    let start = json.find(&format!("\"{object}\":{{"))?;
    let body = &json[start..];
    let body = &body[..body.find('}')?];
    let at = body.find(&format!("\"{key}\":"))? + key.len() + 3;
    let value: String = body[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    value.parse().ok()
}

#[test]
fn a_short_soak_loses_no_acknowledged_message_and_leaks_no_descriptor_or_task() {
    let dir = tempfile::tempdir().unwrap();
    let ca = mqtt_tls::gen::CertificateAuthority::generate().unwrap();
    let server = ca.issue_server(&["127.0.0.1".to_string()]).unwrap();
    let client = ca.issue_client("soak").unwrap();
    mqtt_tls::gen::write_set(dir.path(), &ca, &server, &[("soak".into(), client)]).unwrap();
    let path = |f: &str| dir.path().join(f).display().to_string();
    let (plain, tls, metrics) = (free_port(), free_port(), free_port());
    let conf = dir.path().join("soak.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {plain} 127.0.0.1\nallow_anonymous true\n\
             listener {tls} 127.0.0.1\nallow_anonymous true\n\
             cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n\
             metrics_listener {metrics} 127.0.0.1\nwrite_timeout 2\n",
            path("ca.crt"),
            path("server.crt"),
            path("server.key"),
        ),
    )
    .unwrap();

    let mut broker = Killed(
        Command::new(example("laptop-broker"))
            .arg("-c")
            .arg(&conf)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("laptop-broker starts"),
    );
    let lines = stderr_lines(&mut broker.0);
    let mut seen = Vec::new();
    assert!(
        wait_for_line(
            &lines,
            "Opening metrics listen socket",
            &mut seen,
            Duration::from_secs(20)
        ),
        "the broker did not start: {seen:#?}"
    );

    let args: Vec<String> = [
        "-p",
        &plain.to_string(),
        "--tls-port",
        &tls.to_string(),
        "--cafile",
        &path("ca.crt"),
        "--cert",
        &path("client.crt"),
        "--key",
        &path("client.key"),
        "--broker-pid",
        &broker.0.id().to_string(),
        "--metrics-port",
        &metrics.to_string(),
        "--duration",
        "20",
        "--sample-every",
        "5",
        // Small rates: a loaded 2-core machine keeps up.
        "--subscribers",
        "2",
        "--publishers",
        "1",
        "--rate",
        "10",
        "--churners",
        "2",
        "--half-open-keep-alive",
        "1",
        "--non-reader-hold",
        "6",
        "--bulk-rate",
        "50",
        // The broker's TLS handshake time-out is 10 s.
        "--stall-wait",
        "40",
        "--drain",
        "60",
        "--settle",
        "60",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let soak = Command::new(example("mqtt-soak"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mqtt-soak starts");
    let pid = soak.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(soak.wait_with_output());
    });
    // 20 s of churn, then at most 10 s of settling publishers, 60 s of
    // draining, 60 s of settling descriptors: it ends by itself well before.
    let out = match rx.recv_timeout(Duration::from_secs(240)) {
        Ok(out) => out.expect("mqtt-soak ran"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("mqtt-soak did not end within 240 s");
        }
    };
    let json = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let broker_log: Vec<String> = lines.try_iter().collect();
    let context = format!(
        "report: {json}\nsamples:\n{stderr}\nbroker log (last 30 lines):\n{}",
        broker_log
            .iter()
            .rev()
            .take(30)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    println!("{context}");
    let get = |o: &str, k: &str| {
        field(&json, o, k).unwrap_or_else(|| panic!("no {o}.{k} in the report\n{context}"))
    };
    assert_eq!(
        get("messages", "lost"),
        0,
        "acknowledged messages lost\n{context}"
    );
    assert_eq!(get("messages", "qos2_duplicates"), 0, "{context}");
    assert!(
        get("messages", "acked_qos1") > 0 && get("messages", "acked_qos2") > 0,
        "the publishers got nothing acknowledged\n{context}"
    );
    assert_eq!(
        get("fds", "start"),
        get("fds", "end"),
        "descriptors leaked\n{context}"
    );
    assert_eq!(
        get("tasks", "start"),
        get("tasks", "end"),
        "tasks leaked\n{context}"
    );
    assert!(
        json.contains("\"errors\":0,"),
        "well-behaved clients were cut off or refused\n{context}"
    );
    for (closed, not_closed) in [
        ("half_open_closed_by_broker", "half_open_not_closed"),
        ("garbage_closed_by_broker", "garbage_not_closed"),
        ("tls_stall_closed_by_broker", "tls_stall_not_closed"),
    ] {
        assert_eq!(get("counters", not_closed), 0, "{context}");
        assert!(get("counters", closed) > 0, "{closed}\n{context}");
    }
    assert!(get("counters", "tls_failure_refused") > 0, "{context}");
    assert_eq!(get("counters", "tls_failure_accepted"), 0, "{context}");
    assert!(out.status.success(), "mqtt-soak failed\n{context}");
}
