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

mod auth;
mod bridge;
mod conn;
mod expiry;
mod from_config;
mod local;
mod metrics;
mod reload;
mod shared;

pub use auth::{AsyncAuthenticator, AuthFuture};
pub use expiry::DEFAULT_CHECK_INTERVAL as DEFAULT_CERTIFICATE_EXPIRY_CHECK_INTERVAL;
pub use local::{LocalClient, LocalClientError, LocalMessages, LocalOptions};
pub use metrics::{metrics_text, CONTENT_TYPE as METRICS_CONTENT_TYPE, METRICS_PATH};
pub use mqtt_tls::expiry::WARN_WITHIN_DAYS as DEFAULT_CERTIFICATE_EXPIRY_WARNING_DAYS;
pub use reload::ReloadReport;
pub use shared::EventStream;

// Their home is `crate::mosquitto` (no runtime needed); kept here too.
pub use crate::mosquitto::{ConfigAuthenticator, ConfigAuthorizer};

use crate::{
    AuthDecision, Authenticator, Authorizer, Broker, BrokerConfig, ConnectionId, ListenerSettings,
    Statistics,
};
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
    /// A socket the program bound itself ([`Listener::from_std`]).
    prebound: Option<Arc<std::net::TcpListener>>,
    /// From a configuration file: what a reload cannot change.
    shape: String,
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
            prebound: None,
            shape: String::new(),
            tls: None,
            settings: ListenerSettings {
                port: addr.port(),
                ..ListenerSettings::default()
            },
            max_connections: None,
            websockets: false,
        }
    }

    /// A plain listener on a socket the program already bound (a
    /// socket-activated one, or one bound before dropping privileges).
    pub fn from_std(socket: std::net::TcpListener) -> std::io::Result<Self> {
        let addr = socket.local_addr()?;
        let mut l = Self::tcp(addr);
        l.prebound = Some(Arc::new(socket));
        Ok(l)
    }

    /// Serves TLS (`options`) on a socket the program already bound.
    pub fn tls_from_std(
        socket: std::net::TcpListener,
        options: mqtt_tls::ServerTlsOptions,
    ) -> Result<Self, mqtt_tls::TlsError> {
        // The socket is what counts; its address only names the listener.
        let addr = socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let mut l = Self::tls(addr, options)?;
        l.prebound = Some(Arc::new(socket));
        Ok(l)
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
            prebound: None,
            shape: String::new(),
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
    /// What its new clients get, shared by their [`crate::ConnectionInfo`]s;
    /// replaced by [`Server::reload`].
    settings: std::sync::RwLock<Arc<ListenerSettings>>,
    /// The bound port, for log lines.
    port: u16,
    require_certificate: bool,
    /// What about its configuration needs a restart to change (empty when
    /// it does not come from a configuration file).
    shape: String,
    handshake_timeout: Duration,
    max_connections: Option<u32>,
    websockets: bool,
    open: AtomicU32,
    /// A stream the program handed over ([`Server::serve`]), not accepted here.
    external: bool,
}

impl ListenerRuntime {
    /// The settings for a new connection (shared, not copied).
    pub(crate) fn settings(&self) -> Arc<ListenerSettings> {
        match self.settings.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Builds a [`Server`]: the broker's configuration, its auth plug-ins and
/// its listeners.
pub struct ServerBuilder {
    broker: Broker,
    listeners: Vec<Listener>,
    handshake_timeout: Duration,
    event_capacity: usize,
    async_auth: Option<Arc<dyn AsyncAuthenticator>>,
    /// The configuration file's contents, when built from one.
    config: Option<crate::config::Config>,
    certificate_watch: Option<Duration>,
    bridges: Vec<crate::bridge::BridgeConfig>,
    /// Where to serve the Prometheus metrics (`metrics_listener`).
    metrics: Vec<SocketAddr>,
    /// Warn about certificates with fewer days left than this.
    expiry_warning_days: u32,
    /// How often the listeners' certificates are checked for expiry.
    expiry_check_interval: Duration,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("listeners", &self.listeners)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("metrics", &self.metrics)
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
            event_capacity: 1024,
            async_auth: None,
            config: None,
            certificate_watch: None,
            bridges: Vec::new(),
            metrics: Vec::new(),
            expiry_warning_days: DEFAULT_CERTIFICATE_EXPIRY_WARNING_DAYS.unsigned_abs() as u32,
            expiry_check_interval: DEFAULT_CERTIFICATE_EXPIRY_CHECK_INTERVAL,
        }
    }

    /// Logs a warning for each certificate of a TLS listener (`certfile`,
    /// `cafile`, `capath`) and each client certificate presented to the
    /// broker that expires within `days` days, or has expired (default
    /// [`DEFAULT_CERTIFICATE_EXPIRY_WARNING_DAYS`], 30). The listeners'
    /// certificates are checked at start, on [`Server::reload`] and every
    /// [`ServerBuilder::certificate_expiry_check_interval`]; a client
    /// certificate when it is presented, at most once a day per subject.
    /// Each warning names the certificate, its file, the days left and the
    /// `gen-certs` command that re-issues it from the same CA.
    pub fn certificate_expiry_warning(mut self, days: u32) -> Self {
        self.expiry_warning_days = days;
        self
    }

    /// How often the TLS listeners' certificates are checked for expiry
    /// while the broker runs (default once a day,
    /// [`DEFAULT_CERTIFICATE_EXPIRY_CHECK_INTERVAL`]); the check also
    /// updates `$SYS/broker/tls/listener/<port>/certificate/days_left`.
    pub fn certificate_expiry_check_interval(mut self, every: Duration) -> Self {
        self.expiry_check_interval = every;
        self
    }

    /// Adds a bridge to another broker (what a `connection` section of the
    /// configuration file adds): the server opens its local session at
    /// start and dials the remote (see [`crate::bridge`]).
    pub fn bridge(mut self, config: crate::bridge::BridgeConfig) -> Self {
        self.bridges.push(config);
        self
    }

    /// Checks CONNECTs with an `async` function, outside the broker's lock
    /// (replaces the [`Authenticator`]). See [`AsyncAuthenticator`].
    pub fn async_authenticator<F, Fut>(self, check: F) -> Self
    where
        F: Fn(crate::OwnedAuthRequest) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = AuthDecision> + Send + 'static,
    {
        self.async_authenticator_with(Arc::new(check))
    }

    /// Checks CONNECTs with an [`AsyncAuthenticator`], outside the broker's
    /// lock (replaces the [`Authenticator`]).
    pub fn async_authenticator_with(mut self, a: Arc<dyn AsyncAuthenticator>) -> Self {
        self.async_auth = Some(a);
        self.broker = self.broker.with_authenticator(Box::new(auth::DeferAll));
        self
    }

    /// Looks at the TLS listeners' certificate, key and CA files every
    /// `interval` and serves new files as soon as they change on disk (a
    /// renewal job replaced them), as [`Server::reload_tls`] does. Off by
    /// default (`certificate_watch_interval` in the configuration file).
    pub fn watch_certificates(mut self, interval: Duration) -> Self {
        self.certificate_watch = Some(interval);
        self
    }

    /// How many events [`Server::events`] keeps for a reader that lags
    /// (default 1024); beyond it the oldest are lost, and counted.
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n;
        self
    }

    /// Sets the authenticator (replaces an async one).
    pub fn authenticator(mut self, a: Box<dyn Authenticator>) -> Self {
        self.async_auth = None;
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

    /// Serves the statistics for Prometheus at `http://ADDR/metrics`
    /// ([`metrics_text`]); may be given more than once (e.g. IPv4 and IPv6).
    pub fn metrics_listener(mut self, addr: SocketAddr) -> Self {
        self.metrics.push(addr);
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
        // Bridge TLS files are read first: a wrong one fails here.
        let mut bridge_tls = Vec::new();
        for b in &self.bridges {
            bridge_tls.push(bridge::tls_config(b)?);
        }
        let mut bound = Vec::new();
        for l in &self.listeners {
            let socket = match &l.prebound {
                Some(s) => adopt(s, l.addr)?,
                None => bind(l.addr)?,
            };
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
                port: settings.port,
                require_certificate: settings.require_certificate,
                shape: l.shape.clone(),
                settings: std::sync::RwLock::new(Arc::new(settings)),
                handshake_timeout: self.handshake_timeout,
                max_connections: l.max_connections,
                websockets: l.websockets,
                open: AtomicU32::new(0),
                external: false,
            });
            bound.push((socket, local, rt));
        }
        let mut metrics_sockets = Vec::new();
        for addr in &self.metrics {
            let socket = bind(*addr)?;
            let local = socket.local_addr().map_err(|source| DriverError::Bind {
                addr: *addr,
                source,
                hint: "",
            })?;
            tracing::info!(target: TARGET, "Opening metrics listen socket on {}.", local);
            metrics_sockets.push((socket, local));
        }
        let (auth_tx, auth_rx) = match &self.async_auth {
            Some(_) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let shared = Shared::new(
            self.broker,
            self.event_capacity,
            auth_tx,
            expiry::ExpiryWatch::new(i64::from(self.expiry_warning_days)),
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let (alive_tx, alive_rx) = mpsc::channel(1);
        let mut tasks = Vec::new();
        if let (Some(auth), Some(rx)) = (self.async_auth, auth_rx) {
            tasks.push(tokio::spawn(shared::auth_task(
                shared.clone(),
                auth,
                rx,
                stop_rx.clone(),
            )));
        }
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
        let tls_runtimes: Vec<_> = runtimes
            .iter()
            .filter(|rt| rt.tls.is_some())
            .cloned()
            .collect();
        if !tls_runtimes.is_empty() {
            // Certificates that expire soon: said at start, then every day.
            shared.expiry.check_listeners(&shared, &tls_runtimes);
            tasks.push(tokio::spawn(expiry::check_every(
                shared.clone(),
                tls_runtimes.clone(),
                self.expiry_check_interval,
                stop_rx.clone(),
            )));
        }
        if let Some(every) = self.certificate_watch {
            if !tls_runtimes.is_empty() {
                tasks.push(tokio::spawn(watch_certificates(
                    shared.clone(),
                    tls_runtimes,
                    every,
                    stop_rx.clone(),
                )));
            }
        }
        let mut bridges = Vec::new();
        for (config, tls) in self.bridges.into_iter().zip(bridge_tls) {
            let (handle, task) = bridge::start(&shared, config, tls, stop_rx.clone());
            bridges.push(handle);
            tasks.push(task);
        }
        let mut metrics_addrs = Vec::new();
        for (socket, local) in metrics_sockets {
            metrics_addrs.push(local);
            let task = metrics::serve(shared.clone(), socket, stop_rx.clone());
            tasks.push(tokio::spawn(task));
        }
        tasks.push(tokio::spawn(shared::timer_task(shared.clone(), stop_rx)));
        Ok(Server {
            bridges,
            shared,
            local_addrs,
            metrics_addrs,
            runtimes,
            tasks,
            stop: Arc::new(stop_tx),
            alive_tx: Some(alive_tx),
            alive_rx,
            handshake_timeout: self.handshake_timeout,
            config: std::sync::Mutex::new(self.config),
            runtime: tokio::runtime::Handle::current(),
        })
    }
}

/// Reloads TLS files that changed on disk, every `every`.
async fn watch_certificates(
    shared: Arc<Shared>,
    runtimes: Vec<Arc<ListenerRuntime>>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let tls: Vec<_> = runtimes
        .iter()
        .filter_map(|rt| rt.tls.clone().map(|t| (t, rt.port)))
        .collect();
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Said once per listener until it changes, not at every look.
    let mut last_error: Vec<Option<String>> = vec![None; tls.len()];
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let mut changed = Vec::new();
        for (((config, port), last), rt) in tls.iter().zip(&mut last_error).zip(&runtimes) {
            match config.reload_if_changed() {
                Ok(true) => {
                    *last = None;
                    changed.push(rt.clone());
                    tracing::info!(target: TARGET, "Certificate files of the listener on port {port} changed: new connections get them.")
                }
                Ok(false) => {}
                // A renewal job may be half-way through writing: the old
                // files stay in use and the next look tries again.
                Err(e) => {
                    let e = e.to_string();
                    if last.as_deref() != Some(e.as_str()) {
                        tracing::warn!(target: TARGET, "Certificate files of the listener on port {port} changed but cannot be used yet ({e}); the old ones stay in use.");
                        *last = Some(e);
                    }
                }
            }
        }
        // New files: how long they have left, in the log and in $SYS.
        shared.expiry.check_listeners(&shared, &changed);
    }
}

/// A socket the program bound, for tokio.
fn adopt(socket: &std::net::TcpListener, addr: SocketAddr) -> Result<TcpListener, DriverError> {
    let err = |source| DriverError::Bind {
        addr,
        source,
        hint: "",
    };
    let socket = socket.try_clone().map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    TcpListener::from_std(socket).map_err(err)
}

fn bind(addr: SocketAddr) -> Result<TcpListener, DriverError> {
    use socket2::{Domain, Socket, Type};
    let err = |source: std::io::Error| {
        let hint = match source.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another program, perhaps a running mosquitto, already listens there: stop it or pick another port for this listener)"
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
                    conn::spawn(shared.clone(), rt.clone(), tcp, peer, alive.clone());
                }
                Err(e) => {
                    // Out of file descriptors and the like: say so, back off briefly.
                    tracing::warn!(target: TARGET, "Error accepting a connection on port {}: {}", rt.port, e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// A running broker.
///
/// [`Server::shutdown`] stops it and waits for the connections to close.
/// Dropping the `Server` (or [`ShutdownHandle::shutdown`] from anywhere)
/// stops it too, without waiting: the listeners stop accepting, 5.0
/// clients get DISCONNECT 0x8B Server shutting down, and every connection
/// task ends on its own shortly after.
pub struct Server {
    shared: Arc<Shared>,
    bridges: Vec<Arc<bridge::BridgeHandle>>,
    local_addrs: Vec<SocketAddr>,
    metrics_addrs: Vec<SocketAddr>,
    runtimes: Vec<Arc<ListenerRuntime>>,
    tasks: Vec<JoinHandle<()>>,
    stop: Arc<watch::Sender<bool>>,
    /// Every connection task holds a clone; `None` once shutting down.
    alive_tx: Option<mpsc::Sender<()>>,
    alive_rx: mpsc::Receiver<()>,
    handshake_timeout: Duration,
    /// The configuration it runs with, when built from a file.
    config: std::sync::Mutex<Option<crate::config::Config>>,
    /// The runtime it was started on (its tasks are counted there).
    runtime: tokio::runtime::Handle,
}

/// Stops a [`Server`] from anywhere (a signal handler, another task):
/// cloneable, and it does not keep the server alive.
#[derive(Clone)]
pub struct ShutdownHandle {
    stop: Arc<watch::Sender<bool>>,
    shared: std::sync::Weak<Shared>,
}

impl std::fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("stopped", &*self.stop.borrow())
            .finish()
    }
}

impl ShutdownHandle {
    /// Stops accepting, sends 5.0 clients DISCONNECT 0x8B Server shutting
    /// down and closes every connection. Returns at once; the `Server`'s
    /// owner can still `shutdown().await` to wait for the connections.
    pub fn shutdown(&self) {
        stop(&self.stop, self.shared.upgrade().as_deref());
    }

    /// Whether the server was told to stop.
    pub fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }
}

/// Tells the accept loops and timers to end and the broker to close every
/// connection (once).
fn stop(tx: &watch::Sender<bool>, shared: Option<&Shared>) {
    if tx.send_replace(true) {
        return;
    }
    if let Some(shared) = shared {
        shared.lock().broker().shutdown(Instant::now());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop(&self.stop, Some(&self.shared));
    }
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

    /// Each bridge's name and counters (connected, queued, forwarded,
    /// dropped, the address in use), in the order they were added.
    pub fn bridges(&self) -> Vec<(String, crate::bridge::BridgeStats)> {
        let mut g = self.shared.lock();
        self.bridges.iter().map(|b| b.stats(g.broker())).collect()
    }

    /// What happens in the broker, as it happens: clients connected and
    /// disconnected (with address, user name, certificate identity and
    /// reason code), subscribed and unsubscribed, messages dropped, and
    /// authentications deferred by a synchronous [`Authenticator`] (answer
    /// them with [`Server::complete_auth`]). Each call gives a new reader
    /// that sees what happens from then on. The stream is bounded
    /// ([`ServerBuilder::event_capacity`]): a reader that falls behind
    /// never slows the broker; it loses the oldest events, and
    /// [`EventStream::lost`] counts them.
    pub fn events(&self) -> EventStream {
        let rx = self.shared.events.subscribe();
        self.shared.lock().broker().report_activity(true);
        EventStream::new(rx)
    }

    /// Answers a deferred authentication (an [`crate::Event::AuthPending`]
    /// from [`Server::events`]). False when nothing waits for it any more.
    pub fn complete_auth(&self, connection: ConnectionId, decision: AuthDecision) -> bool {
        self.shared
            .lock()
            .broker()
            .complete_auth(Instant::now(), connection, decision)
    }

    /// The addresses the Prometheus metrics are served on (empty without
    /// [`ServerBuilder::metrics_listener`]), with the real port when port 0
    /// was asked for.
    pub fn metrics_addrs(&self) -> &[SocketAddr] {
        &self.metrics_addrs
    }

    /// The statistics in Prometheus' text format, as served at `/metrics`
    /// (with [`Server::runtime_alive_tasks`] as
    /// `mqtt_broker_runtime_alive_tasks`).
    pub fn metrics_text(&self) -> String {
        metrics::metrics_text_with_tasks(&self.stats(), Some(self.runtime_alive_tasks()))
    }

    /// Tasks alive in the tokio runtime the server was started on
    /// (`RuntimeMetrics::num_alive_tasks`): one per open connection, per
    /// listener, per bridge, the timer and metrics tasks, and whatever
    /// else the embedder spawned there. A count that keeps growing while
    /// the connections do not is a leak; `mqtt-soak` checks that it
    /// returns to where it started.
    pub fn runtime_alive_tasks(&self) -> usize {
        self.runtime.metrics().num_alive_tasks()
    }

    /// Runs `f` on the locked broker (for embedders that need more than
    /// statistics). Keep it short: every connection waits for the lock.
    pub fn with_broker<R>(&self, f: impl FnOnce(&mut Broker) -> R) -> R {
        f(self.shared.lock().broker())
    }

    /// Re-reads the TLS certificate and key of every TLS listener whose files
    /// changed; open connections keep the configuration they started with.
    /// Returns how many listeners were reloaded. The new files are checked
    /// for expiry as at start ([`ServerBuilder::certificate_expiry_warning`]).
    pub fn reload_tls(&self) -> Result<usize, mqtt_tls::TlsError> {
        let mut reloaded = Vec::new();
        let mut result = Ok(());
        for rt in &self.runtimes {
            if let Some(tls) = &rt.tls {
                match tls.reload_if_changed() {
                    Ok(true) => reloaded.push(rt.clone()),
                    Ok(false) => {}
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        self.shared.expiry.check_listeners(&self.shared, &reloaded);
        result.map(|()| reloaded.len())
    }

    /// Graceful shutdown: stop accepting, send 5.0 clients DISCONNECT 0x8B
    /// Server shutting down, flush every connection and close it. Waits up
    /// to five seconds for the connections to finish.
    pub async fn shutdown(mut self) {
        // Accept loops and timers end first, so no connection starts after
        // the broker closed them all.
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        self.shared.lock().broker().shutdown(Instant::now());
        self.alive_tx = None;
        // Every connection task holds a sender; recv() returns None once all are gone.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.alive_rx.recv()).await;
    }

    /// A handle that stops this server from anywhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            stop: self.stop.clone(),
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Serves MQTT on a stream the program already holds: a connection its
    /// own listener accepted, a Unix socket, a TLS stream it terminated
    /// itself (its client certificate's identity in `info.tls`). `info`
    /// says who the peer is and which [`ListenerSettings`] apply (mount
    /// point, `allow_anonymous`, ...). The connection runs in a task of its
    /// own, like those the listeners accept; the handle ends with it.
    pub fn serve<S>(&self, stream: S, info: crate::ConnectionInfo) -> JoinHandle<()>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let rt = Arc::new(ListenerRuntime {
            tls: None,
            port: info.listener.port,
            require_certificate: info.listener.require_certificate,
            shape: String::new(),
            settings: std::sync::RwLock::new(info.listener.clone()),
            handshake_timeout: self.handshake_timeout,
            max_connections: None,
            websockets: false,
            open: AtomicU32::new(0),
            external: true,
        });
        tokio::spawn(conn::handle_stream(
            self.shared.clone(),
            rt,
            stream,
            info,
            self.alive_tx.clone(),
        ))
    }

    /// Serves MQTT over WebSockets on a stream whose upgrade the program's
    /// own HTTP server answered (status 101 with
    /// [`mqtt_tls::websocket::accept_key`] and
    /// [`mqtt_tls::websocket::choose_subprotocol`]): MQTT on a path such as
    /// `/mqtt` of a server that serves other things on the same port. See
    /// `examples/gateway.rs`.
    pub fn serve_websocket<S>(&self, upgraded: S, info: crate::ConnectionInfo) -> JoinHandle<()>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let shared = self.shared.clone();
        let rt = Arc::new(ListenerRuntime {
            tls: None,
            port: info.listener.port,
            require_certificate: info.listener.require_certificate,
            shape: String::new(),
            settings: std::sync::RwLock::new(info.listener.clone()),
            handshake_timeout: self.handshake_timeout,
            max_connections: None,
            websockets: false,
            open: AtomicU32::new(0),
            external: true,
        });
        let alive = self.alive_tx.clone();
        tokio::spawn(async move {
            let ws = mqtt_tls::websocket::from_upgraded(upgraded).await;
            conn::handle_stream(shared, rt, ws, info, alive).await
        })
    }
}
