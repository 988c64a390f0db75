//! CONNECT and AUTH: where a connection is judged, its Client Identifier
//! settled, it is authenticated (also 5.0 enhanced authentication and
//! re-authentication), refused, or attached to a session with CONNACK.

use super::*;

/// Packets a client may send after CONNECT while its authentication is
/// deferred, held until the decision.
const MAX_HELD: usize = 64;

impl Broker {
    // ----- CONNECT ---------------------------------------------------------

    /// A Client Identifier nobody uses: `prefix` (`auto_id_prefix`) and a
    /// UUID-shaped value, as Mosquitto assigns them.
    pub(super) fn new_client_id(&mut self, prefix: &str) -> String {
        loop {
            self.next_auto_id += 1;
            let a = splitmix64(self.next_auto_id);
            let b = splitmix64(a ^ self.next_auto_id.rotate_left(17));
            let id = format!(
                "{prefix}{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
                a >> 32,
                (a >> 16) & 0xFFFF,
                a & 0xFFFF,
                b >> 48,
                b & 0xFFFF_FFFF_FFFF
            );
            if !self.by_client_id.contains_key(&id) {
                return id;
            }
        }
    }

    pub(super) fn handle_connect(
        &mut self,
        now: Instant,
        id: ConnectionId,
        mut connect: Box<Connect>,
    ) {
        let cfg_max_keepalive = self.config.max_keepalive;
        let retain_available = self.config.retain_available;
        let allow_zero_length_clientid = self.config.allow_zero_length_clientid;
        let limit = self.config.message_size_limit;
        let version = connect.protocol;
        let v5 = version.is_v5();
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        conn.version = version;
        // (The decoder took the version from the CONNECT itself.)
        conn.keep_alive = connect.keep_alive;
        conn.connect_session_expiry = connect.properties.session_expiry_interval.unwrap_or(0);
        if v5 {
            conn.receive_maximum = connect.properties.receive_maximum.unwrap_or(u16::MAX);
            conn.max_packet_size = connect
                .properties
                .maximum_packet_size
                .unwrap_or(mqtt_codec::MAX_PACKET_SIZE);
            conn.topic_alias_max = connect.properties.topic_alias_maximum.unwrap_or(0);
        }
        let listener = conn.info.listener.clone();
        // A will above the listener's max_qos [MQTT-3.2.2-12].
        if let Some(w) = connect.will.as_ref().filter(|w| w.qos > listener.max_qos) {
            let why = format!(
                "its will has QoS {} and this listener allows at most QoS {} (max_qos)",
                w.qos.as_u8(),
                listener.max_qos.as_u8()
            );
            conn.client_id = Some(connect.client_id.clone()).filter(|c| !c.is_empty());
            self.refuse_because(now, id, ReasonCode::QoSNotSupported, why);
            return;
        }
        // The will lives under the listener's mount_point, like the
        // client's PUBLISHes (mounted here, as Mosquitto does on reading it).
        if let (Some(m), Some(w)) = (&listener.mount_point, connect.will.as_mut()) {
            match mounted_topic(m, &w.topic) {
                Some(t) => w.topic = t,
                None => {
                    conn.client_id = Some(connect.client_id.clone()).filter(|c| !c.is_empty());
                    let why = "its will topic is too long under this listener's mount_point";
                    self.refuse_because(now, id, ReasonCode::TopicNameInvalid, why.into());
                    return;
                }
            }
        }
        if let Some(w) = connect.will.as_ref() {
            let why = if too_deep(w.topic.as_str()) {
                Some((
                    ReasonCode::TopicNameInvalid,
                    "its will topic has more than 200 levels".to_string(),
                ))
            } else if limit != 0 && w.payload.len() > limit as usize {
                // As Mosquitto: 5.0 0x95, 3.1.1 return code 5.
                let rc = if v5 {
                    ReasonCode::PacketTooLarge
                } else {
                    ReasonCode::NotAuthorized
                };
                let why = format!(
                    "its will payload has {} bytes and message_size_limit is {limit}",
                    w.payload.len()
                );
                Some((rc, why))
            } else {
                None
            };
            if let Some((rc, why)) = why {
                if let Some(conn) = self.conns.get_mut(id) {
                    conn.client_id = Some(connect.client_id.clone()).filter(|c| !c.is_empty());
                }
                self.refuse_because(now, id, rc, why);
                return;
            }
        }
        // Client Identifier rules.
        let mut client_id = connect.client_id.clone();
        let mut assigned = false;
        if client_id.is_empty() {
            // [MQTT-3.1.3-8] 3.1.1 with Clean Session 0 (and 3.1 always): refused with 0x02.
            if version == ProtocolVersion::V3_1 || (!v5 && !connect.clean_start) {
                conn.client_id = None;
                self.refuse(now, id, ReasonCode::ClientIdentifierNotValid, None);
                return;
            }
            let allowed = listener
                .allow_zero_length_clientid
                .unwrap_or(allow_zero_length_clientid);
            if !allowed {
                conn.client_id = None;
                let why = "an empty client identifier is not allowed here (allow_zero_length_clientid false); connect with a client id";
                self.refuse_because(now, id, ReasonCode::ClientIdentifierNotValid, why.into());
                return;
            }
            // [MQTT-3.1.3-6] / [MQTT-3.2.2-16] the server assigns one.
            let prefix = listener
                .auto_id_prefix
                .clone()
                .unwrap_or_else(|| self.config.auto_id_prefix.clone());
            client_id = self.new_client_id(&prefix);
            assigned = true;
        } else if version == ProtocolVersion::V3_1 && client_id.len() > 23 {
            // MQTT 3.1: 1 to 23 characters.
            self.conn_mut(id).expect("exists").client_id = Some(client_id);
            self.refuse(now, id, ReasonCode::ClientIdentifierNotValid, None);
            return;
        }
        let conn = self.conn_mut(id).expect("exists");
        conn.client_id = Some(client_id.clone());
        // `clientid_prefixes` (checked, as in Mosquitto, after an
        // identifier was assigned).
        if let Some(prefix) = &self.config.clientid_prefixes {
            if !client_id.starts_with(prefix.as_str()) {
                let why =
                    format!("its client id does not start with '{prefix}' (clientid_prefixes)");
                self.refuse_because(now, id, ReasonCode::NotAuthorized, why);
                return;
            }
        }
        let conn = self.conn_mut(id).expect("exists");
        // Keep alive limit: 5.0 clients are told the server's value
        // [MQTT-3.2.2-21]; 3.1.1 clients are refused, as Mosquitto does.
        let mut server_keep_alive = None;
        if connect.keep_alive > cfg_max_keepalive {
            if v5 {
                server_keep_alive = Some(cfg_max_keepalive);
                conn.keep_alive = cfg_max_keepalive;
            } else {
                tracing::info!(
                    target: TARGET,
                    "Client {} refused: keep alive {} exceeds max_keepalive {}.",
                    client_id,
                    connect.keep_alive,
                    cfg_max_keepalive
                );
                self.refuse(now, id, ReasonCode::ClientIdentifierNotValid, None);
                return;
            }
        }
        // A retained will where retain is not available (section 3.2.2.3.5).
        if connect.will.as_ref().is_some_and(|w| w.retain) && !retain_available {
            self.refuse(now, id, ReasonCode::RetainNotSupported, None);
            return;
        }
        // The user name, possibly from the certificate.
        let cert = conn.info.tls.clone();
        let (username, from_cert) = if listener.use_identity_as_username {
            match cert.as_ref().and_then(|c| c.common_name.clone()) {
                Some(cn) => (Some(cn), true),
                None => {
                    let why = "use_identity_as_username is set but the client presented no certificate with a Common Name";
                    self.refuse_because(now, id, ReasonCode::NotAuthorized, why.into());
                    return;
                }
            }
        } else if listener.use_subject_as_username {
            match cert.as_ref() {
                Some(c) => (Some(c.subject.clone()), true),
                None => {
                    let why =
                        "use_subject_as_username is set but the client presented no certificate";
                    self.refuse_because(now, id, ReasonCode::NotAuthorized, why.into());
                    return;
                }
            }
        } else {
            (connect.username.clone(), false)
        };
        // `use_username_as_clientid`: the session is the user's.
        let client_id = if listener.use_username_as_clientid {
            match &username {
                Some(u) => {
                    self.conn_mut(id).expect("exists").client_id = Some(u.clone());
                    u.clone()
                }
                None => {
                    let why = "use_username_as_clientid is set and the client sent no user name; connect with a user name";
                    self.refuse_because(now, id, ReasonCode::NotAuthorized, why.into());
                    return;
                }
            }
        } else {
            client_id
        };
        let mut pending = PendingConnect {
            connect,
            client_id,
            assigned,
            server_keep_alive,
            username,
            username_from_certificate: from_cert,
            exchange: None,
            deferred: false,
            held: Vec::new(),
        };
        // 5.0 enhanced authentication (section 4.12).
        if let Some(method) = pending.connect.properties.authentication_method.clone() {
            let mut exchange = AuthExchange {
                method: method.into(),
                data: pending.connect.properties.authentication_data.clone(),
                step: 0,
                state: Vec::new(),
                reauthenticate: false,
            };
            let step = self.run_enhanced(id, &pending, &mut exchange);
            pending.exchange = Some(exchange);
            self.enhanced_step(now, id, pending, step);
            return;
        }
        // The anonymous rule (docs/configuration.md): a verified certificate
        // authenticates; neither certificate nor user name is anonymous.
        let cert_verified = listener.require_certificate && cert.is_some();
        let allow_anonymous = listener
            .allow_anonymous
            .unwrap_or(self.config.allow_anonymous);
        if pending.username.is_none() && !cert_verified && !allow_anonymous {
            let why = "anonymous access is off (allow_anonymous false) and the client sent neither a user name nor a client certificate verified under require_certificate true; connect with a user name and password, or a client certificate, or set allow_anonymous true";
            self.refuse_because(now, id, ReasonCode::NotAuthorized, why.into());
            return;
        }
        let decision = {
            let conn = self.conn_ref(id).expect("exists");
            let req = auth_request(conn, &pending);
            self.authenticator.authenticate(&req)
        };
        self.decided(now, id, pending, decision);
    }

    /// Acts on the authenticator's decision about a held CONNECT.
    fn decided(
        &mut self,
        now: Instant,
        id: ConnectionId,
        mut pending: PendingConnect,
        decision: AuthDecision,
    ) {
        match decision {
            AuthDecision::Allow => {
                let held = std::mem::take(&mut pending.held);
                self.finish_connect(now, id, pending, None);
                // What the client sent after its CONNECT, in order
                // [MQTT-3.1.4-?: a client need not wait for CONNACK].
                for packet in held {
                    if self
                        .conn_ref(id)
                        .is_none_or(|c| c.state != ConnState::Connected)
                    {
                        break;
                    }
                    self.route_packet(now, id, packet);
                }
            }
            AuthDecision::Deny(rc) => self.refuse(now, id, rc, None),
            AuthDecision::Defer => {
                let Some(conn) = self.conns.get_mut(id) else {
                    return;
                };
                let request = Box::new(auth_request(conn, &pending).to_owned());
                pending.deferred = true;
                conn.state = ConnState::Authenticating;
                conn.pending = Some(Box::new(pending));
                tracing::debug!(target: TARGET, "Authentication of {} deferred.", conn.name());
                self.out.events.push_back(Event::AuthPending {
                    connection: id,
                    request,
                });
                let at = now + self.config.auth_timeout;
                self.set_timer(at, Timer::AuthTimeout(id));
            }
        }
    }

    /// The answer to a deferred authentication ([`Event::AuthPending`]).
    /// Returns false when nothing waits for it any more (the client left,
    /// or the time-out refused it); `Defer` again keeps it waiting.
    pub fn complete_auth(
        &mut self,
        now: Instant,
        id: ConnectionId,
        decision: AuthDecision,
    ) -> bool {
        self.touch(now);
        let Some(conn) = self.conns.get_mut(id) else {
            return false;
        };
        if conn.state != ConnState::Authenticating
            || !conn.pending.as_ref().is_some_and(|p| p.deferred)
        {
            return false;
        }
        if decision == AuthDecision::Defer {
            return true;
        }
        let Some(pending) = conn.pending.take() else {
            return false;
        };
        self.decided(now, id, *pending, decision);
        true
    }

    /// A deferred authentication that got no answer in time.
    pub(super) fn auth_timed_out(&mut self, now: Instant, id: ConnectionId) {
        let waiting = self.conn_ref(id).is_some_and(|c| {
            c.state == ConnState::Authenticating && c.pending.as_ref().is_some_and(|p| p.deferred)
        });
        if waiting {
            let why = format!(
                "the authentication check gave no answer within {} s (auth_timeout); try again later",
                self.config.auth_timeout.as_secs_f32()
            );
            self.refuse_because(now, id, ReasonCode::ServerUnavailable, why);
        }
    }

    /// Holds a packet a client sent after its CONNECT while the decision is
    /// deferred; a client that sends too many is closed.
    pub(super) fn hold(&mut self, now: Instant, id: ConnectionId, packet: Packet) {
        let Some(pending) = self.conn_mut(id).and_then(|c| c.pending.as_mut()) else {
            return;
        };
        if pending.held.len() >= MAX_HELD {
            let why = format!("more than {MAX_HELD} packets sent before CONNACK");
            self.refuse_because(now, id, ReasonCode::QuotaExceeded, why);
            return;
        }
        pending.held.push(packet);
    }

    pub(super) fn run_enhanced(
        &self,
        id: ConnectionId,
        pending: &PendingConnect,
        exchange: &mut AuthExchange,
    ) -> AuthStep {
        match self.conn_ref(id) {
            Some(conn) => {
                let req = auth_request(conn, pending);
                self.authenticator.authenticate_enhanced(&req, exchange)
            }
            None => AuthStep::Fail(ReasonCode::UnspecifiedError),
        }
    }

    pub(super) fn enhanced_step(
        &mut self,
        now: Instant,
        id: ConnectionId,
        mut pending: PendingConnect,
        step: AuthStep,
    ) {
        let method = pending.exchange.as_ref().map(|e| e.method.clone());
        match step {
            AuthStep::Continue(data) => {
                // [MQTT-4.12.0-2] AUTH 0x18 with the same method.
                let mut auth = Auth {
                    reason_code: ReasonCode::ContinueAuthentication,
                    properties: Properties::default(),
                };
                auth.properties.authentication_method = method.map(Into::into);
                auth.properties.authentication_data = Some(data);
                if let Some(e) = pending.exchange.as_mut() {
                    e.step += 1;
                }
                let Some(conn) = self.conn_mut(id) else {
                    return;
                };
                conn.state = ConnState::Authenticating;
                conn.pending = Some(Box::new(pending));
                tracing::debug!(target: TARGET, "Sending AUTH to {} (rc{})", self.conn_ref(id).map_or("", |c| c.name()), 0x18);
                self.send_to(id, &Packet::Auth(auth));
            }
            AuthStep::Success(data) => {
                let m = method.unwrap_or_default();
                self.finish_connect(now, id, pending, Some((m, data)));
            }
            AuthStep::Fail(rc) => self.refuse(now, id, rc, None),
        }
    }

    pub(super) fn handle_auth(&mut self, now: Instant, id: ConnectionId, auth: Auth) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let name = conn.name().to_string();
        tracing::debug!(target: TARGET, "Received AUTH from {} (rc{})", name, auth.reason_code.as_u8());
        if !conn.version.is_v5() {
            return self.violation(now, id, ReasonCode::ProtocolError, "AUTH in MQTT 3.1.1");
        }
        let method = auth.properties.authentication_method.clone();
        match conn.state {
            ConnState::Authenticating => {
                let Some(mut pending) = conn.pending.take() else {
                    return self.violation(
                        now,
                        id,
                        ReasonCode::ProtocolError,
                        "AUTH without exchange",
                    );
                };
                let Some(mut exchange) = pending.exchange.take() else {
                    return self.violation(
                        now,
                        id,
                        ReasonCode::ProtocolError,
                        "AUTH without exchange",
                    );
                };
                // Same method, reason 0x18 while the exchange runs (section 4.12).
                if auth.reason_code != ReasonCode::ContinueAuthentication
                    || method.as_deref() != Some(exchange.method.as_str())
                {
                    return self.violation(
                        now,
                        id,
                        ReasonCode::ProtocolError,
                        "AUTH with another method or reason",
                    );
                }
                exchange.data = auth.properties.authentication_data.clone();
                let step = self.run_enhanced(id, &pending, &mut exchange);
                pending.exchange = Some(exchange);
                self.enhanced_step(now, id, *pending, step);
            }
            ConnState::Connected => {
                // Re-authentication [MQTT-4.12.1-1]: the same method as CONNECT.
                let Some(conn_method) = conn.auth_method.as_deref().map(str::to_string) else {
                    return self.violation(
                        now,
                        id,
                        ReasonCode::ProtocolError,
                        "re-authentication without enhanced authentication",
                    );
                };
                if method.as_deref() != Some(conn_method.as_str()) {
                    return self.violation(
                        now,
                        id,
                        ReasonCode::ProtocolError,
                        "re-authentication with another method",
                    );
                }
                let mut exchange = match (auth.reason_code, conn.reauth.take()) {
                    (ReasonCode::ReAuthenticate, _) => AuthExchange {
                        method: conn_method.clone(),
                        data: None,
                        step: 0,
                        state: Vec::new(),
                        reauthenticate: true,
                    },
                    (ReasonCode::ContinueAuthentication, Some(e)) => *e,
                    _ => {
                        return self.violation(
                            now,
                            id,
                            ReasonCode::ProtocolError,
                            "unexpected AUTH",
                        )
                    }
                };
                exchange.data = auth.properties.authentication_data.clone();
                let pending = PendingConnect {
                    connect: Box::new(Connect::new(ProtocolVersion::V5, conn.name())),
                    client_id: conn.name().to_string(),
                    assigned: false,
                    server_keep_alive: None,
                    username: conn.username.clone(),
                    username_from_certificate: false,
                    exchange: None,
                    deferred: false,
                    held: Vec::new(),
                };
                let step = self.run_enhanced(id, &pending, &mut exchange);
                let mut reply = Auth {
                    reason_code: ReasonCode::Success,
                    properties: Properties::default(),
                };
                reply.properties.authentication_method = Some(conn_method.into());
                match step {
                    AuthStep::Continue(data) => {
                        exchange.step += 1;
                        reply.reason_code = ReasonCode::ContinueAuthentication;
                        reply.properties.authentication_data = Some(data);
                        if let Some(conn) = self.conn_mut(id) {
                            conn.reauth = Some(Box::new(exchange));
                        }
                        self.send_to(id, &Packet::Auth(reply));
                    }
                    AuthStep::Success(data) => {
                        reply.properties.authentication_data = data;
                        self.send_to(id, &Packet::Auth(reply));
                    }
                    AuthStep::Fail(rc) => {
                        let rc = if rc.allowed_in(mqtt_codec::PacketType::Disconnect) {
                            rc
                        } else {
                            ReasonCode::NotAuthorized
                        };
                        tracing::info!(target: TARGET, "Client {} disconnected, not authorised.", name);
                        self.send_disconnect(id, rc);
                        self.close_conn(now, id, true, DisconnectReason::NotAuthorized);
                    }
                }
            }
            _ => {}
        }
    }

    /// Logs why a CONNECT is refused ("Client X refused: why.", as
    /// Mosquitto words it) and refuses it with `why` as the 5.0 Reason
    /// String.
    pub(super) fn refuse_because(
        &mut self,
        now: Instant,
        id: ConnectionId,
        rc: ReasonCode,
        why: String,
    ) {
        if let Some(conn) = self.conn_ref(id) {
            tracing::info!(target: TARGET, "Client {} refused: {}.", conn.name(), why);
        }
        self.refuse(now, id, rc, Some(why));
    }

    /// Sends a refusing CONNACK and closes the connection [MQTT-3.2.2-7].
    pub(super) fn refuse(
        &mut self,
        now: Instant,
        id: ConnectionId,
        rc: ReasonCode,
        reason: Option<String>,
    ) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let v = conn.version;
        let name = conn.name().to_string();
        // An authenticator's code that CONNACK cannot carry becomes 0x87.
        let rc = if rc.is_error() && rc.allowed_in(mqtt_codec::PacketType::ConnAck) {
            rc
        } else {
            ReasonCode::NotAuthorized
        };
        // [MQTT-3.2.2-6] Session Present is 0 with an error code.
        let mut ack = ConnAck::new(false, rc);
        if v.is_v5() {
            ack.properties.reason_string = reason.map(Into::into);
        }
        tracing::debug!(target: TARGET, "Sending CONNACK to {} (0, {})", name, connack_code(v, rc));
        self.send_to(id, &Packet::ConnAck(ack));
        if matches!(
            rc,
            ReasonCode::NotAuthorized
                | ReasonCode::BadUserNameOrPassword
                | ReasonCode::BadAuthenticationMethod
        ) {
            tracing::info!(target: TARGET, "Client {} disconnected, not authorised.", name);
        } else {
            tracing::info!(target: TARGET, "Client {} disconnected: {}.", name, rc.description());
        }
        self.close_conn(now, id, false, DisconnectReason::ProtocolViolation(rc));
    }

    pub(super) fn finish_connect(
        &mut self,
        now: Instant,
        id: ConnectionId,
        pending: PendingConnect,
        auth: Option<(String, Option<Bytes>)>,
    ) {
        let PendingConnect {
            connect,
            client_id,
            assigned,
            server_keep_alive,
            username,
            username_from_certificate,
            ..
        } = pending;
        let version = connect.protocol;
        let v5 = version.is_v5();
        // Session takeover [MQTT-3.1.4-3]: the old connection is closed
        // (5.0: DISCONNECT 0x8E) and its will is published.
        if let Some(&slot) = self.by_client_id.get(&client_id) {
            if let Some(old) = self.sessions.get(slot).and_then(|s| s.conn) {
                if old != id {
                    tracing::info!(target: TARGET, "Client {} already connected, closing old connection.", client_id);
                    self.send_disconnect(old, ReasonCode::SessionTakenOver);
                    self.close_conn(now, old, true, DisconnectReason::SessionTakenOver);
                }
            }
        }
        let existing = self.by_client_id.get(&client_id).copied();
        let (slot, session_present) = match existing {
            // [MQTT-3.2.2-2] resume the session.
            Some(s) if !connect.clean_start => (s, true),
            Some(s) => {
                // [MQTT-3.1.2-4] Clean Start discards the session; a delayed
                // will is not sent, a new connection was made [MQTT-3.1.3-9].
                self.destroy_session(now, s, false);
                (self.create_session(&client_id, version), false)
            }
            None => (self.create_session(&client_id, version), false),
        };
        let cap = self.config.persistent_client_expiration;
        let expiry = if v5 {
            expiry_from_seconds(connect.properties.session_expiry_interval.unwrap_or(0))
        } else if connect.clean_start {
            Some(Duration::ZERO)
        } else {
            None
        };
        let expiry = match (expiry, cap) {
            (Some(d), _) if d.is_zero() => Some(d),
            (None, Some(c)) => Some(c),
            (Some(d), Some(c)) => Some(d.min(c)),
            (e, None) => e,
        };
        let keep_alive = server_keep_alive.unwrap_or(connect.keep_alive);
        let will = connect.will.as_ref().map(|w| {
            let delay = w.properties.will_delay_interval.unwrap_or(0);
            let mut properties = PublishProperties::from_will(&w.properties);
            let expiry_secs = properties.message_expiry_interval.take();
            Will {
                message: Message {
                    topic: w.topic.clone(),
                    payload: w.payload.clone(),
                    qos: w.qos,
                    retain: w.retain,
                    properties,
                    expires_at: None,
                    charge: Default::default(),
                }
                .charged(&self.memory),
                delay: if v5 { delay } else { 0 },
            }
            .with_expiry(expiry_secs)
        });
        {
            let session = self.sessions.get_mut(slot).expect("session exists");
            session.protocol = version;
            session.username = username.clone();
            session.conn = Some(id);
            session.expiry = expiry;
            session.expires_at = None;
            // [MQTT-3.1.3-9] a new connection cancels a delayed will.
            session.will_at = None;
            session.will = will.map(Box::new);
        }
        let (remote, name_for_log) = {
            let conn = self.conn_mut(id).expect("exists");
            conn.state = ConnState::Connected;
            conn.session = Some(slot);
            conn.username = username.clone();
            // Kept to check the client again when the password file is
            // reloaded (Mosquitto 2 does the same).
            conn.password = if username_from_certificate {
                None
            } else {
                connect.password.as_deref().map(Box::from)
            };
            conn.username_from_certificate = username_from_certificate;
            // Mosquitto's bridge bit (3.1 / 3.1.1 only; 5.0 bridges use No Local).
            conn.bridge = connect.bridge && !version.is_v5();
            conn.keep_alive = keep_alive;
            conn.auth_method = auth.as_ref().map(|(m, _)| m.as_str().into());
            (conn.info.remote_addr, client_id.clone())
        };
        self.out.stats.clients_connected += 1;
        self.out.stats.clients_maximum = self
            .out
            .stats
            .clients_maximum
            .max(self.out.stats.clients_connected);
        let user_part = username
            .as_ref()
            .map(|u| format!(", u'{u}'"))
            .unwrap_or_default();
        tracing::info!(
            target: CONNECTION,
            "New {} connected from {}:{} as {} (p{}, c{}, k{}{}).",
            if connect.bridge && !version.is_v5() {
                "bridge"
            } else {
                "client"
            },
            remote.ip(),
            remote.port(),
            name_for_log,
            protocol_number(version),
            u8::from(connect.clean_start),
            keep_alive,
            user_part
        );
        if let Some(w) = &connect.will {
            tracing::debug!(
                target: TARGET,
                "Will message specified ({} bytes) (r{}, q{}).",
                w.payload.len(),
                u8::from(w.retain),
                w.qos.as_u8()
            );
            tracing::debug!(target: TARGET, "\t{}", w.topic);
        }
        // MQTT 3.1 has no Session Present flag: the byte is reserved, 0.
        let session_present_flag = session_present && version != ProtocolVersion::V3_1;
        let mut ack = ConnAck::new(session_present_flag, ReasonCode::Success);
        if v5 {
            let cfg = &self.config;
            let p = &mut ack.properties;
            if assigned {
                p.assigned_client_identifier = Some(client_id.as_str().into());
            }
            p.server_keep_alive = server_keep_alive;
            if cfg.inflight_window() != u16::MAX {
                p.receive_maximum = Some(cfg.inflight_window());
            }
            if cfg.max_packet_size != 0 {
                p.maximum_packet_size = Some(cfg.max_packet_size);
            }
            let alias_max = self
                .conns
                .get(id)
                .map_or(cfg.max_topic_alias, |c| c.topic_alias_max_in(cfg));
            if alias_max != 0 {
                p.topic_alias_maximum = Some(alias_max);
            }
            if !cfg.retain_available {
                p.retain_available = Some(false);
            }
            // [MQTT-3.2.2-9] Maximum QoS, when it is not 2.
            if let Some(max_qos) = self
                .conn_ref(id)
                .map(|c| c.info.listener.max_qos)
                .filter(|&q| q != QoS::ExactlyOnce)
            {
                p.maximum_qos = Some(max_qos);
            }
            // Tell the client when its expiry differs from its request (section 3.2.2.3.2).
            let asked = connect.properties.session_expiry_interval.unwrap_or(0);
            let granted =
                expiry.map_or(u32::MAX, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
            if granted != asked {
                p.session_expiry_interval = Some(granted);
            }
            if let Some((m, data)) = auth {
                p.authentication_method = Some(m.into());
                p.authentication_data = data;
            }
        }
        tracing::debug!(target: TARGET, "Sending CONNACK to {} ({}, 0)", client_id, u8::from(session_present_flag));
        self.send_to(id, &Packet::ConnAck(ack));
        let (remote_addr, certificate) = match self.conns.get(id) {
            Some(c) => (c.info.remote_addr, c.info.tls.clone()),
            None => return,
        };
        self.out.events.push_back(Event::ClientConnected {
            connection: id,
            client_id: client_id.clone(),
            username,
            protocol: version,
            session_present,
            remote_addr,
            certificate,
        });
        if keep_alive > 0 {
            let at = now + keep_alive_grace(keep_alive);
            self.set_timer(at, Timer::KeepAlive(id));
        }
        // [MQTT-4.4.0-1] resend unacknowledged messages with DUP, and PUBREL
        // for those already received, then whatever is queued.
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if session_present {
            for o in session.inflight.iter() {
                if o.released {
                    tracing::debug!(target: TARGET, "Sending PUBREL to {} (m{})", client_id, o.packet_id);
                    conn.send(&mut self.out, &Packet::PubRel(PubRel::new(o.packet_id)));
                } else {
                    let p = OutgoingPublish::of(&o.delivery);
                    conn.send_publish(&mut self.out, now, &p, Some(o.packet_id), true);
                }
            }
        }
        flow!(self).pump(now, session, conn);
        self.save_session(slot);
    }
}

pub(super) fn expiry_from_seconds(secs: u32) -> Option<Duration> {
    // 0xFFFFFFFF: the session does not expire (section 3.1.2.11.2).
    if secs == u32::MAX {
        None
    } else {
        Some(Duration::from_secs(u64::from(secs)))
    }
}

fn protocol_number(v: ProtocolVersion) -> u8 {
    // Mosquitto's `p` in "New client connected": mosq_p_mqtt31 = 1,
    // mosq_p_mqtt311 = 2, mosq_p_mqtt5 = 5.
    match v {
        ProtocolVersion::V3_1 => 1,
        ProtocolVersion::V3_1_1 => 2,
        ProtocolVersion::V5 => 5,
    }
}

fn connack_code(v: ProtocolVersion, rc: ReasonCode) -> u8 {
    if v.is_v5() {
        rc.as_u8()
    } else {
        rc.to_v3_connack()
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
