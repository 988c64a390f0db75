//! Bridges in the tokio driver: one task per bridge dials the remote (TCP,
//! then TLS through mqtt-tls when the bridge has `bridge_cafile` or
//! `bridge_capath`) and carries bytes and timers for the sans-IO
//! [`Bridge`], which holds all of the bridge's state.

use super::shared::{ConnSignal, Shared};
use super::DriverError;
use crate::bridge::{Bridge, BridgeAction, BridgeAddress, BridgeConfig, BridgeStats};
use bytes::{Bytes, BytesMut};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// How long a TCP connect and a TLS handshake may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle bridge looks at its queue (lazy bridges' threshold).
const IDLE_TICK: Duration = Duration::from_secs(1);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A bridge as the server holds it: the state machine (locked after the
/// broker, never across I/O) and its TLS configuration.
pub(crate) struct BridgeHandle {
    pub(crate) bridge: Mutex<Bridge>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Wakes the task when the broker has bytes for (or closed) the
    /// bridge's local connection.
    signal: Arc<ConnSignal>,
}

impl BridgeHandle {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Bridge> {
        self.bridge.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bridge's name and counters.
    pub(crate) fn stats(&self, broker: &crate::Broker) -> (String, BridgeStats) {
        let b = self.lock();
        (b.name().to_owned(), b.stats(broker))
    }
}

/// This machine's host name, for Mosquitto's default client ids.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The rustls configuration of a bridge, built as `mqtt-client` builds its
/// own (mqtt-tls's `ClientTlsOptions`), so the remote is verified the same
/// way and a wrong file fails at start with the same explained error.
pub(crate) fn tls_config(
    c: &BridgeConfig,
) -> Result<Option<Arc<rustls::ClientConfig>>, DriverError> {
    if !c.tls.enabled() {
        return Ok(None);
    }
    let mut options = mqtt_tls::ClientTlsOptions::new()
        .insecure(c.tls.insecure)
        .min_version(if c.tls.tls13_only {
            mqtt_tls::TlsVersion::Tls13
        } else {
            mqtt_tls::TlsVersion::Tls12
        });
    options.cafile = c.tls.cafile.clone();
    options.capath = c.tls.capath.clone();
    options.certfile = c.tls.certfile.clone();
    options.keyfile = c.tls.keyfile.clone();
    let config = options.build().map_err(|e| DriverError::Tls {
        origin: format!("bridge {}", c.name),
        source: Box::new(e),
    })?;
    Ok(Some(match &c.tls.alpn {
        Some(alpn) => {
            let mut with_alpn = (*config).clone();
            with_alpn.alpn_protocols = vec![alpn.as_bytes().to_vec()];
            Arc::new(with_alpn)
        }
        None => config,
    }))
}

/// Makes the bridge, opens its local connection and starts its task.
pub(crate) fn start(
    shared: &Arc<Shared>,
    config: BridgeConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    stop: watch::Receiver<bool>,
) -> (Arc<BridgeHandle>, tokio::task::JoinHandle<()>) {
    let now = Instant::now();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut bridge = Bridge::new(config, &hostname(), seed, now);
    let signal = Arc::new(ConnSignal::default());
    {
        let mut g = shared.lock();
        bridge.start(now, g.broker());
        if let Some(id) = bridge.local_connection() {
            g.register(id, signal.clone());
        }
    }
    let handle = Arc::new(BridgeHandle {
        bridge: Mutex::new(bridge),
        tls,
        signal,
    });
    let task = tokio::spawn(run(shared.clone(), handle.clone(), stop));
    (handle, task)
}

/// Runs `f` on the bridge with the broker locked (broker first, then the
/// bridge), and collects what the bridge wants written and done.
fn locked(
    shared: &Shared,
    h: &BridgeHandle,
    f: impl FnOnce(&mut Bridge, &mut crate::Broker, Instant),
) -> Step {
    let mut g = shared.lock();
    let mut b = h.lock();
    let now = Instant::now();
    let before = b.local_connection();
    if h.signal.close.swap(false, Ordering::AcqRel) {
        b.local_connection_closed(now, g.broker());
    }
    f(&mut b, g.broker(), now);
    if b.poll_timeout().is_some_and(|t| t <= now) {
        b.handle_timeout(now, g.broker());
    }
    let after = b.local_connection();
    if before != after {
        if let Some(old) = before {
            g.unregister(old);
        }
        if let Some(new) = after {
            g.register(new, h.signal.clone());
        }
    }
    b.pump_local(now, g.broker());
    let mut out = Vec::new();
    while let Some(bytes) = b.poll_remote_transmit(now) {
        out.push(bytes);
    }
    Step {
        out,
        action: b.poll_action(now, g.broker()),
        timeout: b.poll_timeout(),
    }
}

struct Step {
    out: Vec<Bytes>,
    action: Option<BridgeAction>,
    timeout: Option<Instant>,
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

async fn run(shared: Arc<Shared>, h: Arc<BridgeHandle>, mut stop: watch::Receiver<bool>) {
    let signal = h.signal.clone();
    let mut step = locked(&shared, &h, |_, _, _| {});
    loop {
        if *stop.borrow() {
            locked(&shared, &h, |b, broker, now| b.stop(now, broker));
            return;
        }
        match step.action.take() {
            Some(BridgeAction::Dial(address)) => {
                let dialled = tokio::select! {
                    r = dial(&address, h.tls.clone()) => r,
                    _ = stop.changed() => continue,
                };
                step = match dialled {
                    Ok(stream) => {
                        let first = locked(&shared, &h, |b, _, now| b.transport_connected(now));
                        connected(&shared, &h, &signal, &mut stop, stream, first).await
                    }
                    Err(why) => locked(&shared, &h, |b, _, now| b.dial_failed(now, &why)),
                };
            }
            Some(BridgeAction::Close) | Some(BridgeAction::Probe(_)) | None => {
                let tick = Instant::now() + IDLE_TICK;
                let wake = step.timeout.map_or(tick, |t| t.min(tick));
                tokio::select! {
                    _ = sleep_until(Some(wake)) => {
                        step = locked(&shared, &h, |b, broker, now| {
                            if b.poll_timeout().is_some_and(|t| t <= now) {
                                b.handle_timeout(now, broker);
                            }
                        });
                    }
                    _ = signal.notify.notified() => step = locked(&shared, &h, |_, _, _| {}),
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

/// TCP, then TLS when configured, within [`DIAL_TIMEOUT`]; the error in
/// words (mqtt-tls explains TLS failures).
async fn dial(
    address: &BridgeAddress,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Box<dyn Io>, String> {
    let host = address.host.as_str();
    let tcp =
        match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect((host, address.port))).await {
            Err(_) => {
                return Err(format!(
                    "no answer from {address} within {} s",
                    DIAL_TIMEOUT.as_secs()
                ))
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(tcp)) => tcp,
        };
    let _ = tcp.set_nodelay(true);
    let Some(config) = tls else {
        return Ok(Box::new(tcp));
    };
    match tokio::time::timeout(DIAL_TIMEOUT, mqtt_tls::connect(config, host, tcp)).await {
        Err(_) => Err(format!(
            "no TLS handshake with {address} within {} s",
            DIAL_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(stream)) => Ok(Box::new(stream)),
    }
}

/// Serves one remote connection until it ends; returns the next step.
async fn connected(
    shared: &Arc<Shared>,
    h: &Arc<BridgeHandle>,
    signal: &ConnSignal,
    stop: &mut watch::Receiver<bool>,
    stream: Box<dyn Io>,
    first: Step,
) -> Step {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut step = first;
    loop {
        if *stop.borrow() {
            step = locked(shared, h, |b, broker, now| b.stop(now, broker));
            for bytes in std::mem::take(&mut step.out) {
                let _ = wr.write_all(&bytes).await;
            }
            let _ = wr.shutdown().await;
            return locked(shared, h, |b, broker, now| {
                b.transport_closed(now, broker, "the broker is shutting down")
            });
        }
        for bytes in std::mem::take(&mut step.out) {
            if let Err(e) = wr.write_all(&bytes).await {
                let why = e.to_string();
                return locked(shared, h, |b, broker, now| {
                    b.transport_closed(now, broker, &why)
                });
            }
        }
        if let Some(BridgeAction::Probe(address)) = &step.action {
            let address = address.clone();
            step.action = None;
            let probe = tokio::time::timeout(
                DIAL_TIMEOUT,
                TcpStream::connect((address.host.as_str(), address.port)),
            );
            tokio::select! {
                r = probe => {
                    let ok = matches!(r, Ok(Ok(_)));
                    step = locked(shared, h, |b, broker, now| b.probe_result(now, broker, ok));
                }
                _ = stop.changed() => {}
            }
            continue;
        }
        if step.action == Some(BridgeAction::Close) {
            let _ = wr.flush().await;
            let _ = wr.shutdown().await;
            return locked(shared, h, |b, broker, now| {
                b.transport_closed(now, broker, "the bridge closed the connection")
            });
        }
        tokio::select! {
            r = rd.read_buf(&mut buf) => {
                step = match r {
                    Ok(0) => {
                        return locked(shared, h, |b, broker, now| {
                            b.transport_closed(now, broker, "the remote closed the connection")
                        });
                    }
                    Ok(_) => {
                        let data = buf.split();
                        locked(shared, h, |b, broker, now| b.handle_remote_input(now, broker, &data))
                    }
                    Err(e) => {
                        let why = e.to_string();
                        return locked(shared, h, |b, broker, now| b.transport_closed(now, broker, &why));
                    }
                };
            }
            _ = signal.notify.notified() => step = locked(shared, h, |_, _, _| {}),
            _ = sleep_until(step.timeout) => {
                step = locked(shared, h, |b, broker, now| b.handle_timeout(now, broker));
            }
            _ = stop.changed() => {}
        }
    }
}
