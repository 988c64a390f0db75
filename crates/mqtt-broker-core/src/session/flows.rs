//! A session's QoS flows towards its client: a routed message goes straight
//! out at QoS 0, or through the queue and the in-flight window at QoS 1 and
//! 2 (section 4.3), written through to storage for a persistent session.

use super::{Outgoing, Session};
use crate::broker_config::BrokerConfig;
use crate::connection::{Conn, ConnState, OutgoingPublish};
use crate::event::DropReason;
use crate::memory::MemoryAccount;
use crate::message::{Delivery, Message};
use crate::outbox::Outbox;
use crate::persistence::Persistence;
use crate::timer::{Timer, Timers};
use mqtt_codec::{PacketType, QoS};
use std::sync::Arc;
use std::time::Instant;

impl Session {
    /// Whether `ack` (PUBACK, PUBREC or PUBCOMP) names a message in flight whose flow it does not
    /// belong to: PUBREC or PUBCOMP for a QoS 1 message, PUBACK for a QoS 2
    /// one, PUBCOMP before PUBREC. That is a protocol violation (Mosquitto
    /// closes the connection too); an identifier not in flight is not.
    pub fn is_wrong_ack(&self, ack: PacketType, packet_id: mqtt_codec::PacketId) -> bool {
        let Some(o) = self.inflight.iter().find(|o| o.packet_id == packet_id) else {
            return false;
        };
        match (ack, o.delivery.qos) {
            (PacketType::PubAck, QoS::AtLeastOnce) => false,
            (PacketType::PubRec, QoS::ExactlyOnce) => false,
            (PacketType::PubComp, QoS::ExactlyOnce) => !o.released,
            _ => true,
        }
    }
}

/// What a session's flow may touch besides its session and its connection:
/// the limits, the outbox (events and counters), the storage and the timers.
pub(crate) struct FlowCtx<'a> {
    pub config: &'a BrokerConfig,
    pub out: &'a mut Outbox,
    pub store: &'a mut Persistence,
    pub timers: &'a mut Timers,
    /// The account messages are charged to when they are first held.
    pub memory: &'a Arc<MemoryAccount>,
}

impl FlowCtx<'_> {
    /// Queues a delivery for a session, within `max_queued_messages` and
    /// `max_queued_bytes`; a message beyond them is dropped.
    pub fn enqueue(&mut self, now: Instant, session: &mut Session, mut d: Delivery) -> bool {
        let cfg = self.config;
        if session.queue_is_full(cfg.max_queued_messages, cfg.max_queued_bytes, d.msg.size()) {
            self.out.dropped(
                &session.client_id,
                d.msg.topic.as_str(),
                DropReason::QueueFull,
            );
            if !session.dropping {
                session.dropping = true;
                tracing::info!(target: "mqtt_broker", "Outgoing messages are being dropped for client {}.", session.client_id);
            }
            return false;
        }
        d.seq = session.take_seq();
        self.store.persist(now, session, &d, None, false);
        if let Some(at) = d.msg.expires_at {
            // Expired messages leave the queue on time, not only when sent.
            self.timers.set(at, Timer::QueueExpiry(session.key));
        }
        session.push_queue(d);
        true
    }

    /// Removes expired messages from the session's queue [MQTT-3.3.2-5].
    pub fn drop_expired(&mut self, now: Instant, session: &mut Session) {
        for d in session.take_expired(now) {
            self.out.dropped(
                &session.client_id,
                d.msg.topic.as_str(),
                DropReason::Expired,
            );
            self.store.forget(session, d.seq);
        }
    }

    /// Moves queued messages into the in-flight window while the window
    /// ([`BrokerConfig::max_inflight_messages`] and the client's Receive
    /// Maximum [MQTT-3.3.4-9]) and the outgoing buffer have room.
    pub fn pump(&mut self, now: Instant, session: &mut Session, conn: &mut Conn) {
        if conn.state != ConnState::Connected {
            return;
        }
        let window = conn.send_window(self.config);
        while conn.pending_bytes() < self.config.max_transmit_bytes {
            let Some(front) = session.queue.front() else {
                break;
            };
            if front.qos != QoS::AtMostOnce && session.inflight.len() >= window {
                break;
            }
            let Some(d) = session.pop_queue() else {
                break;
            };
            if d.msg.is_expired(now) {
                self.out.dropped(
                    &session.client_id,
                    d.msg.topic.as_str(),
                    DropReason::Expired,
                );
                self.store.forget(session, d.seq);
                continue;
            }
            if d.qos == QoS::AtMostOnce {
                conn.send_publish(self.out, now, &OutgoingPublish::of(&d), None, false);
                self.store.forget(session, d.seq);
                continue;
            }
            let Some(pid) = session.allocate_packet_id() else {
                session.requeue_front(d);
                break;
            };
            if conn.send_publish(self.out, now, &OutgoingPublish::of(&d), Some(pid), false) {
                self.store.persist(now, session, &d, Some(pid), false);
                session.inflight.push_back(Outgoing {
                    packet_id: pid,
                    delivery: d,
                    released: false,
                });
            } else {
                self.store.forget(session, d.seq);
            }
        }
    }

    /// Delivers one routed message to one session: straight into the
    /// outgoing buffer at QoS 0, through the queue and window at QoS 1 and 2.
    /// `shared` is the message as queued deliveries share it, made on first use.
    pub fn deliver(
        &mut self,
        now: Instant,
        session: &mut Session,
        conn: Option<&mut Conn>,
        publish: &OutgoingPublish<'_>,
        shared: &mut Option<Arc<Message>>,
    ) {
        let conn = conn.filter(|c| c.state == ConnState::Connected);
        let msg = publish.msg;
        let memory = self.memory;
        let delivery = |shared: &mut Option<Arc<Message>>| Delivery {
            msg: shared
                .get_or_insert_with(|| Arc::new(msg.clone().charged(memory)))
                .clone(),
            qos: publish.qos,
            retain: publish.retain,
            sub_ids: publish.sub_ids.to_vec(),
            seq: 0,
        };
        if publish.qos == QoS::AtMostOnce {
            match conn {
                Some(conn) => {
                    // Back-pressure: a slow subscriber loses QoS 0 messages
                    // rather than making the broker buffer without bound.
                    if conn.pending_bytes() >= self.config.max_transmit_bytes {
                        self.out.dropped(
                            &session.client_id,
                            msg.topic.as_str(),
                            DropReason::QueueFull,
                        );
                    } else {
                        conn.send_publish(self.out, now, publish, None, false);
                    }
                }
                None => {
                    if self.config.queue_qos0_messages && session.is_persistent() {
                        let d = delivery(shared);
                        self.enqueue(now, session, d);
                    }
                }
            }
            return;
        }
        let d = delivery(shared);
        self.enqueue(now, session, d);
        if let Some(conn) = conn {
            self.pump(now, session, conn);
        }
    }
}
