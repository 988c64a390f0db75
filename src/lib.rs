//! Examples and benchmarks of the MQTT-over-TLS workspace live in `examples/` and `benches/`.
#![forbid(unsafe_code)]

/// mqtt-broker-core's README example, compiled and run as a doctest here
/// (the crate's own sources belong to its driver work).
#[cfg(doctest)]
#[doc = include_str!("../crates/mqtt-broker-core/README.md")]
pub struct BrokerCoreReadme;
