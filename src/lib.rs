//! Examples and benchmarks of the MQTT-over-TLS workspace live in `examples/` and `benches/`.
#![forbid(unsafe_code)]
