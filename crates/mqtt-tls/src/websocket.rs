//! MQTT over WebSockets (feature `websocket`; section 6 of both
//! specifications): the HTTP upgrade, then MQTT's bytes in binary frames,
//! over TCP (`ws://`) or over a TLS stream from this crate (`wss://`).
//!
//! [`accept`] answers a client's upgrade (choosing the `mqtt` subprotocol
//! when the client offers it [MQTT-6.0.0-3], or the older `mqttv3.1`);
//! [`connect`] asks for one, offering `mqtt`. Either gives a [`WsStream`],
//! which turns the frames back into a byte stream, so the broker's
//! connection task and the client's event loop run over it as over TCP or
//! TLS. A packet may span frames and a frame may hold several packets
//! [MQTT-6.0.0-2]; a text frame is an error [MQTT-6.0.0-1]. Each write goes
//! out as one binary frame (callers write a batch at a time, then flush).

use bytes::Bytes;
use futures_util::{Sink, Stream};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use tokio_tungstenite::tungstenite::Error as WsError;

/// Why a WebSocket upgrade failed: the HTTP exchange, the handshake, or the
/// stream underneath. Our own type rather than tungstenite's, so tungstenite
/// stays an implementation detail (its major versions change its error).
#[derive(Debug)]
pub struct Error {
    message: String,
    io: Option<io::Error>,
}

impl Error {
    fn new(e: WsError) -> Self {
        match e {
            WsError::Io(io) => Self {
                message: io.to_string(),
                io: Some(io),
            },
            other => Self {
                message: other.to_string(),
                io: None,
            },
        }
    }

    /// The I/O error underneath, when the stream failed (rather than the
    /// HTTP upgrade or the WebSocket handshake).
    pub fn io_error(&self) -> Option<&io::Error> {
        self.io.as_ref()
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The subprotocols a client may offer, in the order they are preferred.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Answers a client's WebSocket upgrade on `stream` (any path).
pub async fn accept<S>(stream: S) -> Result<WsStream<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ws = tokio_tungstenite::accept_hdr_async(stream, answer_upgrade)
        .await
        .map_err(Error::new)?;
    Ok(WsStream::new(ws))
}

/// A stream on which the program's own HTTP server already answered a
/// client's WebSocket upgrade (status 101, with [`accept_key`] and
/// [`choose_subprotocol`]): MQTT over it from here on, e.g. on a path of
/// an HTTP server that also serves other things on the same port.
pub async fn from_upgraded<S>(stream: S) -> WsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ws = WebSocketStream::from_raw_socket(
        stream,
        tokio_tungstenite::tungstenite::protocol::Role::Server,
        None,
    )
    .await;
    WsStream::new(ws)
}

/// The `Sec-WebSocket-Accept` value that answers a client's
/// `Sec-WebSocket-Key` (RFC 6455 section 4.2.2).
pub fn accept_key(sec_websocket_key: &[u8]) -> String {
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(sec_websocket_key)
}

/// The subprotocol to answer with, from the values of the client's
/// `Sec-WebSocket-Protocol` headers: `mqtt` when offered [MQTT-6.0.0-3],
/// else the older `mqttv3.1`, else none (the client decides).
pub fn choose_subprotocol<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    let offered: Vec<&str> = offered
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    SUBPROTOCOLS.iter().copied().find(|p| offered.contains(p))
}

/// Asks the broker at `url` (`ws://host:port/path`, or `wss://...` when
/// `stream` is TLS) for a WebSocket upgrade on `stream`, offering the `mqtt`
/// subprotocol. Returns the stream and the subprotocol the broker chose.
pub async fn connect<S>(stream: S, url: &str) -> Result<(WsStream<S>, Option<String>), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = url.into_client_request().map_err(Error::new)?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let (ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(Error::new)?;
    let chosen = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((WsStream::new(ws), chosen))
}

/// Names the subprotocol in the upgrade's response.
// The signature is tungstenite's callback; its error is an HTTP response.
#[allow(clippy::result_large_err)]
fn answer_upgrade(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let offered = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok());
    // A client that offers no subprotocol is served anyway (some JavaScript
    // clients omit it); one that offers only others gets none back, and
    // decides.
    if let Some(p) = choose_subprotocol(offered) {
        response
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(p));
    }
    Ok(response)
}

/// A WebSocket connection as a byte stream (see the module documentation).
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// What is left of the last binary frame.
    read: Bytes,
}

impl<S> std::fmt::Debug for WsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsStream")
            .field("buffered", &self.read.len())
            .finish()
    }
}

impl<S> WsStream<S> {
    fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            read: Bytes::new(),
        }
    }
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(Error::new(other)),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.read.is_empty() {
                let n = this.read.len().min(buf.remaining());
                buf.put_slice(&this.read.split_to(n));
                return Poll::Ready(Ok(()));
            }
            // Pings are answered by the WebSocket layer as it reads.
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) => this.read = b,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                // A close frame or the end of the stream: end of file.
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a WebSocket text frame (MQTT is carried in binary frames) [MQTT-6.0.0-1]",
                    )))
                }
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    /// Queues `buf` as one binary frame (accepted whole, as a `BufWriter`
    /// accepts) and starts writing it out; `poll_flush` finishes that, so
    /// callers flush after a batch, as the `AsyncWrite` contract asks. A
    /// cancelled write loses or repeats nothing.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_error)?;
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io_error)?;
        if let Poll::Ready(Err(e)) = Pin::new(&mut this.ws).poll_flush(cx) {
            return Poll::Ready(Err(io_error(e)));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(io_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_close(cx)
            .map_err(io_error)
    }
}
