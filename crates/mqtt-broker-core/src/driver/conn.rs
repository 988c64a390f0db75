//! One task per connection: TLS handshake and WebSocket upgrade (with a
//! time-out), reading and framing, and writing what the broker batched for
//! it.

use super::shared::{ConnSignal, Shared};
use super::ListenerRuntime;
use crate::memory::ReceiveCharge;
use crate::{ConnectionInfo, PeerCertificate};
use bytes::BytesMut;
use mqtt_codec::{Decoder, Packet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const TARGET: &str = "mqtt_broker";
/// Read buffer reserved per read; small, so idle connections stay cheap.
const READ_CHUNK: usize = 4096;
/// A read buffer grown by a large packet is given back above this size.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Entry point of a connection task: handshake, then serve.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    listener: Arc<ListenerRuntime>,
    tcp: TcpStream,
    peer: SocketAddr,
    _alive: mpsc::Sender<()>,
) {
    let _ = tcp.set_nodelay(true);
    let mut info = ConnectionInfo {
        remote_addr: peer,
        listener: listener.settings(),
        tls: None,
    };
    match &listener.tls {
        None => upgrade_and_serve(shared, listener, tcp, info).await,
        Some(tls) => {
            let config = tls.current();
            let handshake = mqtt_tls::accept(config, tcp, peer, listener.require_certificate);
            match tokio::time::timeout(listener.handshake_timeout, handshake).await {
                Ok(Ok(stream)) => {
                    let presented = stream.get_ref().1.peer_certificates();
                    if let Some(cert) = presented.and_then(|certs| certs.first()) {
                        shared
                            .expiry
                            .check_client(cert.as_ref(), peer, listener.port);
                    }
                    info.tls = mqtt_tls::PeerIdentity::from_tls_stream(&stream).map(|id| {
                        PeerCertificate {
                            common_name: id.common_name,
                            subject: id.subject,
                        }
                    });
                    upgrade_and_serve(shared, listener, stream, info).await
                }
                Ok(Err(e)) => failed(peer, &listener, &e),
                Err(_) => failed(
                    peer,
                    &listener,
                    format_args!(
                        "no TLS handshake within {} s; closing it.",
                        listener.handshake_timeout.as_secs_f32()
                    ),
                ),
            }
        }
    }
}

/// Serves `stream`, after the WebSocket upgrade on a `protocol websockets`
/// listener.
async fn upgrade_and_serve<S>(
    shared: Arc<Shared>,
    listener: Arc<ListenerRuntime>,
    stream: S,
    info: ConnectionInfo,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !listener.websockets {
        return serve(shared, listener, stream, info).await;
    }
    let peer = info.remote_addr;
    let port = listener.port;
    match tokio::time::timeout(listener.handshake_timeout, mqtt_tls::websocket::accept(stream)).await
    {
        Ok(Ok(ws)) => serve(shared, listener, ws, info).await,
        Ok(Err(e)) => failed(
            peer,
            &listener,
            format_args!(
                "WebSocket upgrade: {e} (port {port} is a protocol websockets listener: connect with ws://HOST:{port}/, or wss:// when it has a certificate)"
            ),
        ),
        Err(_) => failed(
            peer,
            &listener,
            format_args!(
                "no WebSocket upgrade within {} s; closing it.",
                listener.handshake_timeout.as_secs_f32()
            ),
        ),
    }
}

/// Serves a stream the program handed over ([`super::Server::serve`]):
/// its TLS (if any) and WebSocket upgrade were done by the program.
pub(crate) async fn handle_stream<S>(
    shared: Arc<Shared>,
    listener: Arc<ListenerRuntime>,
    stream: S,
    info: ConnectionInfo,
    _alive: Option<mpsc::Sender<()>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    serve(shared, listener, stream, info).await
}

/// Logs a connection that failed before MQTT started (TLS, WebSocket).
fn failed(peer: SocketAddr, listener: &ListenerRuntime, why: impl std::fmt::Display) {
    tracing::info!(
        target: TARGET,
        "Client connection from {}:{} on port {} failed: {}",
        peer.ip(),
        peer.port(),
        listener.port,
        why
    );
}

async fn serve<S>(
    shared: Arc<Shared>,
    listener: Arc<ListenerRuntime>,
    stream: S,
    info: ConnectionInfo,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let peer = info.remote_addr;
    // `max_connections` is a per-listener limit in Mosquitto.
    let open_before = listener.open.fetch_add(1, Ordering::AcqRel);
    if listener
        .max_connections
        .is_some_and(|max| open_before >= max)
    {
        listener.open.fetch_sub(1, Ordering::AcqRel);
        tracing::info!(
            target: TARGET,
            "Client connection from {} denied: max_connections exceeded.",
            peer.ip()
        );
        return;
    }
    let signal = Arc::new(ConnSignal::default());
    let (id, max_packet_size) = {
        let mut g = shared.lock();
        let id = g.broker().connection_opened(Instant::now(), info);
        g.register(id, signal.clone());
        (id, g.broker().config().effective_max_packet_size())
    };
    // Framing happens here, in the connection's task (in parallel across
    // cores); the broker is locked only to take the decoded packets.
    let mut decoder = Decoder::new();
    decoder.set_max_packet_size(max_packet_size);
    let plain = (listener.tls.is_none() && !listener.external).then_some((peer, listener.port));
    let end = pump(&shared, &signal, id, stream, decoder, plain).await;
    listener.open.fetch_sub(1, Ordering::AcqRel);
    {
        let mut g = shared.lock();
        match &end {
            End::Stalled(unsent) => g.broker().connection_stalled(Instant::now(), id, unsent),
            End::Failed(why) => g.broker().connection_failed(Instant::now(), id, why),
            _ => g.broker().connection_closed(Instant::now(), id),
        }
        g.unregister(id);
    }
    if let End::BrokerClosed(rd) = end {
        linger(rd).await;
    }
}

/// How long a connection the broker closed is still read (and what arrives
/// thrown away) for the client to see the close.
const LINGER: Duration = Duration::from_secs(2);

/// After the broker closed a connection (DISCONNECT with a reason code,
/// refused CONNACK) and shut down its sending side: reads and discards what
/// the client still sends until it closes too, for at most [`LINGER`].
/// Closing a socket with unread bytes makes the kernel answer with a reset,
/// which can destroy the DISCONNECT in the client's receive buffer before
/// the client reads it: the client would see "connection reset" instead of
/// the reason. (A client that keeps publishing into a closing connection,
/// e.g. one that exceeded Receive Maximum, always has bytes in flight.)
async fn linger<R: AsyncRead + Unpin>(mut rd: R) {
    let mut sink = BytesMut::with_capacity(READ_CHUNK);
    let drain = async {
        loop {
            sink.clear();
            match rd.read_buf(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Moves bytes both ways until either side closes. `plain` (peer, port) is
/// set on plain listeners, where a TLS ClientHello gets its own message.
/// Says how it ended ([`End`]).
async fn pump<S>(
    shared: &Shared,
    signal: &ConnSignal,
    id: crate::ConnectionId,
    stream: S,
    mut decoder: Decoder,
    mut plain: Option<(SocketAddr, u16)>,
) -> End<tokio::io::ReadHalf<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::new();
    let mut packets: Vec<(Packet, usize)> = Vec::new();
    // memory_limit: the packet still arriving holds its announced length.
    let mut receiving = ReceiveCharge::new(shared.lock().broker().memory().clone());
    // Set with each batch taken, under the same lock (it follows Keep Alive).
    let mut write_timeout;
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
                buf = BytesMut::new();
            }
            buf.reserve(READ_CHUNK);
        }
        let out = tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => return End::ClientClosed,
                // The client broke the transport's rules (a WebSocket text
                // frame, a TLS record that does not decrypt): say how.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return End::Failed(e.to_string())
                }
                Err(_) => return End::ClientClosed,
                Ok(_) => {
                    if let Some((peer, port)) = plain.take() {
                        // A TLS record starts with 0x16 (handshake); MQTT's first
                        // byte is 0x10 (CONNECT), which the broker would report
                        // as a malformed packet.
                        if buf.first() == Some(&0x16) {
                            tracing::info!(
                                target: TARGET,
                                "Client connection from {}:{} on port {} failed: it speaks TLS, but this listener is plain MQTT; connect to the TLS listener (usually port 8883), or give this listener certfile and keyfile.",
                                peer.ip(),
                                peer.port(),
                                port
                            );
                            return End::ClientClosed;
                        }
                    }
                    let error = loop {
                        let before = buf.len();
                        match decoder.decode(&mut buf) {
                            Ok(Some(p)) => packets.push((p, before - buf.len())),
                            Ok(None) => break None,
                            Err(e) => {
                                // The stream cannot be resynchronised: stop reading it.
                                buf.clear();
                                break Some(e);
                            }
                        }
                    };
                    let over = match error {
                        None => receiving.update(&buf).err(),
                        Some(_) => None,
                    };
                    if over.is_some() {
                        buf.clear();
                    }
                    if packets.is_empty() && error.is_none() && over.is_none() {
                        continue;
                    }
                    let mut g = shared.lock();
                    let broker = g.broker();
                    let now = Instant::now();
                    for (p, len) in packets.drain(..) {
                        broker.handle_packet(now, id, p, len);
                    }
                    if let Some(e) = error {
                        broker.handle_decode_error(now, id, e);
                    }
                    if let Some(over) = over {
                        broker.handle_memory_limit(now, id, over);
                    }
                    // Answer in the same wake-up: no extra round through the signal.
                    write_timeout = broker.write_timeout(id);
                    broker.take_transmit_when_stored(now, id)
                }
            },
            _ = signal.notify.notified() => {
                let mut g = shared.lock();
                write_timeout = g.broker().write_timeout(id);
                g.broker().take_transmit_when_stored(Instant::now(), id)
            }
        };
        if let Some(out) = out {
            // The storage writes what these bytes acknowledge on its own
            // thread; they wait for it here, with the broker unlocked.
            let mut out = out.stored().await;
            match write_bounded(&mut wr, &out, write_timeout).await {
                Ok(()) => {}
                Err(Some(written)) => return End::Stalled(out.split_off(written)),
                Err(None) => return End::ClientClosed,
            }
        }
        if signal.close.load(Ordering::Acquire) {
            // Flush what is left (e.g. DISCONNECT 0x8B, a refused CONNACK), then close.
            let rest = shared
                .lock()
                .broker()
                .take_transmit_when_stored(Instant::now(), id);
            if let Some(rest) = rest {
                let _ = wr.write_all(&rest.stored().await).await;
            }
            let _ = wr.flush().await;
            let _ = wr.shutdown().await;
            return End::BrokerClosed(rd);
        }
    }
}

/// How [`pump`] ended.
enum End<R> {
    /// The client closed the connection (or it broke).
    ClientClosed,
    /// The client broke the transport's rules; why.
    Failed(String),
    /// The broker closed it; the reading side, for [`linger`].
    BrokerClosed(R),
    /// The client stopped reading: what could not be written, from the
    /// start of the packet the write stopped in.
    Stalled(BytesMut),
}

/// Writes `out` and flushes it, giving up when one write or the flush
/// makes no progress for `bound`: `Err(Some(n))` then, with `n` the bytes
/// up to the start of the packet the write stopped in (packets are whole
/// in `out`); `Err(None)` when the connection broke.
async fn write_bounded<W: AsyncWrite + Unpin>(
    wr: &mut W,
    out: &[u8],
    bound: Duration,
) -> Result<(), Option<usize>> {
    let mut written = 0;
    while written < out.len() {
        match tokio::time::timeout(bound, wr.write(&out[written..])).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(None),
            Ok(Ok(n)) => written += n,
            Err(_) => return Err(Some(packet_start(out, written))),
        }
    }
    // A TLS or WebSocket stream may hold back what it accepted until then.
    match tokio::time::timeout(bound, wr.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(None),
        Err(_) => Err(Some(packet_start(out, written))),
    }
}

/// The offset of the packet `pos` falls in, walking `out`'s fixed headers.
fn packet_start(out: &[u8], pos: usize) -> usize {
    let mut at = 0;
    while at < out.len() {
        let mut len = 0usize;
        let mut i = at + 1;
        let mut shift = 0;
        loop {
            let Some(&b) = out.get(i) else { return at };
            len |= usize::from(b & 0x7F) << shift;
            i += 1;
            shift += 7;
            if b & 0x80 == 0 || shift > 21 {
                break;
            }
        }
        let next = i + len;
        if next > pos {
            return at;
        }
        at = next;
    }
    at.min(pos)
}

#[cfg(test)]
mod tests {
    use super::packet_start;

    #[test]
    fn a_stalled_write_is_cut_at_the_start_of_its_packet() {
        // PINGRESP (2 bytes), a PUBLISH of 2 + 200 bytes (two-byte length),
        // PINGRESP.
        let mut out = vec![0xD0, 0x00, 0x30, 0xC8, 0x01];
        out.extend(std::iter::repeat_n(0u8, 200));
        out.extend([0xD0, 0x00]);
        assert_eq!(packet_start(&out, 0), 0);
        assert_eq!(packet_start(&out, 1), 0);
        assert_eq!(packet_start(&out, 2), 2);
        assert_eq!(packet_start(&out, 100), 2);
        assert_eq!(packet_start(&out, 205), 205);
        assert_eq!(packet_start(&out, 206), 205);
        // Everything written: nothing left.
        assert_eq!(packet_start(&out, out.len()), out.len());
    }
}
