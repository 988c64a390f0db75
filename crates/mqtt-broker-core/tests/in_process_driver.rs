//! In-process clients of the tokio driver (`Server::local_client`) with TCP
//! clients on loopback: both directions at every QoS, retained messages,
//! wills, the ACL and the authenticator, a reader that never reads, and
//! shutdown.
#![cfg(feature = "tokio")]

mod driver_support;

use bytes::Bytes;
use driver_support::*;
use mqtt_broker_core::driver::{
    LocalClient, LocalClientError, LocalMessages, LocalOptions, Server, ServerBuilder,
};
use mqtt_broker_core::mqtt_codec::{
    LastWill, ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, SubscriptionOptions,
    TopicName,
};
use mqtt_broker_core::{
    Access, AclRequest, AuthDecision, AuthRequest, Authenticator, Authorizer, BrokerConfig,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;

const V5: ProtocolVersion = ProtocolVersion::V5;
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// Every test captures the broker's log lines on its thread: `tracing`
/// caches whether a log line is wanted process-wide, when the line is first
/// reached, so one test without a subscriber could hide a line from the
/// test that checks it.
fn capture_logs() -> (LogCapture, tracing::subscriber::DefaultGuard) {
    let log = LogCapture::default();
    let guard = log.install();
    (log, guard)
}

async fn server(config: BrokerConfig) -> (Server, SocketAddr) {
    driver_support::tcp_server(config).await
}

async fn local(server: &Server, options: LocalOptions) -> (LocalClient, LocalMessages) {
    tokio::time::timeout(WAIT, server.local_client(options))
        .await
        .expect("local_client in time")
        .expect("local client connects")
}

async fn tcp_client(addr: SocketAddr, id: &str) -> RawClient<TcpStream> {
    let stream = tcp(addr).await;
    // Small packets written back to back are not held for the peer's ACK.
    stream.set_nodelay(true).unwrap();
    let (c, ack) = RawClient::connect(stream, V5, id, |_| {}).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    c
}

/// `messages_stored` once it is at most `max` (acknowledgements still on
/// their way are waited for, boundedly).
async fn stored_settles(server: &Server, max: u64) -> u64 {
    let mut stored = u64::MAX;
    for _ in 0..200 {
        stored = server.stats().messages_stored;
        if stored <= max {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stored
}

async fn recv(messages: &mut LocalMessages) -> Publish {
    tokio::time::timeout(WAIT, messages.recv())
        .await
        .expect("a message in time")
        .expect("the connection is open")
}

#[tokio::test]
async fn a_local_publisher_reaches_a_tcp_subscriber_at_every_qos() {
    let (log, _g) = capture_logs();
    let (server, addr) = server(BrokerConfig::default()).await;
    let mut sub = tcp_client(addr, "tcp-sub").await;
    sub.subscribe("plant/#", QoS::ExactlyOnce).await;
    let (app, _messages) = local(&server, LocalOptions::new("app").username("app-user")).await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let payload = format!("reading at qos {}", qos.as_u8());
        tokio::time::timeout(
            WAIT,
            app.publish("plant/boiler", payload.clone(), qos, false),
        )
        .await
        .expect("publish resolves")
        .expect("publish is taken");
        let p = sub.expect_publish().await;
        assert_eq!(p.topic.as_str(), "plant/boiler");
        assert_eq!(&p.payload[..], payload.as_bytes());
        assert_eq!(p.qos, qos);
    }
    // A client like any other: counted, and logged with its placeholder address.
    let stats = server.stats();
    assert_eq!(stats.clients_connected, 2);
    assert!(log
        .text()
        .contains("New in-process connection (shown as 127.0.0.1:0)."));
    assert!(
        log.text()
            .contains("New client connected from 127.0.0.1:0 as app (p5, c1, k0, u'app-user')."),
        "{}",
        log.text()
    );
    // Every QoS 1/2 exchange finished: nothing stored.
    assert_eq!(stored_settles(&server, 0).await, 0);
    app.disconnect().await;
    assert!(log.wait_for("Client app disconnected.").await);
    server.shutdown().await;
}

#[tokio::test]
async fn a_tcp_publisher_reaches_a_local_subscriber_at_every_qos() {
    let (_log, _g) = capture_logs();
    let (server, addr) = server(BrokerConfig::default()).await;
    let (app, mut messages) = local(&server, LocalOptions::new("app")).await;
    let granted = app
        .subscribe("cmd/+", SubscriptionOptions::qos(QoS::ExactlyOnce))
        .await
        .unwrap();
    assert_eq!(granted, QoS::ExactlyOnce);
    let mut publisher = tcp_client(addr, "tcp-pub").await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        publisher.publish("cmd/start", b"now", qos, false).await;
        let p = recv(&mut messages).await;
        assert_eq!(p.topic.as_str(), "cmd/start");
        assert_eq!(&p.payload[..], b"now");
        assert_eq!(p.qos, qos);
    }
    // The handle acknowledged the QoS 1 and 2 messages (PUBACK; PUBREC,
    // PUBREL, PUBCOMP): the session holds nothing.
    assert_eq!(stored_settles(&server, 0).await, 0);
    // Unsubscribed, it receives nothing more.
    app.unsubscribe("cmd/+").await.unwrap();
    publisher
        .publish("cmd/start", b"again", QoS::AtLeastOnce, false)
        .await;
    assert!(tokio::time::timeout(QUIET, messages.recv()).await.is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn a_local_client_sets_and_clears_a_retained_message() {
    let (_log, _g) = capture_logs();
    let (server, addr) = server(BrokerConfig::default()).await;
    let (app, mut own) = local(&server, LocalOptions::new("app")).await;
    app.publish("status/app", "online", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    assert_eq!(server.stats().retained_messages, 1);
    let mut late = tcp_client(addr, "late").await;
    late.subscribe("status/#", QoS::AtLeastOnce).await;
    let p = late.expect_publish().await;
    assert!(p.retain, "a retained message on subscribe");
    assert_eq!(&p.payload[..], b"online");

    // Retain handling and retain-as-published for the local subscriber.
    let mut opts = SubscriptionOptions::qos(QoS::AtLeastOnce);
    opts.retain_handling = RetainHandling::DoNotSend;
    app.subscribe("status/#", opts).await.unwrap();
    assert!(
        tokio::time::timeout(QUIET, own.recv()).await.is_err(),
        "DoNotSend"
    );
    let mut opts = SubscriptionOptions::qos(QoS::AtLeastOnce);
    opts.retain_as_published = true;
    app.subscribe("status/#", opts).await.unwrap();
    let p = recv(&mut own).await;
    assert!(p.retain && &p.payload[..] == b"online");

    app.clear_retained("status/app").await.unwrap();
    assert_eq!(server.stats().retained_messages, 0);
    let mut later = tcp_client(addr, "later").await;
    later.subscribe("status/#", QoS::AtLeastOnce).await;
    assert!(
        later.recv_within(QUIET).await.is_err(),
        "no retained message after the clear"
    );
    server.shutdown().await;
}

fn will(topic: &str, payload: &'static str) -> LastWill {
    LastWill {
        topic: TopicName::try_from(topic).unwrap(),
        payload: Bytes::from_static(payload.as_bytes()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    }
}

#[tokio::test]
async fn the_will_is_published_when_the_handle_drops_without_disconnect() {
    let (_log, _g) = capture_logs();
    let (server, addr) = server(BrokerConfig::default()).await;
    let mut watcher = tcp_client(addr, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;

    // Dropped: the connection is lost, the will goes out.
    let (dropped, messages) = local(
        &server,
        LocalOptions::new("dropped").will(will("wills/dropped", "gone")),
    )
    .await;
    let clone = dropped.clone();
    drop(dropped);
    assert!(
        watcher.recv_within(QUIET).await.is_err(),
        "a clone still holds the connection"
    );
    drop((clone, messages));
    let p = watcher.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("wills/dropped", &b"gone"[..])
    );

    // A normal DISCONNECT discards it.
    let (polite, _m) = local(
        &server,
        LocalOptions::new("polite").will(will("wills/polite", "gone")),
    )
    .await;
    polite.disconnect().await;
    assert!(
        watcher.recv_within(QUIET).await.is_err(),
        "no will after DISCONNECT"
    );

    // DISCONNECT 0x04 sends it.
    let (asked, _m) = local(
        &server,
        LocalOptions::new("asked").will(will("wills/asked", "bye")),
    )
    .await;
    asked.disconnect_with_will().await;
    let p = watcher.expect_publish().await;
    assert_eq!(p.topic.as_str(), "wills/asked");
    assert_eq!(server.stats().clients_connected, 1, "only the watcher");
    server.shutdown().await;
}

/// Lets `app` write anything but `secret/...`; everyone else anything.
struct NoSecrets;

impl Authorizer for NoSecrets {
    fn authorize(&self, req: &AclRequest<'_>) -> bool {
        !(req.username == Some("app")
            && req.access == Access::Write
            && req.topic.starts_with("secret/"))
    }
}

/// Records the user names it sees; refuses `mallory` with 0x86.
#[derive(Clone, Default)]
struct Gate(Arc<Mutex<Vec<Option<String>>>>);

impl Authenticator for Gate {
    fn authenticate(&self, req: &AuthRequest<'_>) -> AuthDecision {
        self.0.lock().unwrap().push(req.username.map(String::from));
        if req.username == Some("mallory") {
            AuthDecision::Deny(ReasonCode::BadUserNameOrPassword)
        } else {
            AuthDecision::Allow
        }
    }
}

#[tokio::test]
async fn the_acl_and_the_authenticator_judge_the_local_identity() {
    let (_log, _g) = capture_logs();
    let gate = Gate::default();
    let server = ServerBuilder::new(BrokerConfig::default())
        .authenticator(Box::new(gate.clone()))
        .authorizer(Box::new(NoSecrets))
        .start()
        .await
        .unwrap();
    let (app, _m) = local(&server, LocalOptions::new("app-1").username("app")).await;
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let r = app.publish("secret/key", "x", qos, false).await;
        assert_eq!(
            r,
            Err(LocalClientError::NotAuthorized),
            "QoS {}",
            qos.as_u8()
        );
    }
    app.publish("public/news", "x", QoS::AtLeastOnce, false)
        .await
        .expect("allowed topic");
    // Another identity may write there.
    let (other, _m2) = local(&server, LocalOptions::new("ops-1").username("ops")).await;
    other
        .publish("secret/key", "x", QoS::AtLeastOnce, false)
        .await
        .expect("ops may");

    let refused = server
        .local_client(LocalOptions::new("m-1").credentials("mallory", "guess"))
        .await;
    assert_eq!(
        refused.err(),
        Some(LocalClientError::Refused(ReasonCode::BadUserNameOrPassword))
    );
    assert_eq!(
        *gate.0.lock().unwrap(),
        [
            Some("app".to_string()),
            Some("ops".to_string()),
            Some("mallory".to_string())
        ]
    );
    assert_eq!(server.stats().clients_connected, 2);
    // The refused connection is gone.
    assert_eq!(server.stats().connections_open, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_local_subscriber_that_does_not_read_does_not_stall_a_tcp_subscriber() {
    let (_log, _g) = capture_logs();
    let config = BrokerConfig::default().max_queued_messages(50);
    let (server, addr) = server(config).await;
    let (app, mut unread) = local(&server, LocalOptions::new("sleepy").receive_maximum(2)).await;
    app.subscribe("feed", SubscriptionOptions::qos(QoS::AtLeastOnce))
        .await
        .unwrap();
    let mut reader = tcp_client(addr, "reader").await;
    reader.subscribe("feed", QoS::AtLeastOnce).await;
    let mut publisher = tcp_client(addr, "writer").await;
    const N: usize = 300;
    let ((), received) = tokio::join!(
        async {
            for i in 0..N {
                publisher
                    .publish("feed", format!("{i}").as_bytes(), QoS::AtLeastOnce, false)
                    .await;
                publisher
                    .publish("feed", b"qos0", QoS::AtMostOnce, false)
                    .await;
            }
        },
        async {
            let mut got = Vec::new();
            while got.len() < N {
                let p = reader.expect_publish().await;
                if p.qos == QoS::AtLeastOnce {
                    got.push(String::from_utf8(p.payload.to_vec()).unwrap());
                }
            }
            got
        }
    );
    assert_eq!(received, (0..N).map(|i| i.to_string()).collect::<Vec<_>>());
    // The sleepy client's messages waited in its session queue, bounded by
    // max_queued_messages (plus its window of 2 in flight); the rest were
    // dropped by the broker.
    let stored = stored_settles(&server, 52).await;
    assert!(stored <= 52, "{stored}");
    assert!(server.stats().publish_messages_dropped > 0);
    // Its own publications are not held up by the messages it leaves unread.
    tokio::time::timeout(WAIT, app.publish("elsewhere", "x", QoS::ExactlyOnce, false))
        .await
        .expect("a publish of the unread client resolves")
        .unwrap();
    // It still gets the first ones, in order, once it reads.
    let first = recv(&mut unread).await;
    assert_eq!(&first.payload[..], b"0");
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_reaches_the_local_client_as_a_typed_error() {
    let (_log, _g) = capture_logs();
    let (server, _addr) = server(BrokerConfig::default()).await;
    let (app, mut messages) = local(&server, LocalOptions::new("app")).await;
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("shutdown waits for the local client's task, in time");
    assert_eq!(
        app.publish("x", "y", QoS::AtLeastOnce, false).await,
        Err(LocalClientError::ShutDown)
    );
    assert_eq!(
        app.subscribe("x", SubscriptionOptions::default()).await,
        Err(LocalClientError::ShutDown)
    );
    assert!(messages.recv().await.is_none());
    // And a publish with 5.0 properties through publish_packet is refused
    // the same way (the topic was checked first).
    let mut p = Publish::new(TopicName::new("x").unwrap(), "y");
    p.properties.content_type = Some("text/plain".into());
    assert_eq!(app.publish_packet(p).await, Err(LocalClientError::ShutDown));
    assert!(matches!(
        app.publish("bad/+", "y", QoS::AtMostOnce, false).await,
        Err(LocalClientError::InvalidTopic(_))
    ));
}

#[tokio::test]
async fn a_persistent_local_session_keeps_its_messages_and_can_be_taken_over() {
    let (_log, _g) = capture_logs();
    let (server, addr) = server(BrokerConfig::default()).await;
    let keeper = || {
        LocalOptions::new("keeper")
            .clean_start(false)
            .session_expiry(60)
    };
    let (app, _m) = local(&server, keeper()).await;
    app.subscribe("jobs", SubscriptionOptions::qos(QoS::AtLeastOnce))
        .await
        .unwrap();
    app.disconnect().await;
    // Offline: the session queues the message.
    let mut publisher = tcp_client(addr, "boss").await;
    publisher
        .publish("jobs", b"while away", QoS::AtLeastOnce, false)
        .await;
    let (app, mut messages) = local(&server, keeper()).await;
    let p = recv(&mut messages).await;
    assert_eq!(&p.payload[..], b"while away");

    // Another connection with the same Client Identifier takes it over:
    // the first handle learns why (DISCONNECT 0x8E).
    let (_usurper, _m2) = local(&server, keeper()).await;
    let r = tokio::time::timeout(WAIT, app.publish("x", "y", QoS::AtLeastOnce, false))
        .await
        .expect("answered");
    assert_eq!(
        r,
        Err(LocalClientError::Disconnected(ReasonCode::SessionTakenOver))
    );
    server.shutdown().await;
}
