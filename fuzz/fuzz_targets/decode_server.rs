//! Server-side decoding (`Decoder::new()`): the version is learned from the
//! CONNECT that must come first.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mqtt_codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let _ = mqtt_codec::peek_connect_version(data);
    mqtt_codec_fuzz::decode_stream(Decoder::new(), data);
});
