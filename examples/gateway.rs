//! One program, one port: an HTTP server (axum) that also serves MQTT over
//! WebSockets on `/mqtt`, publishes what is POSTed to `/publish` through
//! its in-process client, and checks MQTT passwords asynchronously against
//! its own user store.
//!
//! ```text
//! cargo run --example gateway -- --listen 127.0.0.1:8080 --user pi:raspberry
//! # an MQTT client over WebSockets (MQTT.js in a browser, Paho, mqtt-client
//! # with ClientOptions::websocket("/mqtt")): ws://127.0.0.1:8080/mqtt,
//! # user pi, password raspberry
//! curl -X POST 'http://127.0.0.1:8080/publish?topic=sensors/kitchen&retain=1' -d 21.5
//! ```
//!
//! The broker has no listener of its own here: every MQTT connection comes
//! through the HTTP server's upgrade (`Server::serve_websocket`), and the
//! program's own publications through `Server::local_client`.
#![forbid(unsafe_code)]

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use clap::Parser;
use hyper_util::rt::TokioIo;
use mqtt_broker_core::driver::{LocalClient, LocalOptions, Server, ServerBuilder};
use mqtt_broker_core::mqtt_codec::{QoS, ReasonCode};
use mqtt_broker_core::{AuthDecision, BrokerConfig, ConnectionInfo};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// HTTP and MQTT over WebSockets on one port, with an in-process publisher.
#[derive(Parser, Debug)]
#[command(name = "gateway", about)]
struct Args {
    /// Address to serve HTTP (and MQTT on /mqtt) on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A user of the MQTT side, NAME:PASSWORD; may be repeated.
    #[arg(
        long = "user",
        value_name = "NAME:PASSWORD",
        default_value = "pi:raspberry"
    )]
    users: Vec<String>,
}

/// The program's user store: in a real program a database or a directory
/// service, which is why it is asked asynchronously.
#[derive(Default)]
struct Users(RwLock<HashMap<String, String>>);

impl Users {
    async fn check(&self, user: Option<&str>, password: Option<&[u8]>) -> AuthDecision {
        // The round trip to the store: other clients are served meanwhile.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let known = match (user, self.0.read()) {
            (Some(u), Ok(users)) => users.get(u).cloned(),
            _ => None,
        };
        match (known, password) {
            (Some(expected), Some(given)) if expected.as_bytes() == given => AuthDecision::Allow,
            _ => AuthDecision::Deny(ReasonCode::BadUserNameOrPassword),
        }
    }
}

struct App {
    server: Server,
    publisher: LocalClient,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let users = Arc::new(Users::default());
    for u in &args.users {
        let (name, password) = u
            .split_once(':')
            .ok_or_else(|| format!("--user {u}: expected NAME:PASSWORD"))?;
        if let Ok(mut map) = users.0.write() {
            map.insert(name.to_string(), password.to_string());
        }
    }
    // The in-process publisher is a user of the store too.
    let token = {
        use std::hash::{BuildHasher, Hasher};
        // Random per run (std's hasher keys are): no one else can log in as it.
        let (a, b) = (
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish(),
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish(),
        );
        format!("{a:016x}{b:016x}")
    };
    if let Ok(mut map) = users.0.write() {
        map.insert("gateway".into(), token.clone());
    }

    let store = users.clone();
    let server = ServerBuilder::new(BrokerConfig::default().allow_anonymous(false))
        .async_authenticator(move |req| {
            let store = store.clone();
            async move {
                store
                    .check(req.username.as_deref(), req.password.as_deref())
                    .await
            }
        })
        .start()
        .await?;
    let (publisher, _) = server
        .local_client(LocalOptions::new("gateway").credentials("gateway", token))
        .await?;
    let app = Arc::new(App { server, publisher });

    let routes = Router::new()
        .route("/", get(index))
        .route("/mqtt", get(mqtt_over_websockets))
        .route("/publish", post(publish))
        .with_state(app.clone());
    let http = tokio::net::TcpListener::bind(args.listen).await?;
    // The test (tests/gateway.rs) reads this line for the port.
    println!("gateway listening on http://{}", http.local_addr()?);
    axum::serve(
        http,
        routes.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    if let Ok(app) = Arc::try_unwrap(app) {
        app.server.shutdown().await;
    }
    Ok(())
}

async fn index() -> &'static str {
    "MQTT over WebSockets: ws://HOST:PORT/mqtt (subprotocol mqtt)\n\
     Publish: POST /publish?topic=TOPIC[&retain=1][&qos=0|1|2] with the payload as the body\n"
}

/// `GET /mqtt` with an upgrade: answered here (101), then the connection
/// is the broker's.
async fn mqtt_over_websockets(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    let is_upgrade = header_has(headers, header::UPGRADE, "websocket")
        && header_has(headers, header::CONNECTION, "upgrade");
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| is_upgrade)
    else {
        return (
            StatusCode::UPGRADE_REQUIRED,
            "MQTT over WebSockets: open ws://HOST:PORT/mqtt with subprotocol mqtt\n",
        )
            .into_response();
    };
    let accept = mqtt_tls::websocket::accept_key(key.as_bytes());
    let protocol = mqtt_tls::websocket::choose_subprotocol(
        headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let info = ConnectionInfo::new(peer);
                let _ = app
                    .server
                    .serve_websocket(TokioIo::new(upgraded), info)
                    .await;
            }
            Err(e) => eprintln!("WebSocket upgrade from {peer} failed: {e}"),
        }
    });
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept);
    if let Some(p) = protocol {
        response = response.header(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    response
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// `POST /publish?topic=...`: the body, published in process.
async fn publish(
    State(app): State<Arc<App>>,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let Some(topic) = query.get("topic") else {
        return (StatusCode::BAD_REQUEST, "missing ?topic=\n").into_response();
    };
    let qos = match query.get("qos").map(String::as_str) {
        None | Some("0") => QoS::AtMostOnce,
        Some("1") => QoS::AtLeastOnce,
        Some("2") => QoS::ExactlyOnce,
        Some(other) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("qos {other}: use 0, 1 or 2\n"),
            )
                .into_response()
        }
    };
    let retain = matches!(query.get("retain").map(String::as_str), Some("1" | "true"));
    match app.publisher.publish(topic, body, qos, retain).await {
        Ok(()) => (StatusCode::OK, "published\n").into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("not published: {e}\n")).into_response(),
    }
}
