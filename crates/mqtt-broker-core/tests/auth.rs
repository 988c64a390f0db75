//! Authentication (anonymous, passwords, certificates, enhanced AUTH) and
//! authorisation (ACL reason codes), both versions.
mod util;

use bytes::Bytes;
use mqtt_broker_core::{
    Access, AclRequest, AuthDecision, AuthExchange, AuthRequest, AuthStep, Authenticator,
    Authorizer, Broker, BrokerConfig, ConnectionInfo, Event, ListenerSettings, PasswordMap,
    PeerCertificate,
};
use mqtt_codec::{Auth, Packet, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};
use util::*;

const BOTH: [ProtocolVersion; 2] = [V3, V5];

fn no_anonymous() -> BrokerConfig {
    BrokerConfig::default().allow_anonymous(false)
}

fn tls_info(port: u16, listener: ListenerSettings, cn: Option<&str>) -> ConnectionInfo {
    ConnectionInfo::new(addr(port))
        .with_listener(listener)
        .with_tls(Some(PeerCertificate::new(
            cn.map(str::to_string),
            format!("CN={},O=Home", cn.unwrap_or("")),
        )))
}

fn connected_username(h: &Harness, client_id: &str) -> Option<Option<String>> {
    h.events.iter().find_map(|e| match e {
        Event::ClientConnected {
            client_id: c,
            username,
            ..
        } if c == client_id => Some(username.clone()),
        _ => None,
    })
}

#[test]
fn anonymous_client_is_refused_when_allow_anonymous_is_off_and_told_why() {
    for v in BOTH {
        let mut h = Harness::new(no_anonymous());
        let (id, ack) = h.connect_with(connect(v, "anon"));
        assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
        assert!(h.is_closed(id));
        if v.is_v5() {
            let why = ack.properties.reason_string.clone().expect("reason string");
            assert!(why.contains("allow_anonymous"), "{why}");
        }
    }
}

#[test]
fn client_with_a_username_is_not_anonymous() {
    let mut h = Harness::new(no_anonymous());
    let mut c = connect(V3, "u");
    c.username = Some("pi".into());
    let (_, ack) = h.connect_with(c);
    assert_eq!(ack.reason_code, ReasonCode::Success);
}

#[test]
fn certificate_verified_under_require_certificate_authenticates_without_username() {
    for v in BOTH {
        let mut h = Harness::new(no_anonymous());
        let listener = ListenerSettings::default()
            .port(8883)
            .require_certificate(true);
        let id = h.open_with(tls_info(40000, listener, Some("sensor-1")));
        let ack = h.send_connect(id, connect(v, "sensor"));
        assert_eq!(
            ack.reason_code,
            ReasonCode::Success,
            "{v}: the guide's ssl.conf works unchanged"
        );
    }
}

#[test]
fn listener_allow_anonymous_overrides_the_broker_setting() {
    let mut h = Harness::new(no_anonymous());
    let listener = ListenerSettings::default().allow_anonymous(Some(true));
    let id = h.open_with(ConnectionInfo::new(addr(1)).with_listener(listener));
    assert_eq!(
        h.send_connect(id, connect(V3, "a")).reason_code,
        ReasonCode::Success
    );
}

#[test]
fn use_identity_as_username_takes_the_common_name() {
    let mut h = Harness::new(no_anonymous());
    let listener = ListenerSettings::default()
        .require_certificate(true)
        .use_identity_as_username(true);
    let id = h.open_with(tls_info(1, listener.clone(), Some("sensor-1")));
    let mut c = connect(V5, "s");
    c.username = Some("ignored".into());
    assert_eq!(h.send_connect(id, c).reason_code, ReasonCode::Success);
    assert_eq!(connected_username(&h, "s"), Some(Some("sensor-1".into())));
    // No certificate (or no CN): refused.
    let id = h.open_with(ConnectionInfo::new(addr(2)).with_listener(listener));
    assert_eq!(
        h.send_connect(id, connect(V5, "t")).reason_code,
        ReasonCode::NotAuthorized
    );
}

#[test]
fn use_subject_as_username_takes_the_whole_subject() {
    let mut h = Harness::default_config();
    let listener = ListenerSettings::default()
        .require_certificate(true)
        .use_subject_as_username(true);
    let id = h.open_with(tls_info(1, listener, Some("sensor-1")));
    assert_eq!(
        h.send_connect(id, connect(V3, "s")).reason_code,
        ReasonCode::Success
    );
    assert_eq!(
        connected_username(&h, "s"),
        Some(Some("CN=sensor-1,O=Home".into()))
    );
}

#[test]
fn wrong_password_is_refused_with_bad_username_or_password() {
    for v in BOTH {
        let broker = Broker::new(no_anonymous())
            .with_authenticator(Box::new(PasswordMap::new().with_user("pi", "raspberry")));
        let mut h = Harness::with_broker(broker);
        let mut good = connect(v, "good");
        good.username = Some("pi".into());
        good.password = Some(Bytes::from_static(b"raspberry"));
        assert_eq!(h.connect_with(good).1.reason_code, ReasonCode::Success);
        let mut bad = connect(v, "bad");
        bad.username = Some("pi".into());
        bad.password = Some(Bytes::from_static(b"nope"));
        let (id, ack) = h.connect_with(bad);
        // 3.1.1 return code 4, 5.0 0x86.
        assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
        assert!(h.is_closed(id));
        let mut unknown = connect(v, "unknown");
        unknown.username = Some("root".into());
        unknown.password = Some(Bytes::from_static(b"raspberry"));
        assert_eq!(
            h.connect_with(unknown).1.reason_code,
            ReasonCode::BadUserNameOrPassword
        );
    }
}

/// Challenge-response: the client must answer "challenge" with "response".
struct ChallengeAuth;

impl Authenticator for ChallengeAuth {
    fn authenticate(&self, _: &AuthRequest<'_>) -> AuthDecision {
        AuthDecision::Deny(ReasonCode::NotAuthorized)
    }

    fn authenticate_enhanced(&self, _: &AuthRequest<'_>, ex: &mut AuthExchange) -> AuthStep {
        if ex.method != "CHALLENGE" {
            return AuthStep::Fail(ReasonCode::BadAuthenticationMethod);
        }
        match ex.step {
            0 => AuthStep::Continue(Bytes::from_static(b"challenge")),
            _ if ex.data.as_deref() == Some(b"response") => {
                AuthStep::Success(Some(Bytes::from_static(b"welcome")))
            }
            _ => AuthStep::Fail(ReasonCode::NotAuthorized),
        }
    }
}

fn auth_packet(rc: ReasonCode, method: &str, data: &'static [u8]) -> Packet {
    let mut a = Auth {
        reason_code: rc,
        properties: Default::default(),
    };
    a.properties.authentication_method = Some(method.into());
    a.properties.authentication_data = Some(Bytes::from_static(data));
    Packet::Auth(a)
}

#[test]
fn enhanced_authentication_runs_an_auth_exchange_before_connack() {
    let mut h = Harness::with_broker(
        Broker::new(BrokerConfig::default()).with_authenticator(Box::new(ChallengeAuth)),
    );
    let id = h.open();
    h.set_version(id, V5);
    let mut c = connect(V5, "e");
    c.properties.authentication_method = Some("CHALLENGE".into());
    h.send(id, Packet::Connect(Box::new(c)));
    let got = h.recv(id);
    let [Packet::Auth(a)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(a.reason_code, ReasonCode::ContinueAuthentication);
    assert_eq!(
        a.properties.authentication_data.as_deref(),
        Some(&b"challenge"[..])
    );
    h.send(
        id,
        auth_packet(ReasonCode::ContinueAuthentication, "CHALLENGE", b"response"),
    );
    let got = h.recv(id);
    let [Packet::ConnAck(ack)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_eq!(
        ack.properties.authentication_method.as_deref(),
        Some("CHALLENGE")
    );
    assert_eq!(
        ack.properties.authentication_data.as_deref(),
        Some(&b"welcome"[..])
    );
    // Re-authentication with the same method.
    h.send(
        id,
        auth_packet(ReasonCode::ReAuthenticate, "CHALLENGE", b""),
    );
    assert!(
        matches!(&h.recv(id)[..], [Packet::Auth(a)] if a.reason_code == ReasonCode::ContinueAuthentication)
    );
    h.send(
        id,
        auth_packet(ReasonCode::ContinueAuthentication, "CHALLENGE", b"response"),
    );
    assert!(matches!(&h.recv(id)[..], [Packet::Auth(a)] if a.reason_code == ReasonCode::Success));
    assert!(!h.is_closed(id));
}

#[test]
fn enhanced_authentication_with_a_wrong_answer_is_refused() {
    let mut h = Harness::with_broker(
        Broker::new(BrokerConfig::default()).with_authenticator(Box::new(ChallengeAuth)),
    );
    let id = h.open();
    h.set_version(id, V5);
    let mut c = connect(V5, "e");
    c.properties.authentication_method = Some("CHALLENGE".into());
    h.send(id, Packet::Connect(Box::new(c)));
    h.recv(id);
    h.send(
        id,
        auth_packet(ReasonCode::ContinueAuthentication, "CHALLENGE", b"wrong"),
    );
    assert!(
        matches!(&h.recv(id)[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::NotAuthorized)
    );
    assert!(h.is_closed(id));
}

#[test]
fn unknown_authentication_method_is_refused_with_bad_authentication_method() {
    let mut h = Harness::default_config();
    let mut c = connect(V5, "e");
    c.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let (_, ack) = h.connect_with(c);
    assert_eq!(ack.reason_code, ReasonCode::BadAuthenticationMethod);
}

/// Denies everything under `secret/`.
struct NoSecrets;

impl Authorizer for NoSecrets {
    fn authorize(&self, req: &AclRequest<'_>) -> bool {
        !(req.topic.starts_with("secret/") || (req.access == Access::Read && req.topic == "hidden"))
    }
}

fn acl_harness() -> Harness {
    Harness::with_broker(Broker::new(BrokerConfig::default()).with_authorizer(Box::new(NoSecrets)))
}

#[test]
fn denied_subscription_gets_not_authorized_in_5_and_failure_in_3_1_1() {
    for v in BOTH {
        let mut h = acl_harness();
        let id = h.connect(v, "c");
        let ack = h.subscribe_with(
            id,
            "secret/x",
            SubscriptionOptions::qos(QoS::AtLeastOnce),
            None,
        );
        // 3.1.1 knows only 0x80 Failure (decoded as Unspecified error).
        let want = if v.is_v5() {
            ReasonCode::NotAuthorized
        } else {
            ReasonCode::UnspecifiedError
        };
        assert_eq!(ack.reason_codes, [want]);
    }
}

#[test]
fn denied_publish_gets_not_authorized_in_puback_and_is_not_delivered() {
    for v in BOTH {
        let mut h = acl_harness();
        let sub = h.connect(v, "sub");
        let _ = h.subscribe_with(sub, "#", SubscriptionOptions::qos(QoS::AtLeastOnce), None);
        let p = h.connect(v, "p");
        let rc = h.publish(p, "secret/x", "m", QoS::AtLeastOnce);
        let want = if v.is_v5() {
            ReasonCode::NotAuthorized
        } else {
            ReasonCode::Success
        };
        assert_eq!(rc, Some(want));
        let rc2 = h.publish(p, "secret/y", "m", QoS::ExactlyOnce);
        assert_eq!(rc2, Some(want), "PUBREC carries it too");
        assert!(h.recv_publishes(sub).is_empty());
        assert!(!h.is_closed(p));
    }
}

#[test]
fn read_access_is_checked_per_subscriber() {
    let mut h = acl_harness();
    let sub = h.connect(V5, "sub");
    h.subscribe(sub, "+", QoS::AtMostOnce);
    let p = h.connect(V5, "p");
    h.publish(p, "hidden", "m", QoS::AtMostOnce);
    h.publish(p, "shown", "m", QoS::AtMostOnce);
    let got = h.recv_publishes(sub);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].topic.as_str(), "shown");
}

#[test]
fn clients_cannot_publish_into_sys() {
    let mut h = Harness::default_config();
    let sub = h.connect(V5, "sub");
    h.subscribe(sub, "$SYS/#", QoS::AtMostOnce);
    let p = h.connect(V5, "p");
    assert_eq!(
        h.publish(p, "$SYS/broker/fake", "m", QoS::AtLeastOnce),
        Some(ReasonCode::NotAuthorized)
    );
    assert!(h.recv_publishes(sub).is_empty());
    // Except a bridge's state notification (Mosquitto's default topic).
    assert_eq!(
        h.publish(
            p,
            "$SYS/broker/connection/pi.central/state",
            "1",
            QoS::AtLeastOnce
        ),
        Some(ReasonCode::Success)
    );
    assert_eq!(h.recv_publishes(sub).len(), 1);
}
