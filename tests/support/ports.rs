//! Free loopback ports for the brokers these tests start.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// A free loopback port, handed out once per test process.
///
/// The port comes from a socket that is bound but never listens, so no
/// test's readiness probe can connect to it in the instant before it is
/// released; and every port handed out is remembered, so two tests running
/// in parallel never get the same one (the kernel may offer a released
/// port again at once). A listening `TcpListener` bound and dropped gives
/// neither guarantee: that combination made tests/drops.rs of mqtt-client
/// fail about once in 30 runs.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind("127.0.0.1:0".parse().expect("an address"))
            .expect("bind to a free loopback port");
        let port = socket.local_addr().expect("its address").port();
        if HANDED_OUT.lock().expect("not poisoned").insert(port) {
            return port;
        }
    }
}
