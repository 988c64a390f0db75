//! Free loopback ports for the brokers and proxies the workspace's tests
//! start. The one copy for every test crate: the root tests, mqtt-tls's,
//! mqtt-broker-core's and mqtt-client's include this file by path (the
//! crates are not published).
// Each test binary uses what it needs of this file.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Mutex;

/// A free loopback port, handed out once per test process.
///
/// The port comes from a socket that is bound but never listens, so no
/// test's readiness probe can connect to it in the instant before it is
/// released; and every port handed out is remembered ([`reserve_port`]),
/// so two tests running in parallel never get the same one (the kernel may
/// offer a released port again at once). A listening `TcpListener` bound
/// and dropped gives neither guarantee: with one, a parallel test's
/// `free_port` or cut proxy could hold a port another test had just been
/// given, for an instant, while that test's readiness probe connected to
/// it; the probe succeeded, the connection was reset, and the test's first
/// real connection, made before its broker listened, was refused (about
/// once in 30 runs of mqtt-client's tests/drops.rs).
pub fn free_port() -> u16 {
    loop {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind("127.0.0.1:0".parse().expect("an address"))
            .expect("bind to a free loopback port");
        let port = socket.local_addr().expect("its address").port();
        if reserve_port(port) {
            return port;
        }
    }
}

/// Records `port` as handed out in this test process (for a port a test
/// got some other way, such as a proxy's own listener); `false` if it
/// already was. Ports handed out here are never handed out again.
pub fn reserve_port(port: u16) -> bool {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    HANDED_OUT.lock().expect("not poisoned").insert(port)
}
