//! The tokio driver (feature `tokio`): listeners, TLS, one task per
//! connection, and a timer task, around one [`Broker`].
//!
//! Each connection task does its own TLS and framing, so those run in
//! parallel across cores; the broker is locked for one call at a time and
//! never across I/O. Everything the broker has for a connection is written
//! with one call (one TLS record batch), TLS handshakes run in the
//! connection's task with a time-out (a client that connects and sends
//! nothing stalls nobody), and `TCP_NODELAY` is set on every socket.
//!
//! ```no_run
//! use mqtt_broker_core::driver::{Listener, ServerBuilder};
//! use mqtt_broker_core::BrokerConfig;
//!
//! # async fn run() -> Result<(), mqtt_broker_core::driver::DriverError> {
//! let server = ServerBuilder::new(BrokerConfig::default())
//!     .listener(Listener::tcp("127.0.0.1:1883".parse().unwrap()))
//!     .start()
//!     .await?;
//! println!("listening on {:?}", server.local_addrs());
//! tokio::signal::ctrl_c().await.ok();
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod conn;
mod from_config;
mod local;
mod shared;

pub use local::{LocalClient, LocalClientError, LocalMessages, LocalOptions};

// Their home is `crate::mosquitto` (no runtime needed); kept here too.
pub use crate::mosquitto::{ConfigAuthenticator, ConfigAuthorizer};

use crate::{Authenticator, Authorizer, Broker, BrokerConfig, ListenerSettings, Statistics};
use shared::Shared;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

const TARGET: &str = "mqtt_broker";

/// Why the driver could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// A listen socket could not be opened.
    #[error("cannot listen on {addr}: {source}{hint}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// A `bind_address` did not resolve.
    #[error("cannot resolve bind address '{address}': {detail}")]
    Resolve {
        /// The address as written.
        address: String,
        /// Why.
        detail: String,
    },
    /// The TLS files of a listener are wrong (the message says how).
    #[error("{origin}: {source}")]
    Tls {
        /// Where the listener was configured.
        origin: String,
        /// The explained TLS error.
        source: Box<mqtt_tls::TlsError>,
    },
    /// The configuration asks for something the driver cannot do.
    #[error("{0}")]
    Config(String),
    /// A `password_file` could not be loaded.
    #[error(transparent)]
    PasswordFile(#[from] crate::password_file::PasswordFileError),
    /// An `acl_file` could not be loaded.
    #[error(transparent)]
    AclFile(#[from] crate::acl_file::AclFileError),
}

/// One listening address, plain TCP or TLS, with its authentication settings.
#[derive(Clone)]
pub struct Listener {
    addr: SocketAddr,
    tls: Option<Arc<mqtt_tls::ReloadableServerConfig>>,
    settings: ListenerSettings,
    max_connections: Option<u32>,
    websockets: bool,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("websockets", &self.websockets)
            .field("settings", &self.settings)
            .finish()
    }
}

impl Listener {
    /// A plain TCP listener.
    pub fn tcp(addr: SocketAddr) -> Self {
        Self {
            addr,
            tls: None,
            settings: ListenerSettings {
                port: addr.port(),
                ..ListenerSettings::default()
            },
            max_connections: None,
            websockets: false,
        }
    }

    /// A TLS listener; the files are read once here (and again only when
    /// they change, see [`Server::reload_tls`]). `require_certificate` comes
    /// from `options`.
    pub fn tls(
        addr: SocketAddr,
        options: mqtt_tls::ServerTlsOptions,
    ) -> Result<Self, mqtt_tls::TlsError> {
        let require_certificate = options.require_certificate;
        let config = mqtt_tls::ReloadableServerConfig::new(options)?;
        Ok(Self {
            addr,
            tls: Some(Arc::new(config)),
            settings: ListenerSettings {
                port: addr.port(),
                require_certificate,
                ..ListenerSettings::default()
            },
            max_connections: None,
            websockets: false,
        })
    }

    /// Mosquitto's per-listener settings (`use_identity_as_username`,
    /// `use_subject_as_username`, `allow_anonymous` with `per_listener_settings`).
    /// The port is filled in when the socket is bound.
    pub fn with_settings(mut self, settings: ListenerSettings) -> Self {
        let require_certificate = self.settings.require_certificate;
        self.settings = settings;
        self.settings.require_certificate |= require_certificate;
        self
    }

    /// `max_connections` of this listener.
    pub fn with_max_connections(mut self, max: Option<u32>) -> Self {
        self.max_connections = max;
        self
    }

    /// MQTT over WebSockets on this listener (`protocol websockets`):
    /// clients open it with an HTTP upgrade (`ws://`, or `wss://` on a TLS
    /// listener), any path, subprotocol `mqtt`.
    pub fn websockets(mut self) -> Self {
        self.websockets = true;
        self
    }

    /// The settings its clients get (authentication, limits, mount point).
    pub fn settings(&self) -> &ListenerSettings {
        &self.settings
    }

    /// The address to bind.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// What a connection task needs to know about its listener.
pub(crate) struct ListenerRuntime {
    tls: Option<Arc<mqtt_tls::ReloadableServerConfig>>,
    settings: ListenerSettings,
    handshake_timeout: Duration,
    max_connections: Option<u32>,
    websockets: bool,
    open: AtomicU32,
}

/// Builds a [`Server`]: the broker's configuration, its auth plug-ins and
/// its listeners.
pub struct ServerBuilder {
    broker: Broker,
    listeners: Vec<Listener>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("listeners", &self.listeners)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl ServerBuilder {
    /// A server for `config`, with no listeners yet.
    pub fn new(config: BrokerConfig) -> Self {
        Self::with_broker(Broker::new(config))
    }

    /// A server around a broker the embedder configured (storage, auth).
    pub fn with_broker(broker: Broker) -> Self {
        Self {
            broker,
            listeners: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
        }
    }

    /// Sets the authenticator.
    pub fn authenticator(mut self, a: Box<dyn Authenticator>) -> Self {
        self.broker = self.broker.with_authenticator(a);
        self
    }

    /// Sets the authorizer.
    pub fn authorizer(mut self, a: Box<dyn Authorizer>) -> Self {
        self.broker = self.broker.with_authorizer(a);
        self
    }

    /// Adds a listener.
    pub fn listener(mut self, l: Listener) -> Self {
        self.listeners.push(l);
        self
    }

    /// The listeners added so far.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// Time a TLS client has to finish its handshake (default 10 s).
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    /// Binds every listener and starts serving on the current tokio runtime.
    pub async fn start(self) -> Result<Server, DriverError> {
        let mut bound = Vec::new();
        for l in &self.listeners {
            let socket = bind(l.addr)?;
            let local = socket.local_addr().map_err(|source| DriverError::Bind {
                addr: l.addr,
                source,
                hint: "",
            })?;
            // Mosquitto's words: "websockets" instead of the family.
            tracing::info!(
                target: TARGET,
                "Opening {} listen socket on port {}.",
                match (l.websockets, local.is_ipv4()) {
                    (true, _) => "websockets",
                    (false, true) => "ipv4",
                    (false, false) => "ipv6",
                },
                local.port()
            );
            let mut settings = l.settings.clone();
            settings.port = local.port();
            let rt = Arc::new(ListenerRuntime {
                tls: l.tls.clone(),
                settings,
                handshake_timeout: self.handshake_timeout,
                max_connections: l.max_connections,
                websockets: l.websockets,
                open: AtomicU32::new(0),
            });
            bound.push((socket, local, rt));
        }
        let shared = Shared::new(self.broker);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (alive_tx, alive_rx) = mpsc::channel(1);
        let mut tasks = Vec::new();
        let mut local_addrs = Vec::new();
        let mut runtimes = Vec::new();
        for (socket, local, rt) in bound {
            local_addrs.push(local);
            runtimes.push(rt.clone());
            tasks.push(tokio::spawn(accept_loop(
                shared.clone(),
                socket,
                rt,
                alive_tx.clone(),
                stop_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(shared::timer_task(shared.clone(), stop_rx)));
        Ok(Server {
            shared,
            local_addrs,
            runtimes,
            tasks,
            stop: stop_tx,
            alive_tx,
            alive_rx,
        })
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener, DriverError> {
    use socket2::{Domain, Socket, Type};
    let err = |source: std::io::Error| {
        let hint = match source.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another program, perhaps a running mosquitto, already listens there: stop it or pick another port with -p / listener)"
            }
            std::io::ErrorKind::PermissionDenied => " (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
            std::io::ErrorKind::AddrNotAvailable => {
                " (this machine has no such address: check bind_address / the listener's address)"
            }
            _ => "",
        };
        DriverError::Bind { addr, source, hint }
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    if addr.is_ipv6() {
        // Separate IPv4 and IPv6 sockets on the same port, as Mosquitto opens.
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    TcpListener::from_std(socket.into()).map_err(err)
}

async fn accept_loop(
    shared: Arc<Shared>,
    socket: TcpListener,
    rt: Arc<ListenerRuntime>,
    alive: mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = socket.accept() => match r {
                Ok((tcp, peer)) => {
                    // The handshake runs in the connection's task, never here.
                    tokio::spawn(conn::handle(shared.clone(), rt.clone(), tcp, peer, alive.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: say so, back off briefly.
                    tracing::warn!(target: TARGET, "Error accepting a connection on port {}: {}", rt.settings.port, e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// A running broker. Dropping it without [`Server::shutdown`] leaves the
/// tasks running until the runtime stops.
pub struct Server {
    shared: Arc<Shared>,
    local_addrs: Vec<SocketAddr>,
    runtimes: Vec<Arc<ListenerRuntime>>,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    alive_tx: mpsc::Sender<()>,
    alive_rx: mpsc::Receiver<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addrs", &self.local_addrs)
            .finish()
    }
}

impl Server {
    /// The bound addresses, one per listener, in the order they were added
    /// (with the real port when port 0 was asked for).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// A snapshot of the broker's statistics.
    pub fn stats(&self) -> Statistics {
        self.shared.lock().broker().stats()
    }

    /// Runs `f` on the locked broker (for embedders that need more than
    /// statistics). Keep it short: every connection waits for the lock.
    pub fn with_broker<R>(&self, f: impl FnOnce(&mut Broker) -> R) -> R {
        f(self.shared.lock().broker())
    }

    /// Re-reads the TLS certificate and key of every TLS listener whose files
    /// changed; open connections keep the configuration they started with.
    /// Returns how many listeners were reloaded.
    pub fn reload_tls(&self) -> Result<usize, mqtt_tls::TlsError> {
        let mut n = 0;
        for rt in &self.runtimes {
            if let Some(tls) = &rt.tls {
                if tls.reload_if_changed()? {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Graceful shutdown: stop accepting, send 5.0 clients DISCONNECT 0x8B
    /// Server shutting down, flush every connection and close it. Waits up
    /// to five seconds for the connections to finish.
    pub async fn shutdown(self) {
        let Server {
            shared,
            tasks,
            stop,
            alive_tx,
            mut alive_rx,
            ..
        } = self;
        let _ = stop.send(true);
        for t in tasks {
            let _ = t.await;
        }
        shared.lock().broker().shutdown(Instant::now());
        drop(alive_tx);
        // Every connection task holds a sender; recv() returns None once all are gone.
        let _ = tokio::time::timeout(Duration::from_secs(5), alive_rx.recv()).await;
    }
}
