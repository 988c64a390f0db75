//! Topic aliases from the client (section 3.3.2.3.4): an alias it defines
//! stands for its topic for the rest of the network connection
//! [MQTT-3.3.2-7]. The tables are mqtt-codec's, shared with the client;
//! aliases towards the client are chosen in [`super::transmit`].

use super::Conn;
use mqtt_codec::{Publish, TopicAliasError};

impl Conn {
    /// Takes the Topic Alias off a client's PUBLISH and gives it its full
    /// topic: an alias of 0 or above `max` (our Topic Alias Maximum) is
    /// invalid [MQTT-3.3.2-8] [MQTT-3.3.2-12], an unknown one a protocol
    /// error.
    pub fn resolve_topic_alias(
        &mut self,
        p: &mut Publish,
        max: u16,
    ) -> Result<(), TopicAliasError> {
        // (Read first: writing through the properties makes the encoder
        // measure them again when the message goes out.)
        let Some(alias) = p.properties.topic_alias else {
            return Ok(());
        };
        p.properties.topic_alias = None;
        self.aliases
            .get_or_insert_with(Default::default)
            .incoming
            .resolve(alias, &mut p.topic, max)
    }
}
