//! `examples/gateway.rs` run as a user would: one port serves HTTP, MQTT
//! over WebSockets on `/mqtt` (passwords checked asynchronously against the
//! program's user store), and `POST /publish` goes out through the
//! program's in-process client to a WebSocket subscriber.

#[path = "support/examples.rs"]
mod examples;
use examples::example;

use mqtt_client::{Client, ClientOptions};
use mqtt_codec::{QoS, ReasonCode};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the gateway on a free port; returns it and its address.
fn start() -> (Gateway, SocketAddr) {
    let mut child = Command::new(example("gateway"))
        .args(["--listen", "127.0.0.1:0", "--user", "pi:raspberry"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("gateway starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let gateway = Gateway(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(WAIT)
        .expect("the gateway says where it listens");
    let addr = line
        .strip_prefix("gateway listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .parse()
        .expect("an address");
    (gateway, addr)
}

/// One HTTP/1.1 request; the status code and the body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("HTTP connects");
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).expect("an HTTP response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn ws_options(addr: SocketAddr, id: &str, password: &str) -> ClientOptions {
    ClientOptions::new(addr.ip().to_string(), addr.port())
        .websocket("/mqtt")
        .client_id(id)
        .credentials("pi", password.to_string())
}

#[test]
fn one_port_serves_http_mqtt_over_websockets_and_in_process_publishing() {
    let (_gateway, addr) = start();
    let (status, body) = http(addr, "GET", "/", "");
    assert_eq!(status, 200);
    assert!(body.contains("/mqtt"), "{body}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // A wrong password is refused by the program's own (async) check.
        let refused =
            tokio::time::timeout(WAIT, Client::connect(ws_options(addr, "intruder", "guess")))
                .await
                .expect("an answer in time");
        let err = refused.expect_err("refused");
        assert_eq!(
            err.connack_refusal(),
            Some(ReasonCode::BadUserNameOrPassword),
            "{err}"
        );

        let (client, mut messages) = tokio::time::timeout(
            WAIT,
            Client::connect(ws_options(addr, "browser", "raspberry")),
        )
        .await
        .expect("connects in time")
        .expect("pi's password is in the user store");
        client
            .subscribe("sensors/#", QoS::AtLeastOnce)
            .await
            .unwrap();

        // What is POSTed reaches the WebSocket subscriber, through the
        // gateway's in-process client.
        let post = tokio::task::spawn_blocking(move || {
            http(addr, "POST", "/publish?topic=sensors/kitchen&qos=1", "21.5")
        });
        let (status, body) = post.await.unwrap();
        assert_eq!(status, 200, "{body}");
        let m = tokio::time::timeout(WAIT, messages.recv())
            .await
            .expect("the message in time")
            .expect("still connected");
        assert_eq!(m.topic.as_str(), "sensors/kitchen");
        assert_eq!(&m.payload[..], b"21.5");

        // A bad request is explained, not published.
        let (status, _) = tokio::task::spawn_blocking(move || http(addr, "POST", "/publish", "x"))
            .await
            .unwrap();
        assert_eq!(status, 400);
        client.disconnect().await.unwrap();
    });
}
