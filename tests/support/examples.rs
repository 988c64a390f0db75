//! The example binaries cargo built next to the test running
//! (`target/<profile>/examples/NAME`), for the root tests that run them as
//! a user would.

use std::path::{Path, PathBuf};

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
