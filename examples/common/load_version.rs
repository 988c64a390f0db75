//! `-V` of the load tools (mqtt-bench, mqtt-swarm): the MQTT version they
//! speak, in mosquitto_pub's spelling.

use clap::ValueEnum;
use mqtt_codec::ProtocolVersion;

/// The protocol version a load tool's connections speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Version {
    /// MQTT 3.1.1
    #[value(name = "mqttv311", alias = "311")]
    V311,
    /// MQTT 5.0
    #[value(name = "mqttv5", alias = "5")]
    V5,
}

impl Version {
    /// The codec's version.
    pub fn protocol(self) -> ProtocolVersion {
        match self {
            Version::V311 => ProtocolVersion::V3_1_1,
            Version::V5 => ProtocolVersion::V5,
        }
    }

    /// "3.1.1" or "5.0", for reports.
    pub fn label(self) -> &'static str {
        match self {
            Version::V311 => "3.1.1",
            Version::V5 => "5.0",
        }
    }

    /// The `-V` value that selects it ("mqttv311", "mqttv5").
    #[allow(dead_code)] // mqtt-bench prints its command; mqtt-swarm does not.
    pub fn flag(self) -> &'static str {
        match self {
            Version::V311 => "mqttv311",
            Version::V5 => "mqttv5",
        }
    }
}
