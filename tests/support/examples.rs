//! The example binaries cargo built next to the test running
//! (`target/<profile>/examples/NAME`), for the root tests that run them as
//! a user would, and the processes they start.
// Each test file uses the part it needs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `target/<profile>/examples/<name>`, next to the test executable's
/// `target/<profile>/deps/`; fails with what to run when it is missing.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "example binary {} is missing: run `cargo build --examples` (or `cargo test -p mqtt-stack`, which builds the root package's examples) with the same profile and target dir",
        path.display()
    );
    path
}

/// A started example, killed (and reaped) when the test lets go of it.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Forwards the child's stderr lines to a channel so the test can wait for one.
pub fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
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

/// Reads lines (keeping them in `seen`) until one contains `needle`, for at
/// most `wait`; whether it came.
pub fn wait_for_line(
    rx: &mpsc::Receiver<String>,
    needle: &str,
    seen: &mut Vec<String>,
    wait: Duration,
) -> bool {
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
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
