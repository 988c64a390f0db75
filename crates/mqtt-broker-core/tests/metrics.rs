//! `metrics_listener`: the statistics for Prometheus over HTTP, started
//! from mosquitto.conf, read with a GET over loopback after known traffic
//! and checked with a strict parser of the text exposition.
#![cfg(feature = "tokio")]

mod driver_support;

use driver_support::*;
use mqtt_broker_core::config::Config;
use mqtt_broker_core::driver::{Server, ServerBuilder, METRICS_CONTENT_TYPE};
use mqtt_broker_core::mqtt_codec::{ProtocolVersion, QoS};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

/// Sends `request` and returns (status line, headers, body) of the answer.
async fn http(addr: SocketAddr, request: &str) -> (String, BTreeMap<String, String>, String) {
    let mut tcp = tcp(addr).await;
    tcp.write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut raw))
        .await
        .expect("the server answers and closes in time")
        .expect("read");
    let text = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.split("\r\n");
    let status = lines.next().expect("status line").to_string();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").expect("header: value");
            (k.to_ascii_lowercase(), v.to_string())
        })
        .collect::<BTreeMap<_, _>>();
    assert_eq!(
        headers["content-length"].parse::<usize>().unwrap(),
        body.len()
    );
    (status, headers, body.to_string())
}

/// A strict reader of the OpenMetrics text format as the broker writes it:
/// `# HELP` / `# TYPE` before each family's samples, samples
/// `name{label="value",...} value` of a declared family (counters with
/// `_total`), integer values, and `# EOF` as the last line.
/// Returns `name{labels}` -> value.
fn parse_exposition(text: &str) -> BTreeMap<String, u64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "ends with # EOF");
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').expect("HELP name text");
            assert!(valid_name(name), "{line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                valid_name(name) && ["counter", "gauge"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{line}"
            );
        } else {
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            let (series, value) = line.rsplit_once(' ').expect("sample value");
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => {
                    let l = l.strip_suffix('}').expect("labels close");
                    for pair in l.split(',') {
                        let (k, v) = pair.split_once('=').expect("label=value");
                        assert!(valid_name(k), "{line}");
                        assert!(
                            v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                            "{line}"
                        );
                    }
                    (n, true)
                }
                None => (series, false),
            };
            assert!(valid_name(name), "{line}");
            let family = match types.get(name) {
                Some(k) => {
                    assert_eq!(k, "gauge", "{line}");
                    name
                }
                None => {
                    let family = name
                        .strip_suffix("_total")
                        .expect("counter sample ends in _total");
                    assert_eq!(
                        types.get(family).map(String::as_str),
                        Some("counter"),
                        "{line}"
                    );
                    family
                }
            };
            assert!(family.starts_with("mqtt_broker_"), "{line}");
            let _ = labels;
            let v: u64 = value
                .parse()
                .unwrap_or_else(|_| panic!("integer value: {line}"));
            assert!(
                samples.insert(series.to_string(), v).is_none(),
                "duplicate {line}"
            );
        }
    }
    samples
}

async fn wait_until(
    server: &Server,
    what: &str,
    f: impl Fn(&mqtt_broker_core::Statistics) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f(&server.stats()) {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn metrics_listener_serves_the_statistics_in_prometheus_text_format() {
    let (mqtt_port, metrics_port) = (free_port(), free_port());
    let text = format!(
        "listener {mqtt_port} 127.0.0.1\nallow_anonymous true\nsys_interval 0\nmetrics_listener {metrics_port} 127.0.0.1\n"
    );
    let (config, warnings) = Config::parse_str(&text, "metrics.conf").expect("config parses");
    assert!(warnings.is_empty(), "{warnings:?}");
    let server = ServerBuilder::from_config(&config)
        .expect("builder")
        .start()
        .await
        .expect("server starts");
    let metrics = server.metrics_addrs()[0];
    assert_eq!(metrics.port(), metrics_port);
    let mqtt = server.local_addrs()[0];

    // Known traffic: a subscriber that stays, a publisher that says
    // DISCONNECT, and a client whose connection just ends.
    let v5 = ProtocolVersion::V5;
    let (mut sub, _) = RawClient::connect(tcp(mqtt).await, v5, "sub", |_| {}).await;
    sub.subscribe("m/#", QoS::AtLeastOnce).await;
    let (mut publ, _) = RawClient::connect(tcp(mqtt).await, v5, "pub", |_| {}).await;
    publ.publish("m/1", b"hello", QoS::AtLeastOnce, false).await;
    publ.publish("m/2", b"world!", QoS::AtMostOnce, true).await;
    assert_eq!(&sub.expect_publish().await.payload[..], b"hello");
    assert_eq!(&sub.expect_publish().await.payload[..], b"world!");
    publ.disconnect().await;
    let (lost, _) = RawClient::connect(tcp(mqtt).await, v5, "lost", |_| {}).await;
    drop(lost);
    wait_until(&server, "two clients gone", |s| {
        s.disconnects.client_disconnected == 1
            && s.disconnects.connection_lost == 1
            && s.connections_open == 1
    })
    .await;

    let (status, headers, body) = http(metrics, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(headers["content-type"], METRICS_CONTENT_TYPE);
    let m = parse_exposition(&body);
    let stats = server.stats();
    // The embedder API gives the same text (nothing happened in between),
    // but for the runtime's task count: the scrape's own task may still be
    // ending.
    let tasks_gauge = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.starts_with("mqtt_broker_runtime_alive_tasks "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(tasks_gauge(&server.metrics_text()), tasks_gauge(&body));
    // The accept loop, the timer, the metrics listener and the
    // subscriber's connection at least.
    assert!(m["mqtt_broker_runtime_alive_tasks"] >= 4, "{body}");
    let port = mqtt.port();
    for (series, want) in [
        ("mqtt_broker_clients_connected", 1),
        ("mqtt_broker_clients_total", 1),
        ("mqtt_broker_clients_maximum", 2),
        ("mqtt_broker_connections_open", 1),
        ("mqtt_broker_connections_accepted_total", 3),
        ("mqtt_broker_connects_received_total", 3),
        ("mqtt_broker_publish_messages_received_total", 2),
        ("mqtt_broker_publish_messages_sent_total", 2),
        ("mqtt_broker_publish_messages_dropped_total", 0),
        ("mqtt_broker_publish_received_bytes_total", 11),
        ("mqtt_broker_publish_sent_bytes_total", 11),
        ("mqtt_broker_retained_messages", 1),
        ("mqtt_broker_subscriptions", 1),
        ("mqtt_broker_shared_subscriptions", 0),
        ("mqtt_broker_store_messages", 1),
        ("mqtt_broker_store_bytes", 6),
        ("mqtt_broker_clients_expired_total", 0),
        (
            &format!("mqtt_broker_listener_connections{{port=\"{port}\"}}") as &str,
            1,
        ),
        (
            "mqtt_broker_disconnects_total{reason=\"client_disconnected\"}",
            1,
        ),
        (
            "mqtt_broker_disconnects_total{reason=\"connection_lost\"}",
            1,
        ),
        (
            "mqtt_broker_disconnects_total{reason=\"keep_alive_timeout\"}",
            0,
        ),
        (
            "mqtt_broker_disconnects_total{reason=\"protocol_violation\"}",
            0,
        ),
    ] {
        assert_eq!(m.get(series), Some(&want), "{series} in\n{body}");
    }
    // Counters that depend on packet sizes: the same as Server::stats().
    assert_eq!(m["mqtt_broker_received_bytes_total"], stats.bytes_received);
    assert_eq!(m["mqtt_broker_sent_bytes_total"], stats.bytes_sent);
    assert_eq!(
        m["mqtt_broker_messages_received_total"],
        stats.messages_received
    );
    assert_eq!(m["mqtt_broker_messages_sent_total"], stats.messages_sent);
    // No heap source: the heap gauges carry the memory_limit account.
    let memory = stats.heap_current.expect("the memory account");
    assert_eq!(m["mqtt_broker_heap_current_bytes"], memory);
    assert!(m["mqtt_broker_heap_maximum_bytes"] >= memory);
    // Every metric served is in the documentation's table.
    let docs_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/sys-and-metrics.md");
    let docs = std::fs::read_to_string(docs_path).expect("docs/sys-and-metrics.md");
    for series in m.keys() {
        let name = series.split('{').next().unwrap_or(series);
        assert!(
            docs.contains(&format!("`{name}")),
            "{name} is not documented"
        );
    }

    // Anything but GET /metrics is 404; a request that is not HTTP is 400.
    let (status, _, _) = http(metrics, "GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _, _) = http(metrics, "POST /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _, _) = http(metrics, "hello\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 400 Bad Request");

    // A scraper that connects and says nothing does not hold up the next.
    let _silent = tcp(metrics).await;
    let (status, _, _) = http(metrics, "GET /metrics HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");

    drop(sub);
    server.shutdown().await;
}

#[test]
fn metrics_listener_is_parsed_and_checked() {
    let (c, _) = Config::parse_str("metrics_listener 9234\n", "a.conf").unwrap();
    let m = c.metrics_listener.expect("set");
    assert_eq!((m.port, m.bind_address), (9234, None));
    // Not an MQTT listener: Mosquitto's local-only mode is unchanged.
    assert!(c.local_only);
    let (c, _) = Config::parse_str("metrics_listener 9234 127.0.0.1 # local\n", "a.conf").unwrap();
    assert_eq!(
        c.metrics_listener.unwrap().bind_address.as_deref(),
        Some("127.0.0.1")
    );
    assert!(
        Config::default().metrics_listener.is_none(),
        "off by default"
    );
    for bad in [
        "metrics_listener\n",
        "metrics_listener 0\n",
        "metrics_listener x\n",
        "metrics_listener 1 a b\n",
    ] {
        let e = Config::parse_str(bad, "bad.conf").unwrap_err().to_string();
        assert!(
            e.contains("bad.conf:1") && e.contains("metrics_listener PORT [BIND_ADDRESS]"),
            "{bad}: {e}"
        );
    }
    let e = Config::parse_str("metrics_listener 1\nmetrics_listener 2\n", "two.conf")
        .unwrap_err()
        .to_string();
    assert!(e.contains("two.conf:2") && e.contains("two.conf:1"), "{e}");
}

/// `Server::runtime_alive_tasks` counts a connection's task while it is
/// open and not after it closed, and `/metrics` serves the same count.
#[tokio::test]
async fn runtime_alive_tasks_follows_the_connections() {
    use mqtt_broker_core::driver::Listener;
    use mqtt_broker_core::BrokerConfig;
    let server = ServerBuilder::new(BrokerConfig::default())
        .listener(Listener::tcp("127.0.0.1:0".parse().unwrap()))
        .metrics_listener("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .expect("server starts");
    let (mqtt, metrics) = (server.local_addrs()[0], server.metrics_addrs()[0]);
    let at_start = server.runtime_alive_tasks();
    let served = |body: &str| parse_exposition(body)["mqtt_broker_runtime_alive_tasks"];
    let wait_for = |want: usize, what: &'static str| {
        let server = &server;
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            while server.runtime_alive_tasks() != want {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{what}: {} tasks, want {want}",
                    server.runtime_alive_tasks()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    // Scrapes have ended once the count is back (their tasks are not counted
    // in what they serve, but are alive while they end).
    wait_for(at_start, "settled before the first scrape").await;
    let (_, _, body) = http(metrics, "GET /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(served(&body), at_start as u64, "{body}");

    let (client, _) = RawClient::connect(tcp(mqtt).await, ProtocolVersion::V5, "c", |_| {}).await;
    wait_for(at_start + 1, "one connection open").await;
    let (_, _, body) = http(metrics, "GET /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(served(&body), at_start as u64 + 1, "{body}");

    client.disconnect().await;
    wait_for(at_start, "the connection's task ended").await;
    server.shutdown().await;
}
