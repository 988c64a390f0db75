//! The `$SYS` topic list against a running Mosquitto 2.0.11: the same
//! `mosquitto_sub -t '$SYS/#'` reads both brokers, and the topics must be
//! `sys::SYS_TOPICS`. Skipped with a printed reason when `mosquitto` or
//! `mosquitto_sub` is missing; required when `MQTT_INTEROP=1`.
#![cfg(feature = "tokio")]

mod driver_support;

use driver_support::tool;
use mqtt_broker_core::driver::{Listener, ServerBuilder};
use mqtt_broker_core::sys::SYS_TOPICS;
use mqtt_broker_core::BrokerConfig;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

/// Every `$SYS` topic `mosquitto_sub` sees on `port` within four seconds.
async fn sys_topics_on(sub: &Path, port: u16) -> BTreeSet<String> {
    let out = Command::new(sub)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "$SYS/#", "-F", "%t", "-W", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(15), out)
        .await
        .expect("mosquitto_sub ends after -W 4")
        .expect("mosquitto_sub runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_sys_topics_are_those_mosquitto_2_0_11_publishes() {
    let (Some(mosquitto), Some(sub)) = (tool("mosquitto"), tool("mosquitto_sub")) else {
        return;
    };
    let table: BTreeSet<String> = SYS_TOPICS.iter().map(|t| t.topic.to_string()).collect();

    // Mosquitto, with $SYS every second.
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nsys_interval 1\n"),
    )
    .expect("config written");
    let mut broker = Command::new(&mosquitto)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto starts");
    let mut theirs = BTreeSet::new();
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            theirs = sys_topics_on(&sub, port).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = broker.kill().await;
    let version = String::from_utf8_lossy(
        &std::process::Command::new(&mosquitto)
            .arg("-h")
            .output()
            .expect("mosquitto -h")
            .stdout,
    )
    .into_owned();
    if !version.contains("version 2.0.11") {
        // Another release may publish other topics: the list is 2.0.11's.
        assert!(
            std::env::var("MQTT_INTEROP").as_deref() != Ok("1") || theirs == table,
            "mosquitto is not 2.0.11 ({version:?}) and its topics differ"
        );
        eprintln!("skipped: the installed mosquitto is not 2.0.11");
        return;
    }
    assert_eq!(theirs, table, "Mosquitto 2.0.11's $SYS topics");

    // This broker, read the same way: the same topics (the heap ones carry
    // its memory_limit account, there being no heap source).
    let server = ServerBuilder::new(BrokerConfig::default().sys_interval(Duration::from_secs(1)))
        .listener(Listener::tcp("127.0.0.1:0".parse().unwrap()))
        .start()
        .await
        .expect("server starts");
    let ours = sys_topics_on(&sub, server.local_addrs()[0].port()).await;
    server.shutdown().await;
    assert_eq!(ours, table, "this broker's $SYS topics");
}
