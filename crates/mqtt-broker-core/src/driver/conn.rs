//! One task per connection: TLS handshake and WebSocket upgrade (with a
//! time-out), reading and framing, and writing what the broker batched for
//! it.
//!
//! An idle connection costs little. Each kind of listener spawns a future
//! of its own ([`spawn`]), so a plain connection's task does not carry room
//! for a TLS stream or a WebSocket; handshakes and upgrades run boxed, and
//! their memory is freed when they end. No read buffer is held while
//! nothing arrives: the task waits until the socket is readable
//! ([`Transport::poll_read_ready`]), takes a buffer only then, and gives it
//! back when the decoder has no partial packet in it.

use super::shared::{ConnSignal, Shared};
use super::ListenerRuntime;
use crate::memory::ReceiveCharge;
use crate::{ConnectionInfo, PeerCertificate};
use bytes::BytesMut;
use mqtt_codec::{Decoder, Packet};
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const TARGET: &str = "mqtt_broker";
/// Read buffer taken when a socket is readable; given back when the
/// decoder has consumed everything in it.
const READ_CHUNK: usize = 4096;

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// A connection's byte stream as its task reads it.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// Ready when a read may find bytes (or the end), without a buffer
    /// being handed over for it. A stream that cannot tell is always ready
    /// (its task then keeps a read buffer while it waits).
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Transport for TcpStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

impl Transport for TlsStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (tcp, tls) = self.get_ref();
        // Decrypted bytes (or the peer's close_notify) wait in rustls: a
        // read returns them without touching the socket.
        if !tls.wants_read() {
            return Poll::Ready(Ok(()));
        }
        tcp.poll_read_ready(cx)
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_read_ready(cx)
    }
}

/// A stream whose readiness cannot be told apart from a read (WebSockets,
/// streams handed over by the program).
pub(crate) struct Opaque<S>(S);

impl<S> Transport for Opaque<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Opaque<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Opaque<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// Starts the task of a connection a listener accepted: a future of its
/// own for plain, TLS and WebSocket listeners, each as small as its kind
/// allows.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    listener: Arc<ListenerRuntime>,
    tcp: TcpStream,
    peer: SocketAddr,
    alive: mpsc::Sender<()>,
) {
    match (listener.tls.is_some(), listener.websockets) {
        (false, false) => drop(tokio::spawn(handle_plain(
            shared, listener, tcp, peer, alive,
        ))),
        (true, false) => drop(tokio::spawn(handle_tls(shared, listener, tcp, peer, alive))),
        (_, true) => drop(tokio::spawn(handle_websocket(
            shared, listener, tcp, peer, alive,
        ))),
    }
}

/// The task of a plain MQTT connection (not an `async fn`: its arguments
/// would take room in the task next to [`serve`]'s).
fn handle_plain(
    shared: Arc<Shared>,
    listener: Arc<ListenerRuntime>,
    tcp: TcpStream,
    peer: SocketAddr,
    alive: mpsc::Sender<()>,
) -> impl Future<Output = ()> {
    let _ = tcp.set_nodelay(true);
    let info = connection_info(&listener, peer, None);
    serve(shared, listener, tcp, info, alive)
}

/// What the broker is told of a connection `listener` accepted from `peer`.
fn connection_info(
    listener: &ListenerRuntime,
    peer: SocketAddr,
    tls: Option<PeerCertificate>,
) -> Box<ConnectionInfo> {
    Box::new(ConnectionInfo {
        remote_addr: peer,
        listener: listener.settings(),
        tls,
    })
}

/// The task of an MQTT over TLS connection.
async fn handle_tls(
    shared: Arc<Shared>,
    listener: Arc<ListenerRuntime>,
    tcp: TcpStream,
    peer: SocketAddr,
    _alive: mpsc::Sender<()>,
) {
    let _ = tcp.set_nodelay(true);
    // Boxed: the handshake's state is freed when it ends, not kept in the task.
    let Some((stream, info)) = Box::pin(tls_handshake(&shared, &listener, tcp, peer)).await else {
        return;
    };
    serve(shared, listener, stream, info, _alive).await
}

/// The task of an MQTT over WebSockets connection (`ws://`, or `wss://` on
/// a listener with a certificate).
async fn handle_websocket(
    shared: Arc<Shared>,
    listener: Arc<ListenerRuntime>,
    tcp: TcpStream,
    peer: SocketAddr,
    _alive: mpsc::Sender<()>,
) {
    let _ = tcp.set_nodelay(true);
    let (stream, info): (Box<dyn Stream>, _) = if listener.tls.is_some() {
        let Some((stream, info)) = Box::pin(tls_handshake(&shared, &listener, tcp, peer)).await
        else {
            return;
        };
        (stream, info)
    } else {
        (Box::new(tcp), connection_info(&listener, peer, None))
    };
    let port = listener.port;
    let upgrade = tokio::time::timeout(
        listener.handshake_timeout,
        mqtt_tls::websocket::accept(stream),
    );
    match Box::pin(upgrade).await {
        Ok(Ok(ws)) => serve(shared, listener, Opaque(ws), info, _alive).await,
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

/// A byte stream of either kind under a WebSocket.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The TLS handshake under the listener's time-out, and the connection's
/// information with the verified client certificate; `None` (logged) when
/// it failed.
async fn tls_handshake(
    shared: &Shared,
    listener: &ListenerRuntime,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(Box<TlsStream>, Box<ConnectionInfo>)> {
    let tls = listener.tls.as_ref()?;
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
            let tls = mqtt_tls::PeerIdentity::from_tls_stream(&stream).map(|id| PeerCertificate {
                common_name: id.common_name,
                subject: id.subject,
            });
            let info = connection_info(listener, peer, tls);
            // Boxed: rustls's state is large, and the task's future would
            // hold a copy of it at each level it is handed down.
            Some((Box::new(stream), info))
        }
        Ok(Err(e)) => {
            failed(peer, listener, &e);
            None
        }
        Err(_) => {
            failed(
                peer,
                listener,
                format_args!(
                    "no TLS handshake within {} s; closing it.",
                    listener.handshake_timeout.as_secs_f32()
                ),
            );
            None
        }
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
    serve(shared, listener, Opaque(stream), Box::new(info), _alive).await
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

/// Opens the connection in the broker, runs it, and closes it. `info` is
/// boxed so that the task keeps 8 bytes for it, not the whole of it, and
/// the box is freed once the broker has taken it; `alive` tells
/// [`super::Server::shutdown`] that the task still runs.
///
/// Not an `async fn`: one of those stores its arguments and the locals
/// they are moved into apart, so the task would hold each of them twice.
/// The block uses what it captured in place, and keeps only what it still
/// needs at each await point (an idle connection's task is allocated once
/// and lives as long as it: every byte here is a byte per connection).
#[allow(clippy::manual_async_fn)]
fn serve<T: Transport, A>(
    shared: Arc<Shared>,
    listener: Arc<ListenerRuntime>,
    mut stream: T,
    info: Box<ConnectionInfo>,
    alive: A,
) -> impl Future<Output = ()> {
    async move {
        // Moved out of the box, and the box freed, here (a box moved out of
        // is freed when it goes out of scope: for a captured one, when the
        // task ends).
        let info = *{ info };
        let peer = info.remote_addr;
        // `max_connections` is a per-listener limit in Mosquitto.
        let refused = {
            let open_before = listener.open.fetch_add(1, Ordering::AcqRel);
            listener
                .max_connections
                .is_some_and(|max| open_before >= max)
        };
        if refused {
            listener.open.fetch_sub(1, Ordering::AcqRel);
            tracing::info!(
                target: TARGET,
                "Client connection from {} denied: max_connections exceeded.",
                peer.ip()
            );
            return;
        }
        let signal = Arc::new(ConnSignal::default());
        let (id, max_packet_size, receiving) = {
            let mut g = shared.lock();
            let id = g.broker().connection_opened(Instant::now(), info);
            g.register(id, signal.clone());
            // memory_limit: the packet still arriving holds its announced length.
            let receiving = ReceiveCharge::new(g.broker().memory().clone());
            (
                id,
                g.broker().config().effective_max_packet_size(),
                receiving,
            )
        };
        // Plain listeners: a TLS ClientHello gets a message of its own.
        let plain = (listener.tls.is_none() && !listener.external).then_some(listener.port);
        // (What lives only until the next await is made inside the block
        // that needs it, so the task keeps no room for it past that.)
        let linger_after = {
            // Framing happens here, in the connection's task (in parallel
            // across cores); the broker is locked only to take the decoded
            // packets.
            let decoder = {
                let mut decoder = Decoder::new();
                decoder.set_max_packet_size(max_packet_size);
                decoder
            };
            let end = pump(&shared, &signal, id, &mut stream, decoder, receiving, plain).await;
            listener.open.fetch_sub(1, Ordering::AcqRel);
            let mut g = shared.lock();
            match &end {
                End::Stalled(unsent) => g.broker().connection_stalled(Instant::now(), id, unsent),
                End::Failed(why) => g.broker().connection_failed(Instant::now(), id, why),
                _ => g.broker().connection_closed(Instant::now(), id),
            }
            g.unregister(id);
            matches!(end, End::BrokerClosed)
        };
        if linger_after {
            Box::pin(linger(&mut stream)).await;
        }
        drop(alive);
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

/// Reads what `stream` has into `buf`: waits until it is readable, and
/// only then makes room in `buf`. A read that finds nothing after all
/// gives `buf` back when it holds no partial packet, so an idle connection
/// keeps no buffer. Cancel-safe: bytes read are in `buf`.
fn read_some<'a, T: Transport>(
    stream: &'a mut T,
    buf: &'a mut BytesMut,
) -> impl Future<Output = io::Result<usize>> + 'a {
    poll_fn(move |cx| {
        if stream.poll_read_ready(cx)?.is_pending() {
            release(buf);
            return Poll::Pending;
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let read = pin!(stream.read_buf(&mut *buf)).poll(cx);
        // Nothing after all: a stream that tells readiness is not ready now
        // and wakes the task when it is; the buffer can go until then,
        // unless it holds a partial packet.
        if read.is_pending() && stream.poll_read_ready(cx).is_pending() {
            release(buf);
        }
        read
    })
}

/// Gives `buf`'s memory back unless it holds the start of a packet.
fn release(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}

/// Moves bytes both ways until either side closes. `plain` (the
/// listener's port) is set on plain listeners, where a TLS ClientHello
/// gets its own message. Says how it ended ([`End`]). (Not an `async fn`,
/// for the reason [`serve`] gives.)
#[allow(clippy::manual_async_fn)]
fn pump<'a, T: Transport>(
    shared: &'a Shared,
    signal: &'a ConnSignal,
    id: crate::ConnectionId,
    stream: &'a mut T,
    mut decoder: Decoder,
    mut receiving: ReceiveCharge,
    mut plain: Option<u16>,
) -> impl Future<Output = End> + 'a {
    async move {
        // Holds only a partial packet while idle (and nothing when there is none).
        let mut buf = BytesMut::new();
        // Set with each batch taken, under the same lock (it follows Keep Alive).
        let mut write_timeout;
        loop {
            // (In a block of its own: what was taken is not kept in the task
            // past its write.)
            {
                let out = tokio::select! {
                    r = read_some(stream, &mut buf) => match r {
                        Ok(0) => return End::ClientClosed,
                        // The client broke the transport's rules (a WebSocket text
                        // frame, a TLS record that does not decrypt): say how.
                        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                            return End::Failed(e.to_string())
                        }
                        Err(_) => return End::ClientClosed,
                        Ok(_) => {
                            if let Some(port) = plain.take() {
                                // A TLS record starts with 0x16 (handshake); MQTT's first
                                // byte is 0x10 (CONNECT), which the broker would report
                                // as a malformed packet.
                                if buf.first() == Some(&0x16) {
                                    let peer = shared
                                        .lock()
                                        .broker()
                                        .connection_addr(id)
                                        .unwrap_or(crate::ConnectionInfo::IN_PROCESS_ADDR);
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
                            let mut packets: Vec<(Packet, usize)> = Vec::new();
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
                            // What is left in `buf` is the start of a packet still
                            // arriving: it holds its announced length of the
                            // memory_limit account.
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
                            for (p, len) in packets {
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
                    // Boxed: an idle task keeps no room for a write and its time-out.
                    if let Some(end) = Box::pin(send(stream, out, write_timeout)).await {
                        return end;
                    }
                }
            }
            if signal.close.load(Ordering::Acquire) {
                // Boxed, like `send`: an idle task keeps no room for it.
                Box::pin(finish(shared, id, stream)).await;
                return End::BrokerClosed;
            }
        }
    }
}

/// The broker closed the connection: flushes what is left (e.g.
/// DISCONNECT 0x8B, a refused CONNACK) and shuts the sending side down.
async fn finish<T: Transport>(shared: &Shared, id: crate::ConnectionId, stream: &mut T) {
    let rest = shared
        .lock()
        .broker()
        .take_transmit_when_stored(Instant::now(), id);
    if let Some(rest) = rest {
        let _ = stream.write_all(&rest.stored().await).await;
    }
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

/// Writes what the broker batched, once the storage has written what it
/// acknowledges (on its own thread; waited for here, with the broker
/// unlocked). `Some` when the connection is over.
async fn send<T: Transport>(
    stream: &mut T,
    out: crate::Transmit,
    write_timeout: Duration,
) -> Option<End> {
    let mut out = out.stored().await;
    match write_bounded(stream, &out, write_timeout).await {
        Ok(()) => None,
        Err(Some(written)) => Some(End::Stalled(out.split_off(written))),
        Err(None) => Some(End::ClientClosed),
    }
}

/// How [`pump`] ended.
enum End {
    /// The client closed the connection (or it broke).
    ClientClosed,
    /// The client broke the transport's rules; why.
    Failed(String),
    /// The broker closed it (the stream is to [`linger`]).
    BrokerClosed,
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

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, D, E, F: std::future::Future>(
        _: impl FnOnce(A, B, C, D, E) -> F,
    ) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn an_idle_connection_task_is_small() {
        // The task's future is allocated once per connection and lives as
        // long as it: a plain one carries no room for TLS or WebSocket
        // state, a TLS one holds rustls's state boxed (about 1.2 KB, once),
        // not copied at each level, and neither keeps what it needs only
        // until an await point past it. (With rustc 1.95: 288 and 416
        // bytes in a debug build; 280 and 256 in a release build, where
        // tokio's task cell, aligned to 128 bytes, is then 384 bytes for a
        // plain connection: one more byte of future would make it 512.)
        eprintln!(
            "connection task futures: plain {} bytes, TLS {} bytes, WebSocket {} bytes",
            future_size(super::handle_plain),
            future_size(super::handle_tls),
            future_size(super::handle_websocket)
        );
        assert!(future_size(super::handle_plain) <= 320);
        assert!(future_size(super::handle_tls) <= 448);
        assert!(future_size(super::handle_websocket) <= 1280);
    }

    #[tokio::test]
    async fn an_idle_connection_holds_no_read_buffer() {
        use bytes::BytesMut;
        use std::future::Future;
        use std::pin::pin;
        use std::task::Poll;
        use tokio::io::AsyncWriteExt;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::new();
        /// Polls one read once: what it gives without waiting.
        async fn poll_once(
            server: &mut tokio::net::TcpStream,
            buf: &mut BytesMut,
        ) -> Poll<std::io::Result<usize>> {
            let mut read = pin!(super::read_some(server, buf));
            std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await
        }

        // Nothing sent yet: no buffer taken while waiting.
        assert!(poll_once(&mut server, &mut buf).await.is_pending());
        assert_eq!(buf.capacity(), 0);

        // The start of a CONNECT: read, and kept while the rest is awaited.
        client.write_all(&[0x10, 0x0c, 0x00]).await.unwrap();
        let n = super::read_some(&mut server, &mut buf).await.unwrap();
        assert_eq!(n, 3);
        assert!(poll_once(&mut server, &mut buf).await.is_pending());
        assert_eq!(&buf[..], &[0x10, 0x0c, 0x00]);

        // Once the decoder has taken everything, the buffer goes.
        buf.clear();
        assert!(poll_once(&mut server, &mut buf).await.is_pending());
        assert_eq!(buf.capacity(), 0);

        // And the next bytes still arrive.
        client.write_all(&[0xc0, 0x00]).await.unwrap();
        let n = super::read_some(&mut server, &mut buf).await.unwrap();
        assert_eq!((n, &buf[..]), (2, &[0xc0, 0x00][..]));
    }

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
