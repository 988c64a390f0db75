//! The tokio driver for embedders: asynchronous authentication that lets
//! everyone else in while one check waits, and the event stream.
#![cfg(feature = "tokio")]

mod driver_support;

use driver_support::*;
use mqtt_broker_core::driver::{Listener, ServerBuilder};
use mqtt_broker_core::mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use mqtt_broker_core::{AuthDecision, Authenticator, BrokerConfig, DisconnectReason, Event};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_waits_for_its_check_while_a_hundred_others_connect_and_exchange_messages() {
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    let server = ServerBuilder::new(BrokerConfig::default())
        .listener(Listener::tcp(loopback()))
        .async_authenticator(move |req| {
            let gate = gate.clone();
            async move {
                if req.username.as_deref() == Some("slow") {
                    // A database that takes its time.
                    gate.notified().await;
                }
                match req.password.as_deref() {
                    Some(b"secret") => AuthDecision::Allow,
                    _ => AuthDecision::Deny(ReasonCode::BadUserNameOrPassword),
                }
            }
        })
        .start()
        .await
        .unwrap();
    let addr = server.local_addrs()[0];

    // The slow client's CONNECT goes out; its CONNACK must wait.
    let slow = tokio::spawn(async move {
        RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "slow", |c| {
            c.username = Some("slow".into());
            c.password = Some("secret".into());
        })
        .await
    });

    // Meanwhile 100 clients connect, subscribe and exchange messages.
    let mut subscriber = {
        let (mut c, ack) =
            RawClient::connect(tcp(addr).await, ProtocolVersion::V3_1_1, "sub", |c| {
                c.username = Some("u".into());
                c.password = Some("secret".into());
            })
            .await;
        assert_eq!(ack.reason_code, ReasonCode::Success);
        c.subscribe("load/#", QoS::AtLeastOnce).await;
        c
    };
    let mut publishers = Vec::new();
    for i in 0..99 {
        publishers.push(tokio::spawn(async move {
            let (mut c, ack) = RawClient::connect(
                tcp(addr).await,
                ProtocolVersion::V3_1_1,
                &format!("p{i}"),
                |c| {
                    c.username = Some("u".into());
                    c.password = Some("secret".into());
                },
            )
            .await;
            assert_eq!(ack.reason_code, ReasonCode::Success);
            c.publish(&format!("load/{i}"), b"x", QoS::AtLeastOnce, false)
                .await;
            c
        }));
    }
    let mut clients = Vec::new();
    for p in publishers {
        clients.push(tokio::time::timeout(WAIT, p).await.unwrap().unwrap());
    }
    let mut got = std::collections::HashSet::new();
    while got.len() < 99 {
        let p = subscriber.expect_publish().await;
        got.insert(p.topic.to_string());
    }
    // A wrong password is refused by the same async check.
    let (_, ack) = RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "bad", |c| {
        c.username = Some("u".into());
        c.password = Some("wrong".into());
    })
    .await;
    assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);

    // All of that happened while the slow check was still waiting.
    assert!(!slow.is_finished(), "the slow client was answered early");
    release.notify_one();
    let (_, ack) = tokio::time::timeout(WAIT, slow).await.unwrap().unwrap();
    assert_eq!(ack.reason_code, ReasonCode::Success);
    server.shutdown().await;
}

#[tokio::test]
async fn an_async_check_that_never_answers_is_refused_after_auth_timeout() {
    let config = BrokerConfig::default().auth_timeout(Duration::from_millis(300));
    let server = ServerBuilder::new(config)
        .listener(Listener::tcp(loopback()))
        .async_authenticator(|_| std::future::pending())
        .start()
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let (_, ack) = RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "x", |_| {}).await;
    assert_eq!(ack.reason_code, ReasonCode::ServerUnavailable);
    let why = ack
        .properties
        .reason_string
        .clone()
        .map(|s| s.to_string())
        .unwrap_or_default();
    assert!(why.contains("auth_timeout"), "{why}");
    server.shutdown().await;
}

/// A synchronous authenticator that defers: the program answers through
/// `Server::complete_auth` when the event arrives.
struct AskTheProgram;

impl Authenticator for AskTheProgram {
    fn authenticate(&self, _: &mqtt_broker_core::AuthRequest<'_>) -> AuthDecision {
        AuthDecision::Defer
    }
}

#[tokio::test]
async fn events_report_clients_subscriptions_and_pending_checks() {
    let server = ServerBuilder::new(BrokerConfig::default())
        .listener(Listener::tcp(loopback()))
        .authenticator(Box::new(AskTheProgram))
        .start()
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let mut events = server.events();

    let client = tokio::spawn(async move {
        let (mut c, ack) = RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "pi", |c| {
            c.username = Some("pi".into());
        })
        .await;
        assert_eq!(ack.reason_code, ReasonCode::Success);
        c.subscribe("sensors/#", QoS::AtLeastOnce).await;
        c.send(Packet::Disconnect(Default::default())).await;
    });
    let connection = match next(&mut events).await {
        Event::AuthPending {
            connection,
            request,
        } => {
            assert_eq!(request.client_id, "pi");
            assert_eq!(request.username.as_deref(), Some("pi"));
            assert!(request.remote_addr.ip().is_loopback());
            connection
        }
        other => panic!("{other:?}"),
    };
    assert!(server.complete_auth(connection, AuthDecision::Allow));
    match next(&mut events).await {
        Event::ClientConnected {
            client_id,
            username,
            remote_addr,
            ..
        } => {
            assert_eq!(client_id, "pi");
            assert_eq!(username.as_deref(), Some("pi"));
            assert!(remote_addr.ip().is_loopback());
        }
        other => panic!("{other:?}"),
    }
    match next(&mut events).await {
        Event::Subscribed { filters, .. } => {
            assert_eq!(filters, [("sensors/#".to_string(), Ok(QoS::AtLeastOnce))])
        }
        other => panic!("{other:?}"),
    }
    match next(&mut events).await {
        Event::ClientDisconnected {
            client_id,
            reason,
            reason_code,
            ..
        } => {
            assert_eq!(client_id, "pi");
            assert_eq!(reason, DisconnectReason::ClientDisconnected);
            assert_eq!(reason_code, Some(ReasonCode::Success));
        }
        other => panic!("{other:?}"),
    }
    client.await.unwrap();
    assert_eq!(events.lost(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_reader_that_falls_behind_loses_the_oldest_events_and_is_told_how_many() {
    let server = ServerBuilder::new(BrokerConfig::default())
        .listener(Listener::tcp(loopback()))
        .event_capacity(4)
        .start()
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let mut events = server.events();
    // 10 clients connect and leave (20 events) while nobody reads.
    for i in 0..10 {
        let (c, _) = RawClient::connect(
            tcp(addr).await,
            ProtocolVersion::V3_1_1,
            &format!("c{i}"),
            |_| {},
        )
        .await;
        c.disconnect().await;
    }
    // The broker kept serving: a new client still connects.
    let (_, ack) =
        RawClient::connect(tcp(addr).await, ProtocolVersion::V3_1_1, "late", |_| {}).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut seen = 0;
    while events.try_recv().is_some() {
        seen += 1;
    }
    assert_eq!(seen, 4, "the newest four are kept");
    assert!(events.lost() >= 17, "lost {}", events.lost());
    server.shutdown().await;
}

async fn next(events: &mut mqtt_broker_core::driver::EventStream) -> Event {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .expect("server running")
}

#[tokio::test]
async fn a_stream_the_program_accepted_itself_is_served_with_its_settings() {
    let server = ServerBuilder::new(BrokerConfig::default())
        .start()
        .await
        .unwrap();
    // The program's own listener, e.g. one that also speaks another protocol.
    let own = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let addr = own.local_addr().unwrap();
    let mut events = server.events();
    let client = tokio::spawn(async move {
        let (mut c, ack) =
            RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "handed", |_| {}).await;
        assert_eq!(ack.reason_code, ReasonCode::Success);
        c.subscribe("t", QoS::AtMostOnce).await;
        c.publish("t", b"hello", QoS::AtMostOnce, false).await;
        assert_eq!(&c.expect_publish().await.payload[..], b"hello");
    });
    let (stream, peer) = own.accept().await.unwrap();
    let info = mqtt_broker_core::ConnectionInfo::new(peer).with_listener(
        mqtt_broker_core::ListenerSettings::default().mount_point(Some("tenant/".into())),
    );
    let task = server.serve(stream, info);
    tokio::time::timeout(WAIT, client).await.unwrap().unwrap();
    match next(&mut events).await {
        Event::ClientConnected { remote_addr, .. } => assert_eq!(remote_addr, peer),
        other => panic!("{other:?}"),
    }
    // The listener settings given with the stream apply: the mount point.
    match next(&mut events).await {
        Event::Subscribed { filters, .. } => assert_eq!(filters[0].0, "t"),
        other => panic!("{other:?}"),
    }
    let topics: Vec<String> =
        server.with_broker(|b| b.session_client_ids().map(str::to_string).collect());
    assert_eq!(topics, ["handed"]);
    drop(server);
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn websockets_on_a_path_of_the_programs_own_http_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = ServerBuilder::new(BrokerConfig::default())
        .start()
        .await
        .unwrap();
    let http = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let addr = http.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let (ws, protocol) =
            mqtt_tls::websocket::connect(tcp(addr).await, &format!("ws://{addr}/mqtt"))
                .await
                .expect("upgrade answered by the program");
        assert_eq!(protocol.as_deref(), Some("mqtt"));
        let (mut c, ack) = RawClient::connect(ws, ProtocolVersion::V3_1_1, "web", |_| {}).await;
        assert_eq!(ack.reason_code, ReasonCode::Success);
        c.subscribe("w", QoS::AtLeastOnce).await;
        c.publish("w", b"over ws", QoS::AtMostOnce, false).await;
        assert_eq!(&c.expect_publish().await.payload[..], b"over ws");
    });
    // A toy HTTP server: reads the request head, answers the upgrade itself.
    let (mut stream, peer) = http.accept().await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1);
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("GET /mqtt "), "{head}");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let accept = mqtt_tls::websocket::accept_key(header("sec-websocket-key").as_bytes());
    let protocol =
        mqtt_tls::websocket::choose_subprotocol([header("sec-websocket-protocol").as_str()])
            .expect("client offers mqtt");
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await.unwrap();
    server.serve_websocket(stream, mqtt_broker_core::ConnectionInfo::new(peer));
    tokio::time::timeout(WAIT, client).await.unwrap().unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn a_listener_from_a_socket_the_program_bound() {
    let socket = std::net::TcpListener::bind(loopback()).unwrap();
    let addr = socket.local_addr().unwrap();
    let server = ServerBuilder::new(BrokerConfig::default())
        .listener(Listener::from_std(socket).unwrap())
        .start()
        .await
        .unwrap();
    assert_eq!(server.local_addrs(), [addr]);
    let (_, ack) = RawClient::connect(tcp(addr).await, ProtocolVersion::V3_1_1, "x", |_| {}).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    server.shutdown().await;
}

#[tokio::test]
async fn a_shutdown_handle_and_dropping_the_server_both_stop_it() {
    for by_handle in [true, false] {
        let server = ServerBuilder::new(BrokerConfig::default())
            .listener(Listener::tcp(loopback()))
            .start()
            .await
            .unwrap();
        let addr = server.local_addrs()[0];
        let (mut c, _) =
            RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "x", |_| {}).await;
        let handle = server.shutdown_handle();
        assert!(!handle.is_stopped());
        let kept = if by_handle {
            tokio::spawn({
                let handle = handle.clone();
                async move { handle.shutdown() }
            })
            .await
            .unwrap();
            Some(server)
        } else {
            drop(server);
            None
        };
        assert!(handle.is_stopped());
        // The client is told, then the connection ends.
        match tokio::time::timeout(WAIT, c.recv()).await.unwrap() {
            Some(Packet::Disconnect(d)) => {
                assert_eq!(d.reason_code, ReasonCode::ServerShuttingDown)
            }
            other => panic!("{other:?}"),
        }
        assert!(tokio::time::timeout(WAIT, c.recv())
            .await
            .unwrap()
            .is_none());
        // Nobody is accepted any more.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = match tokio::net::TcpStream::connect(addr).await {
            Err(_) => true,
            Ok(mut s) => {
                use tokio::io::AsyncReadExt;
                let mut b = [0u8; 1];
                matches!(
                    tokio::time::timeout(WAIT, s.read(&mut b)).await,
                    Ok(Ok(0)) | Ok(Err(_))
                )
            }
        };
        assert!(refused, "still accepting after shutdown");
        if let Some(server) = kept {
            server.shutdown().await;
        }
    }
}
