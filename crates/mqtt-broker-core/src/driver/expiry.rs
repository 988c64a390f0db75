//! Certificates that warn before they expire: the TLS listeners' `certfile`,
//! `cafile` and `capath` certificates, checked at start, on reload and every
//! day, and the client certificates presented to the broker, each logged
//! when it expires within the threshold (or has expired), with the
//! `gen-certs` command that re-issues it. The days left of each listener's
//! server certificate go to `$SYS` ([`crate::Broker::set_tls_days_left`]).

use super::shared::Shared;
use super::{ListenerRuntime, TARGET};
use mqtt_tls::expiry::{configured, CertificateExpiry, Role};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// How often the listeners' certificates are checked while the broker runs.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// A client certificate is warned about at most once in this time.
const CLIENT_WARNING_EVERY: Duration = Duration::from_secs(24 * 3600);

/// At most this many client identities are remembered as warned about; the
/// oldest are forgotten first (and then warned about again, at worst).
pub(crate) const MAX_CLIENTS_REMEMBERED: usize = 1024;

/// The threshold, and which clients were warned about when.
#[derive(Debug)]
pub(crate) struct ExpiryWatch {
    /// Warn about certificates with fewer days left than this.
    pub(crate) warn_within_days: i64,
    clients: Mutex<HashMap<String, Instant>>,
}

impl ExpiryWatch {
    pub(crate) fn new(warn_within_days: i64) -> Self {
        Self {
            warn_within_days,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Logs a warning for each certificate of the listener on `port` that
    /// expires within the threshold and returns the days left of its
    /// server certificate (the first in `certfile`).
    pub(crate) fn check_listener(
        &self,
        tls: &mqtt_tls::ReloadableServerConfig,
        port: u16,
        now: SystemTime,
    ) -> Option<i64> {
        let options = tls.options();
        let (found, errors) = configured(
            Some(&options.certfile),
            options.cafile.as_deref(),
            options.capath.as_deref(),
        );
        for e in errors {
            tracing::warn!(target: TARGET, "Warning: listener on port {port}: cannot read the certificates to check when they expire: {e}");
        }
        let mut server_days = None;
        for c in &found {
            let cert = &c.certificate;
            if c.role == Role::Certfile && cert.index == 1 {
                server_days = Some(cert.days_left(now));
            }
            if cert.expires_within(now, self.warn_within_days) {
                tracing::warn!(
                    target: TARGET,
                    "Warning: listener on port {port}: {}: {}",
                    c.role.name(),
                    cert.warning(now, options.cafile.as_deref())
                );
            }
        }
        server_days
    }

    /// Checks every TLS listener in `runtimes` and hands the days left of
    /// their server certificates to the broker.
    pub(crate) fn check_listeners(&self, shared: &Shared, runtimes: &[Arc<ListenerRuntime>]) {
        let now = SystemTime::now();
        let days: Vec<(u16, i64)> = runtimes
            .iter()
            .filter_map(|rt| {
                let tls = rt.tls.as_ref()?;
                Some((rt.port, self.check_listener(tls, rt.port, now)?))
            })
            .collect();
        if days.is_empty() {
            return;
        }
        let mut g = shared.lock();
        for (port, d) in days {
            g.broker().set_tls_days_left(port, d);
        }
    }

    /// Logs a warning for a client certificate that expires within the
    /// threshold, at most once a day per subject.
    pub(crate) fn check_client(&self, der: &[u8], peer: SocketAddr, port: u16) {
        let now = SystemTime::now();
        let Ok(cert) = CertificateExpiry::from_der(der, None, 1) else {
            return;
        };
        if !cert.expires_within(now, self.warn_within_days) {
            return;
        }
        if !self.first_today(&cert.subject, Instant::now()) {
            return;
        }
        tracing::warn!(
            target: TARGET,
            "Warning: client {}:{} on port {port}: {}",
            peer.ip(),
            peer.port(),
            cert.warning(now, None)
        );
    }

    /// Whether `subject` was not warned about in the last day (and notes
    /// that it is now). The map stays within [`MAX_CLIENTS_REMEMBERED`].
    pub(crate) fn first_today(&self, subject: &str, now: Instant) -> bool {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = clients.get(subject) {
            if now.saturating_duration_since(*at) < CLIENT_WARNING_EVERY {
                return false;
            }
        }
        if clients.len() >= MAX_CLIENTS_REMEMBERED && !clients.contains_key(subject) {
            clients.retain(|_, at| now.saturating_duration_since(*at) < CLIENT_WARNING_EVERY);
            if clients.len() >= MAX_CLIENTS_REMEMBERED {
                let oldest = clients
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(s, _)| s.clone());
                if let Some(oldest) = oldest {
                    clients.remove(&oldest);
                }
            }
        }
        clients.insert(subject.to_string(), now);
        true
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.clients.lock().map(|c| c.len()).unwrap_or(0)
    }
}

/// Checks the listeners' certificates every `every` until the server stops.
pub(crate) async fn check_every(
    shared: Arc<Shared>,
    runtimes: Vec<Arc<ListenerRuntime>>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let every = every.max(Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        shared.expiry.check_listeners(&shared, &runtimes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_warned_about_once_a_day_and_the_map_stays_bounded() {
        let w = ExpiryWatch::new(30);
        let t0 = Instant::now();
        assert!(w.first_today("CN=pi", t0));
        assert!(!w.first_today("CN=pi", t0 + Duration::from_secs(3600)));
        assert!(w.first_today("CN=pi", t0 + CLIENT_WARNING_EVERY));
        for i in 0..MAX_CLIENTS_REMEMBERED * 2 {
            assert!(w.first_today(&format!("CN=c{i}"), t0 + CLIENT_WARNING_EVERY));
        }
        assert_eq!(w.remembered(), MAX_CLIENTS_REMEMBERED);
        // The newest are remembered.
        let last = format!("CN=c{}", MAX_CLIENTS_REMEMBERED * 2 - 1);
        assert!(!w.first_today(&last, t0 + CLIENT_WARNING_EVERY));
    }
}
