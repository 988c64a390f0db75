//! `$SYS/broker/...`: the broker's statistics as retained messages,
//! published every `sys_interval` from the table in [`crate::sys`].

use super::*;
use crate::sys::{next_load, SysValue, LOAD_SERIES, SYS_TOPICS};

impl Broker {
    // ----- $SYS --------------------------------------------------------------

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
        let mut out: Vec<(&'static str, String)> = Vec::new();
        for (i, t) in SYS_TOPICS.iter().enumerate() {
            let payload = match t.value {
                SysValue::Version => {
                    format!("mqtt-broker-core version {}", env!("CARGO_PKG_VERSION"))
                }
                SysValue::Uptime => {
                    out.push((t.topic, format!("{uptime} seconds")));
                    continue;
                }
                SysValue::Stat(f) => f(&s).to_string(),
                SysValue::Load { series, window } => {
                    let current = state.loads[i];
                    if initial {
                        out.push((t.topic, format!("{current:.2}")));
                    } else if let Some(e) = elapsed {
                        let new = next_load(current, rates[series], e, window);
                        state.loads[i] = new;
                        if (new - current).abs() >= 0.01 {
                            out.push((t.topic, format!("{new:.2}")));
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
            };
            if state.published[i].as_deref() != Some(payload.as_str()) {
                state.published[i] = Some(payload.clone());
                out.push((t.topic, payload));
            }
        }
        if elapsed.is_some() || initial {
            for (i, (_, counter)) in LOAD_SERIES.iter().enumerate() {
                state.counters[i] = counter(&s);
            }
            state.last = Some(now);
        }
        for (topic, value) in out {
            let Ok(topic) = TopicName::new(Bytes::from_static(topic.as_bytes())) else {
                continue;
            };
            let msg = Message {
                topic,
                payload: Bytes::from(value),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: PublishProperties::default(),
                expires_at: None,
            };
            self.publish_message(now, msg, None);
        }
    }
}
