//! `$SYS/broker/...`: the broker's statistics as retained messages,
//! published every `sys_interval` from the table in [`crate::sys`].

use super::*;
use crate::sys::{
    listener_topic, next_load, SysValue, LOAD_SERIES, SYS_LISTENER_TOPICS, SYS_TOPICS,
};

impl Broker {
    // ----- $SYS --------------------------------------------------------------

    /// Sets the days left until the server certificate of the TLS listener
    /// on `port` expires (negative once it expired), for
    /// `$SYS/broker/tls/listener/<port>/certificate/days_left` (see
    /// [`crate::sys::SYS_LISTENER_TOPICS`]). The value is published,
    /// retained, at the next `$SYS` update when it changed. The tokio
    /// driver calls this at start, on reload and once a day; another
    /// driver that terminates TLS does the same.
    pub fn set_tls_days_left(&mut self, port: u16, days: i64) {
        let published = self.sys.tls_days_left.get(&port).and_then(|(_, p)| *p);
        self.sys.tls_days_left.insert(port, (days, published));
    }

    /// The days left last set for the TLS listener on `port`
    /// ([`Broker::set_tls_days_left`]).
    pub fn tls_days_left(&self, port: u16) -> Option<i64> {
        self.sys.tls_days_left.get(&port).map(|(days, _)| *days)
    }

    pub(super) fn publish_sys(&mut self, now: Instant) {
        let s = self.stats();
        let uptime = self
            .started
            .map_or(0, |t| now.saturating_duration_since(t).as_secs());
        let state = &mut self.sys;
        if state.published.len() != SYS_TOPICS.len() {
            state.published = vec![None; SYS_TOPICS.len()];
            state.loads = vec![0.0; SYS_TOPICS.len()];
        }
        // The first update only records the counters (and publishes 0.00);
        // later ones turn what each counter grew by into a rate per minute.
        let elapsed = state
            .last
            .map(|t| now.saturating_duration_since(t).as_secs_f64())
            .filter(|e| *e > 0.0);
        let initial = state.last.is_none();
        let mut rates = [0.0; LOAD_SERIES.len()];
        for (i, (_, counter)) in LOAD_SERIES.iter().enumerate() {
            let value = counter(&s);
            if let Some(e) = elapsed {
                rates[i] = value.saturating_sub(state.counters[i]) as f64 * 60.0 / e;
            }
        }
        let mut out: Vec<(std::borrow::Cow<'static, str>, String)> = Vec::new();
        for (i, t) in SYS_TOPICS.iter().enumerate() {
            let payload = match t.value {
                SysValue::Version => {
                    format!("mqtt-broker-core version {}", env!("CARGO_PKG_VERSION"))
                }
                SysValue::Uptime => {
                    out.push((t.topic.into(), format!("{uptime} seconds")));
                    continue;
                }
                SysValue::Stat(f) => f(&s).to_string(),
                SysValue::Load { series, window } => {
                    let current = state.loads[i];
                    if initial {
                        out.push((t.topic.into(), format!("{current:.2}")));
                    } else if let Some(e) = elapsed {
                        let new = next_load(current, rates[series], e, window);
                        state.loads[i] = new;
                        if (new - current).abs() >= 0.01 {
                            out.push((t.topic.into(), format!("{new:.2}")));
                        }
                    }
                    continue;
                }
                SysValue::HeapCurrent => match s.heap_current {
                    Some(v) => v.to_string(),
                    None => continue,
                },
                SysValue::HeapMaximum => match s.heap_maximum {
                    Some(v) => v.to_string(),
                    None => continue,
                },
                // Per listener: below.
                SysValue::TlsDaysLeft => continue,
            };
            if state.published[i].as_deref() != Some(payload.as_str()) {
                state.published[i] = Some(payload.clone());
                out.push((t.topic.into(), payload));
            }
        }
        for t in SYS_LISTENER_TOPICS {
            if let SysValue::TlsDaysLeft = t.value {
                for (port, (days, published)) in state.tls_days_left.iter_mut() {
                    if *published != Some(*days) {
                        *published = Some(*days);
                        out.push((listener_topic(t.topic, *port).into(), days.to_string()));
                    }
                }
            }
        }
        if elapsed.is_some() || initial {
            for (i, (_, counter)) in LOAD_SERIES.iter().enumerate() {
                state.counters[i] = counter(&s);
            }
            state.last = Some(now);
        }
        for (topic, value) in out {
            let topic = match topic {
                std::borrow::Cow::Borrowed(t) => Bytes::from_static(t.as_bytes()),
                std::borrow::Cow::Owned(t) => Bytes::from(t),
            };
            let Ok(topic) = TopicName::new(topic) else {
                continue;
            };
            let msg = Message {
                topic,
                payload: Bytes::from(value),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: PublishProperties::default(),
                expires_at: None,
                charge: Default::default(),
            };
            self.publish_message(now, msg, None);
        }
    }
}
