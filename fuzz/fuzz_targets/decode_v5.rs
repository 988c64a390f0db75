//! Client-side decoding of a 5.0 byte stream.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mqtt_codec::{Decoder, ProtocolVersion};

fuzz_target!(|data: &[u8]| {
    mqtt_codec_fuzz::decode_stream(Decoder::with_version(ProtocolVersion::V5), data);
});
