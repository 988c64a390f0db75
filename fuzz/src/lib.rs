//! Shared helpers of the fuzz targets.

use bytes::BytesMut;
use mqtt_codec::{Decoder, Packet, ProtocolVersion};

/// Decodes `data` with `decoder` until it needs more bytes or fails. Every
/// packet that decodes must re-encode to exactly `encoded_len` bytes and
/// decode back to itself (the codec's own oracle), and the whole input is fed
/// a second time in two pieces to check that splitting changes nothing.
pub fn decode_stream(mut decoder: Decoder, data: &[u8]) {
    let split_decoder = decoder.clone();
    let mut buf = BytesMut::from(data);
    let mut whole: Vec<Result<Packet, mqtt_codec::DecodeError>> = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(p)) => {
                let v = decoder
                    .version()
                    .expect("a decoded packet fixes the version");
                check_reencode(&p, v);
                whole.push(Ok(p));
            }
            Ok(None) => break,
            Err(e) => {
                // Every error maps to a reason code (and must not panic).
                let _ = e.reason_code();
                whole.push(Err(e));
                break;
            }
        }
    }

    // The same input fed in two pieces gives the same packets and error.
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let mut decoder = split_decoder;
    let mut buf = BytesMut::from(&data[..cut]);
    let mut pieces = Vec::new();
    let mut fed_rest = false;
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(p)) => pieces.push(Ok(p)),
            Ok(None) if !fed_rest => {
                buf.extend_from_slice(&data[cut..]);
                fed_rest = true;
            }
            Ok(None) => break,
            Err(e) => {
                pieces.push(Err(e));
                break;
            }
        }
    }
    assert_eq!(whole, pieces, "splitting the input changed the result");
}

/// Re-encodes `p` and decodes it again with a fresh decoder.
pub fn check_reencode(p: &Packet, v: ProtocolVersion) {
    let mut out = BytesMut::new();
    let n = p.encode(v, &mut out).expect("a decoded packet re-encodes");
    assert_eq!(n, out.len());
    assert_eq!(p.encoded_len(v), out.len(), "encoded_len disagrees");
    let again = Decoder::with_version(v)
        .decode(&mut out)
        .expect("re-encoded packet decodes")
        .expect("re-encoded packet is complete");
    assert_eq!(&again, p, "decode(encode(p)) != p");
    assert!(out.is_empty());
}
