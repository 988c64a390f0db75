//! The `laptop-broker` command line: Mosquitto's flags, its startup lines,
//! config errors that name file:line, and a clean stop on SIGTERM.

#[path = "support/ports.rs"]
mod ports;

use ports::free_port;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// The example binary cargo built next to this test (`target/<profile>/examples/`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --examples` (cargo test --workspace builds it)",
        path.display()
    );
    path
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Forwards stderr lines to a channel so the test can wait for one.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn config_error_names_file_line_and_suggests_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("ssl.conf");
    std::fs::write(
        &conf,
        "listener 8883\nkeyfil /etc/mosquitto/certs/server.key\n",
    )
    .unwrap();
    let out = Command::new(example("laptop-broker"))
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("laptop-broker runs");
    assert!(
        !out.status.success(),
        "a bad config must not start a broker"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:2", conf.display())),
        "names file:line: {err}"
    );
    assert!(err.contains("keyfile"), "suggests the key: {err}");
}

#[test]
fn without_config_it_serves_loopback_and_stops_on_sigterm() {
    let port = free_port();
    let mut child = Command::new(example("laptop-broker"))
        .args(["-p", &port.to_string(), "-v"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("laptop-broker starts");
    let rx = lines(&mut child);
    let mut broker = Broker(child);
    let mut seen = Vec::new();
    assert!(
        wait_for(&rx, "Starting in local only mode", &mut seen),
        "{seen:?}"
    );
    assert!(
        wait_for(
            &rx,
            &format!("Opening ipv4 listen socket on port {port}."),
            &mut seen
        ),
        "{seen:?}"
    );
    // A client connects: CONNECT (3.1.1, client id "cli"), then CONNACK back.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    s.set_read_timeout(Some(WAIT)).unwrap();
    use std::io::Write;
    s.write_all(&[
        0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 3, b'c', b'l', b'i',
    ])
    .unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).expect("CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 0]);
    assert!(
        wait_for(&rx, "New client connected from 127.0.0.1", &mut seen),
        "{seen:?}"
    );
    let pid = broker.0.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    assert!(wait_for(&rx, "terminating", &mut seen), "{seen:?}");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = broker.0.try_wait().expect("wait") {
            assert!(status.success(), "clean exit on SIGTERM: {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
