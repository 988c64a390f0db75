//! Reconnect delays: exponential back-off with jitter; the same small
//! random generator also makes MQTT 3.1 Client Identifiers.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// When and how the client reconnects after a connection is lost. Start
/// from [`ReconnectOptions::default`] (or [`ReconnectOptions::disabled`])
/// and chain the setters:
///
/// ```
/// use std::time::Duration;
/// let fast = mqtt_client::ReconnectOptions::default()
///     .initial_delay(Duration::from_millis(20))
///     .max_delay(Duration::from_secs(2));
/// assert_eq!(fast.delay(1, 0.0), Duration::from_millis(20));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReconnectOptions {
    /// Reconnect at all (default `true`). When off, a lost connection
    /// closes the client.
    pub enabled: bool,
    /// Delay before the first retry (default 500 ms).
    pub initial_delay: Duration,
    /// Longest delay (default 30 s).
    pub max_delay: Duration,
    /// Growth factor per failed attempt (default 2).
    pub multiplier: f64,
    /// Fraction of each delay that is random (default 0.5: a delay `d` becomes
    /// a uniform pick in `[d/2, d]`), so many clients that lost the same
    /// broker do not come back in lock-step.
    pub jitter: f64,
}

impl Default for ReconnectOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }
}

impl ReconnectOptions {
    /// No reconnects.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Reconnect at all.
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    /// Delay before the first retry.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Longest delay.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Growth factor per failed attempt.
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Fraction of each delay that is random (0 to 1).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// The delay before retry number `attempt` (1 for the first), with
    /// `random` in `[0, 1)` supplying the jitter.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let exp = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let base = self.initial_delay.as_secs_f64() * exp;
        let capped = base.min(self.max_delay.as_secs_f64()).max(0.0);
        let jitter = self.jitter.clamp(0.0, 1.0);
        Duration::from_secs_f64(capped * (1.0 - jitter * random.clamp(0.0, 1.0)))
    }
}

/// A small xorshift generator seeded from the process's random hash keys:
/// jitter needs no cryptographic randomness, and no extra dependency.
#[derive(Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x9E37_79B9_7F4A_7C15);
        Self(h.finish() | 1)
    }

    /// A number in `[0, 1)`.
    pub(crate) fn next(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// A Client Identifier for an MQTT 3.1 session that was given none: 3.1
/// requires one of 1 to 23 characters, and brokers refuse an empty one
/// (Mosquitto with CONNACK 2, Identifier rejected). Like libmosquitto's
/// `mosq-` + 18 characters: a prefix and random letters and digits, 23
/// characters in all.
pub(crate) fn generated_client_id() -> String {
    const PREFIX: &str = "mqtt-client-";
    const ALPHANUMERIC: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut random = Jitter::new();
    let mut id = String::with_capacity(23);
    id.push_str(PREFIX);
    while id.len() < 23 {
        let i = (random.next_u64() >> 32) as usize % ALPHANUMERIC.len();
        id.push(char::from(ALPHANUMERIC[i]));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_client_ids_fit_mqtt_3_1_and_differ() {
        let a = generated_client_id();
        let b = generated_client_id();
        for id in [&a, &b] {
            assert_eq!(id.len(), 23, "{id}");
            assert!(id.starts_with("mqtt-client-"), "{id}");
            assert!(id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
        }
        assert_ne!(a, b);
    }

    #[test]
    fn delays_grow_exponentially_up_to_the_maximum() {
        let o = ReconnectOptions::default();
        assert_eq!(o.delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(o.delay(2, 0.0), Duration::from_secs(1));
        assert_eq!(o.delay(4, 0.0), Duration::from_secs(4));
        assert_eq!(o.delay(30, 0.0), Duration::from_secs(30));
    }

    #[test]
    fn jitter_shortens_delays_by_at_most_its_fraction() {
        let o = ReconnectOptions::default();
        let mut j = Jitter::new();
        let delays: Vec<Duration> = (0..100).map(|_| o.delay(3, j.next())).collect();
        assert!(delays
            .iter()
            .all(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(2)));
        assert!(delays.iter().any(|d| *d != delays[0]), "no jitter at all");
    }
}
