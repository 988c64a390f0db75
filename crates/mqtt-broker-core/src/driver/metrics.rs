//! The broker's statistics for Prometheus (`metrics_listener`): the text
//! exposition (OpenMetrics, written by `prometheus-client`) and a minimal
//! HTTP listener that serves it at `GET /metrics`.

use super::shared::Shared;
use crate::Statistics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const TARGET: &str = "mqtt_broker";

/// The path the metrics are served at.
pub const METRICS_PATH: &str = "/metrics";

/// The `Content-Type` of [`metrics_text`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a scraper has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The most bytes of request head read.
const MAX_REQUEST: usize = 8 * 1024;

/// One scrape: the statistics, written as metric families in a fixed order,
/// and the tasks alive in the broker's tokio runtime when it has one.
#[derive(Debug)]
struct Snapshot(Statistics, Option<usize>);

/// A metric family's name, help text and kind.
struct Family {
    name: &'static str,
    help: &'static str,
    counter: bool,
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        help,
        counter: false,
    }
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        help,
        counter: true,
    }
}

fn kind(f: &Family) -> MetricType {
    if f.counter {
        MetricType::Counter
    } else {
        MetricType::Gauge
    }
}

fn value(f: &Family, value: u64, m: MetricEncoder) -> Result<(), std::fmt::Error> {
    if f.counter {
        ConstCounter::new(value).encode(m)
    } else {
        // A gauge of more than i64::MAX is not a count this broker reaches.
        ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(m)
    }
}

/// Writes one family without labels.
fn single(e: &mut DescriptorEncoder, f: &Family, v: u64) -> Result<(), std::fmt::Error> {
    let m = e.encode_descriptor(f.name, f.help, None, kind(f))?;
    value(f, v, m)
}

/// Writes one family with a sample per `(label value, value)`, in the
/// order given; `label` is the label's name.
fn families(
    e: &mut DescriptorEncoder,
    f: &Family,
    label: &'static str,
    samples: impl Iterator<Item = (String, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(f.name, f.help, None, kind(f))?;
    for (label_value, v) in samples {
        let labels = [(label, label_value)];
        value(f, v, m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let plain: [(Family, u64); 22] = [
            (gauge("clients_connected", "Clients connected now ($SYS/broker/clients/connected)"), s.clients_connected),
            (gauge("clients_total", "Sessions, connected or not ($SYS/broker/clients/total)"), s.clients_total),
            (gauge("clients_maximum", "The most sessions at once ($SYS/broker/clients/maximum)"), s.clients_maximum),
            (counter("clients_expired", "Sessions expired ($SYS/broker/clients/expired)"), s.clients_expired),
            (gauge("connections_open", "Transport connections open now, connected or not"), s.connections_open),
            (counter("connections_accepted", "Transport connections accepted"), s.connections_accepted),
            (counter("connects_received", "CONNECT packets received"), s.connects_received),
            (counter("messages_received", "Control packets received ($SYS/broker/messages/received)"), s.messages_received),
            (counter("messages_sent", "Control packets sent ($SYS/broker/messages/sent)"), s.messages_sent),
            (counter("publish_messages_received", "PUBLISH packets received ($SYS/broker/publish/messages/received)"), s.publish_messages_received),
            (counter("publish_messages_sent", "PUBLISH packets sent ($SYS/broker/publish/messages/sent)"), s.publish_messages_sent),
            (counter("publish_messages_dropped", "Messages dropped ($SYS/broker/publish/messages/dropped)"), s.publish_messages_dropped),
            (counter("publish_received_bytes", "Payload bytes of PUBLISH packets received ($SYS/broker/publish/bytes/received)"), s.publish_bytes_received),
            (counter("publish_sent_bytes", "Payload bytes of PUBLISH packets sent ($SYS/broker/publish/bytes/sent)"), s.publish_bytes_sent),
            (counter("received_bytes", "Bytes received ($SYS/broker/bytes/received)"), s.bytes_received),
            (counter("sent_bytes", "Bytes sent ($SYS/broker/bytes/sent)"), s.bytes_sent),
            (gauge("retained_messages", "Retained messages ($SYS/broker/retained messages/count)"), s.retained_messages),
            (gauge("subscriptions", "Subscriptions, shared ones included ($SYS/broker/subscriptions/count)"), s.subscriptions),
            (gauge("shared_subscriptions", "Shared subscriptions ($SYS/broker/shared_subscriptions/count)"), s.shared_subscriptions),
            (gauge("queued_messages", "Messages waiting in session queues or in flight"), s.messages_stored),
            (gauge("store_messages", "Messages held: retained, queued, in flight ($SYS/broker/store/messages/count)"), s.store_messages),
            (gauge("store_bytes", "Payload bytes of the messages held ($SYS/broker/store/messages/bytes)"), s.store_bytes),
        ];
        for (f, v) in &plain {
            single(&mut e, f, *v)?;
        }
        if let Some(v) = s.heap_current {
            let f = gauge(
                "heap_current_bytes",
                "Heap in use: the embedder's heap source, else the bytes counted against memory_limit ($SYS/broker/heap/current)",
            );
            single(&mut e, &f, v)?;
        }
        if let Some(v) = s.heap_maximum {
            let f = gauge("heap_maximum_bytes", "Most heap in use so far: the embedder's heap source, else the memory_limit account ($SYS/broker/heap/maximum)");
            single(&mut e, &f, v)?;
        }
        if let Some(v) = self.1 {
            let f = gauge(
                "runtime_alive_tasks",
                "Tasks alive in the broker's tokio runtime (connections, listeners, timers, the embedder's own), the scrape's own task not counted",
            );
            single(&mut e, &f, u64::try_from(v).unwrap_or(u64::MAX))?;
        }
        let f = gauge(
            "listener_connections",
            "Transport connections open now, by listener port",
        );
        let by_port = s.connections_by_listener.iter();
        families(
            &mut e,
            &f,
            "port",
            by_port.map(|(p, n)| (p.to_string(), *n)),
        )?;
        let f = counter("disconnects", "Connected clients that went away, by reason");
        let by_reason = s.disconnects.by_reason().into_iter();
        families(
            &mut e,
            &f,
            "reason",
            by_reason.map(|(r, n)| (r.to_string(), n)),
        )
    }
}

/// `stats` in Prometheus' text exposition format (OpenMetrics), every
/// name prefixed `mqtt_broker_`; counters end in `_total`.
///
/// The counters and gauges of `$SYS/broker/...` (not the load averages:
/// Prometheus computes rates itself), plus open connections per listener
/// port (`mqtt_broker_listener_connections{port="1883"}`) and disconnects
/// per reason (`mqtt_broker_disconnects_total{reason="keep_alive_timeout"}`).
/// The heap gauges come from the embedder's heap source, or the
/// `memory_limit` account without one.
pub fn metrics_text(stats: &Statistics) -> String {
    metrics_text_with_tasks(stats, None)
}

/// [`metrics_text`] and, when given, the gauge
/// `mqtt_broker_runtime_alive_tasks` (the driver's `/metrics` and
/// `Server::metrics_text` give it).
pub(crate) fn metrics_text_with_tasks(stats: &Statistics, alive_tasks: Option<usize>) -> String {
    let mut registry = Registry::with_prefix("mqtt_broker");
    registry.register_collector(Box::new(Snapshot(stats.clone(), alive_tasks)));
    let mut out = String::new();
    // Writing into a String does not fail.
    let _ = encode(&mut out, &registry);
    out
}

/// Serves `GET /metrics` on `socket` until `stop` changes.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    socket: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = socket.accept() => match r {
                Ok((tcp, _)) => {
                    tokio::spawn(answer(shared.clone(), tcp));
                }
                Err(e) => {
                    tracing::warn!(target: TARGET, "Error accepting a metrics connection: {}", e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// What the request head asks for: `Some(true)` for `GET /metrics`,
/// `Some(false)` for anything else well-formed, `None` if it is not HTTP.
fn wants_metrics(head: &str) -> Option<bool> {
    let request_line = head.lines().next()?;
    let mut parts = request_line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target);
    Some(method == "GET" && path == METRICS_PATH)
}

/// One request per connection: reads the head (bounded in size and time),
/// answers, closes.
async fn answer(shared: Arc<Shared>, mut tcp: TcpStream) {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<(), std::io::Error>(())
    };
    if !matches!(tokio::time::timeout(READ_TIMEOUT, read).await, Ok(Ok(()))) {
        return;
    }
    let head = String::from_utf8_lossy(&buf);
    let (status, content_type, body) = match wants_metrics(&head) {
        Some(true) => {
            let stats = shared.lock().broker().stats();
            // This task answers on the broker's runtime: not one of its own.
            let tasks = tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
                .saturating_sub(1);
            let body = metrics_text_with_tasks(&stats, Some(tasks));
            ("200 OK", CONTENT_TYPE, body)
        }
        Some(false) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "Not found: the metrics are at /metrics\n".to_string(),
        ),
        None => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "Bad request\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        tcp.write_all(response.as_bytes()).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(READ_TIMEOUT, write).await;
}

#[cfg(test)]
mod tests {
    use super::wants_metrics;

    #[test]
    fn only_get_metrics_is_the_metrics() {
        assert_eq!(
            wants_metrics("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(true)
        );
        assert_eq!(
            wants_metrics("GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Some(true)
        );
        assert_eq!(wants_metrics("GET / HTTP/1.1\r\n\r\n"), Some(false));
        assert_eq!(wants_metrics("POST /metrics HTTP/1.1\r\n\r\n"), Some(false));
        assert_eq!(wants_metrics("hello"), None);
        assert_eq!(wants_metrics(""), None);
    }
}
