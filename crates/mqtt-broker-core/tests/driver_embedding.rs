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
    let config = BrokerConfig {
        auth_timeout: Duration::from_millis(300),
        ..Default::default()
    };
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
